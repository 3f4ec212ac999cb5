//! Path validation and anti-amplification: the server side of a session drives the real
//! [`PathRegistry`] while the client migrates and adds a path, and an attacker replays
//! the client's datagrams from a victim's address.
//!
//! **Parties.** The client starts on address `A` (the handshake's path, registered as
//! validated), may migrate to `B` once and add a second path from `C` once, sends small
//! authenticated datagrams from its current addresses, and answers every PATH_CHALLENGE
//! it receives on one of its addresses with a PATH_RESPONSE from that address. The
//! server runs the session's path rules on top of the registry (below). The attacker
//! sees every client datagram and can deliver any of them again, from its own address
//! (a duplicate) or from the victim `V`, which never answers anything.
//!
//! **Server rules modelled** (the session layer's, stated here because the model
//! re-implements them around the real registry): an authenticated datagram from an
//! unknown address registers a path, counts its bytes
//! ([`PathRegistry::on_authenticated`]) and draws a challenge
//! ([`PathRegistry::issue_challenge`]); a challenge datagram is 1200 bytes, or as many as
//! the amplification budget allows if at least 64, and otherwise waits for more bytes
//! from that address; a PATH_RESPONSE is checked against its own path's challenge
//! ([`PathRegistry::verify_response`]); the session's traffic follows the highest packet
//! number seen, but only onto a validated path (a migration to an unvalidated address
//! waits for its validation); application data goes only where
//! [`PathRegistry::is_validated`] says so, and every send is recorded with
//! [`PathRegistry::on_sent`], which refuses anything past the budget; the retransmission
//! timer resends challenges ([`PathRegistry::poll_retransmit`]) within the budget.
//!
//! **State.** The registry is not `Clone`; a state holds the server's input log and
//! rebuilds the registry and the session rules by replaying it (the challenge RNG is
//! seeded). Hashing covers the logs and the network (no projection is claimed complete).
//!
//! **Abstraction.** Cryptography is symbolic: a datagram is authenticated exactly when
//! the client built it (a replay from another address stays authenticated; an attacker
//! cannot build a new one), and the replay window admits each packet number once (first
//! copy wins, so a spoofed replay may arrive before the original). Datagram sizes are
//! fixed: client datagrams 100 bytes, challenges as above, application data 1200 bytes.
//! Ghost counters, independent of the registry's own, count the bytes the server sent to
//! each address before the client proved it holds that address (a PATH_RESPONSE the
//! client built for a challenge it received on the address, arriving from it).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use phantom_guard::{CHALLENGE_LEN, PathConfig, PathEvent, PathRegistry};
use phantom_wire::PathId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use stateright::{Model, Property};

/// A fault planted in the model's session rules around the real registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathMutation {
    /// None.
    None,
    /// New addresses are registered as already validated (validation skipped).
    SkipValidation,
    /// Challenges are sent at full size whatever the amplification budget.
    IgnoreAmplification,
    /// The session's traffic follows the newest packet at once, validated or not.
    MigrateBeforeValidation,
}

/// The model's configuration.
#[derive(Debug, Clone)]
pub struct PathModel {
    /// Datagrams the client sends (besides its responses).
    pub client_sends: u8,
    /// Attacker deliveries.
    pub attacker_steps: u8,
    /// Application-data sends by the server.
    pub app_sends: u8,
    /// Retransmission-timer firings.
    pub ticks: u8,
    /// The planted fault.
    pub mutation: PathMutation,
    /// Origin of the model's clock.
    pub base: Instant,
}

impl PathModel {
    /// The configuration CI checks.
    #[must_use]
    pub fn new(base: Instant) -> Self {
        Self {
            client_sends: 2,
            attacker_steps: 1,
            app_sends: 1,
            ticks: 1,
            mutation: PathMutation::None,
            base,
        }
    }

    /// The same configuration with `mutation` planted.
    #[must_use]
    pub fn with(mut self, mutation: PathMutation) -> Self {
        self.mutation = mutation;
        self
    }
}

/// Addresses in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    /// The client's original address (the handshake's path).
    A,
    /// The address the client migrates to.
    B,
    /// The client's second path.
    C,
    /// The victim: never the client's, never answers.
    V,
}

impl Addr {
    const ALL: [Addr; 4] = [Addr::A, Addr::B, Addr::C, Addr::V];

    fn socket(self) -> SocketAddr {
        let last = match self {
            Addr::A => 1,
            Addr::B => 2,
            Addr::C => 3,
            Addr::V => 66,
        };
        SocketAddr::from(([192, 0, 2, last], 4000))
    }

    fn path(self) -> PathId {
        PathId(self as u8)
    }
}

/// A client datagram (authenticated: only the client builds these).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientDatagram {
    /// Packet number.
    pub pn: u64,
    /// The address the client sent it from.
    pub from: Addr,
    /// `Some(challenge)` for a PATH_RESPONSE (answering a challenge received on `from`).
    pub response: Option<[u8; CHALLENGE_LEN]>,
}

/// A server datagram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerDatagram {
    /// Destination.
    pub to: Addr,
    /// Size in bytes.
    pub len: u64,
    /// `Some(challenge)` for a PATH_CHALLENGE; `None` for application data.
    pub challenge: Option<[u8; CHALLENGE_LEN]>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathAction {
    /// The client sends a datagram from this address.
    ClientSend(Addr),
    /// The client moves to `B`.
    Migrate,
    /// The client adds a path from `C`.
    AddPath,
    /// Client datagram `n` reaches the server from `from` (honest when `from` is where it
    /// was sent from and for the first time; otherwise an attacker step).
    Deliver(usize, Addr),
    /// Server datagram `n` (a challenge) reaches the client.
    DeliverChallenge(usize),
    /// The server sends application data.
    AppSend,
    /// The retransmission timer fires.
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerInput {
    Datagram(usize, Addr),
    AppSend,
    Tick,
}

/// A state.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathState {
    /// The client's current address.
    pub current: Addr,
    /// True once the client added the path from `C`.
    pub added: bool,
    /// Client datagrams built so far.
    pub sent: Vec<ClientDatagram>,
    client_sends: u8,
    honest_done: Vec<usize>,
    challenges_answered: Vec<usize>,
    attacker_used: u8,
    app_sends: u8,
    ticks: u8,
    log: Vec<ServerInput>,
    /// Everything the server sent (replayed).
    pub out: Vec<ServerDatagram>,
    /// The address the session's traffic goes to.
    pub active: Addr,
    /// Ghost: application data sent to an address the client had not proved.
    pub data_to_unproved: bool,
    /// Ghost: per address, (bytes received, bytes sent before the address was proved).
    pub bytes: BTreeMap<Addr, (u64, u64)>,
    /// Ghost: addresses the client proved.
    pub proved: Vec<Addr>,
}

const CLIENT_DATAGRAM: u64 = 100;
const CHALLENGE_FULL: u64 = 1200;
const CHALLENGE_MIN: u64 = 64;
const APP_DATA: u64 = 1200;

/// The server's session rules around the registry, rebuilt from the input log.
struct Server {
    registry: PathRegistry,
    rng: ChaCha20Rng,
    now: Instant,
    active: Addr,
    highest_pn: Option<u64>,
    pending_migration: Option<Addr>,
    seen_pns: Vec<u64>,
    /// Challenges drawn but not sent yet (no budget).
    unsent: Vec<(Addr, [u8; CHALLENGE_LEN])>,
    out: Vec<ServerDatagram>,
    data_to_unproved: bool,
    bytes: BTreeMap<Addr, (u64, u64)>,
    proved: Vec<Addr>,
}

impl Server {
    fn send(&mut self, to: Addr, len: u64, challenge: Option<[u8; CHALLENGE_LEN]>) {
        let proved = to == Addr::A || self.proved.contains(&to);
        let e = self.bytes.entry(to).or_insert((0, 0));
        if !proved {
            e.1 += len;
            if challenge.is_none() {
                self.data_to_unproved = true;
            }
        }
        self.out.push(ServerDatagram { to, len, challenge });
    }

    fn send_challenge(&mut self, to: Addr, c: [u8; CHALLENGE_LEN], mutation: PathMutation) {
        let budget = self.registry.send_budget(to.path()).map_or(0, |b| match b {
            phantom_guard::SendBudget::Unlimited => u64::MAX,
            phantom_guard::SendBudget::Limited(n) => n,
        });
        let len = if mutation == PathMutation::IgnoreAmplification {
            CHALLENGE_FULL
        } else {
            CHALLENGE_FULL.min(budget)
        };
        if len < CHALLENGE_MIN {
            self.unsent.retain(|(a, _)| *a != to);
            self.unsent.push((to, c));
            return;
        }
        // I7: the registry records (and refuses past the budget); the planted defect
        // ignores its refusal.
        if self.registry.on_sent(to.path(), len).is_ok()
            || mutation == PathMutation::IgnoreAmplification
        {
            self.unsent.retain(|(a, _)| *a != to);
            self.send(to, len, Some(c));
        }
    }
}

impl PathModel {
    fn config() -> PathConfig {
        PathConfig::default()
    }

    fn replay(&self, sent: &[ClientDatagram], log: &[ServerInput]) -> Result<Server, crate::Error> {
        let mut registry = PathRegistry::new(Self::config())?;
        registry.insert_validated(Addr::A.path(), Addr::A.socket(), self.base)?;
        let mut s = Server {
            registry,
            rng: ChaCha20Rng::seed_from_u64(3),
            now: self.base,
            active: Addr::A,
            highest_pn: None,
            pending_migration: None,
            seen_pns: Vec::new(),
            unsent: Vec::new(),
            out: Vec::new(),
            data_to_unproved: false,
            bytes: BTreeMap::new(),
            proved: Vec::new(),
        };
        for input in log {
            match input {
                ServerInput::Datagram(n, from) => {
                    if let Some(d) = sent.get(*n) {
                        self.receive(&mut s, d, *from);
                    }
                }
                ServerInput::AppSend => {
                    let to = s.active;
                    let gate = s.registry.is_validated(to.path())
                        || self.mutation == PathMutation::MigrateBeforeValidation;
                    if gate
                        && (s.registry.on_sent(to.path(), APP_DATA).is_ok()
                            || self.mutation == PathMutation::MigrateBeforeValidation)
                    {
                        s.send(to, APP_DATA, None);
                    }
                }
                ServerInput::Tick => {
                    s.now += Duration::from_secs(2);
                    let now = s.now;
                    for _ in 0..8 {
                        match s.registry.poll_retransmit(now) {
                            Some(PathEvent::Retransmit { path, challenge }) => {
                                if let Some(a) = Addr::ALL.into_iter().find(|a| a.path() == path) {
                                    s.send_challenge(a, *challenge.as_bytes(), self.mutation);
                                }
                            }
                            Some(PathEvent::Failed { .. }) => {}
                            None => break,
                        }
                    }
                }
            }
        }
        Ok(s)
    }

    fn receive(&self, s: &mut Server, d: &ClientDatagram, from: Addr) {
        // I4 (symbolic): the replay window admits a packet number once.
        if s.seen_pns.contains(&d.pn) {
            return;
        }
        s.seen_pns.push(d.pn);
        s.bytes.entry(from).or_insert((0, 0)).0 += CLIENT_DATAGRAM;
        let path = from.path();
        let now = s.now;
        if s.registry.state(path).is_none() {
            let inserted = if self.mutation == PathMutation::SkipValidation {
                s.registry.insert_validated(path, from.socket(), now)
            } else {
                s.registry.insert(path, from.socket(), now)
            };
            if inserted.is_err() {
                return;
            }
            let _ = s.registry.on_authenticated(path, CLIENT_DATAGRAM, now);
            if !s.registry.is_validated(path)
                && let Ok(c) = s.registry.issue_challenge(path, now, &mut s.rng)
            {
                s.send_challenge(from, *c.as_bytes(), self.mutation);
            }
        } else {
            let _ = s.registry.on_authenticated(path, CLIENT_DATAGRAM, now);
            // More budget: a challenge that waited may go now.
            if let Some((_, c)) = s.unsent.iter().find(|(a, _)| *a == from).cloned() {
                s.send_challenge(from, c, self.mutation);
            }
        }
        if let Some(r) = &d.response {
            // Ghost: the client built this response for a challenge it received on
            // `d.from`; arriving from there, it proves the client holds the address.
            if from == d.from && !s.proved.contains(&from) {
                s.proved.push(from);
            }
            if s.registry.verify_response(path, now, r).is_ok() && s.pending_migration == Some(from)
            {
                s.active = from;
                s.pending_migration = None;
            }
        }
        if s.highest_pn.is_none_or(|h| d.pn > h) {
            s.highest_pn = Some(d.pn);
            if s.registry.is_validated(path)
                || self.mutation == PathMutation::MigrateBeforeValidation
            {
                s.active = from;
                s.pending_migration = None;
            } else {
                s.pending_migration = Some(from);
            }
        }
    }

    fn client_addrs(s: &PathState) -> Vec<Addr> {
        let mut v = vec![s.current];
        if s.added {
            v.push(Addr::C);
        }
        v
    }

    fn refresh(&self, s: &mut PathState) {
        match self.replay(&s.sent, &s.log) {
            Ok(server) => {
                s.out = server.out;
                s.active = server.active;
                s.data_to_unproved = server.data_to_unproved;
                s.bytes = server.bytes;
                s.proved = server.proved;
            }
            Err(_) => s.data_to_unproved = true,
        }
    }
}

impl Model for PathModel {
    type State = PathState;
    type Action = PathAction;

    fn init_states(&self) -> Vec<PathState> {
        vec![PathState {
            current: Addr::A,
            added: false,
            sent: Vec::new(),
            client_sends: 0,
            honest_done: Vec::new(),
            challenges_answered: Vec::new(),
            attacker_used: 0,
            app_sends: 0,
            ticks: 0,
            log: Vec::new(),
            out: Vec::new(),
            active: Addr::A,
            data_to_unproved: false,
            bytes: BTreeMap::new(),
            proved: Vec::new(),
        }]
    }

    fn actions(&self, s: &PathState, actions: &mut Vec<PathAction>) {
        if s.client_sends < self.client_sends {
            for a in Self::client_addrs(s) {
                actions.push(PathAction::ClientSend(a));
            }
        }
        if s.current == Addr::A {
            actions.push(PathAction::Migrate);
        }
        if !s.added {
            actions.push(PathAction::AddPath);
        }
        for (n, d) in s.sent.iter().enumerate() {
            // Honest delivery, a duplicate, or a replay from the victim's address.
            for from in [d.from, Addr::V] {
                let honest = from == d.from && !s.honest_done.contains(&n);
                if honest || s.attacker_used < self.attacker_steps {
                    actions.push(PathAction::Deliver(n, from));
                }
            }
        }
        for (n, d) in s.out.iter().enumerate() {
            // The client answers challenges reaching an address it holds (it keeps A
            // after migrating: a multihomed host).
            let holds = match d.to {
                Addr::A => true,
                Addr::B => s.current == Addr::B,
                Addr::C => s.added,
                Addr::V => false,
            };
            if d.challenge.is_some() && holds && !s.challenges_answered.contains(&n) {
                actions.push(PathAction::DeliverChallenge(n));
            }
        }
        if s.app_sends < self.app_sends {
            actions.push(PathAction::AppSend);
        }
        if s.ticks < self.ticks {
            actions.push(PathAction::Tick);
        }
    }

    fn next_state(&self, last: &PathState, action: PathAction) -> Option<PathState> {
        let mut s = last.clone();
        let pn = s.sent.len() as u64;
        match action {
            PathAction::ClientSend(from) => {
                s.client_sends += 1;
                s.sent.push(ClientDatagram {
                    pn,
                    from,
                    response: None,
                });
                return Some(s);
            }
            PathAction::Migrate => {
                s.current = Addr::B;
                return Some(s);
            }
            PathAction::AddPath => {
                s.added = true;
                return Some(s);
            }
            PathAction::DeliverChallenge(n) => {
                let d = s.out.get(n)?.clone();
                s.challenges_answered.push(n);
                s.sent.push(ClientDatagram {
                    pn,
                    from: d.to,
                    response: d.challenge,
                });
                return Some(s);
            }
            PathAction::Deliver(n, from) => {
                let d = s.sent.get(n)?;
                if from == d.from && !s.honest_done.contains(&n) {
                    s.honest_done.push(n);
                } else {
                    s.attacker_used += 1;
                }
                s.log.push(ServerInput::Datagram(n, from));
            }
            PathAction::AppSend => {
                s.app_sends += 1;
                s.log.push(ServerInput::AppSend);
            }
            PathAction::Tick => {
                s.ticks += 1;
                s.log.push(ServerInput::Tick);
            }
        }
        self.refresh(&mut s);
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(DATA_ONLY_VALIDATED, |_, s: &PathState| !s.data_to_unproved),
            Property::always(AMPLIFICATION, |_, s: &PathState| {
                s.bytes
                    .values()
                    .all(|(received, sent_unproved)| *sent_unproved <= 3 * received)
            }),
            Property::always(NO_SPOOFED_MIGRATION, |_, s: &PathState| {
                s.active != Addr::V
                    && !s
                        .out
                        .iter()
                        .any(|d| d.to == Addr::V && d.challenge.is_none())
            }),
            Property::sometimes(MIGRATED, |_, s: &PathState| {
                s.active == Addr::B
                    && s.out
                        .iter()
                        .any(|d| d.to == Addr::B && d.challenge.is_none())
            }),
            Property::sometimes(SECOND_PATH_VALIDATED, |_, s: &PathState| {
                s.proved.contains(&Addr::C)
            }),
            Property::sometimes(VICTIM_CHALLENGED, |_, s: &PathState| {
                s.out.iter().any(|d| d.to == Addr::V)
            }),
        ]
    }
}

/// `always` (I7): application data goes only to addresses the client proved.
pub const DATA_ONLY_VALIDATED: &str = "application data only on validated paths";
/// `always` (I7): before an address is proved, it is sent at most 3x what came from it.
pub const AMPLIFICATION: &str = "at most 3x to unvalidated addresses";
/// `always`: the session's traffic never moves to the victim.
pub const NO_SPOOFED_MIGRATION: &str = "spoofed migration never moves traffic";
/// `sometimes`: the client's migration to `B` completes and data follows it.
pub const MIGRATED: &str = "migration to B completes";
/// `sometimes`: the client's second path is validated.
pub const SECOND_PATH_VALIDATED: &str = "second path validated";
/// `sometimes`: the victim receives a challenge (a spoofed replay was explored).
pub const VICTIM_CHALLENGED: &str = "victim challenged";
