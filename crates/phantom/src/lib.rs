//! Phantom's tokio runtime: an [`Endpoint`] owns UDP sockets and a driver task that
//! feeds received datagrams and the clock to the sans-IO sessions of
//! `phantom-session`, sends what they produce, and exposes each session as a
//! [`Connection`] with bidirectional streams implementing tokio's `AsyncRead` and
//! `AsyncWrite`.
//!
//! **What it owns.** The socket and the clock: this is the only crate that reads time
//! (one call site, `clock::read`) and the only one that spawns tasks. One driver task
//! per endpoint receives datagrams and routes them by session id (through
//! `phantom_session::Endpoint`) to a session, or to the handshake (the
//! `phantom_handshake` server on a server endpoint, the pending client on a client
//! endpoint); it runs expired timers, polls dirty sessions for datagrams, and drains
//! their events to wake the tasks waiting on streams. It sleeps on the socket, on a
//! `Notify` that application handles signal when they queue data or close, and on one
//! tokio sleep re-armed only when the earliest session deadline changes; each loop is
//! capped by an I/O budget. Socket I/O goes through `quinn-udp`: GRO batches are
//! split on receipt and consecutive datagrams to one destination leave in one GSO
//! send where the kernel supports it. The system calls happen outside the endpoint's
//! lock (the driver receives before taking it and sends after releasing it), and the
//! tasks a loop wakes are woken once it is released. Many sessions share one
//! endpoint. Errors are typed per operation: [`EndpointError`] (binding,
//! accepting), [`ConnectError`] (bad address, wrong server key, timeout, ...),
//! [`ConnectionError`] (why an established connection ended), [`ReadError`] and
//! [`WriteError`] for streams, with [`Error`] wrapping any of them.
//!
//! **Workers.** A server endpoint runs [`ServerConfig::workers`] workers (default one
//! per core): UDP sockets on one address with `SO_REUSEPORT`, each with its own shared
//! state, driver task and handshake server, whose connection ids carry the worker index
//! in their last byte (`phantom_handshake::SteeredConnIds`). A classic BPF program
//! attached to the group (`carrier::reuseport`) makes the kernel deliver each short
//! packet to the worker its id names and spread handshake datagrams by 4-tuple hash, so
//! a session stays on its worker when its client's address changes.
//! [`Endpoint::accept`] merges the workers' connections; [`Endpoint::worker_stats`]
//! counts per worker. A kernel that refuses the program, a TCP listener, and client
//! endpoints mean one worker (docs/DEPLOYMENT.md).
//!
//! **Addresses.** IPv4 and IPv6 alike. An IPv6 socket is dual-stack (`IPV6_V6ONLY`
//! off): a client endpoint bound to `[::]` reaches IPv4 servers through their
//! v4-mapped addresses (`::ffff:a.b.c.d`, which is how its connections report them)
//! and IPv6 servers from the same socket.
//!
//! **Streams.** [`SendStream`] implements `AsyncWrite` (bytes are copied into the
//! session's send buffer, whose memory is reused) and also takes `bytes::Bytes`
//! without a copy ([`SendStream::write_chunk`]); either way `poll_write` returns
//! `Pending` while the send buffer is full and is woken as acknowledgements free it.
//!
//! **Paths and carriers.** [`Connection::add_path`] binds an extra UDP socket on the
//! endpoint: each socket is a path to the session, validated before it carries data
//! and scheduled by the session's multipath scheduler ([`Connection::set_scheduler`]).
//! A server made with [`Endpoint::server_with_tcp`] also accepts TCP connections
//! carrying length-prefixed datagrams (2-byte big-endian length, then the datagram) of
//! any number of sessions, handshakes included; a client given
//! [`ClientOptions::tcp_fallback`] continues its handshake over TCP when UDP does not
//! answer, and follows the session's fallback state machine afterwards: it opens TCP
//! and validates it as a path when UDP fails, re-probes UDP periodically, and retires
//! TCP once a UDP path validates again. Stream data is never lost across a switch:
//! the session re-sends whatever was in flight on an abandoned path.
//! [`Connection::paths_with_carrier`] tells which carrier each path uses.
//!
//! **Layers.** Lowest first; a module uses only the modules above it (no import
//! cycles): `clock`, `error`, `stats` (leaves); `state` (the shared state: `Shared`
//! holds the `Mutex<Inner>` whose fields are private, changed only through its
//! methods, and `Shared::unlock_and_wake` is the one place the tasks collected under
//! the lock and the driver are woken, after unlocking); `carrier::{udp, tcp,
//! fallback}` (the UDP sockets, the TCP carrier, the client's fallback actions);
//! `driver` (the loop as named steps: receive, adopt sockets, deliver, timers,
//! transmit, events, wake, send, prune, wait); `connection` and `endpoint` (the API).
//!
//! **Invariants upheld here.** I1: a datagram that fails to route or to
//! authenticate only bumps a counter (the runtime parses nothing beyond the
//! cleartext header, through the session crate's router, and never panics on socket
//! input); tested by `i1_garbage_datagrams_do_not_disturb_sessions`. TCP frames are
//! untrusted too: a bad length closes that connection only
//! (`i1_frames_round_trip_and_a_zero_length_is_refused`,
//! `i1_a_bad_tcp_frame_closes_only_that_connection`). I7: an added path or a TCP
//! connection carries no application data before it is validated
//! (`i7_an_added_path_carries_no_data_until_validated`). I8: key material
//! never passes through this crate's own types or errors, and `Debug` of its
//! configuration shows no key bytes (`i8_debug_output_never_shows_secret_key_bytes`).
//!
//! **Invariants relied on.** The runtime hands every session a monotonic `now`
//! (never earlier than a time handed out before, even across threads) and sends
//! exactly the datagrams the sessions and the handshake server produce, unaltered, so
//! I2–I7 and I10 hold as `phantom-session` and `phantom-handshake` enforce them (the
//! 3x anti-amplification budget of I7 included). I9 holds below the runtime because
//! this crate is the only source of time and randomness (a fresh `StdRng` seeds each
//! session).

mod carrier;
mod clock;
mod connection;
mod driver;
mod early;
mod endpoint;
mod error;
pub mod keyfiles;
mod state;
mod stats;

/// Drivers for the cargo-fuzz targets (compiled only for fuzzing and tests).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;

pub use clock::{now, unix_time};
pub use connection::{Connection, RecvStream, SendStream};
pub use early::EarlyRequest;
pub use endpoint::{
    ACCEPT_BACKLOG_FULL, ClientOptions, Endpoint, ServerConfig, TcpListenerConfig,
    default_session_config, default_workers, resolve,
};
pub use error::{
    AddPathError, ConnectError, ConnectionError, EndpointError, Error, OpenStreamError, ReadError,
    SendDatagramError, WriteError,
};
pub use phantom_crypto::Suite;
pub use phantom_handshake::{
    ConnIdGenerator, FleetKey, HybridSigningKey, HybridVerifyingKey, RandomConnIds, ResumptionHint,
    ResumptionTicket, RoutableConnIds, RoutingKey, ServerCertificate, ServerIdentity,
    VerifiedCertificate,
};
pub use phantom_session::fallback::{Carrier, FallbackConfig};
pub use phantom_session::{
    AppCode, CloseCode, CloseReason, Config as SessionConfig, CongestionAlgorithm, ConnIdSource,
    PathSnapshot, SchedulerMode, Stats, TransportCode,
};
/// A stream's id, as [`SendStream::id`] and [`RecvStream::id`] return it.
pub use phantom_wire::StreamId;
pub use stats::{ConnectionStats, HandshakeMode, WorkerStats};
