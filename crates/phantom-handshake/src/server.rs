//! The server: stateless retry, half-open handshakes, anti-amplification, tickets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut as _, KeyInit as _};
use phantom_crypto::{Suite, TrafficSecret};
use phantom_wire::SessionId;
use zeroize::Zeroizing;

use crate::Rng;
use crate::backend::{KemPublic, XSecret};
use crate::common::{Established, HANDSHAKE_VERSION, Time};
use crate::conn_id::{ConnIdGenerator, IssuedConnId, ResetKey};
use crate::conn_id::{LABEL_ID0_C, LABEL_ID0_S};
use crate::error::CodeList;
use crate::error::{Error, ensure};
use crate::fleet::KeyRing;
use crate::fragment::{
    Datagram, ECHO_LEN, Flight, Inserted, Reassembler, hello_echo, pack, retry_datagram,
};
use crate::keys::ServerIdentity;
use crate::msg::{
    ClientFinished, ClientHello, MISMATCH_SUITE, MISMATCH_VERSION, Mismatch, SH_EARLY, SH_PDK,
    SH_PSK, ServerFinished, ServerHello,
};
use crate::schedule::{
    HandshakeKeys, LABEL_EARLY, Secret, Shares, Transcript, early_secret, expand, hmac, mac_eq,
    master_secret, mismatch_key, sha256,
};
use crate::stats::ServerStats;
use crate::ticket::{AntiReplay, TicketContents};

/// The anti-amplification factor: before an address is validated the server sends at
/// most this many times the bytes it received from it (I7). Defined once, in
/// `phantom-wire`, for the handshake and the path registry alike.
pub use phantom_wire::AMPLIFICATION_FACTOR;

pub use crate::server_config::ServerConfig;

/// A datagram for the server to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// The handshake datagram.
    pub payload: Vec<u8>,
}

/// Early data released when its ClientHello was accepted
/// ([`ServerConfig::release_early_data_on_hello`]).
#[must_use]
#[cfg_attr(test, derive(Clone))]
pub struct EarlyRelease {
    /// The client's address.
    pub from: SocketAddr,
    /// The session id of the handshake it belongs to (its [`Established`] carries it if
    /// the handshake completes).
    pub session_id: SessionId,
    /// The early-data plaintext.
    pub data: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for EarlyRelease {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EarlyRelease")
            .field("from", &self.from)
            .field("session_id", &self.session_id)
            .field("len", &self.data.len())
            .finish()
    }
}

#[cfg_attr(test, derive(Clone))]
struct ExpectClientFinished {
    pdk: bool,
    /// PDK: derived when the ClientHello was processed. Full: `None` until ClientFinished.
    keys: Option<HandshakeKeys>,
    es: Secret,
    ee_x: Secret,
    ee_ml: Secret,
    client_x: [u8; 32],
    transcript: Transcript,
    suite: Suite,
    resumed: bool,
    early_accepted: bool,
    early_data: Option<Zeroizing<Vec<u8>>>,
    /// PDK: the id0 the ServerFinished already carries.
    id0: Option<IssuedConnId>,
}

#[cfg_attr(test, derive(Clone))]
enum ConnState {
    ExpectClientHello,
    ExpectClientFinished(Box<ExpectClientFinished>),
}

#[cfg_attr(test, derive(Clone))]
struct Conn {
    state: ConnState,
    reasm: Reassembler,
    flight: Flight,
    /// Datagrams waiting for the amplification budget.
    queue: VecDeque<Vec<u8>>,
    validated: bool,
    rx: u64,
    tx: u64,
    created: Instant,
    session_id: Option<SessionId>,
    /// SHA-256 of the first fragment (offset 0) of this handshake's ClientHello: a
    /// different one from the same address is a new handshake, not a retransmission.
    hello_head: Option<[u8; 32]>,
    /// ClientFinished messages of this handshake that did not verify.
    finished_refused: u8,
    /// The echo of this handshake's ClientHello, carried by every datagram we send
    /// (zero until the ClientHello is complete; nothing is sent before).
    echo: [u8; ECHO_LEN],
}

impl Conn {
    /// A handshake waiting for its ClientHello, created at `now`.
    fn new(now: Instant, validated: bool) -> Self {
        Self {
            state: ConnState::ExpectClientHello,
            reasm: Reassembler::new(),
            flight: Flight::empty(),
            queue: VecDeque::new(),
            validated,
            rx: 0,
            tx: 0,
            created: now,
            session_id: None,
            hello_head: None,
            finished_refused: 0,
            echo: [0; ECHO_LEN],
        }
    }
}

/// A half-open handshake survives this many ClientFinished messages that do not verify
/// (a spoofer's, from the client's address); the next one drops it. Each costs the
/// server a decapsulation, so the work a spoofer can cause per handshake stays bounded.
pub(crate) const MAX_REFUSED_FINISHED: u8 = 4;

/// The half-open handshakes of one address, taken out of the tables while a datagram
/// from it is processed.
struct Here {
    newer: Option<Box<Conn>>,
    older: Option<Box<Conn>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Newer,
    Older,
}

impl Here {
    fn take(&mut self, slot: Slot) -> Option<Box<Conn>> {
        match slot {
            Slot::Newer => self.newer.take(),
            Slot::Older => self.older.take(),
        }
    }

    fn put(&mut self, slot: Slot, conn: Option<Box<Conn>>) {
        match slot {
            Slot::Newer => self.newer = conn,
            Slot::Older => self.older = conn,
        }
    }
}

/// What processing one datagram needs throughout.
struct Cx<'a, R: ?Sized> {
    now: Time,
    addr: SocketAddr,
    rng: &'a mut R,
    is_live: &'a dyn Fn(&SessionId) -> bool,
    /// The ClientFinished ciphertext decapsulated for this datagram, and its result.
    decapsulated: Option<(Vec<u8>, Secret)>,
}

/// The whole message `seq` if the datagram carries it in one fragment.
fn whole_message<'a>(dg: &Datagram<'a>, seq: u64) -> Option<&'a [u8]> {
    dg.fragments
        .iter()
        .find(|f| f.msg_seq == seq && f.offset == 0 && f.data.len() == f.total_len)
        .map(|f| f.data)
}

/// SHA-256 of the datagram's ClientHello fragment at offset 0, if it has one.
fn hello_head(dg: &Datagram<'_>) -> Option<[u8; 32]> {
    dg.hello_head().map(crate::schedule::sha256)
}

#[cfg_attr(test, derive(Clone))]
struct Linger {
    flight: Vec<Vec<u8>>,
    /// SHA-256 of the ClientFinished that completed the handshake.
    finished: [u8; 32],
    until: Instant,
    resends: u8,
}

/// The handshake server (sans-IO).
///
/// Call protocol: feed every handshake datagram with [`Server::handle_datagram`]; drain
/// [`Server::poll_transmit`] after every call; call [`Server::handle_timeout`] when
/// [`Server::poll_timeout`] passes. A completed handshake is returned by
/// `handle_datagram`. The caller routes datagrams of established sessions to the session
/// layer, not here.
///
/// # Invariants
/// - I1: a datagram from an unknown address creates state only if it carries a
///   ClientHello fragment and there is room in the half-open table (or it carries a valid
///   token); reassembly is capped per handshake; a malformed datagram changes nothing.
///   An address holds at most two half-open handshakes (the newest and one it
///   superseded), both counted in the half-open cap; an unauthenticated ClientHello
///   never removes the one a client is completing (see [`Server::handle_datagram`]).
///   Every datagram sent but a Retry carries the echo of the ClientHello it answers; a
///   Retry carries the echo of the ClientHello's first fragment (and answers only a
///   datagram that has it).
/// - I7: before an address is validated (valid retry token, or a verified
///   ClientFinished), at most [`AMPLIFICATION_FACTOR`] times the bytes received from it
///   are sent; the rest waits in a queue.
/// - I10: early data is released only after its AEAD verified and its ticket id was
///   recorded in the anti-replay store for the first time.
#[cfg_attr(test, derive(Clone))]
pub struct Server {
    config: ServerConfig,
    /// Retry-token and ticket keys, their rotation, and this instance's id.
    keys: KeyRing,
    pub(crate) replay: AntiReplay,
    /// The newest half-open handshake of each address.
    conns: HashMap<SocketAddr, Box<Conn>>,
    /// At most one older half-open handshake per address, superseded by the one in
    /// `conns` (which always exists for its address).
    superseded: HashMap<SocketAddr, Box<Conn>>,
    pending_ids: HashSet<SessionId>,
    linger: HashMap<SocketAddr, Linger>,
    /// When each recent MACed Mismatch refusal to an unvalidated address was sent (it
    /// cost an agreement and a decapsulation): each counts toward the half-open load
    /// until the handshake timeout.
    refusals: VecDeque<Instant>,
    /// Early data released at ClientHello acceptance, waiting to be polled.
    early_released: VecDeque<EarlyRelease>,
    transmits: VecDeque<Transmit>,
    stats: ServerStats,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("half_open", &self.half_open())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// How long a completed full-mode handshake keeps its last flight for retransmission.
const LINGER: Duration = Duration::from_secs(3);
const MAX_LINGER_RESENDS: u8 = 4;
const MAX_SESSION_ID_DRAWS: usize = 8;

impl Server {
    /// A server with fresh retry and ticket keys drawn from `rng`, or with a fleet
    /// key ([`ServerConfig::fleet`]) the fleet's keys (its reset key replaces
    /// `reset_key`). Either way a random instance id is drawn for its tickets.
    pub fn new<R: Rng + ?Sized>(mut config: ServerConfig, rng: &mut R) -> Self {
        let replay = AntiReplay::new(config.anti_replay_window, config.anti_replay_capacity);
        if let Some(fleet) = &config.fleet {
            config.reset_key = fleet.reset_key();
        }
        Self {
            keys: KeyRing::new(config.fleet.clone(), config.key_rotation, rng),
            replay,
            config,
            conns: HashMap::new(),
            superseded: HashMap::new(),
            pending_ids: HashSet::new(),
            linger: HashMap::new(),
            refusals: VecDeque::new(),
            early_released: VecDeque::new(),
            transmits: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// Concurrent half-open handshakes (superseded ones included).
    #[must_use]
    pub fn half_open(&self) -> usize {
        self.conns.len() + self.superseded.len()
    }

    /// Rotates the retry-token key (the previous key stays valid for one more rotation).
    /// With a fleet key the fleet's schedule decides and this does nothing.
    pub fn rotate_retry_key<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.keys.rotate_retry(rng);
    }

    /// Rotates the ticket key (tickets under the previous key stay valid for one more
    /// rotation). With a fleet key the fleet's schedule decides and this does nothing.
    pub fn rotate_ticket_key<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.keys.rotate_tickets(rng);
    }

    /// Rotates the ticket and retry keys if [`ServerConfig::key_rotation`] has passed
    /// since the last rotation (the first call starts the schedule). Returns whether it
    /// rotated. Call it from the timer handling, at the latest at
    /// [`Server::poll_key_rotation`]. With a fleet key the keys are those of the
    /// current period of `now.unix_secs` (also without this call: every datagram
    /// brings them up to date) and the next rotation is at the next period boundary.
    pub fn rotate_keys_if_due<R: Rng + ?Sized>(&mut self, now: Time, rng: &mut R) -> bool {
        self.keys.rotate_if_due(self.config.key_rotation, now, rng)
    }

    /// When [`Server::rotate_keys_if_due`] rotates next (`None` before its first call,
    /// or when rotation is off).
    #[must_use]
    pub fn poll_key_rotation(&self) -> Option<Instant> {
        self.keys.next_rotation()
    }

    /// Installs a new identity (static KEM key rotation). Clients holding the old
    /// certificate fall back to a full handshake and learn the new one.
    pub fn set_identity(&mut self, identity: ServerIdentity) {
        self.config.identity = identity;
    }

    /// The stateless-reset token of connection id `id` under this server's reset key:
    /// what a server that lost a session's state answers a packet for `id` with.
    #[must_use]
    pub fn reset_token(&self, id: &[u8]) -> [u8; crate::RESET_TOKEN_LEN] {
        self.config.reset_key.token(id)
    }

    /// True if a half-open handshake of `from` already sent its ServerFinished with
    /// `conn_id` as the server's first connection id (a 1-RTT PDK handshake waiting for
    /// the ClientFinished). The client sends its first protected packets with that id in
    /// the flight that carries its ClientFinished, so when the ClientFinished is lost
    /// (or overtaken) such packets arrive before the session exists: they belong to a
    /// session being made, not to one the server lost, and must not be answered with a
    /// stateless reset (docs/PROTOCOL.md §5.10). One lookup by address.
    #[must_use]
    pub fn awaits_finished(&self, from: SocketAddr, conn_id: &[u8]) -> bool {
        [self.conns.get(&from), self.superseded.get(&from)]
            .into_iter()
            .flatten()
            .any(|c| match &c.state {
                ConnState::ExpectClientFinished(s) => {
                    s.id0.as_ref().is_some_and(|i| i.id.as_bytes() == conn_id)
                }
                ConnState::ExpectClientHello => false,
            })
    }

    /// The generator and reset key of the connection ids this server issues (its
    /// sessions issue their later ids with them too).
    #[must_use]
    pub fn conn_id_source(&self) -> (&std::sync::Arc<dyn ConnIdGenerator>, &ResetKey) {
        (&self.config.conn_ids, &self.config.reset_key)
    }

    /// A retry token for `addr` (exposed for tests and for issuing tokens out of band).
    #[must_use]
    pub fn issue_token(&self, addr: &SocketAddr, now: Time) -> Vec<u8> {
        match self.keys.retry_at(now.unix_secs) {
            Some(fleet_period) => fleet_period.issue(addr, now.unix_secs),
            None => self.keys.retry.issue(addr, now.unix_secs),
        }
    }

    /// How long a half-open handshake may take ([`ServerConfig::handshake_timeout`]).
    #[must_use]
    pub fn handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout
    }

    /// Next early data released at ClientHello acceptance (only with
    /// [`ServerConfig::release_early_data_on_hello`]). **Replayable**: it passed its
    /// AEAD, the ticket-age window and this server's anti-replay store (I10; only the
    /// instance that issued the ticket accepts it), but the handshake may still fail
    /// and the client then send it again; act on it only where doing so twice is
    /// harmless.
    pub fn poll_early_data(&mut self) -> Option<EarlyRelease> {
        self.early_released.pop_front()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Earliest deadline (retransmission, handshake expiry, or key rotation once
    /// [`Server::rotate_keys_if_due`] was called: a caller that calls it once calls it
    /// whenever this deadline passes).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self
            .conns
            .values()
            .chain(self.superseded.values())
            .flat_map(|c| {
                let expiry = c.created + self.config.handshake_timeout;
                [Some(expiry), c.flight.deadline()]
            });
        let lingers = self.linger.values().map(|l| Some(l.until));
        conns
            .chain(lingers)
            .chain([self.keys.next_rotation()])
            .flatten()
            .min()
    }

    /// Retransmits flights whose timer expired and drops expired handshakes.
    pub fn handle_timeout(&mut self, now: Time) {
        let timeout = self.config.handshake_timeout;
        let mut dead = Vec::new();
        for (older, map) in [(false, &mut self.conns), (true, &mut self.superseded)] {
            for (addr, c) in map.iter_mut() {
                if now.instant >= c.created + timeout
                    || c.flight.on_timeout(now.instant, &mut c.queue).is_err()
                {
                    dead.push((*addr, older));
                } else {
                    flush(c, *addr, &mut self.transmits, &mut self.stats);
                }
            }
        }
        for (addr, older) in dead {
            self.stats.half_open.timed_out += 1;
            self.drop_conn(&addr, older);
        }
        self.linger.retain(|_, l| l.until > now.instant);
    }

    /// Drops a half-open handshake (its session id is free again); a superseded one
    /// takes the place of the newest when that one goes.
    fn drop_conn(&mut self, addr: &SocketAddr, older: bool) {
        let map = if older {
            &mut self.superseded
        } else {
            &mut self.conns
        };
        if let Some(c) = map.remove(addr) {
            self.release(&c);
        }
        if !self.conns.contains_key(addr)
            && let Some(c) = self.superseded.remove(addr)
        {
            self.conns.insert(*addr, c);
        }
    }

    fn release(&mut self, c: &Conn) {
        if let Some(id) = c.session_id {
            self.pending_ids.remove(&id);
        }
    }

    /// Processes one handshake datagram from `addr`. `is_live` tells whether a session id
    /// is already in use by an established session (the server redraws on collision).
    ///
    /// Returns the established session when this datagram completed a handshake.
    /// Errors say why the datagram or handshake was refused; the server stays usable.
    ///
    /// Half-open handshakes are keyed by address. A ClientHello from an address with a
    /// half-open handshake whose first fragment differs is a new handshake (a client's
    /// new connect from the same socket — or a spoofer's ClientHello from that address:
    /// the server cannot tell). It does not abandon the old one: that one is kept
    /// beside it as *superseded* (at most one per address, counted in the half-open
    /// limit, expiring with the handshake timeout), a retransmission of its ClientHello
    /// still reaches it, and a ClientFinished that does not verify against the newest
    /// handshake is tried against it (one decapsulation serves both). With both slots
    /// taken, a third ClientHello must carry a valid retry token (it is sent a Retry,
    /// which an off-path spoofer never sees) and then replaces an unvalidated one.
    pub fn handle_datagram<R: Rng + ?Sized>(
        &mut self,
        now: Time,
        addr: SocketAddr,
        datagram: &[u8],
        rng: &mut R,
        is_live: impl Fn(&SessionId) -> bool,
    ) -> Result<Option<Box<Established>>, Error> {
        self.keys.sync(now.unix_secs);
        let dg = match Datagram::parse(datagram) {
            Ok(d) if !d.is_retry() => d,
            Ok(_) => {
                self.stats.malformed += 1;
                return Err(Error::UnexpectedMessage("retry from a client"));
            }
            Err(Error::Damaged) => {
                self.stats.damaged += 1;
                return Err(Error::Damaged);
            }
            Err(e) => {
                self.stats.malformed += 1;
                return Err(e);
            }
        };
        let len = datagram.len() as u64;
        let finished_only = dg.fragments.iter().all(|f| f.msg_seq == 1);
        if finished_only && self.resend_lingering(now, addr, &dg) {
            return Ok(None);
        }
        let mut here = Here {
            newer: self.conns.remove(&addr),
            older: self.superseded.remove(&addr),
        };
        let mut cx = Cx {
            now,
            addr,
            rng,
            is_live: &is_live,
            decapsulated: None,
        };
        let result = if finished_only {
            self.on_finished_datagram(&mut cx, &dg, len, &mut here)
        } else {
            self.on_hello_datagram(&mut cx, &dg, len, &mut here)
        };
        let (newer, older) = match (here.newer, here.older) {
            (None, older) => (older, None),
            both => both,
        };
        if let Some(c) = newer {
            self.conns.insert(addr, c);
        }
        if let Some(c) = older {
            self.superseded.insert(addr, c);
        }
        result
    }

    /// A ClientFinished again for a handshake completed in full mode: the client did
    /// not get our ServerFinished, which is sent again (bounded). While the address has
    /// a half-open handshake (a new connect, or a spoofer's ClientHello) only the
    /// completing ClientFinished itself counts; anything else goes to the half-open one.
    fn resend_lingering(&mut self, now: Time, addr: SocketAddr, dg: &Datagram<'_>) -> bool {
        let Some(l) = self.linger.get_mut(&addr) else {
            return false;
        };
        if l.until <= now.instant {
            self.linger.remove(&addr);
            return false;
        }
        let same = whole_message(dg, 1).is_some_and(|m| sha256(m) == l.finished);
        if !same && self.conns.contains_key(&addr) {
            return false;
        }
        if l.resends < MAX_LINGER_RESENDS {
            l.resends += 1;
            for p in &l.flight {
                self.transmits.push_back(Transmit {
                    dst: addr,
                    payload: p.clone(),
                });
            }
        }
        true
    }

    /// A datagram with ClientHello fragments: to the handshake whose ClientHello it
    /// belongs to (by its first fragment), else it starts a new one.
    fn on_hello_datagram<R: Rng + ?Sized>(
        &mut self,
        cx: &mut Cx<'_, R>,
        dg: &Datagram<'_>,
        len: u64,
        here: &mut Here,
    ) -> Result<Option<Box<Established>>, Error> {
        let head = hello_head(dg);
        let is = |c: &Option<Box<Conn>>, f: &dyn Fn(&Conn) -> bool| c.as_deref().is_some_and(f);
        let slot = match head {
            Some(h) => {
                if is(&here.newer, &|c| c.hello_head == Some(h)) {
                    Some(Slot::Newer)
                } else if is(&here.older, &|c| c.hello_head == Some(h)) {
                    // A retransmission of the superseded handshake's ClientHello.
                    Some(Slot::Older)
                } else if is(&here.newer, &|c| c.hello_head.is_none()) {
                    Some(Slot::Newer)
                } else if is(&here.older, &|c| c.hello_head.is_none()) {
                    Some(Slot::Older)
                } else {
                    None
                }
            }
            // A later fragment of a ClientHello: to the handshake still waiting for one
            // (else it is a retransmission: the newest re-sends its flight).
            None => {
                let waiting = |c: &Conn| matches!(c.state, ConnState::ExpectClientHello);
                if is(&here.newer, &waiting) {
                    Some(Slot::Newer)
                } else if is(&here.older, &waiting) {
                    Some(Slot::Older)
                } else if here.newer.is_some() {
                    Some(Slot::Newer)
                } else {
                    None
                }
            }
        };
        if let Some(slot) = slot
            && let Some(conn) = here.take(slot)
        {
            let (kept, result) = self.feed(cx, conn, dg, len);
            here.put(slot, kept);
            return result;
        }
        // A new handshake.
        let at_address = usize::from(here.newer.is_some()) + usize::from(here.older.is_some());
        let Some((conn, replace)) = self.admit(cx.now, cx.addr, dg, len, at_address)? else {
            return Ok(None);
        };
        if at_address > 0 {
            self.stats.restarted += 1;
        }
        if replace {
            // Only a client that proved this address gets here: one of its half-open
            // handshakes gives way, an unvalidated one if any, else the older.
            let newer_unproven = is(&here.newer, &|c| !c.validated);
            let older_proven = is(&here.older, &|c| c.validated);
            let gone = if (newer_unproven && older_proven) || here.older.is_none() {
                here.newer.take()
            } else {
                here.older.take()
            };
            if let Some(c) = gone {
                self.release(&c);
            }
        }
        if here.older.is_none() {
            here.older = here.newer.take();
        }
        let (kept, result) = self.feed(cx, conn, dg, len);
        here.newer = kept;
        result
    }

    /// A datagram of ClientFinished fragments: to the half-open handshakes waiting for
    /// one, newest first, until one completes. Its bytes count once (I7).
    fn on_finished_datagram<R: Rng + ?Sized>(
        &mut self,
        cx: &mut Cx<'_, R>,
        dg: &Datagram<'_>,
        len: u64,
        here: &mut Here,
    ) -> Result<Option<Box<Established>>, Error> {
        let waiting = |c: &Option<Box<Conn>>| {
            c.as_deref()
                .is_some_and(|c| matches!(c.state, ConnState::ExpectClientFinished(_)))
        };
        let order: &[Slot] = match (waiting(&here.newer), waiting(&here.older)) {
            (true, true) => &[Slot::Newer, Slot::Older],
            (false, true) => &[Slot::Older],
            (true, false) => &[Slot::Newer],
            (false, false) if here.newer.is_some() => &[Slot::Newer],
            (false, false) => {
                return Err(Error::UnexpectedMessage(
                    "no ClientHello from an unknown address",
                ));
            }
        };
        let mut rx = len;
        let mut first_err = None;
        for &slot in order {
            let Some(conn) = here.take(slot) else {
                continue;
            };
            let (kept, result) = self.feed(cx, conn, dg, rx);
            rx = 0;
            here.put(slot, kept);
            match result {
                Ok(Some(est)) => {
                    if slot == Slot::Older {
                        self.stats.superseded_completed += 1;
                    }
                    return Ok(Some(est));
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(None), Err)
    }

    /// Feeds a datagram to one half-open handshake (`len`: the bytes to count as
    /// received from its address). Returns the handshake if it goes on, and the result.
    #[allow(clippy::type_complexity)]
    fn feed<R: Rng + ?Sized>(
        &mut self,
        cx: &mut Cx<'_, R>,
        mut conn: Box<Conn>,
        dg: &Datagram<'_>,
        len: u64,
    ) -> (Option<Box<Conn>>, Result<Option<Box<Established>>, Error>) {
        let addr = cx.addr;
        conn.rx = conn.rx.saturating_add(len);
        if conn.hello_head.is_none() {
            conn.hello_head = hello_head(dg);
        }
        if !conn.validated
            && !dg.token.is_empty()
            && self
                .keys
                .retry
                .validate(dg.token, &addr, cx.now.unix_secs)
                .is_ok()
        {
            // The client came back with a token (after a Retry sent to its address):
            // it proved the address.
            conn.validated = true;
        }
        let mut old = false;
        for f in &dg.fragments {
            match conn.reasm.insert(f) {
                Ok(Inserted::Old) => old = true,
                Ok(Inserted::Buffered) => {}
                Err(e) => {
                    // Drop the datagram, keep the handshake (I1: no state change).
                    self.stats.malformed += 1;
                    flush(&mut conn, addr, &mut self.transmits, &mut self.stats);
                    return (Some(conn), Err(e));
                }
            }
        }
        if old {
            conn.flight.resend(&mut conn.queue);
        }
        let mut result = None;
        while let Some(msg) = conn.reasm.pop() {
            // The flight's timer stops only once the message verified (a spoofed
            // fragment merged into it must not pass for the client's answer).
            match self.step(cx, &mut conn, &msg) {
                Ok(Some(est)) => {
                    result = Some((est, sha256(&msg)));
                    break;
                }
                Ok(None) => {}
                Err(e)
                    if matches!(conn.state, ConnState::ExpectClientFinished(_))
                        && conn.finished_refused < MAX_REFUSED_FINISHED =>
                {
                    // A ClientFinished that did not verify: dropped, the half-open
                    // handshake kept (it expires with the handshake timeout) for up
                    // to MAX_REFUSED_FINISHED of them.
                    conn.finished_refused += 1;
                    self.stats.finished_refused += 1;
                    flush(&mut conn, addr, &mut self.transmits, &mut self.stats);
                    return (Some(conn), Err(e));
                }
                Err(e) => {
                    self.stats.failed += 1;
                    if matches!(
                        e,
                        Error::VersionMismatch { .. } | Error::SuiteMismatch { .. }
                    ) {
                        // Send the Mismatch refusal (within the amplification budget).
                        self.stats.mismatches += 1;
                        flush(&mut conn, addr, &mut self.transmits, &mut self.stats);
                    }
                    self.release(&conn);
                    return (None, Err(e));
                }
            }
        }
        flush(&mut conn, addr, &mut self.transmits, &mut self.stats);
        if let Some((est, finished)) = result {
            self.stats.completed += 1;
            self.release(&conn);
            if !est.pending_flight.is_empty() {
                self.linger.insert(
                    addr,
                    Linger {
                        flight: est.pending_flight.clone(),
                        finished,
                        until: cx.now.instant + LINGER,
                        resends: 0,
                    },
                );
            }
            return (None, Ok(Some(est)));
        }
        (Some(conn), Ok(None))
    }

    /// Decides whether a datagram starting a new handshake gets state, a Retry, or
    /// nothing. `at_address`: the half-open handshakes its address already has (taken
    /// out of the tables). Returns the new handshake, and whether one of those must
    /// give way to it (both slots taken, or a full table with nothing else to evict).
    fn admit(
        &mut self,
        now: Time,
        addr: SocketAddr,
        dg: &Datagram<'_>,
        datagram_len: u64,
        at_address: usize,
    ) -> Result<Option<(Box<Conn>, bool)>, Error> {
        ensure!(
            dg.fragments.iter().any(|f| f.msg_seq == 0),
            Error::UnexpectedMessage("no ClientHello from an unknown address")
        );
        let validated = self.check_token(dg, &addr, now)?;
        let slots_taken = at_address >= 2;
        let timeout = self.config.handshake_timeout;
        while self
            .refusals
            .front()
            .is_some_and(|t| *t + timeout <= now.instant)
        {
            self.refusals.pop_front();
        }
        let full = self.half_open() + self.refusals.len() + at_address >= self.config.max_half_open;
        if !validated && (self.config.require_retry || full || slots_taken) {
            self.send_retry(now, addr, dg, datagram_len)?;
            return Ok(None);
        }
        // No state without the ClientHello's first fragment: a spoofed fragment, or
        // the later datagram of a ClientHello that overtook the first (the client's
        // retransmission brings both again).
        if dg.hello_head().is_none() {
            self.stats.hello_without_head += 1;
            return Ok(None);
        }
        let replace = slots_taken || (full && self.make_room(at_address)?);
        Ok(Some((Box::new(Conn::new(now.instant, validated)), replace)))
    }

    /// Whether the datagram carries a valid retry token for `addr` (none: `false`). An
    /// invalid or expired one refuses the datagram.
    fn check_token(
        &mut self,
        dg: &Datagram<'_>,
        addr: &SocketAddr,
        now: Time,
    ) -> Result<bool, Error> {
        if dg.token.is_empty() {
            return Ok(false);
        }
        match self.keys.retry.validate(dg.token, addr, now.unix_secs) {
            Ok(()) => Ok(true),
            Err(e) => {
                match e {
                    Error::TokenExpired => self.stats.tokens.expired += 1,
                    _ => self.stats.tokens.invalid += 1,
                }
                Err(e)
            }
        }
    }

    /// Answers a ClientHello datagram with a Retry (stateless: the token carries
    /// everything, I1), or with nothing if it lacks the ClientHello's first fragment.
    fn send_retry(
        &mut self,
        now: Time,
        addr: SocketAddr,
        dg: &Datagram<'_>,
        datagram_len: u64,
    ) -> Result<(), Error> {
        // The Retry is bound to the ClientHello by the echo of its first fragment (all
        // the server may have of it yet), so that the client can tell ours from a
        // forged one. A datagram without that fragment gets none: the one with it
        // (sent in the same flight) gets the Retry.
        let Some(head) = dg.hello_head() else {
            self.stats.retries_withheld += 1;
            return Ok(());
        };
        let token = self.keys.retry.issue(&addr, now.unix_secs);
        let payload = retry_datagram(&hello_echo(head), &token);
        // I7: a Retry never exceeds 3x the datagram that prompted it.
        ensure!(
            payload.len() as u64 <= AMPLIFICATION_FACTOR.saturating_mul(datagram_len),
            Error::LimitExceeded("datagram too small to answer")
        );
        self.transmits.push_back(Transmit { dst: addr, payload });
        self.stats.retries_sent += 1;
        Ok(())
    }

    /// Makes room in a full half-open table for a client that proved its address.
    /// Returns whether one of its own `at_address` half-open handshakes must give way.
    fn make_room(&mut self, at_address: usize) -> Result<bool, Error> {
        if self.refusals.pop_front().is_some() {
            // It takes the place of a recent refusal (which only counted as load).
            return Ok(false);
        }
        // It takes the place of the oldest half-open handshake that did not prove its
        // address (spoofed hellos, most likely): a flood from forged addresses cannot
        // lock real clients out (I1).
        let unproven = self
            .conns
            .iter()
            .map(|(a, c)| (a, c, false))
            .chain(self.superseded.iter().map(|(a, c)| (a, c, true)))
            .filter(|(_, c, _)| !c.validated)
            .min_by_key(|(_, c, _)| c.created)
            .map(|(a, _, older)| (*a, older));
        if let Some((victim, older)) = unproven {
            self.drop_conn(&victim, older);
            self.stats.half_open.evicted += 1;
            Ok(false)
        } else if at_address > 0 {
            // Nothing else to evict: one of its own half-open handshakes gives way.
            Ok(true)
        } else {
            self.stats.half_open.refused += 1;
            Err(Error::LimitExceeded("half-open handshakes"))
        }
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        cx: &mut Cx<'_, R>,
        conn: &mut Conn,
        msg: &[u8],
    ) -> Result<Option<Box<Established>>, Error> {
        let now = cx.now;
        let state = core::mem::replace(&mut conn.state, ConnState::ExpectClientHello);
        match state {
            ConnState::ExpectClientHello => {
                let (next, msgs) =
                    self.on_client_hello(conn, cx.addr, msg, now, cx.rng, cx.is_live)?;
                conn.state = ConnState::ExpectClientFinished(next);
                let refs: Vec<(u64, &[u8])> =
                    msgs.iter().map(|(s, m)| (*s, m.as_slice())).collect();
                conn.flight
                    .set(pack(&refs, &conn.echo), now.instant, true, &mut conn.queue);
                Ok(None)
            }
            ConnState::ExpectClientFinished(mut s) => {
                let (est, sf) = match self.on_client_finished(cx, conn, &mut s, msg) {
                    Ok(done) => done,
                    Err(e) => {
                        // Not a verified ClientFinished (a spoofer can send one from
                        // the client's address): the handshake keeps waiting for the
                        // real one, which may still arrive (I1).
                        conn.state = ConnState::ExpectClientFinished(s);
                        conn.reasm.unpop();
                        return Err(e);
                    }
                };
                // The client proved it received our flight: its address is validated.
                conn.validated = true;
                let mut est = Box::new(est);
                if let Some(sf) = sf {
                    let dgs = pack(&[(1, &sf)], &conn.echo);
                    conn.flight
                        .set(dgs.clone(), now.instant, false, &mut conn.queue);
                    est.pending_flight = dgs;
                } else {
                    conn.flight = Flight::empty();
                }
                Ok(Some(est))
            }
        }
    }

    fn draw_session_id<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        is_live: &dyn Fn(&SessionId) -> bool,
    ) -> Result<SessionId, Error> {
        for _ in 0..MAX_SESSION_ID_DRAWS {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            let id = SessionId(b);
            if !is_live(&id) && !self.pending_ids.contains(&id) {
                return Ok(id);
            }
        }
        Err(Error::LimitExceeded("session id draws"))
    }

    #[allow(clippy::type_complexity)]
    fn on_client_hello<R: Rng + ?Sized>(
        &mut self,
        conn: &mut Conn,
        from: SocketAddr,
        msg: &[u8],
        now: Time,
        rng: &mut R,
        is_live: &dyn Fn(&SessionId) -> bool,
    ) -> Result<(Box<ExpectClientFinished>, Vec<(u64, Vec<u8>)>), Error> {
        // Every datagram answering this ClientHello carries its echo.
        conn.echo = hello_echo(msg);
        let (ch, early_at) = ClientHello::decode(msg)?;
        let (version, suite) = self.negotiate(conn, &ch, msg, now)?;
        let client_ek = KemPublic::from_bytes(&ch.mlkem_ek)?;
        // A fresh ephemeral X25519 key per handshake (forward secrecy; never reused).
        let eph_x = XSecret::generate(rng);
        let eph_x_pub = eph_x.public();
        let ee_x = eph_x.agree(&ch.x25519)?;
        let (ct, ee_ml) = client_ek.encapsulate(rng)?;
        drop(eph_x);
        let pdk_shares = self.static_shares(&ch)?;
        let ticket = self.open_ticket(&ch, now);
        let es = early_secret(ticket.as_ref().map(|t| &*t.secret));
        let mut early_data = match &ticket {
            Some(t) if !ch.early.is_empty() => {
                self.accept_early(t, &ch, msg, early_at, &es, now)?
            }
            _ => None,
        };
        let session_id = self.draw_session_id(rng, is_live)?;
        let early_accepted = early_data.is_some();
        self.release_early_on_hello(from, session_id, &mut early_data);
        let pdk = pdk_shares.is_some();
        let flags = hello_flags(pdk, ticket.is_some(), early_accepted);
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        let sh = ServerHello {
            version,
            suite: suite.code(),
            session_id: session_id.0,
            random,
            x25519: eph_x_pub,
            mlkem_ct: ct,
            flags,
            certificate: if pdk {
                Vec::new()
            } else {
                self.config.identity.cert_bytes.clone()
            },
        }
        .encode();
        let mut transcript = Transcript::new();
        transcript.add(msg);
        transcript.add(&sh);
        conn.session_id = Some(session_id);
        self.pending_ids.insert(session_id);

        let mut out = vec![(0, sh)];
        let mut keys = None;
        let mut id0 = None;
        let (ee_x_keep, ee_ml_keep);
        if let Some((es_x, es_ml)) = pdk_shares {
            let shares = Shares {
                ee_x,
                ee_ml,
                es_x,
                es_ml,
            };
            let k = HandshakeKeys::derive(master_secret(&es, &shares), &transcript.hash());
            let (sf, issued) = self.server_finished(&k, &transcript, suite, now, rng)?;
            transcript.add(&sf);
            out.push((1, sf));
            keys = Some(k);
            id0 = Some(issued);
            ee_x_keep = Zeroizing::new([0u8; 32]);
            ee_ml_keep = Zeroizing::new([0u8; 32]);
        } else {
            ee_x_keep = ee_x;
            ee_ml_keep = ee_ml;
        }
        Ok((
            Box::new(ExpectClientFinished {
                pdk,
                keys,
                es,
                ee_x: ee_x_keep,
                ee_ml: ee_ml_keep,
                client_x: ch.x25519,
                transcript,
                suite,
                resumed: ticket.is_some(),
                early_accepted,
                early_data,
                id0,
            }),
            out,
        ))
    }

    /// With [`ServerConfig::release_early_data_on_hello`], hands accepted early data to
    /// [`Server::poll_early_data`] now (bounded by the half-open limit).
    fn release_early_on_hello(
        &mut self,
        from: SocketAddr,
        session_id: SessionId,
        early_data: &mut Option<Zeroizing<Vec<u8>>>,
    ) {
        if self.config.release_early_data_on_hello
            && self.early_released.len() < self.config.max_half_open
            && let Some(data) = early_data.take()
        {
            self.early_released.push_back(EarlyRelease {
                from,
                session_id,
                data,
            });
        }
    }

    /// Negotiation: the first of the client's offers (its preference order) that we
    /// support. Both lists and both choices are in the transcript (no downgrade). With
    /// no common version or suite, queues the Mismatch refusal and returns its error.
    fn negotiate(
        &mut self,
        conn: &mut Conn,
        ch: &ClientHello,
        msg: &[u8],
        now: Time,
    ) -> Result<(u8, Suite), Error> {
        let version = ch
            .versions
            .iter()
            .find(|v| **v == HANDSHAKE_VERSION)
            .copied();
        let suite = ch
            .suites
            .iter()
            .filter_map(|c| Suite::from_code(*c))
            .find(|s| self.config.suites.contains(s));
        if let (Some(v), Some(s)) = (version, suite) {
            return Ok((v, s));
        }
        // Refuse explicitly (stateless, no retransmission: a retransmitted ClientHello
        // gets the same answer) so the client fails fast.
        let reason = if version.is_none() {
            MISMATCH_VERSION
        } else {
            MISMATCH_SUITE
        };
        let m = self.mismatch(reason, ch, msg, conn.validated, now)?;
        conn.queue.extend(pack(&[(0, &m)], &conn.echo));
        let supported = CodeList::new(&self.supported_suites());
        Err(if reason == MISMATCH_VERSION {
            Error::VersionMismatch {
                offered: CodeList::new(&ch.versions),
                supported: CodeList::new(&[HANDSHAKE_VERSION]),
                authenticated: false,
            }
        } else {
            Error::SuiteMismatch {
                offered: CodeList::new(&ch.suites),
                supported,
                authenticated: false,
            }
        })
    }

    /// The ephemeral-static shares if the client encapsulated to our current
    /// certificate (PDK mode); `None` for an unknown (rotated) certificate, answered in
    /// full mode with the current one.
    fn static_shares(&self, ch: &ClientHello) -> Result<Option<(Secret, Secret)>, Error> {
        let identity = &self.config.identity;
        match &ch.pdk {
            Some(p) if p.cert_id == identity.cert_id => {
                // The static key stays parsed and expanded in the identity.
                let es_x = identity.kem.x.agree(&ch.x25519)?;
                let es_ml = identity.kem.ml.decapsulate(&p.ct)?;
                Ok(Some((es_x, es_ml)))
            }
            _ => Ok(None),
        }
    }

    /// Resumption: a valid ticket mixes its secret in; a bad one is ignored (1-RTT).
    fn open_ticket(&mut self, ch: &ClientHello, now: Time) -> Option<TicketContents> {
        if ch.ticket.is_empty() {
            return None;
        }
        let server_key_id = self.config.identity.verifying_key.key_id();
        match self
            .keys
            .tickets
            .open(&ch.ticket, &server_key_id, now.unix_secs)
        {
            Ok(t) => Some(t),
            Err(Error::TicketExpired) => {
                self.stats.tickets.expired += 1;
                None
            }
            Err(_) => {
                self.stats.tickets.invalid += 1;
                None
            }
        }
    }

    /// The early data of `ch` (resuming ticket `t`, early secret `es`) if accepted:
    /// authenticated first, then recorded in the anti-replay store (I1, I10).
    fn accept_early(
        &mut self,
        t: &TicketContents,
        ch: &ClientHello,
        msg: &[u8],
        early_at: usize,
        es: &Secret,
        now: Time,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        // I10: the anti-replay store is this instance's: another fleet member's
        // ticket resumes, without 0-RTT (fails closed).
        if t.instance != self.keys.instance {
            self.stats.early.other_instance += 1;
            return Ok(None);
        }
        if self.config.max_early_data == 0 || !self.replay.in_window(t.issued, now.unix_secs) {
            self.stats.early.refused += 1;
            return Ok(None);
        }
        let aad = msg.get(..early_at).unwrap_or_default();
        let key = expand(es, LABEL_EARLY, &sha256(aad));
        let plain = open_early(&key, aad, &ch.early)?;
        if plain.len() > self.config.max_early_data as usize {
            self.stats.early.refused += 1;
            return Ok(None);
        }
        // I10: accepted at most once per ticket.
        match self
            .replay
            .check_and_insert(t.ticket_id, t.issued, now.unix_secs)
        {
            Ok(()) => {
                self.stats.early.accepted += 1;
                return Ok(Some(plain));
            }
            Err(Error::EarlyDataReplayed) => self.stats.early.replayed += 1,
            Err(_) => self.stats.early.refused += 1,
        }
        Ok(None)
    }

    fn supported_suites(&self) -> Vec<u8> {
        let mut v: Vec<u8> = Vec::new();
        for s in &self.config.suites {
            if !v.contains(&s.code()) && v.len() < CodeList::MAX {
                v.push(s.code());
            }
        }
        v
    }

    /// The Mismatch refusal of `ch` (whose encoding is `ch_bytes`): what this server
    /// speaks, bound to the ClientHello by its hash, and MACed under the ephemeral-static
    /// shares if the client encapsulated to our current certificate (so a PDK client
    /// knows the refusal comes from the pinned server).
    fn mismatch(
        &mut self,
        reason: u8,
        ch: &ClientHello,
        ch_bytes: &[u8],
        validated: bool,
        now: Time,
    ) -> Result<Vec<u8>, Error> {
        let ch_hash = sha256(ch_bytes);
        let suites = self.supported_suites();
        ensure!(!suites.is_empty(), Error::Misuse("no suites configured"));
        let mut m = Mismatch {
            reason,
            versions: vec![HANDSHAKE_VERSION],
            suites,
            ch_hash,
            mac: None,
        };
        let identity = &self.config.identity;
        if let Some(p) = &ch.pdk
            && p.cert_id == identity.cert_id
        {
            let es_x = identity.kem.x.agree(&ch.x25519)?;
            let es_ml = identity.kem.ml.decapsulate(&p.ct)?;
            self.stats.mismatch_decapsulations += 1;
            if !validated {
                // As costly as a handshake: counts as one until the handshake timeout.
                self.refusals.push_back(now.instant);
            }
            let key = mismatch_key(&es_x, &es_ml, &ch_hash);
            // The prefix ends with the auth flag, which must say "MACed".
            m.mac = Some([0u8; 32]);
            m.mac = Some(hmac(key.as_slice(), &[&m.encode_prefix()]));
        }
        Ok(m.encode())
    }

    fn server_finished<R: Rng + ?Sized>(
        &self,
        keys: &HandshakeKeys,
        transcript: &Transcript,
        suite: Suite,
        now: Time,
        rng: &mut R,
    ) -> Result<(Vec<u8>, IssuedConnId), Error> {
        let issued = IssuedConnId::draw_keyed(rng, &*self.config.conn_ids, &self.config.reset_key);
        let id0 = issued.masked(&keys.ms, LABEL_ID0_S)?;
        let (lifetime, max_early, ticket) = if self.config.ticket_lifetime == 0 {
            (0, 0, Vec::new())
        } else {
            let blob = self.keys.tickets.seal(
                rng,
                &self.config.identity.verifying_key.key_id(),
                &self.keys.instance,
                now.unix_secs,
                self.config.ticket_lifetime,
                suite,
                &keys.res,
            )?;
            (
                self.config.ticket_lifetime,
                self.config.max_early_data,
                blob,
            )
        };
        let prefix = ServerFinished::encode_prefix(lifetime, max_early, &ticket, &id0);
        let mac = hmac(
            keys.fk_s.as_slice(),
            &[&transcript.hash_with_prefix(&prefix)],
        );
        let sf = ServerFinished {
            ticket_lifetime: lifetime,
            max_early_data: max_early,
            ticket,
            id0,
            mac,
        };
        Ok((sf.encode(), issued))
    }

    fn on_client_finished<R: Rng + ?Sized>(
        &mut self,
        cx: &mut Cx<'_, R>,
        conn: &Conn,
        s: &mut ExpectClientFinished,
        msg: &[u8],
    ) -> Result<(Established, Option<Vec<u8>>), Error> {
        let now = cx.now;
        // `s` is left as it was unless the ClientFinished verifies: a forged one (from
        // a spoofed address) changes nothing (I1).
        let (cf, prefix_len) = ClientFinished::decode(msg)?;
        let mut transcript = s.transcript.clone();
        let derived;
        let keys = match (s.pdk, &cf.static_ct, &s.keys) {
            (true, None, Some(k)) => k,
            (false, Some(ct), None) => {
                let identity = &self.config.identity;
                let es_x = identity.kem.x.agree(&s.client_x)?;
                // The decapsulation does not depend on the half-open handshake: one per
                // datagram, even when it is tried against a superseded handshake too.
                let es_ml = match &cx.decapsulated {
                    Some((seen, k)) if seen == ct => k.clone(),
                    _ => {
                        let k = identity.kem.ml.decapsulate(ct)?;
                        self.stats.finished_decapsulations += 1;
                        cx.decapsulated = Some((ct.clone(), k.clone()));
                        k
                    }
                };
                let shares = Shares {
                    ee_x: s.ee_x.clone(),
                    ee_ml: s.ee_ml.clone(),
                    es_x,
                    es_ml,
                };
                // The finished keys use TH(CH‖SH): the transcript before ClientFinished.
                derived = HandshakeKeys::derive(master_secret(&s.es, &shares), &transcript.hash());
                &derived
            }
            _ => return Err(Error::UnexpectedMessage("ClientFinished mode")),
        };
        let expected = hmac(
            keys.fk_c.as_slice(),
            &[&transcript.hash_with_prefix(msg.get(..prefix_len).unwrap_or_default())],
        );
        ensure!(mac_eq(&expected, &cf.mac), Error::KeyConfirmation);
        let client_id0 = IssuedConnId::unmask(&keys.ms, LABEL_ID0_C, &cf.id0)?;
        transcript.add(msg);
        let (sf, server_id0) = match s.id0 {
            Some(id0) => (None, id0),
            None => {
                let (sf, id0) = self.server_finished(keys, &transcript, s.suite, now, cx.rng)?;
                transcript.add(&sf);
                (Some(sf), id0)
            }
        };
        let (c2s, s2c) = keys.traffic(&transcript.hash());
        let session_id = conn.session_id.ok_or(Error::Misuse("no session id"))?;
        Ok((
            Established {
                version: HANDSHAKE_VERSION,
                suite: s.suite,
                session_id,
                client_id0,
                server_id0,
                c2s: TrafficSecret::from_bytes(*c2s),
                s2c: TrafficSecret::from_bytes(*s2c),
                resumption_ticket: None,
                resumed: s.resumed,
                pdk: s.pdk,
                early_data_accepted: s.early_accepted,
                early_data: s.early_data.take(),
                pending_flight: Vec::new(),
            },
            sf,
        ))
    }
}

/// The ServerHello flags: PDK mode, a resumed ticket, early data accepted.
fn hello_flags(pdk: bool, resumed: bool, early_accepted: bool) -> u8 {
    [(pdk, SH_PDK), (resumed, SH_PSK), (early_accepted, SH_EARLY)]
        .iter()
        .fold(0, |acc, &(on, bit)| if on { acc | bit } else { acc })
}

fn open_early(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let split = sealed
        .len()
        .checked_sub(16)
        .ok_or(Error::Malformed("early data"))?;
    let (ct, tag) = sealed.split_at(split);
    let tag: [u8; 16] = tag.try_into().map_err(|_| Error::Malformed("early data"))?;
    let aead = ChaCha20Poly1305::new(&(*key).into());
    let mut buf = Zeroizing::new(ct.to_vec());
    aead.decrypt_inout_detached(
        &[0u8; 12].into(),
        aad,
        buf.as_mut_slice().into(),
        &tag.into(),
    )
    .map_err(|_| Error::KeyConfirmation)?;
    Ok(buf)
}

/// Moves queued datagrams out within the amplification budget (I7).
fn flush(conn: &mut Conn, addr: SocketAddr, out: &mut VecDeque<Transmit>, stats: &mut ServerStats) {
    while let Some(d) = conn.queue.front() {
        let n = d.len() as u64;
        let budget = conn.rx.saturating_mul(AMPLIFICATION_FACTOR);
        if !conn.validated && conn.tx.saturating_add(n) > budget {
            stats.amplification_blocked = stats.amplification_blocked.saturating_add(1);
            break;
        }
        if let Some(d) = conn.queue.pop_front() {
            conn.tx = conn.tx.saturating_add(n);
            out.push_back(Transmit {
                dst: addr,
                payload: d,
            });
        }
    }
}
