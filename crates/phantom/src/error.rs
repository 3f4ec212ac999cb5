//! The runtime's errors, one type per operation (as quinn users expect): binding and
//! running an endpoint, connecting, why an established connection ended, stream reads
//! and writes, opening streams, datagrams and extra paths. [`Error`] wraps any of
//! them for callers that do not care which operation failed.
//!
//! Variants carry addresses, codes and static strings, never key material (I8).
//! Peer faults inside an established session never surface directly: the session
//! drops bad datagrams and counts them; a fatal one closes the connection, which
//! shows up as a [`ConnectionError`].

use std::net::SocketAddr;

use phantom_session::{AppCode, CloseCode, CloseReason, TransportCode};
use phantom_wire::StreamId;

/// A close reason's text, printable on one line.
fn text(reason: &[u8]) -> String {
    String::from_utf8_lossy(reason).replace(['\n', '\r'], " ")
}

/// Binding or running an endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The address cannot be used (unspecified, port 0, multicast, wrong family,
    /// unresolvable, not on this host).
    #[error("bad address: {0}")]
    BadAddress(String),
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// No tokio runtime is running on this thread.
    #[error("must be called from within a tokio runtime")]
    NoRuntime,
    /// `accept` was called on a client endpoint.
    #[error("this endpoint is not a server")]
    NotServer,
    /// The endpoint was closed (or its driver stopped).
    #[error("endpoint closed")]
    Closed,
    /// The handshake whose early data an `EarlyRequest` holds failed or expired.
    #[error("the handshake of the early data did not complete")]
    HandshakeIncomplete,
}

/// A connect failed: the handshake did not establish a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address cannot be used (unspecified, port 0, multicast, or not reachable
    /// from the endpoint's socket).
    #[error("bad address: {0}")]
    BadAddress(String),
    /// The server's certificate does not verify under the pinned key: the server holds
    /// another key, or someone on the path altered the certificate (accidental damage
    /// cannot cause it: a damaged handshake datagram fails its integrity tag and is
    /// dropped).
    #[error("the server's certificate does not verify under the pinned server key")]
    WrongServerKey,
    /// The server did not answer in time (silent, unreachable, or nothing listening).
    #[error("timed out: no answer from {0}")]
    Timeout(SocketAddr),
    /// The handshake ran out of time although the server's datagrams arrived: every one
    /// was dropped (damaged on the way, malformed, or not for this handshake).
    #[error(
        "timed out: {dropped} datagrams came from {peer}, none usable (damaged or not for this handshake)"
    )]
    UnusableAnswers {
        /// The server address.
        peer: SocketAddr,
        /// Its handshake datagrams that were dropped.
        dropped: u32,
    },
    /// The handshake failed for another reason (no common suite, version, ...).
    #[error("handshake failed: {0}")]
    Handshake(phantom_handshake::Error),
    /// The options were refused (early data too large, invalid session config).
    #[error("invalid connect options: {0}")]
    InvalidOptions(phantom_session::Error),
    /// The endpoint was closed (or its driver stopped).
    #[error("endpoint closed")]
    EndpointClosed,
    /// A server endpoint with several workers does not connect out: the answers
    /// would reach whichever worker the kernel picks. Connect from a client endpoint.
    #[error("a server endpoint with {0} workers cannot connect; use a client endpoint")]
    SeveralWorkers(usize),
}

impl ConnectError {
    /// Maps a handshake failure with the server at `peer`.
    pub(crate) fn from_handshake(e: phantom_handshake::Error, peer: SocketAddr) -> Self {
        use phantom_handshake::Error as H;
        match e {
            H::WrongServerKey | H::BadSignature(_) => Self::WrongServerKey,
            H::Timeout => Self::Timeout(peer),
            H::UnusableAnswers { dropped } => Self::UnusableAnswers { peer, dropped },
            other => Self::Handshake(other),
        }
    }
}

/// Why an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer's application closed it with `code`.
    #[error("closed by peer (application code {code}: {})", text(reason))]
    ApplicationClosed {
        /// The application's close code.
        code: AppCode,
        /// The peer's reason text.
        reason: Vec<u8>,
    },
    /// The peer's transport closed it with a transport `code` (a protocol error it
    /// found, or an endpoint shutdown).
    #[error("closed by peer (transport code {code}: {})", text(reason))]
    TransportClosed {
        /// The transport close code.
        code: TransportCode,
        /// The peer's reason text.
        reason: Vec<u8>,
    },
    /// The peer went silent for the idle timeout.
    #[error("timed out: the peer went silent")]
    TimedOut,
    /// This side closed it (`Connection::close`, the last handle dropped, or the
    /// endpoint closed).
    #[error("closed locally (code {code}: {})", text(reason))]
    LocallyClosed {
        /// The close code sent to the peer.
        code: AppCode,
        /// The reason text sent to the peer.
        reason: Vec<u8>,
    },
    /// The session failed: the peer broke a protocol rule or packet protection
    /// could not go on (key exhaustion, integrity limit).
    #[error("transport error: {0}")]
    TransportError(phantom_session::Error),
    /// The session is gone without a recorded reason (drained, or its endpoint's
    /// driver stopped).
    #[error("connection reset: the session is gone")]
    Reset,
    /// The peer answered with a stateless reset: it lost the session's state (e.g. the
    /// server restarted).
    #[error("connection reset by the peer: it lost the session's state")]
    StatelessReset,
}

impl From<CloseReason> for ConnectionError {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::Local { code, reason } => Self::LocallyClosed { code, reason },
            CloseReason::Peer {
                code: CloseCode::Application(code),
                reason,
            } => Self::ApplicationClosed { code, reason },
            CloseReason::Peer {
                code: CloseCode::Transport(code),
                reason,
            } => Self::TransportClosed { code, reason },
            CloseReason::IdleTimeout => Self::TimedOut,
            CloseReason::Reset => Self::StatelessReset,
            CloseReason::Error(phantom_session::Error::Closed) => Self::Reset,
            CloseReason::Error(e) => Self::TransportError(e),
        }
    }
}

/// Reading a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer reset the stream with this application code.
    #[error("stream reset by peer with code {0}")]
    Reset(AppCode),
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(ConnectionError),
    /// The stream does not exist or cannot be read (a send-only stream).
    #[error("unknown stream {}", .0.0)]
    UnknownStream(StreamId),
}

/// Writing or finishing a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The peer asked us to stop sending (or we reset the stream) with this code.
    #[error("stream stopped with code {0}")]
    Stopped(AppCode),
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(ConnectionError),
    /// The stream was finished already.
    #[error("stream already finished")]
    Finished,
    /// The stream does not exist or cannot be written (a receive-only stream).
    #[error("unknown stream {}", .0.0)]
    UnknownStream(StreamId),
}

/// Opening a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStreamError {
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(ConnectionError),
    /// Every stream id of this kind has been used (ids are never reused, I3).
    #[error("stream ids exhausted")]
    IdsExhausted,
}

/// Sending an unreliable datagram failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendDatagramError {
    /// The datagram does not fit in one packet.
    #[error("datagram too large for one packet")]
    TooLarge,
    /// The datagram send queue is full.
    #[error("datagram send queue full")]
    Blocked,
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(ConnectionError),
}

/// Adding a path failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddPathError {
    /// The local address cannot be bound or is of the other family than the peer's.
    #[error("bad address: {0}")]
    BadAddress(String),
    /// Binding the socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The session refused the path (too many paths).
    #[error("path refused: {0}")]
    Refused(phantom_session::Error),
    /// The connection ended.
    #[error("connection lost: {0}")]
    ConnectionLost(ConnectionError),
}

/// Any runtime error, for callers that do not care which operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`EndpointError`].
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// See [`ConnectError`].
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// See [`ConnectionError`].
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// See [`ReadError`].
    #[error(transparent)]
    Read(#[from] ReadError),
    /// See [`WriteError`].
    #[error(transparent)]
    Write(#[from] WriteError),
    /// See [`OpenStreamError`].
    #[error(transparent)]
    OpenStream(#[from] OpenStreamError),
    /// See [`SendDatagramError`].
    #[error(transparent)]
    SendDatagram(#[from] SendDatagramError),
    /// See [`AddPathError`].
    #[error(transparent)]
    AddPath(#[from] AddPathError),
}

impl From<ReadError> for std::io::Error {
    fn from(e: ReadError) -> Self {
        let kind = match e {
            ReadError::Reset(_) => std::io::ErrorKind::ConnectionReset,
            ReadError::ConnectionLost(_) => std::io::ErrorKind::ConnectionAborted,
            ReadError::UnknownStream(_) => std::io::ErrorKind::Other,
        };
        Self::new(kind, e)
    }
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        let kind = match e {
            WriteError::Stopped(_) => std::io::ErrorKind::ConnectionReset,
            WriteError::ConnectionLost(_) => std::io::ErrorKind::ConnectionAborted,
            WriteError::Finished | WriteError::UnknownStream(_) => std::io::ErrorKind::Other,
        };
        Self::new(kind, e)
    }
}
