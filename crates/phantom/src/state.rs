//! The endpoint's shared state: sessions, handshakes, wakers. Only the driver task
//! touches the socket; application handles lock this state, call the sans-IO
//! session, mark the session dirty and wake the driver.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::task::Waker;
use std::time::Instant;

use parking_lot::Mutex;
use phantom_handshake::{Client, Progress, Server, Time, VerifiedCertificate};
use phantom_session::early::EarlyData;
use phantom_session::{
    CloseReason, Config as SessionConfig, DatagramEvent, Dir, Event, RxMeta, Session, Side,
};
use rand::Rng as _;
use rand::rngs::StdRng;
use tokio::sync::{Notify, oneshot};

use crate::clock;
use crate::error::{ConnectionClosed, Error};

/// State shared by the driver task and every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) inner: Mutex<Inner>,
    /// Wakes the driver: new application data, a close, a new connect.
    pub(crate) notify: Notify,
}

impl Shared {
    /// Locks, runs `f`, and wakes the driver.
    pub(crate) fn with_dirty<R>(
        &self,
        handle: u64,
        f: impl FnOnce(&mut ConnState) -> R,
    ) -> Option<R> {
        let mut g = self.inner.lock();
        let r = g.conns.get_mut(&handle).map(f);
        g.dirty.insert(handle);
        drop(g);
        self.notify.notify_one();
        r
    }
}

/// A client handshake in flight.
pub(crate) struct PendingConnect {
    pub(crate) client: Client,
    pub(crate) session_cfg: SessionConfig,
    /// Replay-safe streams sent as 0-RTT data, re-opened in the session afterwards.
    pub(crate) early: Option<EarlyData>,
    /// The pinned key, naming the certificate cache entry.
    pub(crate) server_key: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<u64, Error>>,
}

/// One session and the wakers of the tasks waiting on it.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) session: Session,
    pub(crate) remote: SocketAddr,
    /// Live `Connection`/stream handles; the session is closed when this drops to 0.
    pub(crate) handles: usize,
    pub(crate) incoming_bi: VecDeque<phantom_wire::StreamId>,
    pub(crate) incoming_uni: VecDeque<phantom_wire::StreamId>,
    pub(crate) datagram_wakers: Vec<Waker>,
    /// Client: the first replay-safe (0-RTT) stream, until taken.
    pub(crate) early_stream: Option<phantom_wire::StreamId>,
    pub(crate) accept_wakers: Vec<Waker>,
    pub(crate) read_wakers: HashMap<u32, Waker>,
    pub(crate) write_wakers: HashMap<u32, Waker>,
    pub(crate) other_wakers: Vec<Waker>,
    pub(crate) close_reason: Option<CloseReason>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) unregistered: bool,
}

impl ConnState {
    fn new(session: Session, remote: SocketAddr, handles: usize) -> Self {
        Self {
            session,
            remote,
            handles,
            incoming_bi: VecDeque::new(),
            incoming_uni: VecDeque::new(),
            datagram_wakers: Vec::new(),
            early_stream: None,
            accept_wakers: Vec::new(),
            read_wakers: HashMap::new(),
            write_wakers: HashMap::new(),
            other_wakers: Vec::new(),
            close_reason: None,
            deadline: None,
            unregistered: false,
        }
    }

    /// The error to report once the connection is closed.
    pub(crate) fn closed_error(&self) -> Option<Error> {
        self.close_reason
            .clone()
            .map(|r| Error::Closed(ConnectionClosed(r)))
            .or_else(|| {
                self.session
                    .is_closed()
                    .then_some(Error::Closed(ConnectionClosed(CloseReason::Error(
                        phantom_session::Error::Closed,
                    ))))
            })
    }

    fn wake_writers(&mut self) {
        for (_, w) in self.write_wakers.drain() {
            w.wake();
        }
        for w in self.other_wakers.drain(..) {
            w.wake();
        }
    }

    fn wake_all(&mut self) {
        self.wake_writers();
        for (_, w) in self.read_wakers.drain() {
            w.wake();
        }
        for w in self.accept_wakers.drain(..) {
            w.wake();
        }
        for w in self.datagram_wakers.drain(..) {
            w.wake();
        }
    }
}

/// Everything behind the endpoint's lock.
pub(crate) struct Inner {
    pub(crate) local: SocketAddr,
    pub(crate) router: phantom_session::Endpoint,
    pub(crate) conns: HashMap<u64, ConnState>,
    pub(crate) server: Option<Server>,
    pub(crate) server_session_cfg: SessionConfig,
    pub(crate) pending: HashMap<SocketAddr, PendingConnect>,
    /// Handshake datagrams to send.
    pub(crate) hs_out: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Accepted connections not yet taken by `accept` (each holds one handle).
    pub(crate) incoming: VecDeque<u64>,
    pub(crate) accept_wakers: Vec<Waker>,
    pub(crate) idle_wakers: Vec<Waker>,
    /// Sessions to poll for transmits.
    pub(crate) dirty: BTreeSet<u64>,
    pub(crate) rng: StdRng,
    last_now: Option<Instant>,
    /// Live `Endpoint` and `Connection` handles (streams hold a `Connection`).
    pub(crate) user_handles: usize,
    /// Set by `Endpoint::close` or when the last handle drops.
    pub(crate) closing: bool,
    /// A new socket to move to (client address change).
    pub(crate) rebind: Option<std::net::UdpSocket>,
    /// Datagrams received for unknown sessions or that failed the handshake.
    pub(crate) dropped: u64,
    /// Server certificates verified by earlier handshakes, by pinned key: the next
    /// connect to that server is a 1-RTT PDK handshake without signature checks.
    pub(crate) certificates: HashMap<Vec<u8>, VerifiedCertificate>,
}

impl core::fmt::Debug for Inner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inner")
            .field("local", &self.local)
            .field("conns", &self.conns.len())
            .field("pending", &self.pending.len())
            .field("server", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

/// Most datagrams received per driver loop.
pub(crate) const RECV_BUDGET: usize = 64;
/// Most datagrams sent per driver loop.
pub(crate) const SEND_BUDGET: usize = 64;

impl Inner {
    pub(crate) fn new(local: SocketAddr, server: Option<Server>, cfg: SessionConfig) -> Self {
        Self {
            local,
            router: phantom_session::Endpoint::new(),
            conns: HashMap::new(),
            server,
            server_session_cfg: cfg,
            pending: HashMap::new(),
            hs_out: VecDeque::new(),
            incoming: VecDeque::new(),
            accept_wakers: Vec::new(),
            idle_wakers: Vec::new(),
            dirty: BTreeSet::new(),
            rng: rand::make_rng(),
            last_now: None,
            user_handles: 1,
            closing: false,
            rebind: None,
            dropped: 0,
            certificates: HashMap::new(),
        }
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
    fn install(&mut self, session: Session, remote: SocketAddr, handles: usize) -> u64 {
        let h = self.router.insert(session.session_id()).0;
        self.conns
            .insert(h, ConnState::new(session, remote, handles));
        self.dirty.insert(h);
        h
    }

    /// One received datagram.
    pub(crate) fn on_datagram(&mut self, now: Time, from: SocketAddr, dg: &mut [u8]) {
        match self.router.route(dg) {
            DatagramEvent::Session(h) => {
                if let Some(c) = self.conns.get_mut(&h.0) {
                    c.session
                        .handle_datagram(now.instant, RxMeta::udp(self.local, from), dg);
                    // Acks may have freed buffer space or stream credit.
                    c.wake_writers();
                    self.dirty.insert(h.0);
                }
            }
            DatagramEvent::Unknown => self.dropped += 1,
            DatagramEvent::Handshake => self.on_handshake_datagram(now, from, dg),
        }
    }

    fn on_handshake_datagram(&mut self, now: Time, from: SocketAddr, dg: &mut [u8]) {
        if let Some(mut p) = self.pending.remove(&from) {
            match p.client.handle(now, dg, &mut self.rng) {
                Ok(Progress::Complete) => self.complete_client(now, from, p),
                Ok(Progress::Pending) => {
                    while let Some(d) = p.client.poll_transmit() {
                        self.hs_out.push_back((from, d));
                    }
                    self.pending.insert(from, p);
                }
                Err(e) => {
                    // A datagram that does not parse leaves the client untouched.
                    let fatal = !matches!(
                        e,
                        phantom_handshake::Error::Malformed(_)
                            | phantom_handshake::Error::LimitExceeded(_)
                    ) || (p.client.poll_timeout().is_none() && !p.client.is_complete());
                    if fatal {
                        tracing::debug!(target: "phantom::runtime", peer = %from, error = %e, "handshake failed");
                        let _ = p.reply.send(Err(Error::from_handshake(e, from)));
                    } else {
                        self.dropped += 1;
                        self.pending.insert(from, p);
                    }
                }
            }
            return;
        }
        if let Some(server) = self.server.as_mut() {
            let router = &self.router;
            let result =
                server.handle_datagram(now, from, dg, &mut self.rng, |id| router.is_live(id));
            while let Some(t) = server.poll_transmit() {
                self.hs_out.push_back((t.dst, t.payload));
            }
            match result {
                Ok(Some(est)) => {
                    let seed = self.seed();
                    match Session::from_established(
                        Side::Server,
                        self.server_session_cfg.clone(),
                        *est,
                        now.instant,
                        self.local,
                        from,
                        seed,
                    ) {
                        Ok(s) => {
                            tracing::info!(target: "phantom::runtime", peer = %from, session = ?s.session_id(), "accepted session");
                            if self.closing {
                                return;
                            }
                            let h = self.install(s, from, 1);
                            self.incoming.push_back(h);
                            for w in self.accept_wakers.drain(..) {
                                w.wake();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(target: "phantom::runtime", error = %e, "cannot build session");
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.dropped += 1;
                    tracing::debug!(target: "phantom::runtime", peer = %from, error = %e, "handshake datagram refused");
                }
            }
            return;
        }
        // Client side, after completion: a retransmitted server flight goes to the
        // session, which re-sends our last flight.
        if let Some((&h, c)) = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.remote == from && !c.session.is_closed())
            .max_by_key(|(h, _)| **h)
        {
            c.session
                .handle_datagram(now.instant, RxMeta::udp(self.local, from), dg);
            self.dirty.insert(h);
        } else {
            self.dropped += 1;
        }
    }

    fn complete_client(&mut self, now: Time, from: SocketAddr, p: PendingConnect) {
        let PendingConnect {
            mut client,
            session_cfg,
            reply,
            early,
            server_key,
        } = p;
        // The last flight (a PDK ClientFinished) goes out now; the session keeps a copy
        // to answer a server retransmission.
        while let Some(d) = client.poll_transmit() {
            self.hs_out.push_back((from, d));
        }
        if let Some(cert) = client.verified_certificate() {
            self.certificates.insert(server_key, cert.clone());
        }
        let result = client
            .into_established()
            .map_err(|e| Error::from_handshake(e, from))
            .and_then(|est| {
                let seed = self.seed();
                Session::from_established(
                    Side::Client,
                    session_cfg,
                    est,
                    now.instant,
                    self.local,
                    from,
                    seed,
                )
                .map_err(Error::Session)
            });
        match result {
            Ok(mut s) => {
                tracing::info!(target: "phantom::runtime", peer = %from, session = ?s.session_id(), resumed = s.is_resumed(), early_data_accepted = s.early_data_accepted(), "handshake complete");
                let mut early_stream = None;
                if let Some(early) = early {
                    // Re-send the replay-safe streams under 1-RTT keys (nothing is lost
                    // if the server refused the 0-RTT copy).
                    if let Err(e) = s.replay_early_data(&early) {
                        let _ = reply.send(Err(Error::Session(e)));
                        return;
                    }
                    early_stream = early.streams().first().map(|st| st.id);
                }
                let h = self.install(s, from, 1);
                if let Some(c) = self.conns.get_mut(&h) {
                    c.early_stream = early_stream;
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

    /// Starts a client handshake.
    pub(crate) fn start_connect(
        &mut self,
        now: Time,
        remote: SocketAddr,
        mut cfg: phantom_handshake::ClientConfig,
        session_cfg: SessionConfig,
        early: Option<EarlyData>,
    ) -> Result<oneshot::Receiver<Result<u64, Error>>, Error> {
        if self.pending.contains_key(&remote) {
            return Err(Error::HandshakeInProgress(remote));
        }
        if self.closing {
            return Err(Error::EndpointClosed);
        }
        if cfg.suites.is_empty() {
            cfg.suites = phantom_handshake::default_suites();
        }
        let server_key = cfg.server_key.to_bytes();
        if cfg.certificate.is_none() {
            cfg.certificate = self.certificates.get(&server_key).cloned();
        }
        let mut client =
            Client::new(cfg, &mut self.rng, now).map_err(|e| Error::from_handshake(e, remote))?;
        while let Some(d) = client.poll_transmit() {
            self.hs_out.push_back((remote, d));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.insert(
            remote,
            PendingConnect {
                client,
                session_cfg,
                reply: tx,
                early,
                server_key,
            },
        );
        Ok(rx)
    }

    /// Drops one handle of a connection; the last one closes the session.
    pub(crate) fn release(&mut self, h: u64) {
        if let Some(c) = self.conns.get_mut(&h) {
            c.handles = c.handles.saturating_sub(1);
            if c.handles == 0 && !c.session.is_closed() {
                let now = self.last_now.unwrap_or_else(|| clock::read().0);
                c.session.close(now, 0, b"connection dropped");
                self.dirty.insert(h);
            }
        }
    }

    /// Runs every expired timer.
    pub(crate) fn on_timeouts(&mut self, now: Time) {
        for (&h, c) in &mut self.conns {
            if c.deadline.is_some_and(|d| d <= now.instant) {
                c.session.handle_timeout(now.instant);
                self.dirty.insert(h);
            }
        }
        if let Some(s) = self.server.as_mut()
            && s.poll_timeout().is_some_and(|d| d <= now.instant)
        {
            s.handle_timeout(now);
            while let Some(t) = s.poll_transmit() {
                self.hs_out.push_back((t.dst, t.payload));
            }
        }
        let expired: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|(_, p)| p.client.poll_timeout().is_some_and(|d| d <= now.instant))
            .map(|(a, _)| *a)
            .collect();
        for addr in expired {
            if let Some(mut p) = self.pending.remove(&addr) {
                match p.client.handle_timeout(now) {
                    Ok(()) => {
                        while let Some(d) = p.client.poll_transmit() {
                            self.hs_out.push_back((addr, d));
                        }
                        self.pending.insert(addr, p);
                    }
                    Err(e) => {
                        let _ = p.reply.send(Err(Error::from_handshake(e, addr)));
                    }
                }
            }
        }
        // Connect futures that were dropped.
        self.pending.retain(|_, p| !p.reply.is_closed());
    }

    /// Drains events of the sessions in `touched`, waking the waiting tasks.
    pub(crate) fn process_events(&mut self, touched: &BTreeSet<u64>) {
        for h in touched {
            let Some(c) = self.conns.get_mut(h) else {
                continue;
            };
            while let Some(ev) = c.session.poll_event() {
                match ev {
                    Event::Connected => {}
                    Event::StreamOpened { id, dir } => match dir {
                        Dir::Bi => {
                            c.incoming_bi.push_back(id);
                            for w in c.accept_wakers.drain(..) {
                                w.wake();
                            }
                        }
                        Dir::Uni => {
                            c.incoming_uni.push_back(id);
                            for w in c.accept_wakers.drain(..) {
                                w.wake();
                            }
                        }
                    },
                    Event::StreamReadable(id) => {
                        if let Some(w) = c.read_wakers.remove(&id.0) {
                            w.wake();
                        }
                    }
                    Event::StreamWritable(id) | Event::StreamFinished(id) => {
                        if let Some(w) = c.write_wakers.remove(&id.0) {
                            w.wake();
                        }
                    }
                    Event::DatagramReceived => {
                        for w in c.datagram_wakers.drain(..) {
                            w.wake();
                        }
                    }
                    Event::PathValidated(p) => {
                        tracing::info!(target: "phantom::runtime", path = p.0, "path validated");
                    }
                    Event::PathFailed(p) => {
                        tracing::info!(target: "phantom::runtime", path = p.0, "path failed");
                    }
                    Event::Migrated { from, to } => {
                        tracing::info!(target: "phantom::runtime", from = from.0, to = to.0, "peer migrated");
                    }
                    Event::Rekeyed { epoch, local } => {
                        tracing::debug!(target: "phantom::runtime", epoch = epoch.0, local, "rekeyed");
                    }
                    Event::Fallback(a) => {
                        tracing::debug!(target: "phantom::runtime", action = ?a, "fallback action ignored (UDP only)");
                    }
                    Event::Closed(reason) => {
                        tracing::info!(target: "phantom::runtime", reason = ?reason, "session closed");
                        c.close_reason = Some(reason);
                        c.wake_all();
                    }
                }
            }
            c.deadline = c.session.poll_timeout();
        }
    }

    /// Forgets drained sessions: unregisters them from the router, and drops their
    /// state once no handle refers to them.
    pub(crate) fn reap(&mut self) {
        let mut gone = Vec::new();
        for (&h, c) in &mut self.conns {
            if c.session.is_drained() {
                if !c.unregistered {
                    c.unregistered = true;
                    self.router.remove(&c.session.session_id());
                    if c.close_reason.is_none() {
                        c.close_reason = Some(CloseReason::Error(phantom_session::Error::Closed));
                    }
                    c.wake_all();
                }
                if c.handles == 0 {
                    gone.push(h);
                }
            }
        }
        for h in gone {
            self.conns.remove(&h);
            self.dirty.remove(&h);
        }
        if self.live_sessions() == 0 {
            for w in self.idle_wakers.drain(..) {
                w.wake();
            }
        }
    }

    /// Sessions not yet drained.
    pub(crate) fn live_sessions(&self) -> usize {
        self.conns.values().filter(|c| !c.unregistered).count()
    }

    /// Closes every session (endpoint shutdown).
    pub(crate) fn close_all(&mut self, code: u64, reason: &[u8]) {
        let now = self.now();
        for (&h, c) in &mut self.conns {
            if !c.session.is_closed() {
                c.session.close(now.instant, code, reason);
                self.dirty.insert(h);
            }
        }
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(Error::EndpointClosed));
        }
        for w in self.accept_wakers.drain(..) {
            w.wake();
        }
    }

    /// The earliest deadline of any session or handshake.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let sessions = self.conns.values().filter_map(|c| c.deadline);
        let server = self.server.as_ref().and_then(Server::poll_timeout);
        let clients = self
            .pending
            .values()
            .filter_map(|p| p.client.poll_timeout());
        sessions.chain(server).chain(clients).min()
    }
}
