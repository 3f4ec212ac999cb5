//! Phantom's handshake: a sans-IO client and server that agree on a hybrid post-quantum
//! key (X25519 + ML-KEM-768), authenticate the server against a pinned hybrid identity
//! (Ed25519 + ML-DSA-65) with KEM-based authentication (KEMTLS), negotiate the version
//! and AEAD suite without downgrade, choose a 256-bit session id, and hand the session
//! its traffic secrets and a resumption ticket.
//!
//! **What it owns.** The message layouts and the fragment/datagram format (messages up to
//! 16 KiB split into ≤ 1200-byte fragments, reassembled in bounded memory, retransmitted
//! on a timer), the HKDF-SHA256 key schedule over a SHA-256 transcript, the long-term
//! keys and certificates ([`HybridSigningKey`], [`HybridVerifyingKey`],
//! [`ServerCertificate`], [`ServerIdentity`]), stateless retry tokens, encrypted
//! resumption tickets with 0-RTT early data, the server's anti-amplification and
//! half-open limits, and fleet keys ([`FleetKey`]: servers sharing one derive the same
//! reset, retry-token, ticket and routing keys, rotating with the wall clock; 0-RTT
//! stays with the server instance that issued the ticket). It also chooses the
//! connection ids each side issues ([`ConnIdGenerator`]: random by default,
//! [`RoutableConnIds`] for a QUIC-LB-style balancer, [`SteeredConnIds`] for worker
//! sockets on one host; PROTOCOL.md §1.4). It does no I/O and reads no clock: bytes and a [`Time`] go in,
//! bytes and an [`Established`] come out, and every random value comes from the caller's
//! RNG (`rand_core::CryptoRng`), so a seeded RNG makes a run reproducible (I9). The
//! optional `aws-lc` feature runs X25519 and ML-KEM-768 on aws-lc-rs instead of
//! RustCrypto (same functions, same wire format, about 3x faster handshakes); aws-lc-rs
//! takes no caller randomness for ML-KEM, so with it ML-KEM key generation and
//! encapsulation draw from aws-lc's own CSPRNG and runs are no longer bit-reproducible.
//!
//! **Invariants upheld.** I1: every parser is total and bounded (typed [`Error`]s, caps
//! on message size, reassembly memory, fragments per datagram and half-open handshakes);
//! nothing is established unless both Finished MACs verify, and early data is released
//! only after its AEAD verifies. I5: the handshake's states are consumed as it advances
//! and its intermediate secrets are zeroized when dropped. I7: before an address is
//! validated the server sends at most three times what it received from it. I8: every
//! secret type zeroizes on drop and prints `<redacted>`; MACs and tokens are compared in
//! constant time. I10: early data is accepted at most once per ticket (a bounded
//! anti-replay store within a ticket-age window; 0-RTT is refused outside it, when the
//! store is full, or on a ticket another server instance issued).

mod backend;
mod client;
mod common;
mod conn_id;
mod error;
mod fleet;
mod fragment;
mod keys;
mod msg;
mod routable;
mod schedule;
mod server;
mod server_config;
mod stats;
mod ticket;
mod token;

#[cfg(test)]
mod tests;

pub(crate) use rand_core::CryptoRng as Rng;

pub use client::{Client, ClientConfig, MIN_CLIENT_HELLO_LEN};
pub use common::{
    Established, HANDSHAKE_VERSION, MAX_EARLY_DATA, Progress, ResumptionHint, ResumptionTicket,
    Time, default_suites,
};
pub use conn_id::{ConnIdGenerator, IssuedConnId, RESET_TOKEN_LEN, RandomConnIds, ResetKey};
pub use error::{CodeList, Error};
pub use fleet::{FleetKey, RoutingKey};
pub use fragment::{
    DATAGRAM_BUDGET, Datagram, ECHO_LEN, FRAGMENT_TYPE, Fragment, INITIAL_RTO, INTEGRITY_TAG_LEN,
    MAX_FLIGHT_RETRANSMITS, MAX_FRAGMENT_DATA, MAX_FRAGMENTS_PER_DATAGRAM, MAX_MESSAGE_LEN,
    MAX_TOKEN_LEN, REASSEMBLY_CAP, add_integrity_tag,
};
pub use keys::{
    ED25519_PUBLIC_LEN, ED25519_SIGNATURE_LEN, HybridSigningKey, HybridVerifyingKey,
    ML_DSA_65_PUBLIC_LEN, ML_DSA_65_SIGNATURE_LEN, ML_KEM_768_CIPHERTEXT_LEN,
    ML_KEM_768_PUBLIC_LEN, ServerCertificate, ServerIdentity, StaticKemKeyPair, StaticKemPublic,
    VerifiedCertificate,
};
pub use routable::{
    MAX_CONFIG_ROTATION, MAX_SERVER_ID_LEN, MAX_WORKERS, MIN_NONCE_LEN, RoutableConnIds,
    STEERING_DRAWS_PER_WORKER, ServerId, SteeredConnIds,
};
pub use server::{AMPLIFICATION_FACTOR, EarlyRelease, Server, ServerConfig, Transmit};
pub use stats::{CredentialStats, EarlyDataStats, HalfOpenStats, ServerStats};
pub use token::{TOKEN_LEN, TOKEN_LIFETIME_SECS};

/// Entry points for the fuzz targets (`fuzz/fuzz_targets/handshake_*.rs`). Not a
/// stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::net::SocketAddr;
    use std::sync::OnceLock;
    use std::time::Instant;

    use sha2::{Digest as _, Sha256};

    use crate::fragment::Reassembler;
    use crate::{
        Client, ClientConfig, HybridSigningKey, Server, ServerConfig, ServerIdentity, Time,
    };

    /// A deterministic RNG for fuzzing (SHA-256 in counter mode). Not for production.
    #[derive(Debug, Clone)]
    pub struct FuzzRng {
        seed: [u8; 32],
        counter: u64,
    }

    impl FuzzRng {
        /// An RNG from a seed.
        #[must_use]
        pub fn new(seed: u64) -> Self {
            Self {
                seed: Sha256::digest(seed.to_be_bytes()).into(),
                counter: 0,
            }
        }
    }

    impl rand_core::TryRng for FuzzRng {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut b = [0u8; 4];
            self.try_fill_bytes(&mut b)?;
            Ok(u32::from_le_bytes(b))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut b = [0u8; 8];
            self.try_fill_bytes(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for chunk in dst.chunks_mut(32) {
                self.counter = self.counter.wrapping_add(1);
                let block: [u8; 32] = Sha256::new()
                    .chain_update(self.seed)
                    .chain_update(self.counter.to_le_bytes())
                    .finalize()
                    .into();
                for (d, s) in chunk.iter_mut().zip(block) {
                    *d = s;
                }
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for FuzzRng {}

    /// `data` with a valid integrity tag appended (so fuzz input reaches the parser
    /// behind the tag check).
    #[must_use]
    pub fn tagged(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        crate::fragment::add_integrity_tag(&mut v);
        v
    }

    /// Parses `data` as a datagram (as it is, and with a valid integrity tag appended),
    /// feeds its fragments to a reassembler, and parses every completed message and
    /// `data` itself as a message. Never panics.
    pub fn parse_all(data: &[u8]) {
        let _ = crate::msg::decode_any(data);
        let _ = crate::ServerCertificate::from_bytes(data);
        let _ = crate::HybridVerifyingKey::from_bytes(data);
        let _ = crate::ResumptionTicket::from_bytes(data);
        let _ = crate::Datagram::parse(data);
        let data = &tagged(data);
        if let Ok(dg) = crate::Datagram::parse(data) {
            if let Some((echo, token)) = dg.retry_parts() {
                assert_eq!(echo.len(), crate::ECHO_LEN, "head echo");
                assert!(!token.is_empty(), "retry token");
            }
            let _ = dg.hello_head();
            let mut r = Reassembler::new();
            for f in &dg.fragments {
                if r.insert(f).is_err() {
                    break;
                }
                assert!(r.buffered() <= crate::REASSEMBLY_CAP, "reassembly cap");
            }
            while let Some(m) = r.pop() {
                let _ = crate::msg::decode_any(&m);
            }
        }
    }

    const UNIX: u64 = 1_750_000_000;

    fn fixed() -> &'static (ServerIdentity, crate::HybridVerifyingKey) {
        static F: OnceLock<(ServerIdentity, crate::HybridVerifyingKey)> = OnceLock::new();
        F.get_or_init(|| {
            let mut rng = FuzzRng::new(1);
            let sk = HybridSigningKey::generate(&mut rng);
            let kem = crate::StaticKemKeyPair::generate(&mut rng);
            #[expect(
                clippy::expect_used,
                reason = "fixed fuzzing fixture; signing cannot fail"
            )]
            let id = ServerIdentity::new(&sk, kem, UNIX + 1000).expect("fixture");
            (id, sk.verifying_key())
        })
    }

    /// Feeds fuzz input to a server built from a fixed seed. Input: a mode byte, then
    /// datagrams each prefixed by a u16 length (each gets a valid integrity tag
    /// appended, unless mode bit 3 is set). Mode bit 0: first deliver a genuine
    /// ClientHello (so the input reaches the ClientFinished state); bit 1: require retry;
    /// bit 2: then a second genuine ClientHello from the same address (two half-open
    /// handshakes there, the first superseded). Checks that the half-open table and the
    /// amplification limit hold.
    pub fn server_datagrams(data: &[u8], now: Instant) {
        let Some((&mode, mut rest)) = data.split_first() else {
            return;
        };
        let (identity, vk) = fixed();
        let mut rng = FuzzRng::new(2);
        let mut cfg = ServerConfig::new(identity.clone());
        cfg.require_retry = mode & 2 != 0;
        cfg.max_half_open = 4;
        let mut server = Server::new(cfg, &mut rng);
        let time = Time::new(now, UNIX);
        let from = SocketAddr::from(([10, 0, 0, 1], 4433));
        let mut received = 0usize;
        for bit in [1u8, 4] {
            if mode & bit == 0 {
                continue;
            }
            let mut ccfg = ClientConfig::new(vk.clone());
            ccfg.certificate = identity.certificate().verify(vk, UNIX).ok();
            if let Ok(mut client) = Client::new(ccfg, &mut rng, time) {
                while let Some(d) = client.poll_transmit() {
                    received += d.len();
                    let _ = server.handle_datagram(time, from, &d, &mut rng, |_| false);
                }
            }
        }
        let mut sent = 0usize;
        for _ in 0..64 {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                break;
            };
            let n = usize::from(u16::from_be_bytes(*len)).min(tail.len());
            let (dg, tail) = tail.split_at(n);
            rest = tail;
            let owned;
            let dg = if mode & 8 == 0 {
                owned = tagged(dg);
                &owned[..]
            } else {
                dg
            };
            received += dg.len();
            let _ = server.handle_datagram(time, from, dg, &mut rng, |_| false);
            assert!(server.half_open() <= 4, "half-open cap");
            while let Some(tx) = server.poll_transmit() {
                sent += tx.payload.len();
            }
            // Before validation (no ClientFinished can be forged), at most 3x.
            assert!(
                sent <= 3 * received + 64,
                "amplification: {sent} for {received}"
            );
        }
        server.handle_timeout(time);
    }
}
