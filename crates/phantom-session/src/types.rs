//! The session's public value types: configuration, inputs, outputs, events, stats.

use std::net::SocketAddr;
use std::time::Duration;

use phantom_wire::{Epoch, PathId, StreamId};

use crate::error::Error;
use crate::fallback::{Carrier, FallbackAction, FallbackConfig};
use crate::scheduler::SchedulerMode;
use crate::stream::Dir;

/// Stream credit every endpoint grants for each new stream before any MAX_STREAM_DATA
/// (a protocol constant, so no transport parameters need negotiating).
pub const INITIAL_STREAM_CREDIT: u64 = 256 * 1024;
/// Session credit every endpoint grants before any MAX_DATA.
pub const INITIAL_SESSION_CREDIT: u64 = 1024 * 1024;
/// Streams of each kind the peer may open before any MAX_STREAMS.
pub const INITIAL_MAX_STREAMS: u64 = 128;
/// Smallest datagram the session builds (header + tag + some frames).
pub const MIN_DATAGRAM_SIZE: usize = 256;

/// Session tuning.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest datagram the session builds (bytes, header and tag included).
    pub max_datagram_size: usize,
    /// Close silently after this long without an authenticated packet.
    pub idle_timeout: Duration,
    /// Send a PING after this long without sending anything ack-eliciting.
    pub keep_alive: Option<Duration>,
    /// Receive window per stream (bytes).
    pub stream_receive_window: u64,
    /// Receive window for the whole session (bytes).
    pub session_receive_window: u64,
    /// Unacknowledged bytes buffered per sending stream.
    pub stream_send_buffer: usize,
    /// Concurrent peer-initiated streams of each kind; at least
    /// [`INITIAL_MAX_STREAMS`] (the limit a peer may use before it hears from us).
    pub max_concurrent_streams: u64,
    /// How long we may delay an ACK.
    pub max_ack_delay: Duration,
    /// RTT assumed before the first sample.
    pub initial_rtt: Duration,
    /// Multipath scheduler mode.
    pub scheduler: SchedulerMode,
    /// Congestion controller of every path (`phantom-congestion`).
    pub congestion: phantom_congestion::Algorithm,
    /// Consecutive PTOs after which a path is considered failed and its in-flight
    /// data is moved to the other paths (a path with nothing acknowledged for
    /// `max(pto_base, 2 * srtt + max_ack_delay)` fails over sooner,
    /// docs/PROTOCOL.md §5.6).
    pub failover_ptos: u32,
    /// Incoming unreliable datagrams kept until read (oldest dropped first).
    pub datagram_queue: usize,
    /// Seals per epoch after which the sender rekeys (`None`: the suite's soft limit, I6).
    pub rekey_threshold: Option<u64>,
    /// Per-stream sequence span within an epoch that forces a rekey (`None`: 2^31, I3).
    pub seq_rekey_watermark: Option<u64>,
    /// Path validation tuning.
    pub path: PathTuning,
    /// Replay window width (packets) per stream space.
    pub replay_window: u64,
    /// UDP-to-TCP fallback tuning.
    pub fallback: FallbackConfig,
    /// Where the connection ids this end issues after the handshake come from: the
    /// generator of its first id and, on a server, its reset key (docs/PROTOCOL.md
    /// §5.11). A server endpoint sets both from its `ServerConfig`; a client's runtime
    /// from its `ClientConfig`.
    pub conn_ids: crate::ConnIdSource,
}

/// Path-validation tuning.
#[derive(Debug, Clone, Copy)]
pub struct PathTuning {
    /// Most paths (including failed ones awaiting eviction).
    pub max_paths: usize,
    /// First wait for a PATH_RESPONSE (doubles per retransmission).
    pub challenge_timeout: Duration,
    /// Challenge retransmissions before the path fails.
    pub max_retransmits: u32,
    /// A path with no authenticated packet for this long fails.
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_datagram_size: 1200,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            stream_receive_window: 1024 * 1024,
            session_receive_window: 16 * 1024 * 1024,
            stream_send_buffer: 1024 * 1024,
            max_concurrent_streams: INITIAL_MAX_STREAMS,
            max_ack_delay: Duration::from_millis(25),
            initial_rtt: Duration::from_millis(100),
            scheduler: SchedulerMode::LowLatency,
            congestion: phantom_congestion::Algorithm::Bbr,
            failover_ptos: 2,
            datagram_queue: 64,
            rekey_threshold: None,
            seq_rekey_watermark: None,
            path: PathTuning {
                max_paths: 8,
                challenge_timeout: Duration::from_millis(300),
                max_retransmits: 3,
                idle_timeout: Duration::from_secs(30),
            },
            replay_window: 2048,
            fallback: FallbackConfig::default(),
            conn_ids: crate::ConnIdSource::default(),
        }
    }
}

/// Where a datagram arrived: our local address and the peer's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// Local address the datagram was received on.
    pub local: SocketAddr,
    /// Source address of the datagram.
    pub remote: SocketAddr,
    /// Which carrier it arrived on (feeds the fallback state machine).
    pub carrier: Carrier,
}

impl RxMeta {
    /// A datagram received over UDP.
    #[must_use]
    pub const fn udp(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            local,
            remote,
            carrier: Carrier::Udp,
        }
    }
}

/// A datagram the caller must send: `buf[..len]` from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// The path (our label) it belongs to.
    pub path: PathId,
    /// Local address to send from.
    pub src: SocketAddr,
    /// Destination.
    pub dst: SocketAddr,
    /// Bytes of the caller's buffer to send.
    pub len: usize,
}

/// Lifecycle of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Keys not yet established (the handshake is driven outside this type).
    Handshaking,
    /// Established; data flows.
    Connected,
    /// Established, and validating a new peer address the peer moved to.
    Migrating,
    /// We closed; the CLOSE frame is (re)sent until the drain period ends.
    Closing,
    /// The peer closed; we stay silent until the drain period ends.
    Draining,
    /// Nothing more happens; the session can be dropped.
    Closed,
}

/// A code chosen by the application: why it closed the session
/// ([`Session::close`](crate::Session::close), carried in a CLOSE frame with the
/// application flag set), reset a stream ([`Session::reset`](crate::Session::reset),
/// RESET_STREAM) or asked the peer to stop sending
/// ([`Session::stop_sending`](crate::Session::stop_sending), STOP_SENDING).
/// The wire carries it as a varint; every API that takes one also takes a bare `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AppCode(pub u64);

impl From<u64> for AppCode {
    fn from(code: u64) -> Self {
        Self(code)
    }
}

/// A transport close code: why a session closed itself (CLOSE frame without the
/// application flag). [`Error::close_code`] is the one mapping from errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TransportCode(pub u64);

impl TransportCode {
    /// Graceful, no error.
    pub const NO_ERROR: Self = Self(0);
    /// The peer violated the protocol.
    pub const PROTOCOL_VIOLATION: Self = Self(1);
    /// Flow control was exceeded.
    pub const FLOW_CONTROL: Self = Self(2);
    /// AEAD integrity limit or key exhaustion.
    pub const CRYPTO_LIMIT: Self = Self(3);
    /// Internal error.
    pub const INTERNAL: Self = Self(4);
}

/// The code of a CLOSE frame: the application's or the transport's (the frame's
/// application flag tells which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// An application close.
    Application(AppCode),
    /// A transport error.
    Transport(TransportCode),
}

impl CloseCode {
    /// The CLOSE frame's `(error_code, application)` fields.
    #[must_use]
    pub fn to_wire(self) -> (u64, bool) {
        match self {
            Self::Application(AppCode(c)) => (c, true),
            Self::Transport(TransportCode(c)) => (c, false),
        }
    }

    /// From a CLOSE frame's `(error_code, application)` fields.
    #[must_use]
    pub fn from_wire(code: u64, application: bool) -> Self {
        if application {
            Self::Application(AppCode(code))
        } else {
            Self::Transport(TransportCode(code))
        }
    }
}

impl core::fmt::Display for AppCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl core::fmt::Display for TransportCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl core::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Application(c) => write!(f, "application code {c}"),
            Self::Transport(c) => write!(f, "transport code {c}"),
        }
    }
}

/// Why the session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The application closed it locally.
    Local {
        /// Application code.
        code: AppCode,
        /// Reason phrase.
        reason: Vec<u8>,
    },
    /// The peer sent CLOSE.
    Peer {
        /// The code, the application's or the transport's.
        code: CloseCode,
        /// Reason phrase (at most 1024 bytes).
        reason: Vec<u8>,
    },
    /// Nothing authenticated arrived for the idle timeout.
    IdleTimeout,
    /// The peer answered with a stateless reset (a datagram ending with the reset token
    /// it gave for the connection id our packets carry): it lost the session's state.
    Reset,
    /// A fatal error: a peer protocol violation, or a crypto limit (integrity limit,
    /// epoch or sequence exhaustion).
    Error(Error),
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Event {
    /// The session is established.
    Connected,
    /// The peer opened a stream.
    StreamOpened {
        /// The stream.
        id: StreamId,
        /// Its direction.
        dir: Dir,
    },
    /// A stream has data (or its end, or a reset) to read.
    StreamReadable(StreamId),
    /// A stream that was blocked can take more data.
    StreamWritable(StreamId),
    /// Everything we wrote on a stream, fin included, was acknowledged.
    StreamFinished(StreamId),
    /// An unreliable datagram arrived (read it with `recv_datagram`).
    DatagramReceived,
    /// A path passed validation.
    PathValidated(PathId),
    /// A path failed (validation retries exhausted or silence).
    PathFailed(PathId),
    /// The primary path changed because the peer moved.
    Migrated {
        /// Previous primary path.
        from: PathId,
        /// New primary path.
        to: PathId,
    },
    /// A direction moved to a new key epoch.
    Rekeyed {
        /// The new epoch.
        epoch: Epoch,
        /// True if our sending direction rekeyed, false if the peer's did.
        local: bool,
    },
    /// The carrier fallback state machine asks the runtime to act: move to TCP,
    /// send a UDP probe (the session queues a PING), or move back to UDP.
    Fallback(FallbackAction),
    /// The session closed (emitted once).
    Closed(CloseReason),
}

/// Datagrams dropped on receipt, by reason (none of them changed any state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Header did not parse, or too short.
    pub malformed: u64,
    /// For another session id.
    pub unknown_session: u64,
    /// AEAD failed (forged, corrupted, or an epoch we hold no key for).
    pub unauthenticated: u64,
    /// Authenticated but already seen (I4).
    pub replayed: u64,
    /// Cleartext handshake packets after the handshake.
    pub unexpected_handshake: u64,
    /// Arrived after the session closed.
    pub closed: u64,
}

impl DropStats {
    /// Sum over all reasons.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.malformed
            + self.unknown_session
            + self.unauthenticated
            + self.replayed
            + self.unexpected_handshake
            + self.closed
    }
}

/// Per-session counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams received and authenticated.
    pub packets_received: u64,
    /// Bytes sent (datagram bytes).
    pub bytes_sent: u64,
    /// Bytes received (authenticated datagram bytes).
    pub bytes_received: u64,
    /// Stream payload bytes sent, retransmissions included.
    pub stream_bytes_sent: u64,
    /// Stream payload bytes retransmitted.
    pub stream_bytes_retransmitted: u64,
    /// Stream payload bytes of packets declared lost that were acknowledged before
    /// the loss was declared: another copy (a redundant copy on another path)
    /// delivered them, so they were not retransmitted.
    pub stream_bytes_lost_already_acked: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Probe timeouts fired.
    pub ptos: u64,
    /// Rekeys of our sending direction.
    pub rekeys_local: u64,
    /// Rekeys of the peer's direction we followed.
    pub rekeys_peer: u64,
    /// Authenticated replays rejected (I4).
    pub replay_rejected_total: u64,
    /// Dropped datagrams by reason.
    pub dropped: DropStats,
    /// Paths validated.
    pub paths_validated: u64,
    /// Primary-path changes.
    pub migrations: u64,
    /// Smoothed RTT of the primary path.
    pub rtt: Duration,
    /// Congestion window of the primary path.
    pub cwnd: u64,
    /// Delivery-rate estimate of the primary path (bytes/s).
    pub bandwidth: u64,
}

/// A snapshot of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSnapshot {
    /// Our label.
    pub id: PathId,
    /// Local address.
    pub local: SocketAddr,
    /// Peer address.
    pub remote: SocketAddr,
    /// Validated (application data may use it, I7).
    pub validated: bool,
    /// Currently the primary path.
    pub primary: bool,
    /// Smoothed RTT.
    pub rtt: Duration,
    /// The path's probe timeout before back-off, as its loss recovery computes it
    /// (RFC 9002 §6.2.1: smoothed RTT + max(4 x RTT variance, 1 ms) + max_ack_delay).
    pub pto: Duration,
    /// Congestion state.
    pub congestion: crate::cc::CongestionSnapshot,
    /// Bytes sent on the path.
    pub bytes_sent: u64,
    /// Bytes of authenticated datagrams received on the path (how the peer's
    /// scheduler spread what it sent).
    pub bytes_received: u64,
}
