//! The handshake under a network attacker: the real sans-IO
//! `phantom_handshake::{Client, Server}` exchange flights over a network the attacker
//! owns.
//!
//! **Parties.** The client `C` pins the server `S`'s long-term key and either holds its
//! verified certificate (KEMTLS-PDK, one round trip) or not (full mode: `S` sends its
//! certificate, `C` verifies it against the pinned key, two round trips), offering
//! AES-256-GCM then ChaCha20-Poly1305. `S` is a real [`Server`] with both suites. The attacker runs two
//! real servers of its own, with its own long-term key: `M`, a full server (what an
//! impersonator answers) and `Q`, a server that demands a Retry (a Retry bound to the
//! ClientHello it saw, with a token `S` never issued); and a forger `F` that answers a
//! ClientHello with an unauthenticated Mismatch refusal ("no common suite", listing only a suite code the client does not know)
//! bound to it, built byte by byte from the wire format (docs/PROTOCOL.md), which is
//! what an attacker without `S`'s keys can build (a real server refuses to build one for
//! a client whose offer it shares).
//!
//! **Network.** Every flight any party sends (the datagrams one input produced) joins the
//! attacker's knowledge. An *honest* step delivers a flight once to its addressee (a
//! client flight to `S` from the client's address, a server flight addressed to the
//! client to `C`), in any order or never (drop). An *attacker* step, of which there is a
//! budget, delivers any known flight to any party: again (duplicate, replay), to the
//! wrong party, to `S` from a spoofed address `X`, to `M` or `R` (whose answers then
//! join the knowledge, so the attacker can forward an impersonator's or a forger's
//! flight to `C`). In the liveness configuration there is no attacker; the network may
//! drop a bounded number of flights and duplicate one, and a party's retransmission timer
//! fires only when no flight is in transit (fairness: the timeout exceeds the round trip).
//! The liveness property is stateright's `eventually`, checked on every path to a
//! terminal state; the space is finite (drops, duplicates and retransmissions are
//! bounded) and explored whole. stateright can miss an `eventually` counterexample where
//! two paths join in one state with different histories; completion here is monotone
//! (a completed side stays completed) and part of the state, so joined paths agree.
//!
//! **State.** `Client` and `Server` are not `Clone` and their state is not observable in
//! full (reassembly buffers, half-open tables), so a state is the pool of flights plus,
//! per party, the log of what it was given; hashing covers all of it (no projection is
//! claimed complete). Each transition rebuilds the one party it touches by replaying its
//! log with the same seeded RNG and the same clock, which reproduces it bit for bit (I9);
//! long-term keys, certificates and the resumption ticket are computed once per process.
//!
//! **Abstraction.** The cryptography is the real one (no symbolic abstraction): an
//! attacker's forgery is whatever a server without `S`'s static secret computes. The
//! unit of delivery is a flight, not a datagram: fragment-level loss and reordering
//! inside a flight are left to the handshake crate's reassembly tests and fuzz target.
//! The session-layer rule that a completed client re-sends its last flight when a
//! handshake datagram arrives is modelled in the client's wrapper.

use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use phantom_crypto::Suite;
use phantom_handshake::{
    Client, ClientConfig, Error as HsError, HANDSHAKE_VERSION, HybridSigningKey,
    HybridVerifyingKey, Progress, ResumptionTicket, Server, ServerConfig, ServerIdentity, Time,
    VerifiedCertificate,
};
use phantom_handshake::{Datagram, Fragment};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest as _, Sha256};
use stateright::{Model, Property};

/// A fault planted in the model's wrappers around the real types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeMutation {
    /// None.
    None,
    /// The client is configured with the impersonator's key and certificate instead of
    /// the pinned server's (it "accepts an unpinned key").
    UnpinnedKey,
    /// On a Mismatch refusal the client starts again without its most preferred suite
    /// (the insecure "downgrade dance").
    FallbackOnMismatch,
    /// The client reports the suite it preferred instead of the one negotiated; the
    /// server supports only the second suite.
    ClientAssumesPreferredSuite,
    /// The server can restart, and a restart loses the anti-replay store but keeps the
    /// ticket key.
    RestartForgetsAntiReplay,
    /// The client's retransmission timer never fires.
    NoRetransmission,
}

/// The model's configuration.
#[derive(Debug, Clone)]
pub struct HandshakeModel {
    /// Attacker steps allowed (0: no attacker).
    pub attacker_steps: u8,
    /// Flights the network may drop in the liveness configuration (0 otherwise: with an
    /// attacker, a drop is simply a flight never delivered).
    pub drops: u8,
    /// Flights the network may duplicate in the liveness configuration.
    pub duplicates: u8,
    /// The client resumes with a ticket from an earlier session with `S` and sends early
    /// data.
    pub early_data: bool,
    /// The client holds the server's verified certificate (KEMTLS-PDK, one round trip);
    /// without it the server sends its certificate, the client verifies it against the
    /// pinned key, and the handshake takes two round trips.
    pub pdk: bool,
    /// The planted fault.
    pub mutation: HandshakeMutation,
    /// The instant the model's clock starts at (the crate reads no clock itself).
    pub base: Instant,
}

impl HandshakeModel {
    /// Safety configuration: 1-RTT PDK handshake, `steps` attacker steps; the clock
    /// starts at `base`.
    #[must_use]
    pub fn attacked(steps: u8, base: Instant) -> Self {
        Self {
            base,
            attacker_steps: steps,
            drops: 0,
            duplicates: 0,
            early_data: false,
            pdk: true,
            mutation: HandshakeMutation::None,
        }
    }

    /// Resumption with early data and `steps` attacker steps.
    #[must_use]
    pub fn early(steps: u8, base: Instant) -> Self {
        Self {
            early_data: true,
            ..Self::attacked(steps, base)
        }
    }

    /// Full mode (no cached certificate: two round trips, the client verifies the
    /// certificate against the pinned key) with `steps` attacker steps.
    #[must_use]
    pub fn full(steps: u8, base: Instant) -> Self {
        Self {
            pdk: false,
            ..Self::attacked(steps, base)
        }
    }

    /// Liveness configuration: no attacker, `drops` lost flights and one duplicate.
    #[must_use]
    pub fn lossy(drops: u8, base: Instant) -> Self {
        Self {
            base,
            attacker_steps: 0,
            drops,
            duplicates: 1,
            early_data: false,
            pdk: true,
            mutation: HandshakeMutation::None,
        }
    }

    /// The same configuration with `mutation` planted.
    #[must_use]
    pub fn with(mut self, mutation: HandshakeMutation) -> Self {
        self.mutation = mutation;
        self
    }

    fn lossy_mode(&self) -> bool {
        self.attacker_steps == 0
    }
}

/// Who sent a flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// The client.
    Client,
    /// The pinned server.
    Server,
    /// The attacker's impersonating server.
    Mitm,
    /// The attacker's forger: answers a ClientHello with an unauthenticated Mismatch
    /// refusal bound to it, built byte by byte from the wire format.
    Forger,
    /// The attacker's server that demands a Retry (forges Retries with tokens `S`
    /// never issued).
    Retrier,
}

/// Where a flight is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// To the client.
    Client,
    /// To `S`, from the client's address.
    Server,
    /// To `S`, from a spoofed address.
    ServerSpoofed,
    /// To the impersonator.
    Mitm,
    /// To the forger.
    Forger,
    /// To the retrier.
    Retrier,
}

/// A flight: the datagrams one input made a party send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Flight {
    /// The sender.
    pub origin: Party,
    /// True if addressed to the client's address (server flights answering it, and
    /// every client flight is addressed to the server).
    pub to_client_addr: bool,
    dgs: Arc<Vec<Vec<u8>>>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HsAction {
    /// Deliver pool flight `n` to `to`.
    Deliver(usize, Target),
    /// The network loses in-transit flight `n` (liveness configuration).
    Drop(usize),
    /// The network delivers in-transit flight `n` and keeps a copy (liveness).
    Duplicate(usize),
    /// A party's retransmission timer fires (only with nothing in transit).
    Timeout(Party),
    /// `S` restarts (only under [`HandshakeMutation::RestartForgetsAntiReplay`]).
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Input {
    Flight(usize, SocketAddr),
    Timeout,
    Restart,
}

/// The negotiated parameters a side reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Agreed {
    /// Version.
    pub version: u8,
    /// Suite.
    pub suite: Suite,
    /// Session id.
    pub session_id: [u8; 32],
    /// Hash-free fingerprint of both traffic secrets (their first 8 bytes each): enough
    /// to tell two key schedules apart without keeping secrets in the state.
    pub keys: [u8; 16],
    /// Early data delivered with this completion.
    pub early_data: bool,
}

/// A state (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HsState {
    /// Every flight sent so far.
    pub pool: Vec<Flight>,
    /// Honest deliveries still owed (liveness: flights in transit).
    pub in_transit: Vec<usize>,
    logs: [Vec<Input>; 5],
    /// Attacker steps used.
    pub attacker_used: u8,
    /// Drops and duplicates used.
    pub drops_used: u8,
    /// Duplicates used.
    pub dups_used: u8,
    /// Honest deliveries done, as (flight, target).
    honest_done: Vec<(usize, Target)>,
    /// The client's completion, and the party whose flight completed it.
    pub client_done: Option<(Agreed, Party)>,
    /// The client failed (typed error); `Some(true)` if by a Mismatch.
    pub client_failed: Option<bool>,
    /// Every completion at `S`.
    pub server_done: Vec<Agreed>,
    /// Early data accepted by `S` (CH-time acceptances, summed over restarts).
    pub early_accepted: u64,
    /// Server deadlines pending per party (liveness timers).
    timers: [bool; 5],
}

const UNIX: u64 = 1_750_000_000;
const ADDR_C: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    5000,
);
const ADDR_X: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66)),
    5000,
);

/// Long-term keys, certificates and a ticket, computed once.
struct Fixture {
    server_id: ServerIdentity,
    server_cert: VerifiedCertificate,
    server_vk: HybridVerifyingKey,
    mitm_id: ServerIdentity,
    mitm_cert: VerifiedCertificate,
    mitm_vk: HybridVerifyingKey,
    ticket: Option<ResumptionTicket>,
}

const SERVER_SEED: u64 = 2;

fn fixture(base: Instant) -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        #[expect(clippy::expect_used, reason = "fixed test fixture; cannot fail")]
        build_fixture(base).expect("handshake fixture")
    })
}

fn build_fixture(base: Instant) -> Result<Fixture, crate::Error> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let sk = HybridSigningKey::generate(&mut rng);
    let server_vk = sk.verifying_key();
    let server_id = ServerIdentity::generate(&sk, &mut rng, UNIX + 86_400)?;
    let server_cert = server_id.certificate().verify(&server_vk, UNIX)?;
    let msk = HybridSigningKey::generate(&mut rng);
    let mitm_vk = msk.verifying_key();
    let mitm_id = ServerIdentity::generate(&msk, &mut rng, UNIX + 86_400)?;
    let mitm_cert = mitm_id.certificate().verify(&mitm_vk, UNIX)?;
    let mut f = Fixture {
        server_id,
        server_cert,
        server_vk,
        mitm_id,
        mitm_cert,
        mitm_vk,
        ticket: None,
    };
    // An earlier session with S (a server built from the same seed has the same ticket
    // key), to take a ticket from.
    let time = Time::new(base, UNIX);
    let mut server = Server::new(
        server_config(&f, false),
        &mut ChaCha20Rng::seed_from_u64(SERVER_SEED),
    );
    let mut crng = ChaCha20Rng::seed_from_u64(9);
    let mut cfg = ClientConfig::new(f.server_vk.clone());
    cfg.certificate = Some(f.server_cert.clone());
    let mut client = Client::new(cfg, &mut crng, time)?;
    let mut srng = ChaCha20Rng::seed_from_u64(10);
    for _ in 0..8 {
        while let Some(d) = client.poll_transmit() {
            let _ = server.handle_datagram(time, ADDR_C, &d, &mut srng, |_| false)?;
        }
        while let Some(t) = server.poll_transmit() {
            let _ = client.handle(time, &t.payload, &mut crng)?;
        }
        if client.is_complete() {
            break;
        }
    }
    f.ticket = client.into_established()?.resumption_ticket;
    Ok(f)
}

fn server_config(f: &Fixture, only_second_suite: bool) -> ServerConfig {
    let mut c = ServerConfig::new(f.server_id.clone());
    c.suites = if only_second_suite {
        vec![Suite::ChaCha20Poly1305]
    } else {
        vec![Suite::Aes256Gcm, Suite::ChaCha20Poly1305]
    };
    c
}

/// The suites the client offers, most preferred first.
const OFFER: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];

fn agreed(e: &phantom_handshake::Established) -> Agreed {
    let mut keys = [0u8; 16];
    for (d, s) in keys.iter_mut().zip(
        e.c2s.dangerously_expose()[..8]
            .iter()
            .chain(&e.s2c.dangerously_expose()[..8]),
    ) {
        *d = *s;
    }
    Agreed {
        version: e.version,
        suite: e.suite,
        session_id: e.session_id.0,
        keys,
        early_data: e.early_data.is_some(),
    }
}

/// What replaying a party produced.
#[derive(Default)]
struct Run {
    /// Flights produced by the last input (one per destination).
    out: Vec<(Vec<Vec<u8>>, bool)>,
    client_done: Option<Agreed>,
    client_failed: Option<bool>,
    server_done: Vec<Agreed>,
    early_accepted: u64,
    timer: bool,
}

impl HandshakeModel {
    fn time(&self, ms: u64) -> Time {
        Time::new(self.base + Duration::from_millis(ms), UNIX)
    }

    fn client_config(&self, suites: Vec<Suite>) -> ClientConfig {
        let f = fixture(self.base);
        let (vk, cert) = if self.mutation == HandshakeMutation::UnpinnedKey {
            (f.mitm_vk.clone(), f.mitm_cert.clone())
        } else {
            (f.server_vk.clone(), f.server_cert.clone())
        };
        let mut cfg = ClientConfig::new(vk);
        cfg.certificate = self.pdk.then_some(cert);
        cfg.suites = suites;
        if self.early_data {
            cfg.ticket = f.ticket.clone();
            cfg.early_data = b"early request".to_vec();
        }
        cfg
    }

    /// Replays the client over `log`; `out` is what its last input made it send.
    fn run_client(&self, pool: &[Flight], log: &[Input]) -> Result<Run, crate::Error> {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut now_ms = 0u64;
        let mut suites = OFFER.to_vec();
        let mut client = Some(Client::new(
            self.client_config(suites.clone()),
            &mut rng,
            self.time(0),
        )?);
        let mut run = Run::default();
        let mut last_flight: Vec<Vec<u8>> = Vec::new();
        let drain = |c: &mut Client| {
            let mut v = Vec::new();
            while let Some(d) = c.poll_transmit() {
                v.push(d);
            }
            v
        };
        if let Some(c) = client.as_mut() {
            run.out = vec![(drain(c), false)];
        }
        for input in log {
            let mut sent = Vec::new();
            match input {
                Input::Flight(n, _) => {
                    let Some(f) = pool.get(*n) else { continue };
                    for d in f.dgs.iter() {
                        if run.client_done.is_some() {
                            // Session-layer rule: a handshake datagram after completion
                            // makes the client send its last flight again.
                            sent.extend(last_flight.iter().cloned());
                            continue;
                        }
                        let Some(c) = client.as_mut() else { continue };
                        match c.handle(self.time(now_ms), d, &mut rng) {
                            Ok(Progress::Complete) => {
                                let mine = drain(c);
                                sent.extend(mine.iter().cloned());
                                last_flight = mine;
                                if let Some(c) = client.take() {
                                    let mut a = agreed(&c.into_established()?);
                                    if self.mutation
                                        == HandshakeMutation::ClientAssumesPreferredSuite
                                    {
                                        a.suite = suites.first().copied().unwrap_or(a.suite);
                                    }
                                    run.client_done = Some(a);
                                }
                            }
                            Ok(Progress::Pending) | Err(HsError::Malformed(_)) => {
                                sent.extend(drain(c));
                            }
                            Err(
                                HsError::SuiteMismatch { .. } | HsError::VersionMismatch { .. },
                            ) if self.mutation == HandshakeMutation::FallbackOnMismatch
                                && suites.len() > 1 =>
                            {
                                // The planted defect: start again with weaker parameters.
                                suites.remove(0);
                                let mut fresh = Client::new(
                                    self.client_config(suites.clone()),
                                    &mut rng,
                                    self.time(now_ms),
                                )?;
                                sent.extend(drain(&mut fresh));
                                client = Some(fresh);
                            }
                            Err(
                                HsError::SuiteMismatch { .. } | HsError::VersionMismatch { .. },
                            ) => {
                                run.client_failed = Some(true);
                                client = None;
                            }
                            Err(_) => {
                                sent.extend(drain(c));
                                // Failed (terminal) or a dropped datagram (state kept).
                                if c.poll_timeout().is_none() {
                                    run.client_failed = Some(false);
                                    client = None;
                                }
                            }
                        }
                    }
                }
                Input::Timeout => {
                    if let Some(c) = client.as_mut()
                        && self.client_timeout(c, &mut now_ms, &mut sent)
                    {
                        run.client_failed = Some(false);
                        client = None;
                    }
                }
                Input::Restart => {}
            }
            run.out = vec![(sent, false)];
        }
        run.timer = client.as_ref().is_some_and(|c| c.poll_timeout().is_some())
            && self.mutation != HandshakeMutation::NoRetransmission;
        Ok(run)
    }

    /// Fires the client's retransmission timer at its deadline; true if the handshake
    /// timed out.
    fn client_timeout(&self, c: &mut Client, now_ms: &mut u64, sent: &mut Vec<Vec<u8>>) -> bool {
        if let Some(t) = c.poll_timeout() {
            *now_ms = (*now_ms).max(millis_since(self.base, t));
        }
        let failed = c.handle_timeout(self.time(*now_ms)).is_err();
        while let Some(d) = c.poll_transmit() {
            sent.push(d);
        }
        failed
    }

    /// Replays a server (`S`, `M` or `Q`) over `log`.
    fn run_server(
        &self,
        party: Party,
        pool: &[Flight],
        log: &[Input],
    ) -> Result<Run, crate::Error> {
        let f = fixture(self.base);
        let config = || match party {
            Party::Mitm => ServerConfig::new(f.mitm_id.clone()),
            Party::Retrier => {
                let mut c = ServerConfig::new(f.mitm_id.clone());
                c.require_retry = true;
                c
            }
            _ => server_config(
                f,
                self.mutation == HandshakeMutation::ClientAssumesPreferredSuite,
            ),
        };
        // S is built from the seed the ticket's issuer had (same ticket key); the
        // attacker's servers have their own keys.
        let seed = match party {
            Party::Mitm => SERVER_SEED + 1,
            Party::Retrier => SERVER_SEED + 3,
            _ => SERVER_SEED,
        };
        let mut server = Server::new(config(), &mut ChaCha20Rng::seed_from_u64(seed));
        let mut rng = ChaCha20Rng::seed_from_u64(seed + 100);
        let mut now_ms = 0u64;
        let mut run = Run::default();
        let mut early_before = 0u64;
        for input in log {
            run.out.clear();
            match input {
                Input::Flight(n, from) => {
                    let Some(fl) = pool.get(*n) else { continue };
                    for d in fl.dgs.iter() {
                        if let Ok(Some(est)) =
                            server.handle_datagram(self.time(now_ms), *from, d, &mut rng, |_| false)
                        {
                            run.server_done.push(agreed(&est));
                        }
                    }
                }
                Input::Timeout => {
                    if let Some(t) = server.poll_timeout() {
                        now_ms = now_ms.max(millis_since(self.base, t));
                    }
                    server.handle_timeout(self.time(now_ms));
                }
                Input::Restart => {
                    early_before += server.stats().early_accepted;
                    server = Server::new(config(), &mut ChaCha20Rng::seed_from_u64(seed));
                }
            }
            let mut to_c = Vec::new();
            let mut to_x = Vec::new();
            while let Some(t) = server.poll_transmit() {
                if t.dst == ADDR_C {
                    to_c.push(t.payload);
                } else {
                    to_x.push(t.payload);
                }
            }
            run.out = vec![(to_c, true), (to_x, false)];
        }
        run.early_accepted = early_before + server.stats().early_accepted;
        run.timer = server.poll_timeout().is_some();
        Ok(run)
    }

    /// The forger: for every ClientHello it is given, an unauthenticated Mismatch.
    fn run_forger(pool: &[Flight], log: &[Input]) -> Run {
        let mut run = Run::default();
        if let Some(Input::Flight(n, _)) = log.last()
            && let Some(f) = pool.get(*n)
            && let Some(dg) = forge_mismatch(&f.dgs)
        {
            run.out = vec![(vec![dg], true)];
        }
        run
    }

    fn index(p: Party) -> usize {
        match p {
            Party::Client => 0,
            Party::Server => 1,
            Party::Mitm => 2,
            Party::Forger => 3,
            Party::Retrier => 4,
        }
    }

    fn honest(f: &Flight, to: Target) -> bool {
        match to {
            Target::Server => f.origin == Party::Client,
            Target::Client => f.origin == Party::Server && f.to_client_addr,
            _ => false,
        }
    }

    fn step(&self, last: &HsState, action: HsAction) -> Result<Option<HsState>, crate::Error> {
        let mut s = last.clone();
        let (party, input) = match action {
            HsAction::Deliver(n, to) => {
                let Some(f) = s.pool.get(n) else {
                    return Ok(None);
                };
                if Self::honest(f, to) && !s.honest_done.contains(&(n, to)) {
                    s.honest_done.push((n, to));
                    s.in_transit.retain(|m| *m != n);
                } else if self.lossy_mode() {
                    return Ok(None);
                } else {
                    s.attacker_used += 1;
                }
                target_input(n, to)
            }
            HsAction::Duplicate(n) => {
                s.dups_used += 1;
                let to = match s.pool.get(n).map(|f| f.origin) {
                    Some(Party::Client) => Target::Server,
                    _ => Target::Client,
                };
                target_input(n, to)
            }
            HsAction::Drop(n) => {
                s.drops_used += 1;
                s.in_transit.retain(|m| *m != n);
                return Ok(Some(s));
            }
            HsAction::Timeout(p) => (p, Input::Timeout),
            HsAction::Restart => (Party::Server, Input::Restart),
        };
        let i = Self::index(party);
        if let Some(log) = s.logs.get_mut(i) {
            log.push(input);
        }
        let log = s.logs.get(i).cloned().unwrap_or_default();
        let run = match party {
            Party::Client => self.run_client(&s.pool, &log)?,
            Party::Forger => Self::run_forger(&s.pool, &log),
            p => self.run_server(p, &s.pool, &log)?,
        };
        match party {
            Party::Client => {
                if s.client_done.is_none()
                    && let Some(a) = run.client_done
                {
                    let by = match action {
                        HsAction::Deliver(n, _) | HsAction::Duplicate(n) => {
                            s.pool.get(n).map_or(Party::Client, |f| f.origin)
                        }
                        _ => Party::Client,
                    };
                    s.client_done = Some((a, by));
                }
                s.client_failed = run.client_failed;
            }
            Party::Server => {
                s.server_done = run.server_done;
                s.early_accepted = run.early_accepted;
            }
            _ => {}
        }
        if let Some(t) = s.timers.get_mut(i) {
            *t = run.timer;
        }
        for (dgs, to_client_addr) in run.out {
            if dgs.is_empty() {
                continue;
            }
            let flight = Flight {
                origin: party,
                to_client_addr: to_client_addr || party == Party::Client,
                dgs: Arc::new(dgs),
            };
            let n = match s.pool.iter().position(|f| *f == flight) {
                Some(n) => n,
                None => {
                    s.pool.push(flight);
                    s.pool.len() - 1
                }
            };
            if !s.in_transit.contains(&n)
                && s.pool.get(n).is_some_and(|f| {
                    (f.origin == Party::Client) || (f.origin == Party::Server && f.to_client_addr)
                })
            {
                s.in_transit.push(n);
                // A flight sent again is owed again.
                let to = if party == Party::Client {
                    Target::Server
                } else {
                    Target::Client
                };
                s.honest_done.retain(|d| *d != (n, to));
            }
        }
        Ok(Some(s))
    }
}

/// A suite code no client offers.
const UNKNOWN_SUITE: u8 = 0x7f;

/// Reassembles message 0 (the ClientHello) from `dgs` and builds a Mismatch refusal
/// bound to it: `type 5, reason 2 (suite), versions [1], suites [0x7f] (none the client
/// offers), SHA-256(ClientHello), no MAC`, as fragment 0 of a datagram whose token field is the ClientHello's echo (the
/// first 16 bytes of its hash).
fn forge_mismatch(dgs: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut hello: Vec<u8> = Vec::new();
    for d in dgs {
        let dg = Datagram::parse(d).ok()?;
        for f in dg.fragments.iter().filter(|f| f.msg_seq == 0) {
            if hello.len() < f.total_len {
                hello.resize(f.total_len, 0);
            }
            hello
                .get_mut(f.offset..f.offset + f.data.len())?
                .copy_from_slice(f.data);
        }
    }
    if hello.is_empty() || hello.first() != Some(&1) {
        return None;
    }
    let hash: [u8; 32] = Sha256::digest(&hello).into();
    let mut msg = vec![5u8, 2, 1, HANDSHAKE_VERSION, 1, UNKNOWN_SUITE];
    msg.extend_from_slice(&hash);
    msg.push(0);
    let mut out = vec![phantom_wire::HANDSHAKE_MARKER, 16];
    out.extend_from_slice(hash.get(..16)?);
    Fragment {
        msg_seq: 0,
        total_len: msg.len(),
        offset: 0,
        data: &msg,
    }
    .encode(&mut out);
    Some(out)
}

fn millis_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX)
}

fn target_input(n: usize, to: Target) -> (Party, Input) {
    match to {
        Target::Client => (Party::Client, Input::Flight(n, ADDR_C)),
        Target::Server => (Party::Server, Input::Flight(n, ADDR_C)),
        Target::ServerSpoofed => (Party::Server, Input::Flight(n, ADDR_X)),
        Target::Mitm => (Party::Mitm, Input::Flight(n, ADDR_C)),
        Target::Forger => (Party::Forger, Input::Flight(n, ADDR_C)),
        Target::Retrier => (Party::Retrier, Input::Flight(n, ADDR_C)),
    }
}

impl Model for HandshakeModel {
    type State = HsState;
    type Action = HsAction;

    fn init_states(&self) -> Vec<HsState> {
        let mut s = HsState {
            pool: Vec::new(),
            in_transit: Vec::new(),
            logs: Default::default(),
            attacker_used: 0,
            drops_used: 0,
            dups_used: 0,
            honest_done: Vec::new(),
            client_done: None,
            client_failed: None,
            server_done: Vec::new(),
            early_accepted: 0,
            timers: [false; 5],
        };
        match self.run_client(&s.pool, &[]) {
            Ok(run) => {
                for (dgs, _) in run.out {
                    s.pool.push(Flight {
                        origin: Party::Client,
                        to_client_addr: true,
                        dgs: Arc::new(dgs),
                    });
                    s.in_transit.push(0);
                }
                s.timers[0] = run.timer;
            }
            Err(_) => s.client_failed = Some(false),
        }
        vec![s]
    }

    fn actions(&self, s: &HsState, actions: &mut Vec<HsAction>) {
        if self.lossy_mode() {
            for &n in &s.in_transit {
                let to = match s.pool.get(n).map(|f| f.origin) {
                    Some(Party::Client) => Target::Server,
                    _ => Target::Client,
                };
                actions.push(HsAction::Deliver(n, to));
                if s.drops_used < self.drops {
                    actions.push(HsAction::Drop(n));
                }
                if s.dups_used < self.duplicates {
                    actions.push(HsAction::Duplicate(n));
                }
            }
            if s.in_transit.is_empty() {
                for (p, on) in [Party::Client, Party::Server].into_iter().zip(s.timers) {
                    if on {
                        actions.push(HsAction::Timeout(p));
                    }
                }
            }
            return;
        }
        for (n, f) in s.pool.iter().enumerate() {
            for to in [
                Target::Client,
                Target::Server,
                Target::ServerSpoofed,
                Target::Mitm,
                Target::Forger,
                Target::Retrier,
            ] {
                let honest = Self::honest(f, to) && !s.honest_done.contains(&(n, to));
                if honest || s.attacker_used < self.attacker_steps {
                    actions.push(HsAction::Deliver(n, to));
                }
            }
        }
        if self.mutation == HandshakeMutation::RestartForgetsAntiReplay
            && s.logs.get(1).is_some_and(|l| !l.contains(&Input::Restart))
        {
            actions.push(HsAction::Restart);
        }
    }

    fn next_state(&self, last: &HsState, action: HsAction) -> Option<HsState> {
        match self.step(last, action) {
            Ok(s) => s,
            Err(_) => {
                let mut s = last.clone();
                s.client_failed = Some(false);
                Some(s)
            }
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut v = vec![
            Property::always(PINNED_SERVER_ONLY, |_, s: &HsState| {
                s.client_done
                    .as_ref()
                    .is_none_or(|(_, by)| *by == Party::Server)
            }),
            Property::always(AGREEMENT, |_, s: &HsState| {
                // Checked in every state, so as soon as both ends have completed.
                s.server_done.iter().all(|a| {
                    s.client_done.as_ref().is_none_or(|(c, _)| {
                        c.version == a.version
                            && c.suite == a.suite
                            && c.session_id == a.session_id
                            && c.keys == a.keys
                    })
                })
            }),
            Property::always(NO_DOWNGRADE, |m: &HandshakeModel, s: &HsState| {
                // The best the server supports, by the client's preference.
                let server_suites = server_config(
                    fixture(m.base),
                    m.mutation == HandshakeMutation::ClientAssumesPreferredSuite,
                )
                .suites;
                let rank = |x: Suite| OFFER.iter().position(|o| *o == x);
                let best = OFFER.iter().copied().find(|o| server_suites.contains(o));
                match &s.client_done {
                    Some((a, _)) => {
                        a.version == HANDSHAKE_VERSION
                            && s.client_failed.is_none()
                            && best.is_some_and(|b| rank(a.suite) <= rank(b))
                    }
                    None => true,
                }
            }),
            Property::always(EARLY_DATA_ONCE, |_, s: &HsState| {
                s.early_accepted <= 1 && s.server_done.iter().filter(|a| a.early_data).count() <= 1
            }),
            Property::sometimes(BOTH_COMPLETE, |_, s: &HsState| {
                s.client_done.is_some() && !s.server_done.is_empty()
            }),
            Property::sometimes(EARLY_DATA_DELIVERED, |_, s: &HsState| {
                s.server_done.iter().any(|a| a.early_data)
            }),
            Property::sometimes(REFUSED_BY_MISMATCH, |_, s: &HsState| {
                s.client_failed == Some(true)
            }),
            Property::sometimes(RETRY_FOLLOWED, |_, s: &HsState| {
                s.pool.iter().any(|f| {
                    f.origin == Party::Client
                        && f.dgs
                            .first()
                            .and_then(|d| Datagram::parse(d).ok())
                            .is_some_and(|d| !d.token.is_empty())
                })
            }),
        ];
        if self.lossy_mode() {
            v.push(Property::eventually(COMPLETES, |_, s: &HsState| {
                s.client_done.is_some() && !s.server_done.is_empty()
            }));
        }
        v
    }
}

/// `always`: the client completes only on a flight of the server holding the pinned key.
pub const PINNED_SERVER_ONLY: &str = "client completes only with the pinned server";
/// `always`: once both ends have completed, every completion at the server has the
/// client's version, suite, session id and keys.
pub const AGREEMENT: &str = "both ends agree on version, suite, session id and keys";
/// `always`: a completed client has the version it offered and its most preferred suite
/// the server supports; a Retry or Mismatch never lowers it.
pub const NO_DOWNGRADE: &str = "no downgrade";
/// `always`: early data is accepted at most once per ticket by the server.
pub const EARLY_DATA_ONCE: &str = "early data at most once per ticket";
/// `eventually` (liveness configuration): both ends complete.
pub const COMPLETES: &str = "handshake completes";
/// `sometimes`: both ends complete (the honest run is explored).
pub const BOTH_COMPLETE: &str = "both ends complete";
/// `sometimes`: the server delivers early data.
pub const EARLY_DATA_DELIVERED: &str = "early data delivered";
/// `sometimes`: the client followed a (forged) Retry: it sent a ClientHello with a token.
pub const RETRY_FOLLOWED: &str = "client followed a Retry";
/// `sometimes`: a Mismatch ends the client's handshake.
pub const REFUSED_BY_MISMATCH: &str = "client refused by a Mismatch";
