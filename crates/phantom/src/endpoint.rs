//! The public `Endpoint`: UDP sockets (and optionally a TCP listener), the driver
//! task and the sessions on them.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use phantom_crypto::Suite;
use phantom_handshake::{
    FleetKey, HybridVerifyingKey, MAX_WORKERS, ResumptionTicket, RoutableConnIds, Server,
    ServerIdentity, SteeredConnIds, VerifiedCertificate,
};
use phantom_session::early::EarlyData;
use phantom_session::{AppCode, Config as SessionConfig, Dir};

use crate::carrier::{reuseport, tcp};
use crate::connection::Connection;
use crate::driver;
use crate::early::EarlyRequest;
use crate::error::{ConnectError, EndpointError};
pub use crate::state::ACCEPT_BACKLOG_FULL;
use crate::state::{Inner, Shared, StartError};
use crate::stats::WorkerStats;

/// The session tuning the runtime uses by default (the session crate's defaults). The
/// driver polls for transmits only after a whole receive batch (up to 64 datagrams), so
/// ACKs are coalesced one per batch on top of the session's own ACK policy.
#[must_use]
pub fn default_session_config() -> SessionConfig {
    SessionConfig::default()
}

/// The TCP listener's limits ([`Endpoint::server_with_tcp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpListenerConfig {
    /// Most TCP connections open at once; further ones are closed as soon as they
    /// are accepted. Default 1024.
    pub max_connections: usize,
    /// Most TCP connections open at once from one IP address (one client cannot take
    /// every slot of `max_connections`). Default 16.
    pub max_connections_per_ip: usize,
    /// An accepted TCP connection that carries nothing that authenticates (a session
    /// packet, or a handshake datagram — at most 16 of those count) for this long is
    /// closed: silent, slowloris and garbage-sending clients hold no connection for
    /// good. `None`: the session idle timeout (`ServerConfig::session.idle_timeout`),
    /// at least 1 s.
    pub idle_timeout: Option<Duration>,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_ip: 16,
            idle_timeout: None,
        }
    }
}

/// What a server endpoint needs: the handshake server's configuration (identity,
/// suites, tickets, 0-RTT, anti-replay, retry, half-open cap, handshake timeout), the
/// session tuning applied to every accepted session, and the TCP listener's limits —
/// as quinn's `ServerConfig` holds its crypto configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The handshake server's configuration: `identity` (certificate + static KEM
    /// secret), `suites` accepted, `ticket_lifetime` (0: no tickets),
    /// `max_early_data` (0: no 0-RTT), `anti_replay_window`, `max_half_open`,
    /// `require_retry` (a stateless retry round trip from every new client),
    /// `handshake_timeout`, `key_rotation` (the ticket and retry keys rotate this
    /// often, driven by the endpoint's timer; default 12 h, zero: never), `fleet` (the
    /// fleet key shared with other servers of the same identity, see
    /// [`ServerConfig::with_fleet_key`]).
    pub handshake: phantom_handshake::ServerConfig,
    /// Tuning of every accepted session.
    pub session: SessionConfig,
    /// Limits of the TCP listener ([`Endpoint::server_with_tcp`]).
    pub tcp: TcpListenerConfig,
    /// Most accepted sessions waiting for [`Endpoint::accept`]; a handshake that
    /// completes beyond it has its session closed at once with
    /// [`ACCEPT_BACKLOG_FULL`]. Default 1024.
    pub max_pending_accepts: usize,
    /// UDP sockets, drivers and handshake servers (workers) sharing the address with
    /// `SO_REUSEPORT`; the kernel steers each short packet to the worker its
    /// connection id names and spreads handshakes by 4-tuple hash
    /// (docs/DEPLOYMENT.md). Default [`default_workers`] (one per core). Clamped to
    /// 1..=256. One worker if the kernel refuses the steering program (logged once),
    /// off Linux, and on [`Endpoint::server_with_tcp`] (the TCP carrier stays on one
    /// worker).
    pub workers: usize,
}

/// One worker per core: `std::thread::available_parallelism`, 1 if it is unknown.
#[must_use]
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_WORKERS)
}

impl ServerConfig {
    /// A config with the handshake's defaults (`phantom_handshake::ServerConfig::new`:
    /// every suite, one-day tickets, 4 KiB 0-RTT, no forced retry) except that early
    /// data is released when the ClientHello is accepted
    /// (`release_early_data_on_hello`, for [`Endpoint::accept_early`]), default session
    /// tuning and default TCP limits.
    #[must_use]
    pub fn new(identity: ServerIdentity) -> Self {
        let mut handshake = phantom_handshake::ServerConfig::new(identity);
        // Early data is released when the ClientHello is accepted; the session applies
        // what `Endpoint::accept_early` did not take when the handshake completes.
        handshake.release_early_data_on_hello = true;
        Self {
            handshake,
            session: default_session_config(),
            tcp: TcpListenerConfig::default(),
            max_pending_accepts: 1024,
            workers: default_workers(),
        }
    }

    /// This config as a member of the fleet of `key` (docs/DEPLOYMENT.md): servers with
    /// the same identity and fleet key accept each other's retry tokens, resume each
    /// other's tickets (without 0-RTT: early data is accepted only by the server that
    /// issued the ticket) and answer each other's connection ids with the stateless
    /// reset the client expects. Sets `handshake.fleet` and `handshake.reset_key`.
    #[must_use]
    pub fn with_fleet_key(mut self, key: FleetKey) -> Self {
        self.handshake = self.handshake.with_fleet_key(key);
        self
    }

    /// The fleet key, if this server is a member of a fleet.
    #[must_use]
    pub fn fleet_key(&self) -> Option<&FleetKey> {
        self.handshake.fleet.as_ref()
    }

    /// Routable connection ids for a fleet behind a layer-4 balancer (PROTOCOL.md §1.4,
    /// docs/DEPLOYMENT.md): every id this server issues carries `server_id` (1..=6
    /// bytes, unique in the fleet) encrypted under the fleet's routing key
    /// ([`FleetKey::routing_key`], which the balancer is configured with), with config
    /// rotation `config_rotation` (0..=6) in its first bits, so the balancer routes a
    /// session's packets here after the client's address changes. The id length stays
    /// the current generator's (8 bytes by default). Call after
    /// [`ServerConfig::with_fleet_key`]; worker steering wraps these ids.
    ///
    /// # Errors
    /// `phantom_handshake::Error::Misuse` without a fleet key, or when the server id,
    /// rotation or length is out of range (`RoutableConnIds::encrypted`).
    pub fn with_server_id(
        mut self,
        server_id: &[u8],
        config_rotation: u8,
    ) -> Result<Self, phantom_handshake::Error> {
        let key = self
            .handshake
            .fleet
            .as_ref()
            .ok_or(phantom_handshake::Error::Misuse(
                "routable connection ids need a fleet key",
            ))?
            .routing_key();
        let ids = RoutableConnIds::encrypted(
            self.handshake.conn_ids.id_len(),
            config_rotation,
            server_id,
            key.as_bytes(),
        )?;
        self.handshake.conn_ids = Arc::new(ids);
        Ok(self)
    }
}

/// Per-connection client options.
///
/// Debug prints the early data's length, never its bytes (I8: it is application
/// plaintext, possibly a credential).
#[derive(Clone)]
pub struct ClientOptions {
    /// Tuning of the session (idle timeout, scheduler, rekey threshold, ...).
    pub session: SessionConfig,
    /// Give up the handshake after this long ([`ConnectError::Timeout`]).
    pub connect_timeout: Duration,
    /// A ticket from an earlier connection to this server
    /// ([`Connection::resumption_ticket`]): the handshake resumes, and `early_data` can
    /// travel in the first flight (0-RTT).
    pub resumption: Option<ResumptionTicket>,
    /// Opening bytes of the connection's first bidirectional stream, which the
    /// application thereby marks replay-safe: with a `resumption` ticket they are sent
    /// as 0-RTT data inside the ClientHello, and always again under 1-RTT keys, so
    /// nothing is lost if the server refuses them. A server application can read them
    /// when the ClientHello is accepted ([`Endpoint::accept_early`]), a round trip before
    /// the handshake completes, and prepare its answer meanwhile; the answer leaves once
    /// the handshake completes (PROTOCOL.md §5.9). The server may process them more
    /// than once (replayable): send only requests that are safe to repeat.
    /// Take the stream with [`Connection::take_early_stream`]. At most about 4 KiB.
    pub early_data: Option<Vec<u8>>,
    /// The server's TCP address ([`Endpoint::server_with_tcp`]). When set, a
    /// handshake that UDP does not answer after two retransmissions continues over
    /// TCP, and an established session moves to TCP when its fallback state machine
    /// finds UDP failing (and back to UDP once a UDP probe succeeds).
    ///
    /// That state machine is tuned by `session.fallback` ([`crate::FallbackConfig`]):
    /// by default a session falls back after 4 probe timeouts or 25 s without an
    /// authenticated UDP packet, and while on TCP re-probes UDP every
    /// `probe_interval` (default 30 s; each failed probe, given `probe_timeout` = 3 s,
    /// doubles it up to `max_probe_interval` = 10 min; success resets it). Set
    /// `session.fallback.probe_interval` to return to UDP sooner.
    pub tcp_fallback: Option<SocketAddr>,
    /// The AEAD suites to offer, most preferred first (the server picks the first it
    /// accepts). Default: the handshake's adaptive order
    /// (`phantom_handshake::default_suites`: AES-256-GCM first where the CPU has AES
    /// instructions, ChaCha20-Poly1305 first otherwise). Empty means the default.
    pub suites: Vec<Suite>,
    /// The server's certificate, verified against the pinned key (for example from
    /// a file shipped with the key: [`crate::ServerCertificate::verify`]). With it the first
    /// handshake with that server is already a one-round-trip PDK handshake; without
    /// it the endpoint uses the certificate an earlier handshake verified, if any.
    pub certificate: Option<VerifiedCertificate>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            session,
            connect_timeout,
            resumption,
            early_data,
            tcp_fallback,
            certificate,
            suites,
        } = self;
        f.debug_struct("ClientOptions")
            .field("session", session)
            .field("connect_timeout", connect_timeout)
            .field("resumption", resumption)
            .field("early_data_len", &early_data.as_ref().map(Vec::len))
            .field("tcp_fallback", tcp_fallback)
            .field("certificate", certificate)
            .field("suites", suites)
            .finish()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            suites: phantom_handshake::default_suites(),
            session: default_session_config(),
            connect_timeout: Duration::from_secs(10),
            resumption: None,
            early_data: None,
            tcp_fallback: None,
            certificate: None,
        }
    }
}

/// UDP sockets (and, on a server, optionally a TCP listener) with their driver task
/// and every session on them, routed by session id.
///
/// Create it inside a tokio runtime with [`Endpoint::server`] or
/// [`Endpoint::client`]. Clones share the endpoint. When the last `Endpoint` and
/// [`Connection`] handle is dropped (or [`Endpoint::close`] is called), every
/// session is closed and the driver stops once they have drained.
///
/// A server endpoint may run several workers ([`ServerConfig::workers`]): one UDP
/// socket, driver task and handshake server each, all on one address. The endpoint
/// merges what they accept; each session stays on the worker that accepted it.
#[derive(Debug)]
pub struct Endpoint {
    /// The first worker: the only one of a client, the one with the TCP listener.
    shared: Arc<Shared>,
    /// Every worker, the first included.
    workers: Arc<[Arc<Shared>]>,
}

impl Clone for Endpoint {
    fn clone(&self) -> Self {
        for w in self.workers.iter() {
            w.lock().add_user_handle();
        }
        Self {
            shared: Arc::clone(&self.shared),
            workers: Arc::clone(&self.workers),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for w in self.workers.iter() {
            let mut g = w.lock();
            g.drop_user_handle();
            w.unlock_and_wake(g);
        }
    }
}

fn check_addr(addr: SocketAddr, what: &str) -> Result<(), ConnectError> {
    if addr.ip().is_unspecified() || addr.port() == 0 || addr.ip().is_multicast() {
        return Err(ConnectError::BadAddress(format!(
            "{addr} cannot be used as {what} (unspecified, port 0 or multicast)"
        )));
    }
    Ok(())
}

/// Binds a UDP socket to `addr`. An IPv6 socket is dual-stack (`IPV6_V6ONLY` off):
/// bound to `[::]` it also reaches IPv4 peers, as v4-mapped addresses
/// (`::ffff:a.b.c.d`).
pub(crate) fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The address to send to `peer` from a socket bound to `local`: an IPv4 peer
/// seen from a dual-stack socket (`[::]`) as its v4-mapped IPv6 address; `None` if
/// the socket cannot reach it (the other family, or IPv4 from a specific IPv6
/// address).
pub(crate) fn reachable(local: SocketAddr, peer: SocketAddr) -> Option<SocketAddr> {
    match (local, peer) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            Some(peer)
        }
        (SocketAddr::V6(l), SocketAddr::V4(p)) if l.ip().is_unspecified() => Some(SocketAddr::new(
            std::net::IpAddr::V6(p.ip().to_ipv6_mapped()),
            p.port(),
        )),
        _ => None,
    }
}

/// Maps a bind failure: an address not on this host is a bad address.
pub(crate) fn bind_error(addr: SocketAddr, e: std::io::Error) -> EndpointError {
    if e.kind() == std::io::ErrorKind::AddrNotAvailable {
        EndpointError::BadAddress(format!("{addr}: {e}"))
    } else {
        EndpointError::Io(e)
    }
}

/// Resolves `s` (`host:port` or `ip:port`) to its first socket address.
///
/// # Errors
/// [`EndpointError::BadAddress`] if it does not parse or resolve.
pub fn resolve(s: &str) -> Result<SocketAddr, EndpointError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs as _;
    s.to_socket_addrs()
        .map_err(|e| EndpointError::BadAddress(format!("{s}: {e}")))?
        .next()
        .ok_or_else(|| EndpointError::BadAddress(format!("{s}: no address")))
}

/// Binds the UDP sockets of `workers` workers on `addr` for ids of `id_len` bytes: one
/// plain socket, or a steered reuseport group; one socket if the kernel refuses the
/// group (said once, as a warning).
fn bind_workers(
    addr: SocketAddr,
    workers: usize,
    id_len: usize,
) -> Result<Vec<std::net::UdpSocket>, EndpointError> {
    if workers > 1 {
        match reuseport::bind_group(addr, workers, id_len) {
            Ok(group) => return Ok(group),
            Err(Ok(e)) => return Err(bind_error(addr, e)),
            Err(Err(reuseport::Refused(e))) => {
                tracing::warn!(target: "phantom::runtime", %addr, workers, error = %e, "reuseport steering refused: running one worker");
            }
        }
    }
    Ok(vec![bind_udp(addr).map_err(|e| bind_error(addr, e))?])
}

/// Rejects a multicast bind address.
fn check_bind_addr(addr: SocketAddr) -> Result<(), EndpointError> {
    if addr.ip().is_multicast() {
        return Err(EndpointError::BadAddress(format!(
            "{addr} is a multicast address"
        )));
    }
    Ok(())
}

impl Endpoint {
    fn bind(
        addr: SocketAddr,
        server: Option<Server>,
        cfg: SessionConfig,
        tcp: Option<(SocketAddr, tcp::AcceptLimits)>,
    ) -> Result<Self, EndpointError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| EndpointError::NoRuntime)?;
        check_bind_addr(addr)?;
        let std_socket = bind_udp(addr).map_err(|e| bind_error(addr, e))?;
        let shared = Self::start_worker(&rt, std_socket, server, cfg, tcp, None)?;
        Ok(Self {
            workers: Arc::from([Arc::clone(&shared)]),
            shared,
        })
    }

    /// A server endpoint of `config.workers` workers on `addr` (one if `tcp` is set).
    fn bind_server(
        config: ServerConfig,
        addr: SocketAddr,
        tcp: Option<(SocketAddr, tcp::AcceptLimits)>,
    ) -> Result<Self, EndpointError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| EndpointError::NoRuntime)?;
        check_bind_addr(addr)?;
        let wanted = if tcp.is_some() {
            1
        } else {
            config.workers.clamp(1, MAX_WORKERS)
        };
        let ids = Arc::clone(&config.handshake.conn_ids);
        let sockets = bind_workers(addr, wanted, ids.id_len())?;
        let n = sockets.len();
        let mut rng: rand::rngs::StdRng = rand::make_rng();
        let mut tcp = tcp;
        let mut workers: Vec<Arc<Shared>> = Vec::with_capacity(n);
        // The accept backlog is the endpoint's: its workers count against one total.
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for (i, socket) in sockets.into_iter().enumerate() {
            let mut handshake = config.handshake.clone();
            if n > 1 {
                let steered = SteeredConnIds::new(Arc::clone(&ids), i, n)
                    .map_err(|_| EndpointError::Io(std::io::ErrorKind::InvalidInput.into()))?;
                handshake.conn_ids = Arc::new(steered);
            }
            let server = Server::new(handshake, &mut rng);
            let worker = (n > 1).then_some(i);
            let started = Self::start_worker(
                &rt,
                socket,
                Some(server),
                config.session.clone(),
                tcp.take(),
                worker,
            );
            let shared = match started {
                Ok(shared) => shared,
                Err(e) => {
                    // The workers already running lose their only handle and stop.
                    for w in &workers {
                        let mut g = w.lock();
                        g.drop_user_handle();
                        w.unlock_and_wake(g);
                    }
                    return Err(e);
                }
            };
            shared
                .lock()
                .set_accept_backlog(config.max_pending_accepts, Arc::clone(&waiting));
            workers.push(shared);
        }
        let Some(shared) = workers.first().cloned() else {
            return Err(EndpointError::Io(std::io::ErrorKind::InvalidInput.into()));
        };
        Ok(Self {
            shared,
            workers: Arc::from(workers),
        })
    }

    /// Starts one worker on a bound socket: its shared state, its driver task and (on
    /// the first worker of a server with TCP) the TCP listener.
    fn start_worker(
        rt: &tokio::runtime::Handle,
        std_socket: std::net::UdpSocket,
        server: Option<Server>,
        cfg: SessionConfig,
        tcp: Option<(SocketAddr, tcp::AcceptLimits)>,
        worker: Option<usize>,
    ) -> Result<Arc<Shared>, EndpointError> {
        std_socket.set_nonblocking(true)?;
        let socket = {
            let _g = rt.enter();
            tokio::net::UdpSocket::from_std(std_socket)?
        };
        let local = socket.local_addr()?;
        let listener = match tcp {
            Some((a, limits)) => {
                let l = std::net::TcpListener::bind(a).map_err(|e| bind_error(a, e))?;
                l.set_nonblocking(true)?;
                let _g = rt.enter();
                Some((tokio::net::TcpListener::from_std(l)?, limits))
            }
            None => None,
        };
        let is_server = server.is_some();
        let mut inner = Inner::new(local, server, cfg, rt.clone());
        inner.set_tcp_listen(listener.as_ref().and_then(|(l, _)| l.local_addr().ok()));
        let shared = Arc::new(Shared::new(inner));
        let span = tracing::info_span!(target: "phantom::runtime", "endpoint", %local, server = is_server, worker);
        if let Some((l, limits)) = listener {
            rt.spawn(tracing::Instrument::instrument(
                tcp::listen(Arc::clone(&shared), l, limits),
                span.clone(),
            ));
        }
        rt.spawn(tracing::Instrument::instrument(
            driver::run(Arc::clone(&shared), socket),
            span,
        ));
        tracing::debug!(target: "phantom::runtime", %local, worker, "endpoint bound");
        Ok(shared)
    }

    /// A server endpoint bound to `addr`, accepting handshakes with `config`'s identity.
    ///
    /// # Errors
    /// [`EndpointError::BadAddress`] or [`EndpointError::Io`] if the socket cannot be
    /// bound, [`EndpointError::NoRuntime`] outside a tokio runtime.
    pub fn server(config: ServerConfig, addr: SocketAddr) -> Result<Self, EndpointError> {
        Self::bind_server(config, addr, None)
    }

    /// A server endpoint on UDP `udp_addr` that also accepts TCP connections on
    /// `tcp_addr` (the fallback carrier for clients whose UDP is blocked): each TCP
    /// connection carries length-prefixed datagrams of any number of sessions,
    /// handshakes included.
    ///
    /// # Errors
    /// As [`Endpoint::server`], for either address.
    pub fn server_with_tcp(
        config: ServerConfig,
        udp_addr: SocketAddr,
        tcp_addr: SocketAddr,
    ) -> Result<Self, EndpointError> {
        let limits = tcp::AcceptLimits {
            max_connections: config.tcp.max_connections,
            max_per_ip: config.tcp.max_connections_per_ip,
            idle_timeout: config
                .tcp
                .idle_timeout
                .unwrap_or(config.session.idle_timeout)
                .max(Duration::from_secs(1)),
        };
        Self::bind_server(config, udp_addr, Some((tcp_addr, limits)))
    }

    /// The TCP listening address ([`Endpoint::server_with_tcp`]), if any.
    #[must_use]
    pub fn tcp_local_addr(&self) -> Option<SocketAddr> {
        self.shared.lock().tcp_listen()
    }

    /// A client endpoint bound to `addr` (for example `127.0.0.1:0`).
    ///
    /// # Errors
    /// As [`Endpoint::server`].
    pub fn client(addr: SocketAddr) -> Result<Self, EndpointError> {
        Self::bind(addr, None, default_session_config(), None)
    }

    /// The local address the socket is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.lock().local()
    }

    /// Connects to the server at `addr`, which must prove `server_key`.
    ///
    /// # Errors
    /// [`ConnectError::WrongServerKey`] if the server's certificate does not verify
    /// under `server_key`, [`ConnectError::Timeout`] if it does not answer,
    /// [`ConnectError::UnusableAnswers`] if every answer was dropped (damaged or not for
    /// this handshake), [`ConnectError::BadAddress`] for an unusable address.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_key: &HybridVerifyingKey,
    ) -> Result<Connection, ConnectError> {
        self.connect_with(addr, server_key, ClientOptions::default())
            .await
    }

    /// [`Endpoint::connect`] with explicit options.
    ///
    /// # Errors
    /// As [`Endpoint::connect`].
    pub async fn connect_with(
        &self,
        addr: SocketAddr,
        server_key: &HybridVerifyingKey,
        options: ClientOptions,
    ) -> Result<Connection, ConnectError> {
        check_addr(addr, "a server address")?;
        if self.workers.len() > 1 {
            return Err(ConnectError::SeveralWorkers(self.workers.len()));
        }
        if let Some(t) = options.tcp_fallback {
            check_addr(t, "a TCP fallback address")?;
        }
        let early = match &options.early_data {
            Some(data) => {
                let mut e = EarlyData::new();
                e.open_stream(Dir::Bi, data, false)
                    .map_err(ConnectError::InvalidOptions)?;
                Some(e)
            }
            None => None,
        };
        let early_blob = match (&early, &options.resumption) {
            (Some(e), Some(_)) => e.encode().map_err(ConnectError::InvalidOptions)?,
            _ => Vec::new(),
        };
        let deadline = tokio::time::Instant::now() + options.connect_timeout;
        let local = self.local_addr();
        // The server as the socket sees it (v4-mapped from a dual-stack socket).
        let Some(server) = reachable(local, addr) else {
            return Err(ConnectError::BadAddress(format!(
                "{addr} is not reachable from a socket bound to {local}"
            )));
        };
        let (mut rx, mut want_tcp) = loop {
            let started = {
                let mut g = self.shared.lock();
                let now = g.now();
                let mut cfg = phantom_handshake::ClientConfig::new(server_key.clone());
                cfg.suites.clone_from(&options.suites);
                cfg.ticket.clone_from(&options.resumption);
                cfg.early_data.clone_from(&early_blob);
                cfg.certificate.clone_from(&options.certificate);
                g.start_connect(
                    now,
                    server,
                    options.tcp_fallback,
                    cfg,
                    options.session.clone(),
                    early.clone(),
                )
            };
            match started {
                Ok(rx) => break rx,
                // One handshake per server address at a time on this socket (the
                // server tells handshakes apart by client address): wait our turn.
                Err(StartError::InProgress) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(StartError::InProgress) => return Err(ConnectError::Timeout(addr)),
                Err(StartError::Failed(e)) => return Err(e),
            }
        };
        self.shared.notify.notify_one();
        let wait = async {
            if let Some(tcp_addr) = options.tcp_fallback {
                tokio::select! {
                    r = &mut rx => return r,
                    w = &mut want_tcp => {
                        if w.is_ok() {
                            self.continue_over_tcp(server, tcp_addr).await;
                        }
                    }
                }
            }
            rx.await
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(Ok(h))) => Ok(Connection::adopt(Arc::clone(&self.shared), h)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ConnectError::EndpointClosed),
            Err(_) => {
                // Our receiver is gone with the timed-out future: forget that handshake
                // (and only it; a later connect to the same address may be pending),
                // saying whether the server was silent or its answers all unusable.
                let mut g = self.shared.lock();
                let unusable = g.unusable_answers(addr);
                g.forget_abandoned_connects();
                Err(match unusable {
                    Some(dropped) => ConnectError::UnusableAnswers {
                        peer: addr,
                        dropped,
                    },
                    None => ConnectError::Timeout(addr),
                })
            }
        }
    }

    /// UDP did not answer the handshake with `addr`: open TCP to `tcp_addr` and go
    /// on there. If TCP cannot be opened the UDP handshake simply continues.
    async fn continue_over_tcp(&self, addr: SocketAddr, tcp_addr: SocketAddr) {
        match tcp::connect(&self.shared, tcp_addr).await {
            Ok((local, remote)) => {
                let mut g = self.shared.lock();
                if !g.move_handshake_to_tcp(addr, local, remote) {
                    g.close_tcp_link(local, remote);
                }
                self.shared.unlock_and_wake(g);
            }
            Err(e) => {
                tracing::warn!(target: "phantom::runtime", %tcp_addr, error = %e, "TCP fallback unreachable");
            }
        }
    }

    /// Waits for the next incoming connection.
    ///
    /// # Errors
    /// [`EndpointError::NotServer`] on a client endpoint, [`EndpointError::Closed`]
    /// once closed.
    pub async fn accept(&self) -> Result<Connection, EndpointError> {
        let (worker, h) = self.next_from_any_worker(Inner::poll_accept).await?;
        Ok(Connection::adopt(worker, h))
    }

    /// The first item `poll` yields from any worker (each polled in turn, under its
    /// lock, with the caller's waker): [`EndpointError::NotServer`] on a client
    /// endpoint, [`EndpointError::Closed`] once every worker is closed.
    async fn next_from_any_worker<T>(
        &self,
        mut poll: impl FnMut(&mut Inner, &Waker) -> Poll<Option<T>>,
    ) -> Result<(Arc<Shared>, T), EndpointError> {
        poll_fn(|cx| {
            let mut closed = 0;
            for w in self.workers.iter() {
                let mut g = w.lock();
                if !g.is_server() {
                    return Poll::Ready(Err(EndpointError::NotServer));
                }
                match poll(&mut g, cx.waker()) {
                    Poll::Ready(Some(item)) => return Poll::Ready(Ok((Arc::clone(w), item))),
                    Poll::Ready(None) => closed += 1,
                    Poll::Pending => {}
                }
            }
            if closed == self.workers.len() {
                Poll::Ready(Err(EndpointError::Closed))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Waits for the next early (0-RTT) data a resuming client sent, handed out as
    /// soon as its ClientHello is accepted — a round trip before [`Endpoint::accept`]
    /// could return the connection. **Replayable**: see [`EarlyRequest`]. The
    /// connection of a handshake whose early data was taken here comes from
    /// [`EarlyRequest::connection`], not from `accept`. Needs the handshake's
    /// `release_early_data_on_hello` (on in [`ServerConfig::new`]).
    ///
    /// # Errors
    /// [`EndpointError::NotServer`] on a client endpoint, [`EndpointError::Closed`]
    /// once closed.
    pub async fn accept_early(&self) -> Result<EarlyRequest, EndpointError> {
        let (worker, (released, rx)) = self.next_from_any_worker(Inner::poll_accept_early).await?;
        Ok(EarlyRequest::new(worker, released, rx))
    }

    /// Closes every connection with an application `code` (a bare `u64` converts)
    /// and `reason`; no new ones are accepted.
    pub fn close(&self, code: impl Into<AppCode>, reason: &[u8]) {
        let code = code.into();
        for w in self.workers.iter() {
            let mut g = w.lock();
            g.shut_down(code, reason);
            w.unlock_and_wake(g);
        }
    }

    /// Waits until no session on this endpoint is live (all drained).
    pub async fn wait_idle(&self) {
        poll_fn(|cx| {
            let mut idle = true;
            for w in self.workers.iter() {
                idle &= w.lock().poll_idle(cx.waker()).is_ready();
            }
            if idle { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }

    /// Number of sessions not yet drained (on all workers).
    #[must_use]
    pub fn session_count(&self) -> usize {
        self.workers.iter().map(|w| w.lock().live_sessions()).sum()
    }

    /// Datagrams dropped before reaching a session (unknown session id, refused
    /// handshake datagrams), on all workers.
    #[must_use]
    pub fn dropped_datagrams(&self) -> u64 {
        self.workers.iter().map(|w| w.lock().dropped()).sum()
    }

    /// Number of workers (1 on a client, and on a server whose kernel refused the
    /// steering program; [`ServerConfig::workers`]).
    #[must_use]
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Each worker's counters, in worker order.
    #[must_use]
    pub fn worker_stats(&self) -> Vec<WorkerStats> {
        self.workers
            .iter()
            .map(|w| {
                let g = w.lock();
                WorkerStats {
                    sessions: g.established(),
                    live_sessions: g.live_sessions(),
                    unknown_id_datagrams: g.unknown_ids(),
                    dropped_datagrams: g.dropped(),
                }
            })
            .collect()
    }

    /// Datagrams the TCP carrier dropped: its connection's queue was full (the
    /// sessions' loss recovery re-sends them) or the connection was gone.
    #[must_use]
    pub fn tcp_dropped_datagrams(&self) -> u64 {
        self.shared.lock().tcp_dropped()
    }

    /// Moves the endpoint to a new socket bound to `addr` (a client address change,
    /// as after NAT rebinding or a network switch). Established sessions continue:
    /// the peer validates the new address and migrates (I7).
    ///
    /// # Errors
    /// [`EndpointError::Io`]/[`EndpointError::BadAddress`] if the new socket cannot be
    /// bound.
    pub fn rebind(&self, addr: SocketAddr) -> Result<SocketAddr, EndpointError> {
        if self.workers.len() > 1 {
            return Err(EndpointError::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "rebind moves a one-socket endpoint; this one has several workers",
            )));
        }
        let s = bind_udp(addr).map_err(|e| bind_error(addr, e))?;
        let local = s.local_addr()?;
        let mut g = self.shared.lock();
        g.set_rebind(s);
        self.shared.unlock_and_wake(g);
        Ok(local)
    }
}
