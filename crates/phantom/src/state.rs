//! The endpoint's shared state: sessions, handshakes, wakers. Only the driver task
//! touches the socket; application handles lock this state, call the sans-IO
//! session, mark the session dirty and wake the driver.

mod conn;

pub(crate) use conn::ConnEntry;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use phantom_handshake::{Client, Progress, Server, Time, VerifiedCertificate};
use phantom_session::early::{EarlyData, ReleasedEarlyData};
use phantom_session::fallback::{Carrier, FallbackAction};
use phantom_session::{
    AppCode, CloseReason, Config as SessionConfig, ConnIdEvent, DatagramEvent, Dir, Event, RxMeta,
    Session, SessionHandle, Side,
};
use phantom_wire::{FORM_MASK, PathId, SHORT_FORM};
use rand::Rng as _;
use rand::rngs::StdRng;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::clock;
use crate::error::ConnectError;
use crate::stats::{Backlog, Counters, HandshakeInfo, HandshakeMode};

/// The close code a server gives a session whose handshake completed while
/// `ServerConfig::max_pending_accepts` sessions were already waiting for
/// `Endpoint::accept` (the server is busy: try again later).
pub const ACCEPT_BACKLOG_FULL: AppCode = AppCode(0x5042);

/// What the carrier logic reacts to (client sessions with a TCP fallback address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CarrierAction {
    /// The session's fallback state machine asked for something.
    Fallback(FallbackAction),
    /// A path passed validation.
    PathValidated(PathId),
}

/// State shared by the driver task and every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver: new application data, a close, a new connect.
    pub(crate) notify: Notify,
    /// Set to `true` when the driver stops: TCP tasks end.
    pub(crate) shutdown: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn new(inner: Inner) -> Self {
        Self {
            inner: Mutex::new(inner),
            notify: Notify::new(),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Takes the endpoint's lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Locks, runs `f`, and wakes the driver.
    pub(crate) fn with_dirty<R>(
        &self,
        handle: u64,
        f: impl FnOnce(&mut ConnEntry) -> R,
    ) -> Option<R> {
        let mut g = self.lock();
        let r = g.conns.get_mut(&handle).map(|c| f(c));
        g.due.dirty.insert(handle);
        self.unlock_and_wake(g);
        r
    }

    /// Releases the lock, then wakes the tasks collected under it and the driver
    /// (which polls the sessions marked dirty): the one place the rule "mark the
    /// session dirty, wake tasks after unlocking" is carried out.
    pub(crate) fn unlock_and_wake(&self, mut g: MutexGuard<'_, Inner>) {
        let mut wakers = Vec::new();
        g.take_wakers(&mut wakers);
        drop(g);
        for w in wakers {
            w.wake();
        }
        self.notify.notify_one();
    }
}

/// Which handshake a datagram belongs to on a client endpoint: over UDP (`None`)
/// or over the TCP connection with that local address, and the server's address.
pub(crate) type PendingKey = (Option<SocketAddr>, SocketAddr);

/// Where a connect future learns its handshake's outcome (a connection handle).
pub(crate) type ConnectReply = oneshot::Receiver<Result<u64, ConnectError>>;

/// Why a client handshake did not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// A handshake with that server address is already in progress on this endpoint
    /// (the server tells handshakes apart by client address): wait for its turn.
    InProgress,
    /// It cannot start at all.
    Failed(ConnectError),
}

/// A client handshake in flight.
pub(crate) struct PendingConnect {
    pub(crate) client: Client,
    pub(crate) session_cfg: SessionConfig,
    /// Replay-safe streams sent as 0-RTT data, re-opened in the session afterwards.
    pub(crate) early: Option<EarlyData>,
    /// The pinned key, naming the certificate cache entry.
    pub(crate) server_key: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<u64, ConnectError>>,
    /// The server's UDP address (what `connect` was given).
    pub(crate) udp_remote: SocketAddr,
    /// The server's TCP fallback address, if any.
    pub(crate) tcp_remote: Option<SocketAddr>,
    /// Signalled after two unanswered UDP retransmissions (switch to TCP).
    pub(crate) want_tcp: Option<oneshot::Sender<()>>,
    /// Retransmissions so far.
    pub(crate) timeouts: u32,
    /// The client's last flight, re-sent at once when the handshake moves to TCP.
    pub(crate) flight: Vec<Vec<u8>>,
}

/// A datagram to send that is not a session's transmit (handshake traffic).
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// Local address to send from (`None`: a TCP connection to `dst` if any, else
    /// the primary UDP socket).
    pub(crate) src: Option<SocketAddr>,
    pub(crate) dst: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// What became of one received datagram (the TCP carrier's idle timer counts only
/// datagrams that did something).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A session authenticated it.
    Authenticated,
    /// A handshake took it (parsed and accepted; not authenticated yet).
    Handshake,
    /// Dropped: unknown session, failed authentication, replayed, unparsable.
    Refused,
}

/// The writing side of one TCP connection carrying datagrams.
#[derive(Debug)]
pub(crate) struct TcpLink {
    pub(crate) tx: mpsc::Sender<Vec<u8>>,
}

/// Where a session's TCP carrier stands (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpCarrier {
    /// No TCP connection.
    Idle,
    /// A connect is under way.
    Opening,
    /// Carried over the TCP connection `(local, remote)`.
    Open(SocketAddr, SocketAddr),
}

/// Socket changes the driver makes on its next loop.
#[derive(Debug, Default)]
struct SocketRequests {
    /// Extra UDP sockets bound but not yet adopted by the driver.
    new: Vec<std::net::UdpSocket>,
    /// A path went away: the driver closes extra sockets no path uses any more.
    prune: bool,
    /// A new socket to move to (client address change).
    rebind: Option<std::net::UdpSocket>,
    /// Added paths `(session, local, remote)` waiting for an unused connection id of
    /// the peer's (right after the handshake its NEW_CONN_IDs may not have arrived).
    waiting_paths: Vec<(u64, SocketAddr, SocketAddr)>,
}

/// The TCP connections carrying datagrams.
#[derive(Debug, Default)]
struct TcpLinks {
    /// Live connections, by `(local, remote)`.
    links: HashMap<(SocketAddr, SocketAddr), TcpLink>,
    /// Local addresses of TCP connections (live or closed, bounded): a transmit from
    /// one of them whose connection is gone is dropped, never sent over UDP.
    locals: HashSet<SocketAddr>,
    /// The TCP listening address (server with a TCP carrier).
    listen: Option<SocketAddr>,
    /// Datagrams dropped because a connection's queue was full or gone.
    dropped: u64,
}

/// Tasks waiting for connections (`Endpoint::accept`) or early data
/// (`Endpoint::accept_early`): one list, woken by either (a spurious wake re-polls).
#[derive(Debug, Default)]
struct Acceptors {
    wakers: Vec<Waker>,
    /// Early data the application took with `Endpoint::accept_early`, by the session
    /// id of its handshake: the connection goes there instead of to `accept`.
    early_claims: HashMap<phantom_wire::SessionId, oneshot::Sender<u64>>,
}

/// The sessions the driver visits in a loop, so that it never walks them all.
#[derive(Debug, Default)]
struct Due {
    /// Sessions to poll for transmits and events.
    dirty: BTreeSet<u64>,
    /// Every session's deadline (`ConnEntry::deadline`) with its handle, in time
    /// order: the expired timers and the driver's next wake-up are found here
    /// without visiting every session (a server with 10,000 idle sessions would
    /// otherwise walk them all on every datagram).
    timers: BTreeSet<(Instant, u64)>,
}

/// Everything behind the endpoint's lock.
pub(crate) struct Inner {
    local: SocketAddr,
    router: phantom_session::Endpoint,
    /// The sessions by handle. Boxed: a `ConnEntry` is ~3 KiB, and a table of inline
    /// entries keeps up to twice the sessions' size in empty buckets (hashbrown's load
    /// factor) — ~3 KiB per idle session at 1,000 sessions, measured with massif.
    conns: HashMap<u64, Box<ConnEntry>>,
    pending: HashMap<PendingKey, PendingConnect>,
    /// Handshake datagrams to send.
    hs_out: VecDeque<Outgoing>,
    /// Socket changes for the driver to make.
    sockets: SocketRequests,
    /// The TCP connections carrying datagrams.
    tcp: TcpLinks,
    /// The runtime the endpoint was created in (spawns TCP tasks).
    rt: tokio::runtime::Handle,
    /// Accepted connections not yet taken by `accept` (each holds one handle).
    incoming: VecDeque<u64>,
    /// Most sessions waiting in `incoming` (on all workers of the endpoint); a
    /// handshake completing beyond it gets its session closed at once ("server
    /// busy"), so peers that complete handshakes faster than the application accepts
    /// cannot grow the server's memory for good.
    backlog: Backlog,
    /// Tasks waiting in `accept` or `accept_early`, and the early data taken.
    acceptors: Acceptors,
    idle_wakers: Vec<Waker>,
    /// Tasks to wake once the lock is released (so that they do not wake only to
    /// wait for it): whoever holds the lock to deliver datagrams, process events
    /// or reap wakes them after unlocking ([`Inner::take_wakers`]).
    to_wake: Vec<Waker>,
    /// Which sessions the driver visits: the dirty ones and those whose timer expired.
    due: Due,
    rng: StdRng,
    last_now: Option<Instant>,
    /// Live `Endpoint` and `Connection` handles (streams hold a `Connection`).
    user_handles: usize,
    /// Set by `Endpoint::close` or when the last handle drops.
    closing: bool,
    /// What this endpoint (worker) dropped and established.
    counters: Counters,
    /// Server certificates verified by earlier handshakes, by pinned key: the next
    /// connect to that server is a 1-RTT PDK handshake without signature checks.
    certificates: HashMap<Vec<u8>, VerifiedCertificate>,
}

impl core::fmt::Debug for Inner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inner")
            .field("local", &self.local)
            .field("conns", &self.conns.len())
            .field("pending", &self.pending.len())
            .field("server", &self.router.is_server())
            .finish_non_exhaustive()
    }
}

/// Most datagrams received per driver loop.
pub(crate) const RECV_BUDGET: usize = 64;
/// Most datagrams sent per driver loop.
pub(crate) const SEND_BUDGET: usize = 32;

impl Inner {
    pub(crate) fn new(
        local: SocketAddr,
        server: Option<Server>,
        cfg: SessionConfig,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Self {
            local,
            sockets: SocketRequests::default(),
            tcp: TcpLinks::default(),
            rt,
            // A server endpoint's router also runs the handshake server and builds
            // accepted sessions with `cfg`.
            router: match server {
                Some(server) => phantom_session::Endpoint::with_server(server, cfg),
                None => phantom_session::Endpoint::new(),
            },
            conns: HashMap::new(),
            pending: HashMap::new(),
            hs_out: VecDeque::new(),
            incoming: VecDeque::new(),
            backlog: Backlog {
                limit: usize::MAX,
                waiting: Arc::default(),
            },
            acceptors: Acceptors::default(),
            idle_wakers: Vec::new(),
            to_wake: Vec::new(),
            due: Due::default(),
            rng: rand::make_rng(),
            last_now: None,
            user_handles: 1,
            closing: false,
            counters: Counters::default(),
            certificates: HashMap::new(),
        }
    }

    /// Moves the wakers collected under the lock into `out` (empty), to be woken
    /// after unlocking.
    pub(crate) fn take_wakers(&mut self, out: &mut Vec<Waker>) {
        std::mem::swap(&mut self.to_wake, out);
    }

    /// The current time, never earlier than a time handed out before (sessions
    /// require a monotonic `now`).
    pub(crate) fn now(&mut self) -> Time {
        let (mut instant, unix) = clock::read();
        if let Some(last) = self.last_now
            && last > instant
        {
            instant = last;
        }
        self.last_now = Some(instant);
        Time::new(instant, unix)
    }

    fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        s
    }

    /// Registers an established session with `handles` initial handles.
    fn install(
        &mut self,
        session: Session,
        remote: SocketAddr,
        handles: usize,
        handshake: HandshakeInfo,
    ) -> u64 {
        let h = self
            .router
            .insert(session.session_id(), &session.local_conn_ids())
            .0;
        self.conns.insert(
            h,
            Box::new(ConnEntry::new(session, remote, handles, handshake)),
        );
        self.due.dirty.insert(h);
        h
    }

    /// One received datagram, with where it arrived (socket or TCP connection).
    pub(crate) fn on_datagram(&mut self, now: Time, rx: RxMeta, dg: &mut [u8]) -> Delivery {
        match self.router.route(dg) {
            DatagramEvent::Session(h) => {
                let Some(c) = self.conns.get_mut(&h.0) else {
                    return Delivery::Refused;
                };
                // Over TCP the carrier wants to know whether the datagram authenticated
                // (its idle timer counts only those); UDP skips the two counter reads.
                let before =
                    (rx.carrier == Carrier::Tcp).then(|| c.session.stats().packets_received);
                c.session.handle_datagram(now.instant, rx, dg);
                let delivered = match before {
                    Some(b) if c.session.stats().packets_received == b => Delivery::Refused,
                    _ => Delivery::Authenticated,
                };
                // Acks may have freed buffer space or stream credit.
                c.wake_writers(&mut self.to_wake);
                self.due.dirty.insert(h.0);
                delivered
            }
            DatagramEvent::Unknown => {
                self.counters.dropped += 1;
                if dg.first().is_some_and(|b| b & FORM_MASK == SHORT_FORM) {
                    self.counters.unknown_ids += 1;
                }
                self.on_unknown_datagram(now, rx, dg);
                Delivery::Refused
            }
            DatagramEvent::Handshake => self.on_handshake_datagram(now, rx, dg),
        }
    }

    /// A datagram no session claims. On a client, a stateless reset from one of our
    /// peers closes that session at once (the tokens of a client's few sessions are
    /// compared in constant time, one by one); a server answers a short packet for an
    /// id it does not know with a stateless reset (rate-limited by the router).
    fn on_unknown_datagram(&mut self, now: Time, rx: RxMeta, dg: &[u8]) {
        if !self.router.is_server() {
            for (h, c) in &mut self.conns {
                if c.session.handle_stateless_reset(dg) {
                    self.due.dirty.insert(*h);
                    return;
                }
            }
            return;
        }
        if rx.carrier == Carrier::Udp
            && let Some(reset) =
                self.router
                    .stateless_reset(now.instant, rx.remote, dg, &mut self.rng)
        {
            self.hs_out.push_back(Outgoing {
                src: Some(rx.local),
                dst: rx.remote,
                data: reset,
            });
        }
    }

    fn on_handshake_datagram(&mut self, now: Time, rx: RxMeta, dg: &mut [u8]) -> Delivery {
        let from = rx.remote;
        let key: PendingKey = match rx.carrier {
            Carrier::Udp => (None, from),
            Carrier::Tcp => (Some(rx.local), from),
        };
        if let Some(p) = self.pending.remove(&key) {
            return self.on_client_handshake(now, rx, dg, key, p);
        }
        if self.router.is_server() {
            return self.on_server_handshake(now, rx, dg);
        }
        // Client side, after completion: a retransmitted server flight goes to the
        // session, which re-sends our last flight.
        if let Some((&h, c)) = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.remote == from && !c.session.is_closed())
            .max_by_key(|(h, _)| **h)
        {
            c.session.handle_datagram(now.instant, rx, dg);
            self.due.dirty.insert(h);
            Delivery::Handshake
        } else {
            self.counters.dropped += 1;
            Delivery::Refused
        }
    }

    /// A handshake datagram for the client handshake `p` (waiting under `key`).
    fn on_client_handshake(
        &mut self,
        now: Time,
        rx: RxMeta,
        dg: &mut [u8],
        key: PendingKey,
        mut p: PendingConnect,
    ) -> Delivery {
        let from = rx.remote;
        match p.client.handle(now, dg, &mut self.rng) {
            Ok(Progress::Complete) => {
                self.complete_client(now, rx, p);
                Delivery::Handshake
            }
            Ok(Progress::Pending) => {
                let mut flight = Vec::new();
                while let Some(d) = p.client.poll_transmit() {
                    flight.push(d.clone());
                    self.hs_out.push_back(Outgoing {
                        src: key.0,
                        dst: from,
                        data: d,
                    });
                }
                if !flight.is_empty() {
                    p.flight = flight;
                }
                self.pending.insert(key, p);
                Delivery::Handshake
            }
            Err(e) => {
                // A datagram that does not parse (or is damaged) leaves the client
                // untouched.
                let fatal = !matches!(
                    e,
                    phantom_handshake::Error::Malformed(_)
                        | phantom_handshake::Error::LimitExceeded(_)
                        | phantom_handshake::Error::Damaged
                ) || (p.client.poll_timeout().is_none() && !p.client.is_complete());
                if fatal {
                    tracing::debug!(target: "phantom::runtime", peer = %from, error = %e, "handshake failed");
                    let _ = p
                        .reply
                        .send(Err(ConnectError::from_handshake(e, p.udp_remote)));
                    if let (Some(local), remote) = key {
                        self.tcp.links.remove(&(local, remote));
                    }
                } else {
                    self.counters.dropped += 1;
                    self.pending.insert(key, p);
                }
                Delivery::Refused
            }
        }
    }

    /// A handshake datagram for the server (server endpoints).
    fn on_server_handshake(&mut self, now: Time, rx: RxMeta, dg: &mut [u8]) -> Delivery {
        let from = rx.remote;
        let released = self.router.stats().early_released;
        let result = self
            .router
            .handle_handshake(now, rx.local, from, dg, &mut self.rng);
        if self.router.stats().early_released != released {
            // Early data released at ClientHello acceptance: `accept_early` callers.
            self.to_wake.append(&mut self.acceptors.wakers);
        }
        while let Some(t) = self.router.poll_handshake_transmit() {
            // Answers go back the way the datagram came (UDP socket or TCP).
            let src = (t.dst == from).then_some(rx.local);
            self.hs_out.push_back(Outgoing {
                src,
                dst: t.dst,
                data: t.payload,
            });
        }
        match result {
            Ok(Some(accepted)) => {
                let s = *accepted.session;
                let handshake = HandshakeInfo {
                    suite: accepted.suite,
                    mode: HandshakeMode::new(s.is_resumed(), accepted.pdk),
                };
                tracing::info!(target: "phantom::runtime", peer = %from, carrier = ?rx.carrier, session = ?s.session_id(), resumed = s.is_resumed(), early_data_accepted = s.early_data_accepted(), "accepted session");
                if self.closing {
                    self.router.remove(&s.session_id());
                    return Delivery::Handshake;
                }
                let h = accepted.handle.0;
                if let Some(claim) = self.acceptors.early_claims.remove(&s.session_id()) {
                    // The application took this handshake's early data: its
                    // `EarlyRequest` gets the connection (unless it was dropped).
                    if claim.send(h).is_ok() {
                        self.user_handles += 1;
                        self.conns
                            .insert(h, Box::new(ConnEntry::new(s, from, 1, handshake)));
                        self.due.dirty.insert(h);
                        return Delivery::Handshake;
                    }
                }
                self.counters.established += 1;
                let backlog = self.backlog.limit;
                let reserved = self
                    .backlog
                    .waiting
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < backlog).then_some(n + 1)
                    })
                    .is_ok();
                if !reserved {
                    // Too many sessions wait for `accept`: this one is closed (the
                    // peer learns why) and forgotten once drained (no handle).
                    tracing::debug!(target: "phantom::runtime", peer = %from, "accept backlog full: session refused");
                    let mut s = s;
                    s.close(now.instant, ACCEPT_BACKLOG_FULL, b"server busy");
                    self.conns
                        .insert(h, Box::new(ConnEntry::new(s, from, 0, handshake)));
                    self.due.dirty.insert(h);
                    return Delivery::Handshake;
                }
                self.conns
                    .insert(h, Box::new(ConnEntry::new(s, from, 1, handshake)));
                self.due.dirty.insert(h);
                self.incoming.push_back(h);
                self.to_wake.append(&mut self.acceptors.wakers);
                Delivery::Handshake
            }
            Ok(None) => Delivery::Handshake,
            Err(e) => {
                self.counters.dropped += 1;
                tracing::debug!(target: "phantom::runtime", peer = %from, error = %e, "handshake datagram refused");
                Delivery::Refused
            }
        }
    }

    fn complete_client(&mut self, now: Time, rx: RxMeta, p: PendingConnect) {
        let PendingConnect {
            mut client,
            session_cfg,
            reply,
            udp_remote,
            tcp_remote,
            early,
            server_key,
            ..
        } = p;
        let from = rx.remote;
        // The last flight (a PDK ClientFinished) goes out now, the way the handshake
        // came; the session keeps a copy to answer a server retransmission.
        while let Some(d) = client.poll_transmit() {
            self.hs_out.push_back(Outgoing {
                src: Some(rx.local),
                dst: from,
                data: d,
            });
        }
        if let Some(cert) = client.verified_certificate() {
            self.certificates.insert(server_key, cert.clone());
        }
        let result = client
            .into_established()
            .map_err(|e| ConnectError::from_handshake(e, udp_remote))
            .and_then(|est| {
                let seed = self.seed();
                let handshake = HandshakeInfo {
                    suite: est.suite,
                    mode: HandshakeMode::new(est.resumed, est.pdk),
                };
                Session::from_established(
                    Side::Client,
                    session_cfg,
                    est,
                    now.instant,
                    rx.local,
                    from,
                    seed,
                )
                .map(|s| (s, handshake))
                .map_err(ConnectError::InvalidOptions)
            });
        match result {
            Ok((mut s, handshake)) => {
                tracing::info!(target: "phantom::runtime", peer = %from, carrier = ?rx.carrier, session = ?s.session_id(), resumed = s.is_resumed(), early_data_accepted = s.early_data_accepted(), "handshake complete");
                if rx.carrier == Carrier::Tcp {
                    // UDP did not answer: start in the TCP state, probing UDP later.
                    let _ = s.fallback_mut().on_udp_blocked(now.instant);
                }
                let mut early_stream = None;
                if let Some(early) = early {
                    // Re-send the replay-safe streams under 1-RTT keys (nothing is lost
                    // if the server refused the 0-RTT copy).
                    if let Err(e) = s.replay_early_data(&early) {
                        let _ = reply.send(Err(ConnectError::InvalidOptions(e)));
                        return;
                    }
                    early_stream = early.streams().first().map(|st| st.id);
                }
                let h = self.install(s, from, 1, handshake);
                if let Some(c) = self.conns.get_mut(&h) {
                    c.early_stream = early_stream;
                    c.udp_remote = udp_remote;
                    c.tcp_remote = tcp_remote;
                    if rx.carrier == Carrier::Tcp {
                        c.tcp = TcpCarrier::Open(rx.local, from);
                    }
                }
                if reply.send(Ok(h)).is_err() {
                    // The connect future is gone: nobody will ever use this session.
                    self.release(h);
                } else {
                    self.user_handles += 1;
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Starts a client handshake over UDP. The returned second receiver fires after
    /// two unanswered retransmissions (time to try `tcp_remote`).
    pub(crate) fn start_connect(
        &mut self,
        now: Time,
        remote: SocketAddr,
        tcp_remote: Option<SocketAddr>,
        mut cfg: phantom_handshake::ClientConfig,
        session_cfg: SessionConfig,
        early: Option<EarlyData>,
    ) -> Result<(ConnectReply, oneshot::Receiver<()>), StartError> {
        if self.pending.contains_key(&(None, remote)) {
            return Err(StartError::InProgress);
        }
        if self.closing {
            return Err(StartError::Failed(ConnectError::EndpointClosed));
        }
        if cfg.suites.is_empty() {
            cfg.suites = phantom_handshake::default_suites();
        }
        let server_key = cfg.server_key.to_bytes();
        if cfg.certificate.is_none() {
            cfg.certificate = self.certificates.get(&server_key).cloned();
        }
        // The client's ids (id0 and the later ones) come from one generator, and this
        // endpoint parses headers with its length.
        cfg.conn_ids = session_cfg.conn_ids.generator.clone();
        self.router.set_conn_id_len(cfg.conn_ids.id_len());
        let mut client = Client::new(cfg, &mut self.rng, now)
            .map_err(|e| StartError::Failed(ConnectError::from_handshake(e, remote)))?;
        let mut flight = Vec::new();
        while let Some(d) = client.poll_transmit() {
            flight.push(d.clone());
            self.hs_out.push_back(Outgoing {
                src: None,
                dst: remote,
                data: d,
            });
        }
        let (tx, rx) = oneshot::channel();
        let (want_tx, want_rx) = oneshot::channel();
        self.pending.insert(
            (None, remote),
            PendingConnect {
                client,
                session_cfg,
                reply: tx,
                early,
                server_key,
                udp_remote: remote,
                tcp_remote,
                want_tcp: tcp_remote.map(|_| want_tx),
                timeouts: 0,
                flight,
            },
        );
        Ok((rx, want_rx))
    }

    /// Moves the UDP handshake with `udp_remote` onto the TCP connection
    /// `(local, remote)` and re-sends the client's last flight over it. False if that
    /// handshake is gone.
    pub(crate) fn move_handshake_to_tcp(
        &mut self,
        udp_remote: SocketAddr,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let Some(p) = self.pending.remove(&(None, udp_remote)) else {
            return false;
        };
        for d in &p.flight {
            self.hs_out.push_back(Outgoing {
                src: Some(local),
                dst: remote,
                data: d.clone(),
            });
        }
        tracing::info!(target: "phantom::runtime", %udp_remote, tcp = %remote, "handshake continues over TCP");
        self.pending.insert((Some(local), remote), p);
        true
    }

    /// Registers a TCP connection carrying datagrams.
    pub(crate) fn add_tcp_link(&mut self, local: SocketAddr, remote: SocketAddr, link: TcpLink) {
        if self.tcp.locals.len() >= 1024 {
            let live: HashSet<SocketAddr> = self.tcp.links.keys().map(|k| k.0).collect();
            self.tcp.locals.retain(|a| live.contains(a));
        }
        self.tcp.locals.insert(local);
        self.tcp.links.insert((local, remote), link);
    }

    /// A TCP connection ended: forget it and stop every session's path over it
    /// (their in-flight data is re-sent on their other paths).
    pub(crate) fn remove_tcp_link(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.tcp.links.remove(&(local, remote));
        for (&h, c) in &mut self.conns {
            if c.tcp == TcpCarrier::Open(local, remote) {
                c.tcp = TcpCarrier::Idle;
            }
            if c.session.abandon_path(local, remote).is_ok() {
                tracing::debug!(target: "phantom::runtime", %local, %remote, "TCP path closed");
                self.due.dirty.insert(h);
            }
        }
    }

    /// The carrier of the path from `local` to `remote`: TCP if a TCP connection has
    /// exactly those addresses, or `local` is (or was) the local address of one and is
    /// not the primary UDP socket's; UDP otherwise.
    pub(crate) fn carrier_of(&self, local: SocketAddr, remote: SocketAddr) -> Carrier {
        let tcp = self.tcp.links.contains_key(&(local, remote))
            || (local != self.local
                && (self.tcp.listen == Some(local) || self.tcp.locals.contains(&local)));
        if tcp { Carrier::Tcp } else { Carrier::Udp }
    }

    /// Drops one handle of a connection; the last one closes the session.
    pub(crate) fn release(&mut self, h: u64) {
        if let Some(c) = self.conns.get_mut(&h) {
            c.handles = c.handles.saturating_sub(1);
            if c.handles == 0 {
                if !c.session.is_closed() {
                    let now = self.last_now.unwrap_or_else(|| clock::read().0);
                    c.session.close(now, AppCode(0), b"connection dropped");
                }
                // Dirty either way: `reap` visits it (a drained session goes now).
                self.due.dirty.insert(h);
            }
        }
    }

    /// Runs every expired timer.
    pub(crate) fn on_timeouts(&mut self, now: Time) {
        self.rotate_handshake_keys(now);
        // Each expired session is marked dirty, so `process_events` re-reads its
        // deadline in this same loop.
        let expired: Vec<u64> = self
            .due
            .timers
            .range(..=(now.instant, u64::MAX))
            .map(|&(_, h)| h)
            .collect();
        for h in expired {
            if let Some(c) = self.conns.get_mut(&h) {
                c.session.handle_timeout(now.instant);
                self.due.dirty.insert(h);
            }
        }
        if self
            .router
            .poll_handshake_timeout()
            .is_some_and(|d| d <= now.instant)
        {
            self.router.handle_handshake_timeout(now);
            // Early data whose handshake expired: its `EarlyRequest` learns it.
            let router = &self.router;
            self.acceptors
                .early_claims
                .retain(|id, _| router.awaits_handshake(id));
            while let Some(t) = self.router.poll_handshake_transmit() {
                self.hs_out.push_back(Outgoing {
                    src: None,
                    dst: t.dst,
                    data: t.payload,
                });
            }
        }
        let expired: Vec<PendingKey> = self
            .pending
            .iter()
            .filter(|(_, p)| p.client.poll_timeout().is_some_and(|d| d <= now.instant))
            .map(|(a, _)| *a)
            .collect();
        for key in expired {
            if let Some(mut p) = self.pending.remove(&key) {
                match p.client.handle_timeout(now) {
                    Ok(()) => {
                        while let Some(d) = p.client.poll_transmit() {
                            self.hs_out.push_back(Outgoing {
                                src: key.0,
                                dst: key.1,
                                data: d,
                            });
                        }
                        p.timeouts = p.timeouts.saturating_add(1);
                        if p.timeouts >= 2
                            && key.0.is_none()
                            && let Some(tx) = p.want_tcp.take()
                        {
                            // UDP does not answer: the connect future opens TCP.
                            let _ = tx.send(());
                        }
                        self.pending.insert(key, p);
                    }
                    Err(e) => {
                        let _ = p
                            .reply
                            .send(Err(ConnectError::from_handshake(e, p.udp_remote)));
                        if let (Some(local), remote) = key {
                            self.tcp.links.remove(&(local, remote));
                        }
                    }
                }
            }
        }
        self.forget_abandoned_connects();
    }

    /// Server side: rotates the ticket and retry keys when
    /// `phantom_handshake::ServerConfig::key_rotation` has passed (the first call starts the
    /// schedule; the handshake server's timeout includes the next rotation).
    pub(crate) fn rotate_handshake_keys(&mut self, now: Time) {
        if let Some(server) = self.router.server_mut()
            && server.rotate_keys_if_due(now, &mut self.rng)
        {
            tracing::debug!(target: "phantom::runtime", "ticket and retry keys rotated");
        }
    }

    /// How many datagrams the abandoned (connect future gone) handshake with `peer`
    /// dropped, if it took none: its connect timed out on unusable answers, not silence.
    pub(crate) fn unusable_answers(&self, peer: SocketAddr) -> Option<u32> {
        self.pending
            .values()
            .find(|p| p.udp_remote == peer && p.reply.is_closed())
            .filter(|p| p.client.datagrams_used() == 0 && p.client.datagrams_dropped() > 0)
            .map(|p| p.client.datagrams_dropped())
    }

    /// Drops handshakes whose connect future is gone, with the TCP connection each
    /// one opened, if any.
    pub(crate) fn forget_abandoned_connects(&mut self) {
        let gone: Vec<PendingKey> = self
            .pending
            .iter()
            .filter(|(_, p)| p.reply.is_closed())
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            self.pending.remove(&key);
            if let (Some(local), remote) = key {
                self.tcp.links.remove(&(local, remote));
            }
        }
    }

    /// Drains events of the sessions in `touched`, waking the waiting tasks.
    /// Returns the carrier actions the runtime must take (client sessions with a TCP
    /// fallback address only).
    pub(crate) fn process_events(&mut self, touched: &BTreeSet<u64>) -> Vec<(u64, CarrierAction)> {
        let mut actions = Vec::new();
        // (The clock only while an added path waits for an id.)
        let now = (!self.sockets.waiting_paths.is_empty()).then(|| self.now().instant);
        for h in touched {
            let Some(c) = self.conns.get_mut(h) else {
                continue;
            };
            // I11: the routing table follows the ids the session issues and retires.
            while let Some(e) = c.session.poll_conn_id_event() {
                match e {
                    ConnIdEvent::Issued(id) => self.router.add_conn_id(SessionHandle(*h), id),
                    ConnIdEvent::Retired(id) => self.router.retire_conn_id(&id),
                }
            }
            self.sockets.waiting_paths.retain(|&(w, local, remote)| {
                if w != *h || c.session.is_closed() {
                    return w != *h;
                }
                let Some(now) = now.filter(|_| c.session.unused_peer_conn_ids() > 0) else {
                    return true;
                };
                let r = c.session.probe_path(now, local, remote);
                tracing::info!(target: "phantom::runtime", ?r, %local, "validating added path");
                false
            });
            while let Some(ev) = c.session.poll_event() {
                match ev {
                    Event::Connected => {}
                    Event::StreamOpened { id, dir } => match dir {
                        Dir::Bi => {
                            c.incoming_bi.push_back(id);
                            self.to_wake.append(&mut c.accept_wakers);
                        }
                        Dir::Uni => {
                            c.incoming_uni.push_back(id);
                            self.to_wake.append(&mut c.accept_wakers);
                        }
                    },
                    Event::StreamReadable(id) => {
                        self.to_wake.extend(c.read_wakers.remove(&id));
                    }
                    Event::StreamWritable(id) | Event::StreamFinished(id) => {
                        self.to_wake.extend(c.write_wakers.remove(&id));
                    }
                    Event::DatagramReceived => {
                        self.to_wake.append(&mut c.datagram_wakers);
                    }
                    Event::PathValidated(p) => {
                        tracing::info!(target: "phantom::runtime", path = p.0, "path validated");
                        if c.tcp_remote.is_some() {
                            // Back on UDP once a UDP path validates: retire TCP.
                            actions.push((*h, CarrierAction::PathValidated(p)));
                        }
                    }
                    Event::PathFailed(p) => {
                        tracing::info!(target: "phantom::runtime", path = p.0, "path failed");
                        self.sockets.prune = true;
                    }
                    Event::Migrated { from, to } => {
                        tracing::info!(target: "phantom::runtime", from = from.0, to = to.0, "peer migrated");
                    }
                    Event::Rekeyed { epoch, local } => {
                        tracing::debug!(target: "phantom::runtime", epoch = epoch.0, local, "rekeyed");
                    }
                    Event::Fallback(a) => {
                        if c.tcp_remote.is_some() {
                            tracing::info!(target: "phantom::runtime", action = ?a, "carrier fallback");
                            actions.push((*h, CarrierAction::Fallback(a)));
                        } else {
                            tracing::debug!(target: "phantom::runtime", action = ?a, "fallback action ignored (no TCP address)");
                        }
                    }
                    Event::Closed(reason) => {
                        tracing::info!(target: "phantom::runtime", reason = ?reason, "session closed");
                        c.close_reason = Some(reason);
                        c.wake_all(&mut self.to_wake);
                    }
                }
            }
            let deadline = c.session.poll_timeout();
            if deadline != c.deadline {
                if let Some(d) = c.deadline {
                    self.due.timers.remove(&(d, *h));
                }
                if let Some(d) = deadline {
                    self.due.timers.insert((d, *h));
                }
                c.deadline = deadline;
            }
        }
        actions
    }

    /// Forgets drained sessions among `touched` (a session drains only in a call
    /// that marks it dirty, and `release` marks a session dirty when its last handle
    /// goes): unregisters them from the router, and drops their state once no handle
    /// refers to them.
    pub(crate) fn reap(&mut self, touched: &BTreeSet<u64>) {
        let mut gone = Vec::new();
        for &h in touched {
            let Some(c) = self.conns.get_mut(&h) else {
                continue;
            };
            if c.session.is_drained() {
                if !c.unregistered {
                    c.unregistered = true;
                    self.sockets.prune = true;
                    self.router.remove(&c.session.session_id());
                    if let TcpCarrier::Open(l, r) = c.tcp {
                        // The client's own TCP connection: close it with the session.
                        self.tcp.links.remove(&(l, r));
                        c.tcp = TcpCarrier::Idle;
                    }
                    if c.close_reason.is_none() {
                        c.close_reason = Some(CloseReason::Error(phantom_session::Error::Closed));
                    }
                    c.wake_all(&mut self.to_wake);
                }
                if c.handles == 0 {
                    gone.push(h);
                }
            }
        }
        for h in gone {
            if let Some(d) = self.conns.remove(&h).and_then(|c| c.deadline) {
                self.due.timers.remove(&(d, h));
            }
            self.due.dirty.remove(&h);
        }
        if !self.idle_wakers.is_empty() && self.live_sessions() == 0 {
            self.to_wake.append(&mut self.idle_wakers);
        }
    }

    /// Local addresses the live sessions' paths use.
    pub(crate) fn locals_in_use(&self) -> HashSet<SocketAddr> {
        self.conns
            .values()
            .filter(|c| !c.unregistered)
            .flat_map(|c| c.session.paths().into_iter().map(|p| p.local))
            .chain(self.sockets.waiting_paths.iter().map(|w| w.1))
            .collect()
    }

    /// Sessions not yet drained.
    pub(crate) fn live_sessions(&self) -> usize {
        self.conns.values().filter(|c| !c.unregistered).count()
    }

    /// Closes every session (endpoint shutdown).
    pub(crate) fn close_all(&mut self, code: AppCode, reason: &[u8]) {
        let now = self.now();
        for (&h, c) in &mut self.conns {
            if !c.session.is_closed() {
                c.session.close(now.instant, code, reason);
                self.due.dirty.insert(h);
            }
        }
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(ConnectError::EndpointClosed));
        }
        self.acceptors.early_claims.clear();
        for w in self.acceptors.wakers.drain(..) {
            w.wake();
        }
    }

    /// The earliest deadline of any session or handshake.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.due.timers.first().map(|&(d, _)| d);
        let server = self.router.poll_handshake_timeout();
        let clients = self
            .pending
            .values()
            .filter_map(|p| p.client.poll_timeout());
        sessions.into_iter().chain(server).chain(clients).min()
    }
}

/// Accessors of the driver, the carriers and the API types: every change of the
/// shared state goes through these, so that sessions are marked dirty (and the
/// tasks to wake collected) here and nowhere else.
impl Inner {
    /// The primary UDP socket's local address.
    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }

    /// The primary socket moved (rebind).
    pub(crate) fn set_local(&mut self, local: SocketAddr) {
        self.local = local;
    }

    /// The TCP listening address (server with a TCP carrier).
    pub(crate) fn tcp_listen(&self) -> Option<SocketAddr> {
        self.tcp.listen
    }

    /// Sets the TCP listening address.
    pub(crate) fn set_tcp_listen(&mut self, addr: Option<SocketAddr>) {
        self.tcp.listen = addr;
    }

    /// Sets the most sessions waiting for `accept`.
    /// `waiting` counts the sessions waiting on all workers of the endpoint.
    pub(crate) fn set_accept_backlog(&mut self, backlog: usize, waiting: Arc<AtomicUsize>) {
        self.backlog = Backlog {
            limit: backlog,
            waiting,
        };
    }

    /// True on a server endpoint.
    pub(crate) fn is_server(&self) -> bool {
        self.router.is_server()
    }

    /// Datagrams dropped before reaching a session.
    pub(crate) fn dropped(&self) -> u64 {
        self.counters.dropped
    }

    /// Short packets for connection ids no session here holds.
    pub(crate) fn unknown_ids(&self) -> u64 {
        self.counters.unknown_ids
    }

    /// Sessions the handshake server completed.
    pub(crate) fn established(&self) -> u64 {
        self.counters.established
    }

    /// Datagrams the TCP carrier dropped.
    pub(crate) fn tcp_dropped(&self) -> u64 {
        self.tcp.dropped
    }

    /// The runtime the endpoint was created in (spawns carrier tasks).
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    /// A new `Endpoint` or `Connection` handle.
    pub(crate) fn add_user_handle(&mut self) {
        self.user_handles += 1;
    }

    /// An `Endpoint` or `Connection` handle dropped.
    pub(crate) fn drop_user_handle(&mut self) {
        self.user_handles = self.user_handles.saturating_sub(1);
    }

    /// The session `h`, if it still exists.
    pub(crate) fn conn(&self, h: u64) -> Option<&ConnEntry> {
        self.conns.get(&h).map(|c| &**c)
    }

    /// The session `h` to change; whoever changes what it sends calls
    /// [`Inner::mark_dirty`] (or uses [`Shared::with_dirty`]).
    pub(crate) fn conn_mut(&mut self, h: u64) -> Option<&mut ConnEntry> {
        self.conns.get_mut(&h).map(|c| &mut **c)
    }

    /// The session `h` may have something to send: the driver polls it.
    pub(crate) fn mark_dirty(&mut self, h: u64) {
        self.due.dirty.insert(h);
    }

    /// Sessions to poll for transmits this loop.
    pub(crate) fn dirty_sessions(&self) -> BTreeSet<u64> {
        self.due.dirty.clone()
    }

    /// Session `h` was polled until it had nothing more to send.
    pub(crate) fn clear_dirty(&mut self, h: u64) {
        self.due.dirty.remove(&h);
    }

    /// The next datagram session `h` sends, built into `buf`.
    pub(crate) fn poll_transmit(
        &mut self,
        h: u64,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<phantom_session::Transmit> {
        self.conns.get_mut(&h)?.session.poll_transmit(now, buf)
    }

    /// The next handshake datagram to send.
    pub(crate) fn pop_handshake_out(&mut self) -> Option<Outgoing> {
        self.hs_out.pop_front()
    }

    /// Queues an extra UDP socket for the driver to adopt (an added path), and marks
    /// session `h` dirty (it probes the path).
    pub(crate) fn add_path_socket(&mut self, h: u64, socket: std::net::UdpSocket) {
        self.sockets.new.push(socket);
        self.due.dirty.insert(h);
    }

    /// Extra UDP sockets to adopt.
    pub(crate) fn take_new_sockets(&mut self) -> Vec<std::net::UdpSocket> {
        std::mem::take(&mut self.sockets.new)
    }

    /// Asks the driver to move to `socket` (client address change).
    pub(crate) fn set_rebind(&mut self, socket: std::net::UdpSocket) {
        self.sockets.rebind = Some(socket);
    }

    /// Session `h` opens the path from `local` to `remote` once the peer's connection
    /// ids arrive (none is unused yet).
    pub(crate) fn add_waiting_path(&mut self, h: u64, local: SocketAddr, remote: SocketAddr) {
        self.sockets.waiting_paths.push((h, local, remote));
    }

    /// The primary socket moved from `old` to `new`: every session's paths from `old`
    /// switch to an unused connection id of the peer's (I11; one without keeps its id).
    pub(crate) fn rebind_sessions(&mut self, old: SocketAddr, new: SocketAddr) {
        for (&h, c) in &mut self.conns {
            if let Err(e) = c.session.rebind_local(old, new) {
                tracing::debug!(target: "phantom::runtime", error = %e, "rebind keeps the connection id");
            }
            self.due.dirty.insert(h);
        }
    }

    /// The socket to move to, if a rebind was asked for.
    pub(crate) fn take_rebind(&mut self) -> Option<std::net::UdpSocket> {
        self.sockets.rebind.take()
    }

    /// Asks the driver to close the extra sockets no path uses any more.
    pub(crate) fn request_prune(&mut self) {
        self.sockets.prune = true;
    }

    /// Whether a prune was asked for (and resets the request).
    pub(crate) fn take_prune(&mut self) -> bool {
        std::mem::take(&mut self.sockets.prune)
    }

    /// Hands a datagram from `src` (`None`: any) to `dst` to a live TCP connection
    /// with those addresses, if there is one: true if it was taken (queued, or
    /// dropped because the connection's queue is full).
    pub(crate) fn send_over_tcp(
        &mut self,
        src: Option<SocketAddr>,
        dst: SocketAddr,
        data: &[u8],
    ) -> bool {
        if self.tcp.links.is_empty() {
            return false;
        }
        let link = match src {
            Some(s) => self.tcp.links.get(&(s, dst)),
            None => self
                .tcp
                .links
                .iter()
                .find(|((_, r), _)| *r == dst)
                .map(|(_, l)| l),
        };
        let Some(link) = link else {
            return false;
        };
        if link.tx.try_send(data.to_vec()).is_err() {
            self.tcp.dropped += 1;
        }
        true
    }

    /// A datagram from `src`, a TCP connection's local address whose connection is
    /// gone, is dropped (counted), never sent over UDP: true if so.
    pub(crate) fn drop_from_closed_tcp(&mut self, src: SocketAddr) -> bool {
        let tcp = self.tcp.locals.contains(&src) || self.tcp.listen == Some(src);
        if tcp {
            self.tcp.dropped += 1;
        }
        tcp
    }

    /// Forgets the TCP connection `(local, remote)` (its writer ends).
    pub(crate) fn close_tcp_link(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.tcp.links.remove(&(local, remote));
    }

    /// True once the last handle dropped or the endpoint was closed.
    pub(crate) fn wants_shutdown(&self) -> bool {
        self.user_handles == 0 || self.closing
    }

    /// Closes the endpoint: every session with `code`/`reason`, no new ones.
    pub(crate) fn shut_down(&mut self, code: AppCode, reason: &[u8]) {
        self.closing = true;
        self.close_all(code, reason);
    }

    /// True once the endpoint is closing and every session and handshake is gone.
    pub(crate) fn is_finished(&self) -> bool {
        self.closing && self.conns.values().all(|c| c.unregistered) && self.pending.is_empty()
    }

    /// The driver stops: TCP connections close, `wait_idle` callers wake.
    pub(crate) fn stop(&mut self) {
        self.tcp.links.clear();
        self.to_wake.append(&mut self.idle_wakers);
    }

    /// Takes the next accepted connection (a new user handle), or registers `waker`.
    pub(crate) fn poll_accept(&mut self, waker: &Waker) -> std::task::Poll<Option<u64>> {
        if let Some(h) = self.incoming.pop_front() {
            self.backlog.waiting.fetch_sub(1, Ordering::AcqRel);
            self.user_handles += 1;
            return std::task::Poll::Ready(Some(h));
        }
        if self.closing {
            return std::task::Poll::Ready(None);
        }
        self.acceptors.wakers.push(waker.clone());
        std::task::Poll::Pending
    }

    /// Takes the next early data released at ClientHello acceptance, with the receiver
    /// of its connection (sent when the handshake completes), or registers `waker`.
    pub(crate) fn poll_accept_early(
        &mut self,
        waker: &Waker,
    ) -> std::task::Poll<Option<(ReleasedEarlyData, oneshot::Receiver<u64>)>> {
        if self.closing {
            return std::task::Poll::Ready(None);
        }
        if let Some(early) = self.router.poll_early_data() {
            let router = &self.router;
            // Bounded like the router's held early data: claims whose handshake can
            // no longer complete go.
            self.acceptors
                .early_claims
                .retain(|id, _| router.awaits_handshake(id));
            let (tx, rx) = oneshot::channel();
            self.acceptors.early_claims.insert(early.session_id, tx);
            return std::task::Poll::Ready(Some((early, rx)));
        }
        self.acceptors.wakers.push(waker.clone());
        std::task::Poll::Pending
    }

    /// Ready once no session is live, else registers `waker`.
    pub(crate) fn poll_idle(&mut self, waker: &Waker) -> std::task::Poll<()> {
        if self.live_sessions() == 0 {
            return std::task::Poll::Ready(());
        }
        self.idle_wakers.push(waker.clone());
        std::task::Poll::Pending
    }

    /// A new handle of connection `h` (a clone or a stream).
    pub(crate) fn add_conn_handle(&mut self, h: u64) {
        self.user_handles += 1;
        if let Some(c) = self.conns.get_mut(&h) {
            c.handles += 1;
        }
    }

    /// A handle of connection `h` dropped; the last one closes the session.
    pub(crate) fn drop_conn_handle(&mut self, h: u64) {
        self.user_handles = self.user_handles.saturating_sub(1);
        self.release(h);
    }

    /// Closes session `h` with an application `code` and `reason`.
    pub(crate) fn close_conn(&mut self, h: u64, code: AppCode, reason: &[u8]) {
        let now = self.now();
        if let Some(c) = self.conns.get_mut(&h) {
            c.session.close(now.instant, code, reason);
        }
        self.due.dirty.insert(h);
    }
}
