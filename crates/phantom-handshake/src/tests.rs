//! Unit, property and invariant tests for the handshake.

use phantom_wire::HANDSHAKE_MARKER;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use phantom_crypto::Suite;
use phantom_wire::{Reader, SessionId};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::fragment::{Inserted, Reassembler, pack};
use crate::schedule::{COMPROMISE, Half};
use crate::server::MAX_REFUSED_FINISHED;
use crate::*;

const UNIX0: u64 = 1_750_000_000;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[allow(clippy::disallowed_methods)]
fn base_instant() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn t(secs: u64) -> Time {
    Time::new(base_instant() + Duration::from_secs(secs), UNIX0 + secs)
}

/// A hand-built datagram with its integrity tag appended.
fn sealed(mut d: Vec<u8>) -> Vec<u8> {
    crate::fragment::add_integrity_tag(&mut d);
    d
}

/// A datagram's bytes without its integrity tag.
fn untagged(d: &[u8]) -> Vec<u8> {
    d[..d.len() - INTEGRITY_TAG_LEN].to_vec()
}

/// A datagram changed by `f` (applied to its bytes before the tag), re-tagged: what an
/// attacker who follows the protocol sends.
fn retagged(d: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = untagged(d);
    f(&mut b);
    sealed(b)
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 40_000 + n))
}

struct Fixture {
    signing: HybridSigningKey,
    identity: ServerIdentity,
    other_signing: HybridSigningKey,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut r = rng(1);
        let signing = HybridSigningKey::generate(&mut r);
        let identity = ServerIdentity::generate(&signing, &mut r, UNIX0 + 86_400 * 30).unwrap();
        let other_signing = HybridSigningKey::generate(&mut r);
        Fixture {
            signing,
            identity,
            other_signing,
        }
    })
}

fn server_config() -> ServerConfig {
    ServerConfig::new(fixture().identity.clone())
}

fn client_config(pdk: bool) -> ClientConfig {
    let f = fixture();
    let vk = f.signing.verifying_key();
    let mut c = ClientConfig::new(vk.clone());
    if pdk {
        c.certificate = Some(f.identity.certificate().verify(&vk, UNIX0).unwrap());
    }
    c
}

#[derive(Debug)]
struct Outcome {
    client: Established,
    server: Established,
    /// Server flights the client needed before completing.
    client_rounds: usize,
}

/// Drives a client and a server to completion over a perfect link (bounded).
fn drive(
    client: &mut Client,
    server: &mut Server,
    from: SocketAddr,
    now: Time,
    rng: &mut ChaCha20Rng,
) -> Result<(Option<Box<Established>>, usize), Error> {
    let mut server_est = None;
    let mut rounds = 0;
    for _ in 0..16 {
        let mut progressed = false;
        while let Some(d) = client.poll_transmit() {
            progressed = true;
            if let Some(e) = server.handle_datagram(now, from, &d, rng, |_| false)? {
                server_est = Some(e);
            }
        }
        let mut got = false;
        while let Some(tx) = server.poll_transmit() {
            progressed = true;
            got = true;
            assert_eq!(tx.dst, from);
            let _ = client.handle(now, &tx.payload, rng)?;
        }
        if got {
            rounds += 1;
        }
        if !progressed {
            break;
        }
    }
    Ok((server_est, rounds))
}

fn handshake(
    seed: u64,
    cfg: ClientConfig,
    scfg: ServerConfig,
    now: Time,
) -> Result<Outcome, Error> {
    let mut r = rng(seed);
    let mut server = Server::new(scfg, &mut r);
    let mut client = Client::new(cfg, &mut r, now)?;
    let (server_est, rounds) = drive(&mut client, &mut server, addr(1), now, &mut r)?;
    let server = *server_est.ok_or(Error::Misuse("server did not complete"))?;
    let client = client.into_established()?;
    Ok(Outcome {
        client,
        server,
        client_rounds: rounds,
    })
}

fn assert_agree(o: &Outcome) {
    assert_eq!(
        o.client.c2s.dangerously_expose(),
        o.server.c2s.dangerously_expose()
    );
    assert_eq!(
        o.client.s2c.dangerously_expose(),
        o.server.s2c.dangerously_expose()
    );
    assert_ne!(
        o.client.c2s.dangerously_expose(),
        o.client.s2c.dangerously_expose()
    );
    assert_eq!(o.client.session_id, o.server.session_id);
    assert_eq!(o.client.suite, o.server.suite);
    assert_eq!(o.client.version, HANDSHAKE_VERSION);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]
    #[test]
    fn both_sides_derive_identical_secrets(seed in any::<u64>(), pdk in any::<bool>()) {
        let o = handshake(seed, client_config(pdk), server_config(), t(0)).unwrap();
        assert_agree(&o);
        prop_assert!(o.client.resumption_ticket.is_some());
        prop_assert!(!o.client.resumed && !o.server.resumed);
    }
}

#[test]
fn pdk_handshake_completes_in_one_round_trip_and_full_in_two() {
    let pdk = handshake(7, client_config(true), server_config(), t(0)).unwrap();
    assert_agree(&pdk);
    assert_eq!(pdk.client_rounds, 1, "PDK: one server flight");
    assert_eq!(
        pdk.client.pending_flight.len(),
        1,
        "client's ClientFinished to re-send on demand"
    );
    let full = handshake(7, client_config(false), server_config(), t(0)).unwrap();
    assert_agree(&full);
    assert_eq!(full.client_rounds, 2, "full KEMTLS: two server flights");
}

#[test]
fn full_mode_certificate_is_cached_and_enables_pdk() {
    let mut r = rng(3);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    drive(&mut client, &mut server, addr(1), t(0), &mut r).unwrap();
    let cert = client
        .verified_certificate()
        .cloned()
        .expect("verified in full mode");
    assert!(client.resumption_hint().is_some());
    let mut cfg = client_config(false);
    cfg.certificate = Some(cert);
    let mut client2 = Client::new(cfg, &mut r, t(1)).unwrap();
    let (est, rounds) = drive(&mut client2, &mut server, addr(2), t(1), &mut r).unwrap();
    assert!(est.is_some());
    assert_eq!(rounds, 1);
    assert!(
        client2.verified_certificate().is_none(),
        "no re-verification"
    );
}

#[test]
fn rotated_static_key_falls_back_to_full_mode() {
    let f = fixture();
    let mut r = rng(4);
    let new_identity = ServerIdentity::generate(&f.signing, &mut r, UNIX0 + 1000).unwrap();
    let mut scfg = server_config();
    scfg.identity = new_identity;
    let o = handshake(4, client_config(true), scfg, t(0)).unwrap();
    assert_agree(&o);
    assert_eq!(o.client_rounds, 2);
}

#[test]
fn i1_wrong_pinned_key_is_refused() {
    let f = fixture();
    // The client pins another key: the certificate's signatures do not verify.
    let cfg = ClientConfig::new(f.other_signing.verifying_key());
    let err = handshake(5, cfg, server_config(), t(0)).unwrap_err();
    assert!(matches!(err, Error::BadSignature(_)), "{err:?}");
    // A certificate made by another key for the server's static KEM key.
    let mut r = rng(5);
    let forged = ServerIdentity::new(
        &f.other_signing,
        StaticKemKeyPair::generate(&mut r),
        UNIX0 + 100,
    )
    .unwrap();
    let mut scfg = server_config();
    scfg.identity = forged;
    let err = handshake(5, client_config(false), scfg, t(0)).unwrap_err();
    assert!(matches!(err, Error::BadSignature(_)), "{err:?}");
    // A cached certificate for another key is a caller error.
    let mut cfg = ClientConfig::new(f.other_signing.verifying_key());
    cfg.certificate = client_config(true).certificate;
    assert_eq!(
        Client::new(cfg, &mut r, t(0)).unwrap_err(),
        Error::Misuse("certificate for another server key")
    );
}

#[test]
fn certificate_signature_checks_both_halves_and_expiry() {
    let f = fixture();
    let vk = f.signing.verifying_key();
    let cert = f.identity.certificate();
    let bytes = cert.to_bytes();
    assert_eq!(bytes.len(), ServerCertificate::LEN);
    // Flip one byte in the Ed25519 signature, then one in the ML-DSA signature.
    for pos in [
        1 + StaticKemPublic::LEN + 8 + 3,
        ServerCertificate::LEN - 100,
    ] {
        let mut b = bytes.clone();
        b[pos] ^= 1;
        let c = ServerCertificate::from_bytes(&b).unwrap();
        assert!(matches!(c.verify(&vk, UNIX0), Err(Error::BadSignature(_))));
    }
    assert_eq!(
        cert.verify(&vk, cert.not_after() + 1).unwrap_err(),
        Error::CertificateExpired
    );
    assert!(ServerCertificate::from_bytes(&bytes[..100]).is_err());
}

#[test]
fn keys_round_trip_through_bytes() {
    let f = fixture();
    let sk2 = HybridSigningKey::from_bytes(&f.signing.to_bytes());
    assert_eq!(sk2.verifying_key(), f.signing.verifying_key());
    let vk_bytes = f.signing.verifying_key().to_bytes();
    assert_eq!(vk_bytes.len(), HybridVerifyingKey::LEN);
    assert_eq!(
        HybridVerifyingKey::from_bytes(&vk_bytes).unwrap(),
        f.signing.verifying_key()
    );
    assert!(HybridVerifyingKey::from_bytes(&vk_bytes[1..]).is_err());
    let id2 = ServerIdentity::from_bytes(&f.identity.to_bytes()).unwrap();
    assert_eq!(id2.certificate(), f.identity.certificate());
    let mut bad = f.identity.to_bytes().to_vec();
    bad[5] ^= 1; // KEM secret no longer matches the certificate (byte 0 bits are clamped)
    assert!(ServerIdentity::from_bytes(&bad).is_err());
    let kem = StaticKemKeyPair::from_bytes(&f.identity.kem.to_bytes());
    assert!(kem.public() == f.identity.kem.public());
}

#[test]
fn suite_negotiation_follows_client_preference_among_server_suites() {
    let mut cfg = client_config(true);
    cfg.suites = vec![Suite::Aes256Gcm, Suite::ChaCha20Poly1305];
    let o = handshake(8, cfg.clone(), server_config(), t(0)).unwrap();
    assert_eq!(o.client.suite, Suite::Aes256Gcm);
    let mut scfg = server_config();
    scfg.suites = vec![Suite::ChaCha20Poly1305];
    let o = handshake(8, cfg.clone(), scfg.clone(), t(0)).unwrap();
    assert_eq!(o.client.suite, Suite::ChaCha20Poly1305);
    cfg.suites = vec![Suite::Aes256Gcm];
    assert_eq!(
        handshake(8, cfg, scfg, t(0)).unwrap_err(),
        Error::SuiteMismatch {
            offered: CodeList::new(&[1]),
            supported: CodeList::new(&[2]),
            authenticated: false,
        }
    );
}

/// Rewrites a byte inside the reassembled ServerHello and re-fragments it.
fn tamper_server_hello(seed: u64, f: impl Fn(&mut Vec<u8>)) -> Error {
    let mut r = rng(seed);
    let mut server = Server::new(server_config(), &mut r);
    let mut cfg = client_config(true);
    cfg.suites = vec![Suite::Aes256Gcm, Suite::ChaCha20Poly1305];
    let mut client = Client::new(cfg, &mut r, t(0)).unwrap();
    while let Some(d) = client.poll_transmit() {
        server
            .handle_datagram(t(0), addr(1), &d, &mut r, |_| false)
            .unwrap();
    }
    let mut reasm = Reassembler::new();
    let mut echo = Vec::new();
    while let Some(tx) = server.poll_transmit() {
        echo = echo_of(&tx.payload);
        for fr in Datagram::parse(&tx.payload).unwrap().fragments {
            reasm.insert(&fr).unwrap();
        }
    }
    let mut sh = reasm.pop().unwrap();
    let sf = reasm.pop().unwrap();
    f(&mut sh);
    for d in pack(&[(0, &sh), (1, &sf)], &echo) {
        if let Err(e) = client.handle(t(0), &d, &mut r) {
            return e;
        }
    }
    panic!("tampered ServerHello accepted");
}

#[test]
fn downgrade_of_suite_or_flags_is_detected() {
    // Byte 2 of the ServerHello is the suite: switch AES-GCM (1) to ChaCha20 (2).
    assert_eq!(
        tamper_server_hello(9, |sh| sh[2] = 2),
        Error::KeyConfirmation
    );
    // Byte 1 is the version.
    assert_eq!(
        tamper_server_hello(9, |sh| sh[1] = 9),
        Error::VersionMismatch {
            offered: CodeList::new(&[HANDSHAKE_VERSION]),
            supported: CodeList::new(&[9]),
            authenticated: false,
        }
    );
}

#[test]
fn session_id_is_redrawn_on_collision() {
    let mut r = rng(10);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let seen = RefCell::new(Vec::new());
    let is_live = |id: &SessionId| {
        seen.borrow_mut().push(*id);
        seen.borrow().len() <= 3 // the first three draws "collide"
    };
    let mut est = None;
    for _ in 0..4 {
        while let Some(d) = client.poll_transmit() {
            if let Some(e) = server
                .handle_datagram(t(0), addr(1), &d, &mut r, is_live)
                .unwrap()
            {
                est = Some(e);
            }
        }
        while let Some(tx) = server.poll_transmit() {
            let _ = client.handle(t(0), &tx.payload, &mut r).unwrap();
        }
    }
    let seen = seen.into_inner();
    assert_eq!(seen.len(), 4);
    let sid = est.unwrap().session_id;
    assert_eq!(sid, seen[3]);
    assert!(!seen[..3].contains(&sid));
    // Always colliding: a clean refusal.
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let mut err = None;
    while let Some(d) = client.poll_transmit() {
        if let Err(e) = server.handle_datagram(t(0), addr(1), &d, &mut r, |_| true) {
            err = Some(e);
        }
    }
    assert_eq!(err, Some(Error::LimitExceeded("session id draws")));
}

#[test]
fn hybrid_key_stays_secret_with_either_kem_half_broken() {
    for half in [Half::X25519, Half::MlKem] {
        COMPROMISE.with(|c| c.set(Some(half)));
        let a = handshake(11, client_config(true), server_config(), t(0));
        let b = handshake(12, client_config(true), server_config(), t(0));
        COMPROMISE.with(|c| c.set(None));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_agree(&a);
        // The attacker knows the broken half (zeros here) and the transcript, but not the
        // other half; its best guess for the unknown half gives a different key.
        let es = crate::schedule::early_secret(None);
        let zero = || zeroize::Zeroizing::new([0u8; 32]);
        let shares = crate::schedule::Shares {
            ee_x: zero(),
            ee_ml: zero(),
            es_x: zero(),
            es_ml: zero(),
        };
        let guess = crate::schedule::master_secret(&es, &shares);
        let guess_keys = crate::schedule::HandshakeKeys::derive(guess, &[0; 32]);
        assert_ne!(&*guess_keys.ms, a.client.c2s.dangerously_expose());
        // Different sessions with the same broken half still get independent keys:
        // the entropy comes from the half that holds.
        assert_ne!(
            a.client.c2s.dangerously_expose(),
            b.client.c2s.dangerously_expose()
        );
        assert_ne!(
            a.client.s2c.dangerously_expose(),
            b.client.s2c.dangerously_expose()
        );
    }
    // And breaking a half changes the key relative to the intact handshake.
    let intact = handshake(11, client_config(true), server_config(), t(0)).unwrap();
    COMPROMISE.with(|c| c.set(Some(Half::MlKem)));
    let broken = handshake(11, client_config(true), server_config(), t(0));
    COMPROMISE.with(|c| c.set(None));
    assert_ne!(
        intact.client.c2s.dangerously_expose(),
        broken.unwrap().client.c2s.dangerously_expose()
    );
}

// ---------------------------------------------------------------------------------
// I1: every flipped byte.

#[derive(Clone)]
struct Snapshot {
    client: Client,
    server: Server,
    rng: ChaCha20Rng,
}

enum Dir {
    ToServer,
    ToClient,
}

/// Records every datagram of a clean handshake with the state just before its delivery.
fn record(seed: u64, pdk: bool) -> Vec<(Snapshot, Dir, Vec<u8>)> {
    let mut r = rng(seed);
    let server = Server::new(server_config(), &mut r);
    let client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
    let mut s = Snapshot {
        client,
        server,
        rng: r,
    };
    let mut out = Vec::new();
    for _ in 0..8 {
        let mut any = false;
        while let Some(d) = s.client.poll_transmit() {
            any = true;
            out.push((s.clone(), Dir::ToServer, d.clone()));
            s.server
                .handle_datagram(t(0), addr(1), &d, &mut s.rng, |_| false)
                .unwrap();
        }
        while let Some(tx) = s.server.poll_transmit() {
            any = true;
            out.push((s.clone(), Dir::ToClient, tx.payload.clone()));
            let _ = s.client.handle(t(0), &tx.payload, &mut s.rng).unwrap();
        }
        if !any {
            break;
        }
    }
    assert!(s.client.is_complete());
    out
}

/// Byte ranges of fragment data inside a datagram.
fn data_ranges(d: &[u8]) -> Vec<core::ops::Range<usize>> {
    Datagram::parse(d)
        .unwrap()
        .fragments
        .iter()
        .map(|f| {
            let start = f.data.as_ptr() as usize - d.as_ptr() as usize;
            start..start + f.data.len()
        })
        .collect()
}

/// Delivers `flipped` in place of the recorded datagram (the rest of the queue of the
/// same flight is dropped), then drives to the end. Returns (error seen, both done).
fn run_flipped(snap: &Snapshot, dir: &Dir, flipped: &[u8]) -> (bool, bool) {
    let mut s = snap.clone();
    // Drop the rest of the snapshot's queued datagrams for the flipped direction? No:
    // they are delivered normally by the drive loop below.
    let first = match dir {
        Dir::ToServer => s
            .server
            .handle_datagram(t(0), addr(1), flipped, &mut s.rng, |_| false)
            .map(|e| e.is_some()),
        Dir::ToClient => s
            .client
            .handle(t(0), flipped, &mut s.rng)
            .map(|p| p == Progress::Complete),
    };
    let mut error = first.is_err();
    let mut server_done = matches!((dir, &first), (Dir::ToServer, Ok(true)));
    for _ in 0..8 {
        let mut any = false;
        while let Some(d) = s.client.poll_transmit() {
            any = true;
            match s
                .server
                .handle_datagram(t(0), addr(1), &d, &mut s.rng, |_| false)
            {
                Ok(Some(_)) => server_done = true,
                Ok(None) => {}
                Err(_) => error = true,
            }
        }
        while let Some(tx) = s.server.poll_transmit() {
            any = true;
            if s.client.handle(t(0), &tx.payload, &mut s.rng).is_err() {
                error = true;
            }
        }
        if !any {
            break;
        }
    }
    (error, server_done && s.client.is_complete())
}

/// Flips one bit in byte `i` of every datagram for every `i` with `i % stride == 0` or
/// outside fragment data (all header and length bytes are always flipped), re-tagging
/// the datagram so that the flip reaches the parsers (every plain flip, tag bytes
/// included, is checked to be `Damaged` first, or not a handshake datagram at all
/// for the marker byte).
fn flip_all(seed: u64, pdk: bool, stride: usize) -> (usize, usize) {
    let recs = record(seed, pdk);
    let (mut flips, mut stalls) = (0, 0);
    for (snap, dir, d) in &recs {
        let data = data_ranges(d);
        for i in 0..d.len() {
            // As damaged on the way: the integrity tag catches every flip.
            let mut raw = d.clone();
            raw[i] ^= 0x01 << (i % 8);
            let expected = if i == 0 {
                Error::Malformed("not a handshake datagram")
            } else {
                Error::Damaged
            };
            assert_eq!(Datagram::parse(&raw).unwrap_err(), expected);
        }
        // As sent by someone who re-computes the (public) tag: the parsers and the MACs
        // must catch it.
        for i in 0..d.len() - INTEGRITY_TAG_LEN {
            let in_data = data.iter().any(|r| r.contains(&i));
            if in_data && i % stride != 0 {
                continue;
            }
            let f = retagged(d, |b| b[i] ^= 0x01 << (i % 8));
            let (error, established) = run_flipped(snap, dir, &f);
            assert!(
                !established,
                "flip at byte {i} of a {}-byte datagram established a session",
                d.len()
            );
            if in_data {
                assert!(error, "flip of message byte {i} was not an error");
            } else if !error {
                // A header flip can leave a fragment unusable: it is then lost, as on a
                // lossy link (the handshake stalls until retransmission).
                stalls += 1;
            }
            flips += 1;
        }
    }
    (flips, stalls)
}

/// Flips one bit in every byte of every datagram of a PDK handshake (ClientHello,
/// ServerHello + ServerFinished, ClientFinished: about 3.8 kB). Each flip replays from a
/// cloned snapshot of both state machines, so the cost is one message's processing.
#[test]
fn i1_every_flipped_byte_is_a_clean_error() {
    let (flips, stalls) = flip_all(21, true, 1);
    assert!(flips > 3500, "{flips}");
    // Header-only stalls are a small minority.
    assert!(stalls < flips / 20, "{stalls} of {flips}");
}

/// The same for a full KEMTLS handshake (ServerHello with the 4.6 kB certificate): every
/// header/length byte and every 3rd message byte (each certificate flip costs an ML-DSA
/// verification); run with stride 1 by changing the argument when touching this code.
#[test]
fn i1_flipped_bytes_of_full_handshake_are_clean_errors() {
    let (flips, stalls) = flip_all(22, false, 3);
    assert!(flips > 3000, "{flips}");
    assert!(stalls < flips / 20, "{stalls} of {flips}");
}

// ---------------------------------------------------------------------------------
// Fragmentation, retransmission, limits.

/// The ClientHello echo a server datagram carries.
fn echo_of(d: &[u8]) -> Vec<u8> {
    let e = Datagram::parse(d).unwrap().token.to_vec();
    assert_eq!(e.len(), ECHO_LEN);
    e
}

fn messages_of(d: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut r = Reassembler::new();
    for dg in d {
        for f in Datagram::parse(dg).unwrap().fragments {
            r.insert(&f).unwrap();
        }
    }
    std::iter::from_fn(|| r.pop()).collect()
}

#[test]
fn fragments_reordered_and_duplicated_reassemble() {
    let msg0: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let msg1: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut dgs = pack(&[(0, &msg0), (1, &msg1)], &[]);
    assert!(dgs.len() >= 5);
    for d in &dgs {
        assert!(d.len() <= DATAGRAM_BUDGET + 2 + INTEGRITY_TAG_LEN);
        for f in Datagram::parse(d).unwrap().fragments {
            assert!(f.data.len() <= MAX_FRAGMENT_DATA);
        }
    }
    dgs.reverse();
    let dup = dgs[1].clone();
    dgs.insert(0, dup.clone());
    dgs.push(dup);
    assert_eq!(messages_of(&dgs), vec![msg0, msg1]);
}

#[test]
fn oversized_and_inconsistent_fragments_are_refused() {
    // A fragment longer than 1200 bytes.
    let mut d = vec![
        HANDSHAKE_MARKER,
        0x00,
        FRAGMENT_TYPE,
        0x00,
        0x80,
        0,
        0x10,
        0,
        0x00,
        0x44,
        0xb1,
    ];
    d.extend(vec![0u8; 1201]);
    assert_eq!(
        Datagram::parse(&sealed(d)).unwrap_err(),
        Error::LimitExceeded("fragment length")
    );
    // A message longer than the cap.
    let d = [
        HANDSHAKE_MARKER,
        0x00,
        FRAGMENT_TYPE,
        0x00,
        0x80,
        0x01,
        0x00,
        0x00,
        0x00,
        0x01,
        0xaa,
    ];
    assert_eq!(
        Datagram::parse(&sealed(d.to_vec())).unwrap_err(),
        Error::LimitExceeded("message length")
    );
    // A fragment beyond its message.
    let d = [
        HANDSHAKE_MARKER,
        0x00,
        FRAGMENT_TYPE,
        0x00,
        0x04,
        0x04,
        0x01,
        0xaa,
    ];
    assert_eq!(
        Datagram::parse(&sealed(d.to_vec())).unwrap_err(),
        Error::Malformed("fragment outside message")
    );
    // Reassembly memory cap across two pending messages.
    let mut r = Reassembler::new();
    let big = vec![1u8; 10];
    let f0 = Fragment {
        msg_seq: 0,
        total_len: 9000,
        offset: 0,
        data: &big,
    };
    let f1 = Fragment {
        msg_seq: 1,
        total_len: 9000,
        offset: 0,
        data: &big,
    };
    assert_eq!(r.insert(&f0).unwrap(), Inserted::Buffered);
    assert_eq!(
        r.insert(&f1).unwrap_err(),
        Error::LimitExceeded("reassembly memory")
    );
    assert!(r.buffered() <= REASSEMBLY_CAP);
    // Same sequence, different total length: the unauthenticated partial gives way
    // (a spoofed fragment must not block the real message), within the cap.
    let f0b = Fragment {
        msg_seq: 0,
        total_len: 8000,
        offset: 0,
        data: &big,
    };
    assert_eq!(r.insert(&f0b).unwrap(), Inserted::Buffered);
    assert_eq!(r.buffered(), 8000);
    assert!(r.pop().is_none());
}

#[test]
fn lost_datagrams_are_retransmitted_on_timeout() {
    let mut r = rng(30);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    // Lose the whole first flight.
    while client.poll_transmit().is_some() {}
    let deadline = client.poll_timeout().unwrap();
    assert_eq!(deadline, t(0).instant + INITIAL_RTO);
    let later = Time::new(deadline, UNIX0);
    client.handle_timeout(later).unwrap();
    // Deliver the retransmitted ClientHello; lose the first datagram of the reply.
    while let Some(d) = client.poll_transmit() {
        server
            .handle_datagram(later, addr(1), &d, &mut r, |_| false)
            .unwrap();
    }
    let mut first = true;
    while let Some(tx) = server.poll_transmit() {
        if first {
            first = false;
            continue;
        }
        let _ = client.handle(later, &tx.payload, &mut r).unwrap();
    }
    assert!(!client.is_complete());
    // The server's timer re-sends its flight.
    let st = server.poll_timeout().unwrap();
    let later2 = Time::new(st, UNIX0);
    server.handle_timeout(later2);
    let (est, _) = drive(&mut client, &mut server, addr(1), later2, &mut r).unwrap();
    assert!(est.is_some() && client.is_complete());
}

#[test]
fn client_times_out_after_retransmission_budget() {
    let mut r = rng(31);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let mut n = 0;
    let err = loop {
        while client.poll_transmit().is_some() {}
        let d = client.poll_timeout().unwrap();
        match client.handle_timeout(Time::new(d, UNIX0)) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
        assert!(n <= MAX_FLIGHT_RETRANSMITS);
    };
    assert_eq!(err, Error::Timeout);
    assert_eq!(n, MAX_FLIGHT_RETRANSMITS);
    assert_eq!(
        client.handle(t(0), &[0], &mut r).unwrap_err(),
        Error::Timeout
    );
}

#[test]
fn half_open_cap_turns_new_peers_to_retry() {
    let mut r = rng(32);
    let mut scfg = server_config();
    scfg.max_half_open = 2;
    let mut server = Server::new(scfg, &mut r);
    let mut first_dgs = Vec::new();
    for i in 0..4u16 {
        let mut c = Client::new(client_config(true), &mut r, t(0)).unwrap();
        let d = c.poll_transmit().unwrap();
        server
            .handle_datagram(t(0), addr(i), &d, &mut r, |_| false)
            .unwrap();
        first_dgs.push(d);
    }
    assert_eq!(server.half_open(), 2);
    assert_eq!(server.stats().retries_sent, 2);
    let retries: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    assert_eq!(retries.len(), 2);
    for tx in &retries {
        assert!(Datagram::parse(&tx.payload).unwrap().is_retry());
    }
    // A valid token while the table is full: the client proved its address and
    // takes the place of the oldest unvalidated handshake (refusing it would let
    // spoofed hellos lock every client out); the table stays at its cap.
    let token = server.issue_token(&addr(9), t(0));
    let mut d = vec![HANDSHAKE_MARKER, token.len() as u8];
    d.extend_from_slice(&token);
    d.extend_from_slice(&untagged(&first_dgs[0])[2..]);
    let d = sealed(d);
    assert!(
        server
            .handle_datagram(t(0), addr(9), &d, &mut r, |_| false)
            .unwrap()
            .is_none()
    );
    assert_eq!(server.half_open(), 2);
    assert_eq!(server.stats().half_open.evicted, 1);
    // Half-open handshakes expire.
    server.handle_timeout(t(11));
    assert_eq!(server.half_open(), 0);
    assert_eq!(server.stats().half_open.timed_out, 2);
}

#[test]
fn i7_unvalidated_address_gets_at_most_three_times_its_bytes() {
    crate::client::NO_PADDING.with(|c| c.set(true));
    let mut r = rng(33);
    let mut server = Server::new(server_config(), &mut r);
    let client_res = Client::new(client_config(false), &mut r, t(0));
    crate::client::NO_PADDING.with(|c| c.set(false));
    let mut client = client_res.unwrap();
    let (mut rx, mut tx) = (0usize, 0usize);
    let mut now = t(0);
    let mut est = None;
    for _ in 0..12 {
        while let Some(d) = client.poll_transmit() {
            rx += d.len();
            if let Some(e) = server
                .handle_datagram(now, addr(1), &d, &mut r, |_| false)
                .unwrap()
            {
                est = Some(e);
            }
        }
        while let Some(out) = server.poll_transmit() {
            tx += out.payload.len();
            if est.is_none() && !client.is_complete() {
                assert!(tx <= 3 * rx, "sent {tx} for {rx} received");
            }
            let _ = client.handle(now, &out.payload, &mut r).unwrap();
        }
        if est.is_some() && client.is_complete() {
            break;
        }
        // Nothing more flows: the client's timer re-sends its ClientHello, which earns
        // the server more budget.
        if let Some(d) = client.poll_timeout() {
            now = Time::new(d, UNIX0);
            client.handle_timeout(now).unwrap();
        }
    }
    assert!(
        server.stats().amplification_blocked > 0,
        "the limit was exercised"
    );
    assert!(est.is_some() && client.is_complete());
}

// ---------------------------------------------------------------------------------
// Retry tokens.

fn retry_server(seed: u64) -> (Server, ChaCha20Rng) {
    let mut r = rng(seed);
    let mut scfg = server_config();
    scfg.require_retry = true;
    (Server::new(scfg, &mut r), r)
}

#[test]
fn retry_token_round_trip_completes() {
    let (mut server, mut r) = retry_server(40);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(1), t(0), &mut r).unwrap();
    assert!(est.is_some() && client.is_complete());
    assert!(server.stats().retries_sent >= 1);
}

fn tokened_hello(token: &[u8], seed: u64) -> Vec<u8> {
    let mut r = rng(seed);
    let mut c = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let d = c.poll_transmit().unwrap();
    let mut out = vec![HANDSHAKE_MARKER, token.len() as u8];
    out.extend_from_slice(token);
    out.extend_from_slice(&untagged(&d)[2..]);
    sealed(out)
}

#[test]
fn retry_token_expired_foreign_or_forged_is_refused() {
    let (mut server, mut r) = retry_server(41);
    let token = server.issue_token(&addr(1), t(0));
    assert_eq!(token.len(), TOKEN_LEN);
    let d = tokened_hello(&token, 1);
    // Expired.
    assert_eq!(
        server
            .handle_datagram(t(11), addr(1), &d, &mut r, |_| false)
            .unwrap_err(),
        Error::TokenExpired
    );
    // Another address.
    assert_eq!(
        server
            .handle_datagram(t(1), addr(2), &d, &mut r, |_| false)
            .unwrap_err(),
        Error::TokenInvalid
    );
    // Forged MAC.
    let mut forged = token.clone();
    forged[20] ^= 0x80;
    let df = tokened_hello(&forged, 1);
    assert_eq!(
        server
            .handle_datagram(t(1), addr(1), &df, &mut r, |_| false)
            .unwrap_err(),
        Error::TokenInvalid
    );
    assert_eq!(server.half_open(), 0, "no state for refused tokens");
    // Valid: creates validated state.
    assert!(
        server
            .handle_datagram(t(1), addr(1), &d, &mut r, |_| false)
            .unwrap()
            .is_none()
    );
    assert_eq!(server.half_open(), 1);
    // Survives one key rotation, not two.
    let token = server.issue_token(&addr(3), t(1));
    server.rotate_retry_key(&mut r);
    let d = tokened_hello(&token, 2);
    assert!(
        server
            .handle_datagram(t(2), addr(3), &d, &mut r, |_| false)
            .is_ok()
    );
    let token = server.issue_token(&addr(4), t(2));
    server.rotate_retry_key(&mut r);
    server.rotate_retry_key(&mut r);
    let d = tokened_hello(&token, 3);
    assert_eq!(
        server
            .handle_datagram(t(2), addr(4), &d, &mut r, |_| false)
            .unwrap_err(),
        Error::TokenInvalid
    );
}

// ---------------------------------------------------------------------------------
// Tickets and 0-RTT.

fn first_ticket(server: &mut Server, r: &mut ChaCha20Rng) -> ResumptionTicket {
    let mut client = Client::new(client_config(true), r, t(0)).unwrap();
    drive(&mut client, server, addr(1), t(0), r).unwrap();
    client
        .into_established()
        .unwrap()
        .resumption_ticket
        .unwrap()
}

#[test]
fn resumption_with_early_data_is_accepted_and_keys_are_fresh() {
    let mut r = rng(50);
    let mut server = Server::new(server_config(), &mut r);
    let ticket = first_ticket(&mut server, &mut r);
    assert_eq!(
        ResumptionTicket::from_bytes(&ticket.to_bytes())
            .unwrap()
            .hint(),
        ticket.hint()
    );
    let mut cfg = client_config(true);
    cfg.ticket = Some(ticket);
    cfg.early_data = b"GET /index.html".to_vec();
    let mut client = Client::new(cfg, &mut r, t(5)).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(2), t(5), &mut r).unwrap();
    let s = est.unwrap();
    let c = client.into_established().unwrap();
    assert!(s.resumed && c.resumed);
    assert!(s.early_data_accepted && c.early_data_accepted);
    assert_eq!(
        s.early_data.as_deref().map(Vec::as_slice),
        Some(&b"GET /index.html"[..])
    );
    assert_eq!(c.c2s.dangerously_expose(), s.c2s.dangerously_expose());
    assert!(c.resumption_ticket.is_some());
}

#[test]
fn i10_early_data_accepted_at_most_once() {
    let mut r = rng(51);
    let mut server = Server::new(server_config(), &mut r);
    let ticket = first_ticket(&mut server, &mut r);
    let mut cfg = client_config(true);
    cfg.ticket = Some(ticket);
    cfg.early_data = b"transfer 100".to_vec();
    let mut client = Client::new(cfg.clone(), &mut r, t(5)).unwrap();
    let hello: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    // Genuine delivery.
    for d in &hello {
        server
            .handle_datagram(t(5), addr(2), d, &mut r, |_| false)
            .unwrap();
    }
    assert_eq!(server.stats().early.accepted, 1);
    let replies: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    for tx in &replies {
        let _ = client.handle(t(5), &tx.payload, &mut r).unwrap();
    }
    while let Some(d) = client.poll_transmit() {
        server
            .handle_datagram(t(5), addr(2), &d, &mut r, |_| false)
            .unwrap();
    }
    assert!(client.into_established().unwrap().early_data_accepted);
    // The same ClientHello replayed by an attacker from elsewhere: early data refused.
    for d in &hello {
        server
            .handle_datagram(t(6), addr(3), d, &mut r, |_| false)
            .unwrap();
    }
    assert_eq!(server.stats().early.accepted, 1);
    assert_eq!(server.stats().early.replayed, 1);
    assert_eq!(server.replay.len(), 1);
    let sh_flags: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    let msgs = messages_of(
        &sh_flags
            .iter()
            .map(|t| t.payload.clone())
            .collect::<Vec<_>>(),
    );
    let flags = msgs[0][1 + 2 + 32 + 32 + 32 + ML_KEM_768_CIPHERTEXT_LEN];
    assert_eq!(flags & crate::msg::SH_EARLY, 0);
    assert_ne!(flags & crate::msg::SH_PSK, 0);
    // A genuine second use of the ticket: the handshake still completes, at 1-RTT.
    let mut client = Client::new(cfg, &mut r, t(7)).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(4), t(7), &mut r).unwrap();
    let s = est.unwrap();
    let c = client.into_established().unwrap();
    assert!(!s.early_data_accepted && !c.early_data_accepted && s.early_data.is_none());
    assert!(s.resumed && c.resumed);
    assert_eq!(c.c2s.dangerously_expose(), s.c2s.dangerously_expose());
}

#[test]
fn i10_tickets_older_than_the_window_get_no_early_data() {
    let mut r = rng(52);
    let mut scfg = server_config();
    scfg.anti_replay_window = 10;
    let mut server = Server::new(scfg, &mut r);
    let ticket = first_ticket(&mut server, &mut r);
    let mut cfg = client_config(true);
    cfg.ticket = Some(ticket);
    cfg.early_data = b"late".to_vec();
    let mut client = Client::new(cfg, &mut r, t(30)).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(2), t(30), &mut r).unwrap();
    let s = est.unwrap();
    assert!(s.resumed && !s.early_data_accepted);
    assert_eq!(server.stats().early.refused, 1);
}

#[test]
fn expired_or_invalid_tickets_are_refused_cleanly() {
    let mut r = rng(53);
    let mut scfg = server_config();
    scfg.ticket_lifetime = 100;
    let mut server = Server::new(scfg, &mut r);
    let ticket = first_ticket(&mut server, &mut r);
    // Client side: past the lifetime.
    let mut cfg = client_config(true);
    cfg.ticket = Some(ticket.clone());
    assert_eq!(
        Client::new(cfg.clone(), &mut r, t(101)).unwrap_err(),
        Error::TicketExpired
    );
    // Another server's key.
    let mut other = ClientConfig::new(fixture().other_signing.verifying_key());
    other.ticket = Some(ticket.clone());
    assert_eq!(
        Client::new(other, &mut r, t(1)).unwrap_err(),
        Error::TicketInvalid
    );
    // Server side: the client's clock says valid, the server's says expired.
    let mut late = ticket.clone();
    late.received_unix += 1000;
    cfg.ticket = Some(late);
    let o = {
        let mut client = Client::new(cfg.clone(), &mut r, t(500)).unwrap();
        let (est, _) = drive(&mut client, &mut server, addr(2), t(500), &mut r).unwrap();
        (est.unwrap(), client.into_established().unwrap())
    };
    assert!(!o.0.resumed && !o.1.resumed);
    assert_eq!(server.stats().tickets.expired, 1);
    // A corrupted blob: refused, handshake completes without resumption.
    let mut bad = ticket;
    bad.blob[20] ^= 1;
    cfg.ticket = Some(bad);
    cfg.early_data = b"x".to_vec();
    let mut client = Client::new(cfg, &mut r, t(2)).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(3), t(2), &mut r).unwrap();
    assert!(!est.unwrap().resumed);
    assert_eq!(server.stats().tickets.invalid, 1);
    assert!(!client.into_established().unwrap().early_data_accepted);
}

#[test]
fn anti_replay_store_is_bounded_and_fails_closed() {
    let mut s = crate::ticket::AntiReplay::new(10, 2);
    s.check_and_insert([1; 16], UNIX0, UNIX0).unwrap();
    assert_eq!(
        s.check_and_insert([1; 16], UNIX0, UNIX0 + 1).unwrap_err(),
        Error::EarlyDataReplayed
    );
    s.check_and_insert([2; 16], UNIX0, UNIX0).unwrap();
    assert_eq!(
        s.check_and_insert([3; 16], UNIX0, UNIX0).unwrap_err(),
        Error::LimitExceeded("anti-replay store")
    );
    // Past the window the old entries go, and their tickets are refused by `in_window`.
    s.check_and_insert([3; 16], UNIX0 + 11, UNIX0 + 11).unwrap();
    assert_eq!(s.len(), 1);
    assert!(!s.in_window(UNIX0, UNIX0 + 11));
}

// ---------------------------------------------------------------------------------
// I5, I8.

#[test]
fn i5_failed_handshake_stays_failed_and_completed_one_ignores_replays() {
    let mut r = rng(60);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let hello: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    for d in &hello {
        server
            .handle_datagram(t(0), addr(1), d, &mut r, |_| false)
            .unwrap();
    }
    let reply: Vec<_> = std::iter::from_fn(|| server.poll_transmit())
        .map(|t| t.payload)
        .collect();
    let mut broken = client.clone();
    // Corrupt the ServerFinished MAC: a terminal failure with no keys.
    let mut msgs = messages_of(&reply);
    let last = msgs[1].len() - 1;
    msgs[1][last] ^= 1;
    let mut err = None;
    for d in pack(&[(0, &msgs[0]), (1, &msgs[1])], &echo_of(&reply[0])) {
        if let Err(e) = broken.handle(t(0), &d, &mut r) {
            err = Some(e);
        }
    }
    assert_eq!(err, Some(Error::KeyConfirmation));
    assert_eq!(
        broken.handle(t(0), &reply[0], &mut r).unwrap_err(),
        Error::KeyConfirmation
    );
    assert_eq!(
        broken.into_established().unwrap_err(),
        Error::KeyConfirmation
    );
    // The genuine path completes; replaying the server flight changes nothing.
    for d in &reply {
        let _ = client.handle(t(0), d, &mut r).unwrap();
    }
    assert!(client.is_complete());
    for d in &reply {
        assert_eq!(client.handle(t(0), d, &mut r).unwrap(), Progress::Complete);
    }
    let est = client.into_established().unwrap();
    assert_eq!(est.pending_flight.len(), 1);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn assert_no_secret(debug: &str, secret: &[u8]) {
    let h = hex(&secret[..8]);
    let list = format!("{:?}", &secret[..4])
        .trim_end_matches(']')
        .to_string();
    assert!(!debug.contains(&h), "hex secret in {debug}");
    assert!(!debug.contains(&list), "byte-list secret in {debug}");
}

#[test]
fn i8_secrets_absent_from_debug() {
    let f = fixture();
    let o = handshake(70, client_config(true), server_config(), t(0)).unwrap();
    let dbg = format!("{:?} {:?}", o.client, o.server);
    assert!(dbg.contains("redacted"));
    assert_no_secret(&dbg, o.client.c2s.dangerously_expose());
    assert_no_secret(&dbg, o.client.s2c.dangerously_expose());
    let ticket = o.client.resumption_ticket.as_ref().unwrap();
    assert_no_secret(&format!("{ticket:?}"), ticket.secret.as_slice());
    assert_no_secret(&format!("{:?}", f.signing), f.signing.to_bytes().as_slice());
    assert_no_secret(
        &format!("{:?}", f.identity),
        f.identity.kem.to_bytes().as_slice(),
    );
    assert_no_secret(
        &format!("{:?}", f.identity.kem),
        f.identity.kem.to_bytes().as_slice(),
    );
    let mut r = rng(71);
    let client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let server = Server::new(server_config(), &mut r);
    let d = format!("{client:?} {server:?}");
    assert_no_secret(&d, f.identity.kem.to_bytes().as_slice());
    assert_no_secret(
        &format!("{:?}", Error::KeyConfirmation),
        ticket.secret.as_slice(),
    );
}

#[test]
fn i8_client_config_debug_shows_early_data_length_not_bytes() {
    let early = b"GET /account?token=s3cr3t-early-bytes";
    let mut cfg = client_config(true);
    cfg.early_data = early.to_vec();
    for shown in [format!("{cfg:?}"), format!("{cfg:#?}")] {
        assert!(
            shown.contains(&format!("early_data_len: {}", early.len())),
            "{shown}"
        );
        assert!(!shown.contains("s3cr3t"), "plaintext in {shown}");
        assert_no_secret(&shown, early);
        // The decimal list a derived Debug would print, from the first byte on.
        let list = format!("{:?}", &early[..6]);
        assert!(!shown.contains(list.trim_end_matches(']')), "{shown}");
    }
}

// ---------------------------------------------------------------------------------
// Parsers: total and round-tripping.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        crate::fuzzing::parse_all(&data);
    }

    #[test]
    fn fragment_round_trips(seq in 0u64..=1, total in 1usize..=MAX_MESSAGE_LEN, off in 0usize..MAX_MESSAGE_LEN, len in 1usize..=MAX_FRAGMENT_DATA) {
        prop_assume!(off + len <= total);
        let data = vec![0xabu8; len];
        let f = Fragment { msg_seq: seq, total_len: total, offset: off, data: &data };
        let mut out = Vec::new();
        f.encode(&mut out);
        prop_assert_eq!(out.len(), f.encoded_len());
        let mut r = Reader::new(&out);
        prop_assert_eq!(Fragment::decode(&mut r).unwrap(), f);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn server_survives_arbitrary_datagrams(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let mut r = rng(80);
        let mut server = Server::new(server_config(), &mut r);
        let _ = server.handle_datagram(t(0), addr(1), &data, &mut r, |_| false);
        prop_assert!(server.half_open() <= 1);
    }
}

#[test]
fn lost_server_finished_is_resent_after_completion() {
    let mut r = rng(90);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    let mut server_est = None;
    for _ in 0..4 {
        while let Some(d) = client.poll_transmit() {
            if let Some(e) = server
                .handle_datagram(t(0), addr(1), &d, &mut r, |_| false)
                .unwrap()
            {
                server_est = Some(e);
            }
        }
        let replies: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
        if server_est.is_some() {
            break; // the ServerFinished flight is lost
        }
        for tx in replies {
            let _ = client.handle(t(0), &tx.payload, &mut r).unwrap();
        }
    }
    let server_est = server_est.unwrap();
    assert!(!client.is_complete());
    let d = client.poll_timeout().unwrap();
    client.handle_timeout(Time::new(d, UNIX0)).unwrap();
    let (_, _) = drive(
        &mut client,
        &mut server,
        addr(1),
        Time::new(d, UNIX0),
        &mut r,
    )
    .unwrap();
    let c = client.into_established().unwrap();
    assert_eq!(
        c.c2s.dangerously_expose(),
        server_est.c2s.dangerously_expose()
    );
    assert_eq!(server.half_open(), 0);
}

/// A client whose offer the server cannot accept sends its first flight; returns the
/// server's error, the server's answer datagrams, the client and the RNG.
fn refused(
    seed: u64,
    pdk: bool,
    client_suites: &[Suite],
    server_suites: &[Suite],
    versions: Option<Vec<u8>>,
) -> (Error, Vec<Vec<u8>>, Client, ChaCha20Rng) {
    let mut r = rng(seed);
    let mut scfg = server_config();
    scfg.suites = server_suites.to_vec();
    let mut server = Server::new(scfg, &mut r);
    let mut cfg = client_config(pdk);
    cfg.suites = client_suites.to_vec();
    crate::client::OFFER_VERSIONS.with(|v| *v.borrow_mut() = versions);
    let client = Client::new(cfg, &mut r, t(0));
    crate::client::OFFER_VERSIONS.with(|v| *v.borrow_mut() = None);
    let mut client = client.unwrap();
    let mut err = None;
    while let Some(d) = client.poll_transmit() {
        if let Err(e) = server.handle_datagram(t(0), addr(1), &d, &mut r, |_| false) {
            err = Some(e);
        }
    }
    let answer: Vec<Vec<u8>> = core::iter::from_fn(|| server.poll_transmit())
        .map(|tx| tx.payload)
        .collect();
    assert_eq!(server.stats().mismatches, 1);
    assert_eq!(server.half_open(), 0, "a refusal keeps no state");
    (err.unwrap(), answer, client, r)
}

#[test]
fn suite_mismatch_is_refused_explicitly_and_the_client_fails_fast() {
    for pdk in [true, false] {
        let (server_err, answer, mut client, mut r) = refused(
            40,
            pdk,
            &[Suite::ChaCha20Poly1305],
            &[Suite::Aes256Gcm],
            None,
        );
        assert_eq!(
            server_err,
            Error::SuiteMismatch {
                offered: CodeList::new(&[2]),
                supported: CodeList::new(&[1]),
                authenticated: false,
            }
        );
        assert_eq!(answer.len(), 1, "one small datagram");
        assert!(answer[0].len() < 200, "{}", answer[0].len());
        // The first server datagram ends the handshake: no timer, no retry.
        let expected = Error::SuiteMismatch {
            offered: CodeList::new(&[2]),
            supported: CodeList::new(&[1]),
            // Only a PDK client holds the key that authenticates the refusal.
            authenticated: pdk,
        };
        assert_eq!(client.handle(t(0), &answer[0], &mut r), Err(expected));
        assert_eq!(client.poll_timeout(), None);
        assert_eq!(client.poll_transmit(), None);
        assert_eq!(client.handle_timeout(t(60)), Err(expected));
        let msg = expected.to_string();
        assert!(
            msg.contains("offered [2]") && msg.contains("accepts [1]"),
            "{msg}"
        );
        assert_eq!(client.into_established().unwrap_err(), expected);
    }
}

#[test]
fn version_mismatch_is_refused_explicitly() {
    for pdk in [true, false] {
        let (server_err, answer, mut client, mut r) = refused(
            41,
            pdk,
            &[Suite::Aes256Gcm],
            &[Suite::Aes256Gcm],
            Some(vec![7, 8]),
        );
        assert_eq!(
            server_err,
            Error::VersionMismatch {
                offered: CodeList::new(&[7, 8]),
                supported: CodeList::new(&[HANDSHAKE_VERSION]),
                authenticated: false,
            }
        );
        let expected = Error::VersionMismatch {
            offered: CodeList::new(&[7, 8]),
            supported: CodeList::new(&[HANDSHAKE_VERSION]),
            authenticated: pdk,
        };
        assert_eq!(client.handle(t(0), &answer[0], &mut r), Err(expected));
        assert!(expected.to_string().contains("speaks [1]"));
        assert!(!client.is_complete());
    }
}

/// Re-packs a Mismatch message into a server datagram (with the echo of `genuine`).
fn mismatch_datagram(m: &crate::msg::Mismatch, genuine: &[u8]) -> Vec<u8> {
    let mut d = pack(&[(0, &m.encode())], &echo_of(genuine));
    assert_eq!(d.len(), 1);
    d.remove(0)
}

fn mismatch_of(datagram: &[u8]) -> crate::msg::Mismatch {
    let dg = Datagram::parse(datagram).unwrap();
    crate::msg::Mismatch::decode(dg.fragments[0].data)
        .unwrap()
        .0
}

#[test]
fn i1_forged_or_garbled_mismatch_is_ignored_never_fatal_and_never_panics() {
    let suites = [Suite::ChaCha20Poly1305];
    let (_, answer, client, mut r) = refused(42, true, &suites, &[Suite::Aes256Gcm], None);
    let genuine = answer[0].clone();
    let pending = |c: &Client| c.poll_timeout().is_some() && !c.is_complete();

    // A refusal of another ClientHello (replayed from another connection): ignored, and
    // the handshake then completes with a server that accepts the offer.
    let mut r2 = rng(43);
    let mut cfg = client_config(true);
    cfg.suites = suites.to_vec();
    let mut other = Client::new(cfg, &mut r2, t(0)).unwrap();
    assert_eq!(
        other.handle(t(0), &genuine, &mut r2),
        Err(Error::Malformed("datagram for another ClientHello"))
    );
    assert!(pending(&other));
    let mut server = Server::new(server_config(), &mut r2);
    drive(&mut other, &mut server, addr(2), t(0), &mut r2).unwrap();
    assert!(other.is_complete());

    // A PDK client: a MAC that does not verify is ignored.
    let mut m = mismatch_of(&genuine);
    let mac = m.mac.unwrap();
    let mut bad = mac;
    bad[0] ^= 1;
    m.mac = Some(bad);
    let mut c = client.clone();
    assert_eq!(
        c.handle(t(0), &mismatch_datagram(&m, &genuine), &mut r),
        Err(Error::Malformed("Mismatch MAC does not verify"))
    );
    assert!(pending(&c));
    // A refusal that contradicts the offer (claims a suite we offered): ignored.
    m.mac = None;
    m.suites = vec![2];
    let mut c = client.clone();
    assert_eq!(
        c.handle(t(0), &mismatch_datagram(&m, &genuine), &mut r),
        Err(Error::Malformed("Mismatch contradicts the offer"))
    );
    assert!(pending(&c));
    // An on-path attacker can strip the MAC: the refusal is then reported as
    // unauthenticated, still a typed error and still no retry with other parameters.
    let mut m = mismatch_of(&genuine);
    m.mac = None;
    let mut c = client.clone();
    assert_eq!(
        c.handle(t(0), &mismatch_datagram(&m, &genuine), &mut r),
        Err(Error::SuiteMismatch {
            offered: CodeList::new(&[2]),
            supported: CodeList::new(&[1]),
            authenticated: false,
        })
    );
    assert_eq!(c.poll_transmit(), None);

    // Every single flipped byte of the genuine refusal: no panic, and never a typed
    // mismatch (the MAC, the ClientHello hash or the parser catches it).
    for i in 0..genuine.len() - INTEGRITY_TAG_LEN {
        for bit in [0x01u8, 0x80] {
            let d = retagged(&genuine, |d| d[i] ^= bit);
            let mut c = client.clone();
            let res = c.handle(t(0), &d, &mut r);
            assert!(
                !matches!(
                    res,
                    Err(Error::VersionMismatch { .. } | Error::SuiteMismatch { .. })
                ),
                "flip {i}/{bit:#x}: {res:?}"
            );
        }
    }
    // The genuine one still works afterwards.
    let mut c = client.clone();
    assert!(matches!(
        c.handle(t(0), &genuine, &mut r),
        Err(Error::SuiteMismatch {
            authenticated: true,
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn mismatch_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut v = vec![crate::msg::MISMATCH];
        v.extend_from_slice(&data);
        let _ = crate::msg::Mismatch::decode(&v);
        let _ = crate::msg::decode_any(&v);
    }
}

#[test]
fn pinned_key_caches_certificate_verification_but_still_checks_expiry() {
    let f = fixture();
    // A fresh parse: an empty cache.
    let vk = HybridVerifyingKey::from_bytes(&f.signing.verifying_key().to_bytes()).unwrap();
    assert!(vk.cached_certificate(UNIX0).is_none());
    let cert = f.identity.certificate();
    let v = cert.verify(&vk, UNIX0).unwrap();
    // Clones share the cache; the cached entry is the verified certificate.
    let clone = vk.clone();
    let cached = clone.cached_certificate(UNIX0).unwrap();
    assert_eq!(cached.certificate(), v.certificate());
    assert!(clone.cached_certificate(cert.not_after() + 1).is_none());
    // Cached verification still refuses an expired certificate.
    assert_eq!(
        cert.verify(&clone, cert.not_after() + 1).unwrap_err(),
        Error::CertificateExpired
    );
    // A different certificate (a forged signature) is not served from the cache.
    let mut bytes = cert.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = ServerCertificate::from_bytes(&bytes).unwrap();
    assert!(matches!(
        forged.verify(&vk, UNIX0),
        Err(Error::BadSignature(_))
    ));
    // A full-mode handshake with a cleared cache verifies and fills it again.
    vk.clear_certificate_cache();
    assert!(vk.cached_certificate(UNIX0).is_none());
    let o = handshake(44, ClientConfig::new(vk.clone()), server_config(), t(0)).unwrap();
    assert_agree(&o);
    assert!(vk.cached_certificate(UNIX0).is_some());
    // ... and the cached certificate makes the next handshake 1-RTT (PDK).
    let mut cfg = ClientConfig::new(vk.clone());
    cfg.certificate = vk.cached_certificate(UNIX0);
    let o = handshake(45, cfg, server_config(), t(0)).unwrap();
    assert_eq!(o.client_rounds, 1);
}

/// With `aws-lc`, a RustCrypto client completes handshakes with an aws-lc server and
/// the other way round, in both modes (the backends are wire-compatible).
#[cfg(feature = "aws-lc")]
#[test]
fn aws_lc_and_rustcrypto_sides_interoperate() {
    use crate::backend::FORCE_RUSTCRYPTO;
    let rc = |on: bool| FORCE_RUSTCRYPTO.with(|c| c.set(on));
    let f = fixture();
    for rc_client in [true, false] {
        for pdk in [true, false] {
            let mut r = rng(46);
            // Keys of the RustCrypto side are built (parsed) with the hook on.
            rc(!rc_client);
            let identity = ServerIdentity::from_bytes(&f.identity.to_bytes()).unwrap();
            let mut server = Server::new(ServerConfig::new(identity), &mut r);
            rc(rc_client);
            let vk = HybridVerifyingKey::from_bytes(&f.signing.verifying_key().to_bytes()).unwrap();
            let mut cfg = ClientConfig::new(vk.clone());
            if pdk {
                let cert =
                    ServerCertificate::from_bytes(&f.identity.certificate().to_bytes()).unwrap();
                cfg.certificate = Some(cert.verify(&vk, UNIX0).unwrap());
            }
            let mut client = Client::new(cfg, &mut r, t(0)).unwrap();
            let mut server_est = None;
            for _ in 0..8 {
                rc(rc_client);
                let out: Vec<Vec<u8>> = core::iter::from_fn(|| client.poll_transmit()).collect();
                rc(!rc_client);
                for d in out {
                    if let Some(e) = server
                        .handle_datagram(t(0), addr(3), &d, &mut r, |_| false)
                        .unwrap()
                    {
                        server_est = Some(e);
                    }
                }
                rc(rc_client);
                while let Some(tx) = server.poll_transmit() {
                    let _ = client.handle(t(0), &tx.payload, &mut r).unwrap();
                }
            }
            rc(false);
            let server = *server_est.expect("server completed");
            let client = client.into_established().unwrap();
            assert_eq!(
                client.c2s.dangerously_expose(),
                server.c2s.dangerously_expose()
            );
            assert_eq!(
                client.s2c.dangerously_expose(),
                server.s2c.dangerously_expose()
            );
        }
    }
}

/// Writes the fuzz seed corpora. Run by hand:
/// `cargo test -p phantom-handshake --lib -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes files under fuzz/corpus"]
fn write_fuzz_seeds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let recs = record(100, true);
    let dgs: Vec<&Vec<u8>> = recs.iter().map(|(_, _, d)| d).collect();
    let parse = root.join("handshake_parse");
    std::fs::create_dir_all(&parse).unwrap();
    std::fs::write(parse.join("seed-client-hello"), dgs[0]).unwrap();
    std::fs::write(parse.join("seed-server-flight"), dgs[2]).unwrap();
    std::fs::write(parse.join("seed-client-finished"), dgs[dgs.len() - 1]).unwrap();
    let (_, answer, _, _) = refused(
        101,
        true,
        &[Suite::ChaCha20Poly1305],
        &[Suite::Aes256Gcm],
        None,
    );
    std::fs::write(parse.join("seed-mismatch"), &answer[0]).unwrap();
    // A Retry (head echo ‖ token in the token field).
    let (mut rs, mut rr) = retry_server(102);
    rs.handle_datagram(t(0), addr(1), dgs[0], &mut rr, |_| false)
        .unwrap();
    let retry = rs.poll_transmit().unwrap().payload;
    assert!(Datagram::parse(&retry).unwrap().retry_parts().is_some());
    std::fs::write(parse.join("seed-retry"), retry).unwrap();
    let server = root.join("handshake_server");
    std::fs::create_dir_all(&server).unwrap();
    // The target appends the integrity tag itself: the seeds carry none.
    let framed = |mode: u8, ds: &[&Vec<u8>]| {
        let mut v = vec![mode];
        for d in ds {
            let d = untagged(d);
            v.extend_from_slice(&(d.len() as u16).to_be_bytes());
            v.extend_from_slice(&d);
        }
        v
    };
    std::fs::write(server.join("seed-hello"), framed(0, &dgs[..2])).unwrap();
    std::fs::write(server.join("seed-retry"), framed(2, &dgs[..2])).unwrap();
    std::fs::write(
        server.join("seed-after-hello"),
        framed(1, &dgs[dgs.len() - 1..]),
    )
    .unwrap();
    // Two genuine ClientHellos from one address (the first superseded), then a
    // ClientFinished and a third ClientHello.
    std::fs::write(
        server.join("seed-superseded"),
        framed(5, &[dgs[dgs.len() - 1], dgs[0]]),
    )
    .unwrap();
}

/// Regression (found by the runtime): a client that starts a new handshake from the
/// same address while its previous one is still half-open on the server (a connect
/// abandoned after the ClientHello, or back-to-back PDK connects whose last flight was
/// late) must get its own handshake, not the old one's flight.
#[test]
fn a_new_client_hello_from_the_same_address_replaces_the_half_open_handshake() {
    for pdk in [false, true] {
        let mut r = rng(77);
        let mut server = Server::new(server_config(), &mut r);
        let mut abandoned = Client::new(client_config(pdk), &mut r, t(1)).unwrap();
        while let Some(d) = abandoned.poll_transmit() {
            assert!(
                server
                    .handle_datagram(t(1), addr(5), &d, &mut r, |_| false)
                    .unwrap()
                    .is_none()
            );
        }
        while server.poll_transmit().is_some() {}
        let mut client = Client::new(client_config(pdk), &mut r, t(1)).unwrap();
        let (est, _) = drive(&mut client, &mut server, addr(5), t(1), &mut r).unwrap();
        let s = est.expect("the new handshake completes");
        let c = client.into_established().unwrap();
        assert_eq!(c.session_id, s.session_id);
        assert_eq!(c.c2s.dangerously_expose(), s.c2s.dangerously_expose());
        assert_eq!(server.stats().restarted, 1);
    }
}

#[test]
fn a_retransmitted_client_hello_is_not_a_restart() {
    let mut r = rng(78);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(1)).unwrap();
    let hello: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    for d in hello.iter().chain(hello.iter()) {
        let _ = server.handle_datagram(t(1), addr(6), d, &mut r, |_| false);
    }
    assert_eq!(server.stats().restarted, 0);
}

/// An off-path spoofer who fills the half-open table with ClientHellos from forged
/// addresses (each costs it one datagram; it never sees the answers) must not lock
/// out a real client for as long as it keeps the flood going. The real client is
/// sent a Retry, comes back with a token — which a spoofer cannot get — and takes
/// the place of the oldest unvalidated half-open handshake rather than being refused
/// (`LimitExceeded`) while the table is full.
#[test]
fn i1_spoofed_hellos_filling_the_half_open_table_do_not_lock_out_a_client_with_a_token() {
    let mut r = rng(90);
    let mut scfg = server_config();
    scfg.max_half_open = 2;
    let mut server = Server::new(scfg, &mut r);
    for i in 0..2u16 {
        let mut c = Client::new(client_config(true), &mut r, t(0)).unwrap();
        let d = c.poll_transmit().unwrap();
        server
            .handle_datagram(t(0), addr(100 + i), &d, &mut r, |_| false)
            .unwrap();
    }
    while server.poll_transmit().is_some() {}
    assert_eq!(server.half_open(), 2);
    let mut client = Client::new(client_config(true), &mut r, t(1)).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(9), t(1), &mut r).unwrap();
    let s = est.expect("the client with a token completes its handshake");
    assert_eq!(client.into_established().unwrap().session_id, s.session_id);
    assert!(server.stats().retries_sent >= 1);
    assert_eq!(server.stats().half_open.evicted, 1);
    assert!(server.half_open() <= 2);
}

/// When every half-open handshake is validated, a newcomer with a token is refused
/// (nothing unproven to evict): the table never grows past its cap.
#[test]
fn i1_a_full_table_of_validated_handshakes_refuses_newcomers() {
    let mut r = rng(91);
    let mut scfg = server_config();
    scfg.max_half_open = 2;
    scfg.require_retry = true;
    let mut server = Server::new(scfg, &mut r);
    for i in 0..3u16 {
        let mut c = Client::new(client_config(true), &mut r, t(0)).unwrap();
        let d = c.poll_transmit().unwrap();
        let token = server.issue_token(&addr(i), t(0));
        let mut dg = vec![HANDSHAKE_MARKER, token.len() as u8];
        dg.extend_from_slice(&token);
        dg.extend_from_slice(&untagged(&d)[2..]);
        let dg = sealed(dg);
        let res = server.handle_datagram(t(0), addr(i), &dg, &mut r, |_| false);
        if i < 2 {
            assert!(res.unwrap().is_none());
        } else {
            assert_eq!(
                res.unwrap_err(),
                Error::LimitExceeded("half-open handshakes")
            );
        }
    }
    assert_eq!(server.half_open(), 2);
}

/// I1 (no state change unless authenticated): a spoofer who knows a client's
/// address sends one datagram carrying a forged ClientFinished while the client's
/// full-mode handshake waits for its real one. The forgery fails key confirmation
/// and is dropped; the half-open handshake goes on, so the real ClientFinished still
/// finds it and the client connects.
#[test]
fn i1_a_forged_client_finished_does_not_kill_the_half_open_handshake() {
    for pdk in [false, true] {
        let mut r = rng(92);
        let mut server = Server::new(server_config(), &mut r);
        let mut client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        let from = addr(5);
        while let Some(d) = client.poll_transmit() {
            assert!(
                server
                    .handle_datagram(t(0), from, &d, &mut r, |_| false)
                    .unwrap()
                    .is_none()
            );
        }
        while let Some(tx) = server.poll_transmit() {
            let _ = client.handle(t(0), &tx.payload, &mut r).unwrap();
        }
        let finished: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
        assert!(!finished.is_empty());
        // The forgery: the same shape, another MAC (the spoofer cannot compute one).
        let forged = retagged(finished.last().unwrap(), |f| {
            let n = f.len();
            f[n - 1] ^= 0x55;
        });
        assert_eq!(
            server
                .handle_datagram(t(0), from, &forged, &mut r, |_| false)
                .unwrap_err(),
            Error::KeyConfirmation
        );
        let mut est = None;
        for d in &finished {
            if let Some(e) = server
                .handle_datagram(t(0), from, d, &mut r, |_| false)
                .unwrap()
            {
                est = Some(e);
            }
        }
        let s = est.expect("the real ClientFinished still completes the handshake");
        while let Some(tx) = server.poll_transmit() {
            let _ = client.handle(t(0), &tx.payload, &mut r);
        }
        assert_eq!(client.into_established().unwrap().session_id, s.session_id);
    }
}

/// The half-open handshake outlives a few forged ClientFinished messages, not an
/// unbounded stream of them: each costs the server a decapsulation, so after
/// `MAX_REFUSED_FINISHED` refusals the next forgery drops the handshake (the client
/// then starts over, as after a timeout).
#[test]
fn i1_forged_client_finished_messages_cost_the_server_a_bounded_number_of_decapsulations() {
    let mut r = rng(94);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    let from = addr(7);
    while let Some(d) = client.poll_transmit() {
        let _ = server.handle_datagram(t(0), from, &d, &mut r, |_| false);
    }
    while let Some(tx) = server.poll_transmit() {
        let _ = client.handle(t(0), &tx.payload, &mut r).unwrap();
    }
    let finished: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    let forged = retagged(finished.last().unwrap(), |f| {
        let n = f.len();
        f[n - 1] ^= 0x55;
    });
    for i in 0..u64::from(MAX_REFUSED_FINISHED) + 1 {
        assert_eq!(
            server
                .handle_datagram(t(0), from, &forged, &mut r, |_| false)
                .unwrap_err(),
            Error::KeyConfirmation
        );
        assert_eq!(
            server.stats().finished_refused,
            (i + 1).min(u64::from(MAX_REFUSED_FINISHED))
        );
    }
    assert_eq!(
        server.stats().failed,
        1,
        "the last forgery dropped the handshake"
    );
    let mut est = None;
    for d in &finished {
        if let Ok(Some(e)) = server.handle_datagram(t(0), from, d, &mut r, |_| false) {
            est = Some(e);
        }
    }
    assert!(
        est.is_none(),
        "the handshake is gone: the client must start over"
    );
}

/// A spoofer who knows a client's address sends, before the client's real
/// ClientFinished, a fragment of message 1 claiming another length and never
/// completing it. Unverified partial state gives way: the later fragment of another
/// length replaces it, so the real ClientFinished (and its retransmissions) is not
/// refused as an "inconsistent message length" until the half-open handshake expires.
#[test]
fn i1_a_spoofed_partial_fragment_cannot_block_the_real_client_finished() {
    let mut r = rng(93);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    let from = addr(6);
    while let Some(d) = client.poll_transmit() {
        let _ = server
            .handle_datagram(t(0), from, &d, &mut r, |_| false)
            .unwrap();
    }
    while let Some(tx) = server.poll_transmit() {
        let _ = client.handle(t(0), &tx.payload, &mut r).unwrap();
    }
    let finished: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    let junk = [0u8; 16];
    let f = Fragment {
        msg_seq: 1,
        total_len: 900,
        offset: 0,
        data: &junk,
    };
    let mut spoofed = vec![HANDSHAKE_MARKER, 0];
    f.encode(&mut spoofed);
    let spoofed = sealed(spoofed);
    assert!(
        server
            .handle_datagram(t(0), from, &spoofed, &mut r, |_| false)
            .unwrap()
            .is_none()
    );
    let mut est = None;
    for d in &finished {
        if let Ok(Some(e)) = server.handle_datagram(t(0), from, d, &mut r, |_| false) {
            est = Some(e);
        }
    }
    let s = est.expect("the real ClientFinished completes the handshake");
    while let Some(tx) = server.poll_transmit() {
        let _ = client.handle(t(0), &tx.payload, &mut r);
    }
    assert_eq!(client.into_established().unwrap().session_id, s.session_id);
}

// ---------------------------------------------------------------------------------
// An off-path spoofer who can forge a client's source address sends ClientHellos
// "from" it while the client's handshake is half-open.

fn drain_server(server: &mut Server) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| server.poll_transmit())
        .map(|tx| tx.payload)
        .collect()
}

fn drain_client(client: &mut Client) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| client.poll_transmit()).collect()
}

/// The server keeps the victim's half-open handshake beside the spoofer's (which
/// superseded it), so the victim's ClientFinished still completes it; a second spoofed
/// ClientHello does not push it out (both slots are taken: the newcomer gets a Retry,
/// which the spoofer never sees). The answers to the spoofer's ClientHellos reach the
/// victim (they go to its address) and are dropped there. Before, the first spoofed
/// ClientHello abandoned the victim's handshake and the victim could not connect.
#[test]
fn i1_spoofed_client_hello_from_a_clients_address_does_not_kill_its_half_open_handshake() {
    for pdk in [false, true] {
        let mut r = rng(95);
        let mut server = Server::new(server_config(), &mut r);
        let from = addr(11);
        let mut victim = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        let (mut received, mut sent) = (0usize, 0usize);
        for d in drain_client(&mut victim) {
            received += d.len();
            assert!(
                server
                    .handle_datagram(t(0), from, &d, &mut r, |_| false)
                    .unwrap()
                    .is_none()
            );
        }
        let genuine = drain_server(&mut server);
        // Two spoofed ClientHellos from the victim's address (whole ones: the worst
        // case, both answered handshakes then wait for a ClientFinished).
        let mut spoofed_answers = Vec::new();
        for seed in [96, 97] {
            let mut r2 = rng(seed);
            let mut spoofer = Client::new(client_config(pdk), &mut r2, t(0)).unwrap();
            for d in drain_client(&mut spoofer) {
                received += d.len();
                let _ = server.handle_datagram(t(0), from, &d, &mut r, |_| false);
            }
            spoofed_answers.extend(drain_server(&mut server));
        }
        assert_eq!(server.stats().restarted, 1);
        assert_eq!(
            server.stats().retries_sent,
            1,
            "the second one needs a token"
        );
        assert_eq!(server.half_open(), 2);
        for d in genuine.iter().chain(&spoofed_answers) {
            sent += d.len();
        }
        assert!(sent <= 3 * received, "I7: sent {sent} for {received}");
        // The victim first gets the answers to the spoofer's ClientHellos (and the
        // Retry, bound to the spoofer's ClientHello: dropped too), then its own: it
        // completes.
        let mut pending: Vec<Vec<u8>> = spoofed_answers.into_iter().chain(genuine).collect();
        let mut est = None;
        for _ in 0..8 {
            for d in pending.drain(..) {
                match victim.handle(t(0), &d, &mut r) {
                    Ok(_) => {}
                    Err(Error::Malformed(_)) => {}
                    Err(e) => panic!("the victim's handshake failed: {e:?}"),
                }
            }
            for d in drain_client(&mut victim) {
                if let Some(e) = server
                    .handle_datagram(t(0), from, &d, &mut r, |_| false)
                    .unwrap_or(None)
                {
                    est = Some(e);
                }
            }
            pending = drain_server(&mut server);
            if pending.is_empty() {
                break;
            }
        }
        let s = est.expect("the victim's handshake completes on the server");
        assert!(victim.is_complete(), "pdk={pdk}");
        let c = victim.into_established().unwrap();
        assert_eq!(c.session_id, s.session_id);
        assert_eq!(c.c2s.dangerously_expose(), s.c2s.dangerously_expose());
        assert_eq!(server.stats().superseded_completed, 1);
        // The victim did not follow the spoofer's Retry (before the Retry was bound
        // to a ClientHello it did, and re-sent its ClientHello with that token): no
        // restart either way.
        assert_eq!(server.stats().restarted, 1);
        assert_eq!(server.stats().retries_sent, 1);
        // The spoofer's handshake is left to expire.
        server.handle_timeout(t(11));
        assert_eq!(server.half_open(), 0);
    }
}

/// Client side: a server flight that answers another ClientHello (the spoofer's, sent
/// to the victim's address) or is forged is dropped before reassembly with `Malformed`
/// and changes nothing, even interleaved datagram by datagram with the real flight.
#[test]
fn i1_server_flight_for_another_client_hello_is_dropped_and_the_handshake_completes() {
    for pdk in [false, true] {
        let mut r = rng(98);
        let mut server = Server::new(server_config(), &mut r);
        let mut client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        let mut other = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        for d in drain_client(&mut client) {
            server
                .handle_datagram(t(0), addr(12), &d, &mut r, |_| false)
                .unwrap();
        }
        let genuine = drain_server(&mut server);
        for d in drain_client(&mut other) {
            server
                .handle_datagram(t(0), addr(13), &d, &mut r, |_| false)
                .unwrap();
        }
        let foreign = drain_server(&mut server);
        assert_eq!(genuine.len(), foreign.len());
        // An injected copy of the genuine flight with another echo.
        let echo_at = 2;
        assert_eq!(usize::from(genuine[0][1]), ECHO_LEN);
        let forged = retagged(&genuine[0], |f| f[echo_at] ^= 0x40);
        assert_eq!(
            client.handle(t(0), &forged, &mut r),
            Err(Error::Malformed("datagram for another ClientHello"))
        );
        // Interleaved: each foreign datagram just before the genuine one.
        for (f, g) in foreign.iter().zip(&genuine) {
            let timer = client.poll_timeout();
            assert_eq!(
                client.handle(t(0), f, &mut r),
                Err(Error::Malformed("datagram for another ClientHello"))
            );
            assert_eq!(client.poll_timeout(), timer, "state unchanged");
            assert_eq!(client.poll_transmit(), None, "nothing re-sent");
            let _ = client.handle(t(0), g, &mut r).unwrap();
        }
        let mut est = None;
        for _ in 0..4 {
            for d in drain_client(&mut client) {
                if let Some(e) = server
                    .handle_datagram(t(0), addr(12), &d, &mut r, |_| false)
                    .unwrap()
                {
                    est = Some(e);
                }
            }
            for d in drain_server(&mut server) {
                let _ = client.handle(t(0), &d, &mut r).unwrap();
            }
        }
        let s = est.expect("server completes");
        assert_eq!(client.into_established().unwrap().session_id, s.session_id);
    }
}

/// A flight that IS bound to our ClientHello but fails still fails fast and typed
/// (an off-path attacker cannot produce one).
#[test]
fn i1_a_bound_flight_with_the_wrong_server_key_still_fails_fast() {
    let mut r = rng(99);
    let mut server = Server::new(server_config(), &mut r);
    let f = fixture();
    let mut client = Client::new(
        ClientConfig::new(f.other_signing.verifying_key()),
        &mut r,
        t(0),
    )
    .unwrap();
    for d in drain_client(&mut client) {
        server
            .handle_datagram(t(0), addr(14), &d, &mut r, |_| false)
            .unwrap();
    }
    let mut err = None;
    for d in drain_server(&mut server) {
        if let Err(e) = client.handle(t(0), &d, &mut r) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(Error::BadSignature(_))), "{err:?}");
    assert_eq!(client.poll_timeout(), None, "terminal");
}

/// A forged ClientFinished is tried against both half-open handshakes of an address,
/// but decapsulated once; each handshake counts its refusals, so the work stays
/// bounded: at most `MAX_REFUSED_FINISHED + 1` decapsulations in all.
#[test]
fn i1_forged_client_finished_cost_stays_bounded_with_a_superseded_handshake() {
    let mut r = rng(100);
    let mut server = Server::new(server_config(), &mut r);
    let from = addr(15);
    let mut victim = Client::new(client_config(false), &mut r, t(0)).unwrap();
    for d in drain_client(&mut victim) {
        server
            .handle_datagram(t(0), from, &d, &mut r, |_| false)
            .unwrap();
    }
    for d in drain_server(&mut server) {
        let _ = victim.handle(t(0), &d, &mut r).unwrap();
    }
    let finished = drain_client(&mut victim);
    let mut spoofer = Client::new(client_config(false), &mut r, t(0)).unwrap();
    for d in drain_client(&mut spoofer) {
        server
            .handle_datagram(t(0), from, &d, &mut r, |_| false)
            .unwrap();
    }
    assert_eq!(server.half_open(), 2);
    let forged = retagged(finished.last().unwrap(), |f| {
        let n = f.len();
        f[n - 1] ^= 0x55;
    });
    for i in 1..=u64::from(MAX_REFUSED_FINISHED) + 1 {
        assert_eq!(
            server
                .handle_datagram(t(0), from, &forged, &mut r, |_| false)
                .unwrap_err(),
            Error::KeyConfirmation
        );
        assert_eq!(server.stats().finished_decapsulations, i, "one per forgery");
    }
    assert_eq!(
        server.half_open(),
        0,
        "both handshakes dropped at the bound"
    );
    assert_eq!(server.stats().failed, 2);
    // The genuine ClientFinished, once the bound is spent, finds nothing.
    for d in &finished {
        assert!(!matches!(
            server.handle_datagram(t(0), from, d, &mut r, |_| false),
            Ok(Some(_))
        ));
    }
    assert_eq!(
        server.stats().finished_decapsulations,
        5,
        "and costs nothing more"
    );
}

/// A client that abandons two connects in a row (both still half-open) and connects a
/// third time from the same socket completes after one Retry: its token proves the
/// address, so it may replace one of the two.
#[test]
fn a_client_that_restarts_twice_completes_after_a_retry() {
    let mut r = rng(101);
    let mut server = Server::new(server_config(), &mut r);
    let from = addr(16);
    for _ in 0..2 {
        let mut abandoned = Client::new(client_config(true), &mut r, t(0)).unwrap();
        for d in drain_client(&mut abandoned) {
            server
                .handle_datagram(t(0), from, &d, &mut r, |_| false)
                .unwrap();
        }
        drain_server(&mut server);
    }
    assert_eq!(server.half_open(), 2);
    let mut client = Client::new(client_config(true), &mut r, t(1)).unwrap();
    let mut est = None;
    for _ in 0..6 {
        for d in drain_client(&mut client) {
            if let Ok(Some(e)) = server.handle_datagram(t(1), from, &d, &mut r, |_| false) {
                est = Some(e);
            }
        }
        for d in drain_server(&mut server) {
            // The abandoned handshakes' answers (re-sent when a fragment of ours
            // reached them) are not for this ClientHello: dropped.
            match client.handle(t(1), &d, &mut r) {
                Ok(_) | Err(Error::Malformed("datagram for another ClientHello")) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    let s = est.expect("the third connect completes");
    assert_eq!(client.into_established().unwrap().session_id, s.session_id);
    assert_eq!(server.stats().retries_sent, 1);
    assert!(server.half_open() <= 1);
}

/// After a full-mode handshake completed, a spoofed ClientHello from the client's
/// address must not discard the ServerFinished the server keeps for retransmission:
/// the client's retransmitted ClientFinished (its ServerFinished was lost) still gets
/// it. Before, any ClientHello from the address removed it.
#[test]
fn i1_spoofed_client_hello_after_completion_keeps_the_server_finished_for_the_client() {
    let mut r = rng(102);
    let mut server = Server::new(server_config(), &mut r);
    let from = addr(17);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    for d in drain_client(&mut client) {
        server
            .handle_datagram(t(0), from, &d, &mut r, |_| false)
            .unwrap();
    }
    for d in drain_server(&mut server) {
        let _ = client.handle(t(0), &d, &mut r).unwrap();
    }
    let finished = drain_client(&mut client);
    let mut est = None;
    for d in &finished {
        est = server
            .handle_datagram(t(0), from, d, &mut r, |_| false)
            .unwrap();
    }
    let s = est.expect("server completes");
    drain_server(&mut server); // The ServerFinished is lost.
    let mut spoofer = Client::new(client_config(false), &mut r, t(0)).unwrap();
    for d in drain_client(&mut spoofer) {
        let _ = server.handle_datagram(t(1), from, &d, &mut r, |_| false);
    }
    drain_server(&mut server); // The spoofer's answer is dropped by the client anyway.
    // The client's timer re-sends its ClientFinished.
    let deadline = client.poll_timeout().unwrap();
    client
        .handle_timeout(Time::new(deadline, UNIX0 + 1))
        .unwrap();
    for d in drain_client(&mut client) {
        assert!(
            server
                .handle_datagram(t(1), from, &d, &mut r, |_| false)
                .unwrap()
                .is_none()
        );
    }
    for d in drain_server(&mut server) {
        let _ = client.handle(t(1), &d, &mut r);
    }
    assert_eq!(client.into_established().unwrap().session_id, s.session_id);
}

/// With `require_retry`, a spoofed ClientHello from a client's address gets a Retry
/// (stateless) and the client's half-open handshake is untouched. Before, the
/// half-open handshake was abandoned first and the spoofed ClientHello then got the
/// Retry: the client's handshake was lost either way.
#[test]
fn i1_with_require_retry_a_spoofed_client_hello_leaves_the_half_open_handshake_alone() {
    let mut r = rng(103);
    let mut scfg = server_config();
    scfg.require_retry = true;
    let mut server = Server::new(scfg, &mut r);
    let from = addr(18);
    let mut victim = Client::new(client_config(true), &mut r, t(0)).unwrap();
    for d in drain_client(&mut victim) {
        let _ = server.handle_datagram(t(0), from, &d, &mut r, |_| false);
    }
    for d in drain_server(&mut server) {
        let _ = victim.handle(t(0), &d, &mut r).unwrap();
    }
    for d in drain_client(&mut victim) {
        server
            .handle_datagram(t(0), from, &d, &mut r, |_| false)
            .unwrap();
    }
    assert_eq!(server.half_open(), 1);
    let mut pending = drain_server(&mut server);
    let retries = server.stats().retries_sent;
    let mut spoofer = Client::new(client_config(true), &mut r, t(0)).unwrap();
    for d in drain_client(&mut spoofer) {
        let _ = server.handle_datagram(t(0), from, &d, &mut r, |_| false);
    }
    assert_eq!(server.half_open(), 1);
    assert_eq!(server.stats().restarted, 0);
    assert_eq!(server.stats().retries_sent, retries + 1);
    pending.extend(drain_server(&mut server));
    let mut est = None;
    for _ in 0..6 {
        for d in pending.drain(..) {
            match victim.handle(t(0), &d, &mut r) {
                Ok(_) | Err(Error::Malformed(_)) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        for d in drain_client(&mut victim) {
            if let Ok(Some(e)) = server.handle_datagram(t(0), from, &d, &mut r, |_| false) {
                est = Some(e);
            }
        }
        pending = drain_server(&mut server);
    }
    let s = est.expect("the victim's handshake completes");
    assert_eq!(victim.into_established().unwrap().session_id, s.session_id);
}

// ---------------------------------------------------------------------------------
// Retry bound to the ClientHello.

/// A server datagram with `field` in its token field and no fragment (a Retry).
fn retry_with(field: &[u8]) -> Vec<u8> {
    let mut v = vec![HANDSHAKE_MARKER, field.len() as u8];
    v.extend_from_slice(field);
    sealed(v)
}

/// The token a Retry hands out (its token field after the ClientHello-head echo).
fn token_of_retry(d: &[u8]) -> Vec<u8> {
    let dg = Datagram::parse(d).unwrap();
    assert!(dg.is_retry());
    assert_eq!(dg.token.len(), ECHO_LEN + TOKEN_LEN);
    dg.token[ECHO_LEN..].to_vec()
}

/// The echo a Retry for datagram `d` must carry: SHA-256 of its ClientHello fragment at
/// offset 0, first `ECHO_LEN` bytes (None if `d` has no such fragment).
fn head_echo_of(d: &[u8]) -> Option<Vec<u8>> {
    let dg = Datagram::parse(d).unwrap();
    let f = dg
        .fragments
        .iter()
        .find(|f| f.msg_seq == 0 && f.offset == 0)?;
    Some(crate::schedule::sha256(f.data)[..ECHO_LEN].to_vec())
}

/// An off-path attacker who can spoof the server's address races forged Retries to the
/// client (a made-up token; a guessed echo; even a token valid for the client's
/// address, which it cannot get, without the echo): the client drops each with
/// `Malformed`, changes nothing, and completes with the real server — after the real
/// Retry if the server asks for one. Before, the first forged Retry made the client
/// restart with the attacker's token, which the server refuses (`TokenInvalid`): the
/// handshake hung until it timed out.
#[test]
fn i1_forged_retry_is_dropped_and_the_handshake_completes() {
    for require_retry in [false, true] {
        for pdk in [false, true] {
            let mut r = rng(110);
            let mut scfg = server_config();
            scfg.require_retry = require_retry;
            let mut server = Server::new(scfg, &mut r);
            let from = addr(20);
            let mut client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
            for d in drain_client(&mut client) {
                assert!(
                    server
                        .handle_datagram(t(0), from, &d, &mut r, |_| false)
                        .unwrap()
                        .is_none()
                );
            }
            let made_up = [0x5a_u8; TOKEN_LEN];
            let mut guessed = vec![0xa5_u8; ECHO_LEN];
            guessed.extend_from_slice(&made_up);
            let valid = server.issue_token(&from, t(0));
            let mut valid_guessed = vec![0x11_u8; ECHO_LEN];
            valid_guessed.extend_from_slice(&valid);
            let timer = client.poll_timeout();
            for field in [&made_up[..], &guessed, &valid, &valid_guessed] {
                assert_eq!(
                    client.handle(t(0), &retry_with(field), &mut r),
                    Err(Error::Malformed("Retry for another ClientHello")),
                    "require_retry={require_retry} pdk={pdk}"
                );
                assert_eq!(client.poll_transmit(), None, "no restart");
                assert_eq!(client.poll_timeout(), timer, "state unchanged");
            }
            // A token field no longer than the echo holds no token.
            for field in [&[7u8][..], &[7u8; ECHO_LEN]] {
                assert!(matches!(
                    client.handle(t(0), &retry_with(field), &mut r),
                    Err(Error::Malformed(_))
                ));
                assert_eq!(client.poll_transmit(), None);
            }
            let (est, _) = drive(&mut client, &mut server, from, t(0), &mut r).unwrap();
            let s = est.expect("the server completes");
            assert_eq!(client.into_established().unwrap().session_id, s.session_id);
            let stats = server.stats();
            assert_eq!(stats.tokens.invalid, 0, "no forged token came back");
            assert_eq!(stats.retries_sent, u64::from(require_retry));
        }
    }
}

/// A genuine Retry — a valid token for the client's address — prompted by another
/// ClientHello (a spoofer's "from" the client's address, or the client's own earlier
/// connect from the same socket) is not bound to this ClientHello: dropped with
/// `Malformed`, the state unchanged; the client's own Retry then works as before.
#[test]
fn i1_retry_for_another_client_hello_is_dropped() {
    for pdk in [false, true] {
        let mut r = rng(111);
        let mut scfg = server_config();
        scfg.require_retry = true;
        let mut server = Server::new(scfg, &mut r);
        let from = addr(21);
        let mut client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        let mut other = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        for d in drain_client(&mut other) {
            assert!(
                server
                    .handle_datagram(t(0), from, &d, &mut r, |_| false)
                    .unwrap()
                    .is_none()
            );
        }
        let foreign = drain_server(&mut server);
        assert_eq!(foreign.len(), 1, "one Retry per ClientHello flight");
        let timer = client.poll_timeout();
        let hello = drain_client(&mut client);
        assert_eq!(
            client.handle(t(0), &foreign[0], &mut r),
            Err(Error::Malformed("Retry for another ClientHello"))
        );
        assert_eq!(client.poll_transmit(), None, "no restart");
        assert_eq!(client.poll_timeout(), timer, "state unchanged");
        // The client's own ClientHello gets its own Retry, which it follows.
        for d in &hello {
            assert!(
                server
                    .handle_datagram(t(0), from, d, &mut r, |_| false)
                    .unwrap()
                    .is_none()
            );
        }
        let own = drain_server(&mut server);
        assert_eq!(own.len(), 1);
        let token = token_of_retry(&own[0]);
        assert_eq!(client.handle(t(0), &own[0], &mut r), Ok(Progress::Pending));
        let again = drain_client(&mut client);
        assert_eq!(again.len(), hello.len(), "the ClientHello again");
        assert_eq!(
            head_echo_of(&again[0]),
            head_echo_of(&hello[0]),
            "the same first fragment: the token is outside the fragment budget"
        );
        for d in &again {
            assert_eq!(Datagram::parse(d).unwrap().token, &token[..]);
            assert!(
                server
                    .handle_datagram(t(0), from, d, &mut r, |_| false)
                    .unwrap()
                    .is_none()
            );
        }
        let (est, _) = drive(&mut client, &mut server, from, t(0), &mut r).unwrap();
        let s = est.expect("the server completes");
        assert_eq!(client.into_established().unwrap().session_id, s.session_id);
        assert_eq!(server.stats().retries_sent, 2);
        assert_eq!(server.stats().tokens.invalid, 0);
    }
}

/// Once the client restarted with a token, no later Retry restarts it again: a
/// duplicate of the one it followed and a second genuine one (the server answered a
/// retransmission of the first ClientHello datagram with a fresh token) are bound to
/// the ClientHello — it does not change on a restart — and ignored (`Pending`, nothing
/// sent, the token kept); a forged one is dropped with `Malformed`. The handshake
/// completes with the first token.
#[test]
fn i1_a_second_retry_does_not_restart_the_client_again() {
    let mut r = rng(112);
    let mut scfg = server_config();
    scfg.require_retry = true;
    let mut server = Server::new(scfg, &mut r);
    let from = addr(22);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    let hello = drain_client(&mut client);
    for d in &hello {
        let _ = server.handle_datagram(t(0), from, d, &mut r, |_| false);
    }
    let first = drain_server(&mut server);
    assert_eq!(first.len(), 1);
    let token = token_of_retry(&first[0]);
    assert_eq!(
        client.handle(t(0), &first[0], &mut r),
        Ok(Progress::Pending)
    );
    let tokened = drain_client(&mut client);
    let timer = client.poll_timeout();
    // The first ClientHello datagram again, a second later: a fresh token.
    let _ = server.handle_datagram(t(1), from, &hello[0], &mut r, |_| false);
    let second = drain_server(&mut server);
    assert_eq!(second.len(), 1);
    assert_ne!(token_of_retry(&second[0]), token);
    for d in [&first[0], &second[0]] {
        assert_eq!(client.handle(t(1), d, &mut r), Ok(Progress::Pending));
        assert_eq!(client.poll_transmit(), None, "no second restart");
        assert_eq!(client.poll_timeout(), timer);
    }
    let forged = retagged(&second[0], |f| f[2] ^= 1);
    assert_eq!(
        client.handle(t(1), &forged, &mut r),
        Err(Error::Malformed("Retry for another ClientHello"))
    );
    assert_eq!(client.poll_transmit(), None);
    for d in &tokened {
        assert_eq!(Datagram::parse(d).unwrap().token, &token[..]);
        let _ = server.handle_datagram(t(1), from, d, &mut r, |_| false);
    }
    let (est, _) = drive(&mut client, &mut server, from, t(1), &mut r).unwrap();
    let s = est.expect("the server completes");
    assert_eq!(client.into_established().unwrap().session_id, s.session_id);
    assert_eq!(server.stats().tokens.invalid, 0);
}

/// I7 with the echo: a Retry (echo ‖ token, 59 bytes) answers only a datagram that
/// carries the ClientHello's first fragment (the echo is computed from it) and never
/// exceeds 3x that datagram. Checked for every ClientHello datagram the client sends,
/// padded and unpadded, PDK and full; the other datagrams of the flight get no Retry,
/// and a crafted first fragment too small to answer gets none either.
#[test]
fn i7_a_retry_never_exceeds_three_times_the_datagram_that_prompted_it() {
    for no_padding in [false, true] {
        for pdk in [false, true] {
            let mut r = rng(113);
            crate::client::NO_PADDING.with(|c| c.set(no_padding));
            let client = Client::new(client_config(pdk), &mut r, t(0));
            crate::client::NO_PADDING.with(|c| c.set(false));
            let mut client = client.unwrap();
            let hello = drain_client(&mut client);
            assert!(hello.len() >= 2, "the hybrid ClientHello spans datagrams");
            for (i, d) in hello.iter().enumerate() {
                let (mut server, mut r) = retry_server(114);
                assert!(
                    server
                        .handle_datagram(t(0), addr(23), d, &mut r, |_| false)
                        .unwrap()
                        .is_none()
                );
                let sent = drain_server(&mut server);
                match head_echo_of(d) {
                    Some(echo) => {
                        assert_eq!(i, 0, "the first datagram carries the head");
                        assert_eq!(sent.len(), 1);
                        let retry = &sent[0];
                        assert_eq!(retry.len(), 2 + ECHO_LEN + TOKEN_LEN + INTEGRITY_TAG_LEN);
                        assert_eq!(&retry[2..2 + ECHO_LEN], &echo[..]);
                        assert!(
                            retry.len() <= 3 * d.len(),
                            "{} for {}",
                            retry.len(),
                            d.len()
                        );
                    }
                    None => {
                        assert!(sent.is_empty(), "no Retry without the head");
                        assert_eq!(server.stats().retries_sent, 0);
                        assert_eq!(server.stats().retries_withheld, 1);
                    }
                }
            }
        }
    }
    // A first fragment of one byte: too small to answer (3x 24 < 75).
    let frag = crate::fragment::Fragment {
        msg_seq: 0,
        total_len: 8,
        offset: 0,
        data: &[1u8; 1],
    };
    let mut tiny = vec![HANDSHAKE_MARKER, 0];
    frag.encode(&mut tiny);
    let tiny = sealed(tiny);
    assert!(3 * tiny.len() < 2 + ECHO_LEN + TOKEN_LEN + INTEGRITY_TAG_LEN);
    let (mut server, mut r) = retry_server(115);
    assert_eq!(
        server
            .handle_datagram(t(0), addr(24), &tiny, &mut r, |_| false)
            .unwrap_err(),
        Error::LimitExceeded("datagram too small to answer")
    );
    assert!(drain_server(&mut server).is_empty());
}

// ---------------------------------------------------------------------------------
// I12: a damaged, duplicated, reordered or lost handshake datagram never ends a
// handshake the peers could complete.

/// What a faulty link does to each datagram, in percent.
#[derive(Clone, Copy)]
struct Faults {
    loss: u32,
    duplicate: u32,
    flip: u32,
}

/// Counts of what happened on a faulty-link run.
#[derive(Debug, Default)]
struct LinkRun {
    flipped: usize,
    client_errors: Vec<Error>,
    server_errors: Vec<Error>,
    completed: bool,
    keys_agree: bool,
}

/// Runs a handshake over a link that loses, duplicates, reorders (random delay up to
/// 60 ms) and damages datagrams (one random bit of the datagram flipped), with both
/// sides' timers, until both sides completed or 60 simulated seconds passed. A client
/// that completed answers a server retransmission with its last flight, as the
/// session does.
fn faulty_link_run(seed: u64, pdk: bool, faults: Faults) -> LinkRun {
    let mut r = rng(seed);
    let mut link = rng(seed ^ 0x5eed_0000);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
    let from = addr(12);
    let start = base_instant();
    let mut now = t(0);
    // (delivery time, to server?, bytes)
    let mut wire: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
    let mut run = LinkRun::default();
    let mut server_est: Option<Box<Established>> = None;
    let send = |wire: &mut Vec<(Instant, bool, Vec<u8>)>,
                link: &mut ChaCha20Rng,
                run: &mut LinkRun,
                now: Time,
                to_server: bool,
                d: Vec<u8>| {
        use rand_core::Rng as _;
        let roll = |link: &mut ChaCha20Rng| link.next_u32() % 100;
        if roll(link) < faults.loss {
            return;
        }
        let copies = if roll(link) < faults.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let mut d = d.clone();
            if roll(link) < faults.flip {
                let bit = link.next_u32() as usize % (d.len() * 8);
                d[bit / 8] ^= 1 << (bit % 8);
                run.flipped += 1;
            }
            let delay = Duration::from_millis(u64::from(link.next_u32() % 60));
            wire.push((now.instant + delay, to_server, d));
        }
    };
    for _ in 0..5000 {
        while let Some(d) = client.poll_transmit() {
            send(&mut wire, &mut link, &mut run, now, true, d);
        }
        while let Some(tx) = server.poll_transmit() {
            send(&mut wire, &mut link, &mut run, now, false, tx.payload);
        }
        if server_est.is_some() && client.is_complete() {
            break;
        }
        let next_wire = wire.iter().map(|w| w.0).min();
        let next = [next_wire, client.poll_timeout(), server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { break };
        if next > start + Duration::from_secs(60) {
            break;
        }
        now = Time::new(next.max(now.instant), UNIX0 + (next - start).as_secs());
        if let Some(i) = wire.iter().position(|w| w.0 <= now.instant) {
            let (_, to_server, d) = wire.swap_remove(i);
            if to_server {
                match server.handle_datagram(now, from, &d, &mut r, |_| false) {
                    Ok(Some(e)) => server_est = Some(e),
                    Ok(None) => {}
                    Err(e) => run.server_errors.push(e),
                }
            } else if client.is_complete() {
                // The session re-sends the client's last flight on a server datagram.
                let again = client.clone().into_established().unwrap().pending_flight;
                for d in again {
                    send(&mut wire, &mut link, &mut run, now, true, d);
                }
            } else if let Err(e) = client.handle(now, &d, &mut r) {
                run.client_errors.push(e);
            }
            continue;
        }
        if client.poll_timeout().is_some_and(|d| d <= now.instant)
            && let Err(e) = client.handle_timeout(now)
        {
            run.client_errors.push(e);
            break;
        }
        if server.poll_timeout().is_some_and(|d| d <= now.instant) {
            server.handle_timeout(now);
        }
    }
    if let (Some(s), true) = (&server_est, client.is_complete()) {
        run.completed = true;
        let c = client.into_established().unwrap();
        run.keys_agree = c.session_id == s.session_id
            && c.c2s.dangerously_expose() == s.c2s.dangerously_expose()
            && c.s2c.dangerously_expose() == s.s2c.dangerously_expose();
    }
    run
}

/// 64 seeds, PDK and full mode alternating, over a link that loses 10 %, duplicates
/// 10 % and damages 15 % of the datagrams and reorders them all: every handshake
/// completes with agreeing keys. A damaged datagram is dropped by its integrity tag
/// (counted), and the retransmission recovers.
#[test]
fn i12_handshakes_complete_over_a_lossy_duplicating_bit_flipping_link() {
    let faults = Faults {
        loss: 10,
        duplicate: 10,
        flip: 15,
    };
    let (mut flipped, mut damaged_errors) = (0, 0);
    for seed in 0..64u64 {
        let run = faulty_link_run(1200 + seed, seed % 2 == 0, faults);
        assert!(
            run.completed && run.keys_agree,
            "seed {seed}: client errors {:?}, server errors {:?}",
            run.client_errors,
            run.server_errors
        );
        flipped += run.flipped;
        damaged_errors += run
            .client_errors
            .iter()
            .chain(&run.server_errors)
            .filter(|e| matches!(e, Error::Damaged))
            .count();
    }
    // The link did damage datagrams, and every damaged one that arrived was caught by
    // the tag (a flipped datagram may also be lost).
    assert!(flipped > 32, "{flipped}");
    assert!(damaged_errors > 16, "{damaged_errors}");
}

/// Every server datagram arrives damaged (one bit flipped): each is dropped and counted,
/// none ends the handshake, and when the retransmission budget runs out the error says
/// that answers came but none was usable, not that the server was silent.
#[test]
fn i12_a_handshake_that_gets_only_damaged_answers_says_so_when_it_times_out() {
    let mut r = rng(1212);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let mut now = t(0);
    let mut delivered = 0u32;
    let err = loop {
        while let Some(d) = client.poll_transmit() {
            let _ = server.handle_datagram(now, addr(13), &d, &mut r, |_| false);
        }
        while let Some(tx) = server.poll_transmit() {
            let mut d = tx.payload;
            let i = d.len() / 2;
            d[i] ^= 0x04;
            assert_eq!(client.handle(now, &d, &mut r), Err(Error::Damaged));
            delivered += 1;
        }
        let next = client.poll_timeout().unwrap();
        now = Time::new(next, UNIX0 + 1);
        if let Err(e) = client.handle_timeout(now) {
            break e;
        }
        assert!(delivered < 200);
    };
    assert!(delivered >= 2, "{delivered}");
    assert_eq!(client.datagrams_dropped(), delivered);
    assert_eq!(client.datagrams_used(), 0);
    assert_eq!(err, Error::UnusableAnswers { dropped: delivered });
    assert_eq!(server.stats().damaged, 0);
    assert_eq!(server.stats().completed, 0);
}

/// A damaged ClientHello datagram is dropped and counted by the server (nothing is
/// answered, no state is created); the retransmission completes the handshake.
#[test]
fn i12_a_damaged_client_hello_is_dropped_and_its_retransmission_completes() {
    let mut r = rng(1213);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(false), &mut r, t(0)).unwrap();
    for mut d in drain_client(&mut client) {
        let i = d.len() - 1;
        d[i] ^= 0x80;
        assert_eq!(
            server
                .handle_datagram(t(0), addr(14), &d, &mut r, |_| false)
                .unwrap_err(),
            Error::Damaged
        );
    }
    assert_eq!(server.stats().damaged, 2);
    assert_eq!(server.stats().malformed, 0);
    assert_eq!(server.half_open(), 0);
    assert!(drain_server(&mut server).is_empty());
    let later = Time::new(client.poll_timeout().unwrap(), UNIX0);
    client.handle_timeout(later).unwrap();
    let (est, _) = drive(&mut client, &mut server, addr(14), later, &mut r).unwrap();
    assert!(est.is_some() && client.is_complete());
}

// ---------------------------------------------------------------------------------
// I1/I12: spoofed fragments with the real message lengths.

/// A one-fragment datagram (tagged: the tag is public) carrying `data` at `offset` of
/// message `seq` claimed `total_len` long: what an off-path spoofer sends.
fn spoofed_fragment(seq: u64, total_len: usize, offset: usize, data: &[u8]) -> Vec<u8> {
    let f = Fragment {
        msg_seq: seq,
        total_len,
        offset,
        data,
    };
    let mut d = vec![HANDSHAKE_MARKER, 0];
    f.encode(&mut d);
    sealed(d)
}

/// A spoofer who knows the client's address sends, between the server's receipt of
/// the ClientHello and of the ClientFinished, a one-byte fragment of message 1 with the
/// ClientFinished's real length (59 bytes in PDK mode, 1,147 in full mode). Before, the
/// real ClientFinished was merged with it (first copy wins), failed its MAC, and the
/// server's flight timer was stopped as if the client had answered: the PDK handshake
/// died. Now the whole-message fragment replaces the buffered bytes, and the handshake
/// completes at once.
#[test]
fn i1_a_spoofed_fragment_with_the_real_client_finished_length_does_not_corrupt_it() {
    for pdk in [true, false] {
        let mut r = rng(1300);
        let mut server = Server::new(server_config(), &mut r);
        let mut client = Client::new(client_config(pdk), &mut r, t(0)).unwrap();
        let from = addr(30);
        for d in drain_client(&mut client) {
            server
                .handle_datagram(t(0), from, &d, &mut r, |_| false)
                .unwrap();
        }
        for d in drain_server(&mut server) {
            let _ = client.handle(t(0), &d, &mut r).unwrap();
        }
        let finished = drain_client(&mut client);
        assert_eq!(finished.len(), 1);
        let cf = Datagram::parse(&finished[0]).unwrap().fragments[0];
        assert_eq!((cf.msg_seq, cf.offset), (1, 0));
        // mode, [static ciphertext,] masked id0 (1 + 8 + 16), MAC.
        assert_eq!(cf.total_len, if pdk { 59 } else { 1147 });
        assert_eq!(cf.data.len(), cf.total_len);
        let junk = [cf.data[0] ^ 0xff];
        let spoofed = spoofed_fragment(1, cf.total_len, 0, &junk);
        assert!(
            server
                .handle_datagram(t(0), from, &spoofed, &mut r, |_| false)
                .unwrap()
                .is_none()
        );
        let est = server
            .handle_datagram(t(0), from, &finished[0], &mut r, |_| false)
            .unwrap();
        let s = est.expect("the real ClientFinished completes the handshake");
        assert_eq!(server.stats().finished_refused, 0);
        for d in drain_server(&mut server) {
            let _ = client.handle(t(0), &d, &mut r);
        }
        assert_eq!(client.into_established().unwrap().session_id, s.session_id);
    }
}

/// The spoofed byte is a fragment of message 0 with the ClientHello's padded length
/// (2,400), sent after the first ClientHello datagram and before the second: it lands
/// inside the ClientHello. Before, the server answered a ClientHello the client never
/// sent, whose echo the client does not recognise. Now the disagreeing overlap resets
/// the partial message, and the client's retransmission completes the handshake; no
/// ClientHello other than the client's is ever answered.
#[test]
fn i1_a_spoofed_fragment_inside_the_client_hello_is_never_answered_as_part_of_it() {
    let mut r = rng(1301);
    let mut server = Server::new(server_config(), &mut r);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let from = addr(31);
    let hello = drain_client(&mut client);
    assert_eq!(hello.len(), 2);
    let second = Datagram::parse(&hello[1]).unwrap().fragments[0];
    assert_eq!(second.total_len, MIN_CLIENT_HELLO_LEN);
    server
        .handle_datagram(t(0), from, &hello[0], &mut r, |_| false)
        .unwrap();
    let at = second.offset + 5;
    let junk = [second.data[5] ^ 0x01];
    let spoofed = spoofed_fragment(0, second.total_len, at, &junk);
    let _ = server.handle_datagram(t(0), from, &spoofed, &mut r, |_| false);
    let _ = server.handle_datagram(t(0), from, &hello[1], &mut r, |_| false);
    // Whatever the server answers must answer our ClientHello.
    let mut now = t(0);
    let mut server_est = None;
    for _ in 0..8 {
        for d in drain_server(&mut server) {
            assert_ne!(
                client.handle(now, &d, &mut r),
                Err(Error::Malformed("datagram for another ClientHello")),
                "the server answered a ClientHello the client never sent"
            );
        }
        if client.is_complete() {
            break;
        }
        now = Time::new(client.poll_timeout().unwrap(), UNIX0);
        client.handle_timeout(now).unwrap();
        for d in drain_client(&mut client) {
            if let Ok(Some(e)) = server.handle_datagram(now, from, &d, &mut r, |_| false) {
                server_est = Some(e);
            }
        }
    }
    assert!(client.is_complete());
    for d in drain_client(&mut client) {
        if let Ok(Some(e)) = server.handle_datagram(now, from, &d, &mut r, |_| false) {
            server_est = Some(e);
        }
    }
    assert!(server_est.is_some());
}

/// A datagram without the ClientHello's first fragment (offset 0) creates no handshake
/// state at an unknown address: not a spoofer's fragment, not a ClientHello's second
/// datagram arriving first (the client's retransmission brings both).
#[test]
fn i1_no_handshake_state_without_the_client_hellos_first_fragment() {
    let mut r = rng(1302);
    let mut server = Server::new(server_config(), &mut r);
    let spoofed = spoofed_fragment(0, MIN_CLIENT_HELLO_LEN, 1500, &[7]);
    let _ = server.handle_datagram(t(0), addr(32), &spoofed, &mut r, |_| false);
    assert_eq!(server.half_open(), 0);
    let mut client = Client::new(client_config(true), &mut r, t(0)).unwrap();
    let hello = drain_client(&mut client);
    let _ = server.handle_datagram(t(0), addr(33), &hello[1], &mut r, |_| false);
    assert_eq!(server.half_open(), 0);
    assert_eq!(server.stats().hello_without_head, 2);
    assert!(drain_server(&mut server).is_empty());
    server
        .handle_datagram(t(0), addr(33), &hello[0], &mut r, |_| false)
        .unwrap();
    assert_eq!(server.half_open(), 1);
}

// ---------------------------------------------------------------------------------
// I1/I7: a refusal costs as much as a handshake and counts as one.

/// PDK ClientHellos without a common suite from 20 addresses: each MACed refusal costs
/// the server an X25519 agreement and an ML-KEM decapsulation, so each counts toward
/// the half-open load until the handshake timeout; once the load reaches the cap, new
/// unvalidated addresses get a Retry (no expensive work). A client that comes back
/// with the token still gets its authenticated refusal, and after the timeout the load
/// is gone. Before, a refusal kept no entry: the table never filled, Retry never
/// engaged, and every forged ClientHello cost a decapsulation.
#[test]
fn i1_pdk_refusals_count_toward_the_load_that_turns_on_retry() {
    let mut r = rng(1400);
    let mut scfg = server_config();
    scfg.suites = vec![Suite::Aes256Gcm];
    scfg.max_half_open = 4;
    let mut server = Server::new(scfg, &mut r);
    let refused_client = |r: &mut ChaCha20Rng| {
        let mut cfg = client_config(true);
        cfg.suites = vec![Suite::ChaCha20Poly1305];
        Client::new(cfg, r, t(0)).unwrap()
    };
    let mut last = None;
    for i in 0..20u16 {
        let mut c = refused_client(&mut r);
        for d in drain_client(&mut c) {
            let _ = server.handle_datagram(t(0), addr(100 + i), &d, &mut r, |_| false);
        }
        last = Some((c, drain_server(&mut server)));
    }
    let st = server.stats();
    assert_eq!(st.mismatch_decapsulations, 4);
    assert_eq!(st.mismatches, 4);
    assert_eq!(st.retries_sent, 16);
    assert_eq!(server.half_open(), 0);
    // The last client follows its Retry: its address is proven, it gets the MACed
    // refusal.
    let (mut c, answer) = last.unwrap();
    assert_eq!(answer.len(), 1);
    assert_eq!(c.handle(t(0), &answer[0], &mut r), Ok(Progress::Pending));
    for d in drain_client(&mut c) {
        let _ = server.handle_datagram(t(0), addr(119), &d, &mut r, |_| false);
    }
    let refusal = drain_server(&mut server);
    assert_eq!(refusal.len(), 1);
    assert!(matches!(
        c.handle(t(0), &refusal[0], &mut r),
        Err(Error::SuiteMismatch {
            authenticated: true,
            ..
        })
    ));
    assert_eq!(server.stats().mismatch_decapsulations, 5);
    // After the handshake timeout the refusals no longer count.
    let mut c = refused_client(&mut r);
    for d in drain_client(&mut c) {
        let _ = server.handle_datagram(t(11), addr(200), &d, &mut r, |_| false);
    }
    assert_eq!(server.stats().mismatch_decapsulations, 6);
    assert_eq!(
        server.stats().retries_sent,
        16,
        "no Retry once the load is gone"
    );
}

// ---------------------------------------------------------------------------------
// Key rotation.

/// Ticket and retry keys rotate every `key_rotation` (here 100 s), keeping the previous
/// key for acceptance: a ticket issued at 0 s still resumes after one rotation (150 s),
/// not after two (250 s), although its lifetime (a day) has not run out.
#[test]
fn a_ticket_outlives_one_key_rotation_but_not_two() {
    let mut r = rng(1500);
    let mut scfg = server_config();
    scfg.key_rotation = Duration::from_secs(100);
    let mut server = Server::new(scfg, &mut r);
    // The first call starts the schedule.
    assert!(!server.rotate_keys_if_due(t(0), &mut r));
    let ticket = first_ticket(&mut server, &mut r);
    let token = server.issue_token(&addr(50), t(0));
    assert!(!server.rotate_keys_if_due(t(99), &mut r));
    assert_eq!(server.poll_key_rotation(), Some(t(100).instant));
    let resumes = |server: &mut Server, r: &mut ChaCha20Rng, now: Time, from: u16| {
        let mut cfg = client_config(true);
        cfg.ticket = Some(ticket.clone());
        let mut client = Client::new(cfg, r, now).unwrap();
        let (est, _) = drive(&mut client, server, addr(from), now, r).unwrap();
        est.unwrap().resumed
    };
    assert!(server.rotate_keys_if_due(t(150), &mut r));
    assert!(!server.rotate_keys_if_due(t(160), &mut r));
    assert!(resumes(&mut server, &mut r, t(150), 51));
    assert_eq!(server.stats().tickets.invalid, 0);
    assert!(server.rotate_keys_if_due(t(250), &mut r));
    assert!(!resumes(&mut server, &mut r, t(250), 52));
    assert_eq!(server.stats().tickets.invalid, 1);
    // The retry key rotates with it: a token of the key before last is refused
    // (validated at 5 s of age, against the current clock of the token).
    let d = tokened_hello(&token, 1501);
    let late = Time::new(t(250).instant, UNIX0 + 5);
    assert_eq!(
        server
            .handle_datagram(late, addr(50), &d, &mut r, |_| false)
            .unwrap_err(),
        Error::TokenInvalid
    );
}

/// With `release_early_data_on_hello`, accepted early data is handed over when the
/// ClientHello is accepted, before the server's first flight is even read by the client
/// (a request can be read a round trip sooner; answered only after completion), once: the same ClientHello replayed
/// from another address releases nothing (I10). The completed handshake still says
/// early data was accepted, and does not carry it a second time.
#[test]
fn i10_early_data_released_at_client_hello_acceptance_at_most_once() {
    let mut r = rng(1600);
    let mut scfg = server_config();
    scfg.release_early_data_on_hello = true;
    let mut server = Server::new(scfg, &mut r);
    let ticket = first_ticket(&mut server, &mut r);
    assert!(server.poll_early_data().is_none(), "no early data yet");
    let mut cfg = client_config(true);
    cfg.ticket = Some(ticket);
    cfg.early_data = b"GET /now".to_vec();
    let mut client = Client::new(cfg, &mut r, t(5)).unwrap();
    let hello = drain_client(&mut client);
    for d in &hello {
        server
            .handle_datagram(t(5), addr(60), d, &mut r, |_| false)
            .unwrap();
    }
    let released = server
        .poll_early_data()
        .expect("released on the ClientHello");
    assert_eq!(released.data.as_slice(), b"GET /now");
    assert_eq!(released.from, addr(60));
    assert!(server.poll_early_data().is_none());
    // A replay of the ClientHello from elsewhere: refused by the anti-replay store.
    for d in &hello {
        let _ = server.handle_datagram(t(5), addr(61), d, &mut r, |_| false);
    }
    assert!(server.poll_early_data().is_none());
    assert_eq!(server.stats().early.replayed, 1);
    assert_eq!(server.stats().early.accepted, 1);
    let mut est = None;
    while let Some(tx) = server.poll_transmit() {
        if tx.dst == addr(60) {
            let _ = client.handle(t(5), &tx.payload, &mut r);
        }
    }
    for d in drain_client(&mut client) {
        if let Some(e) = server
            .handle_datagram(t(5), addr(60), &d, &mut r, |_| false)
            .unwrap()
        {
            est = Some(e);
        }
    }
    let s = est.unwrap();
    assert_eq!(s.session_id, released.session_id);
    assert!(s.early_data_accepted && s.early_data.is_none());
    assert!(client.into_established().unwrap().early_data_accepted);
}

mod fleet;
