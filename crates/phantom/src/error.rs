//! The one error type of the runtime.

use std::fmt;
use std::net::SocketAddr;

use phantom_session::CloseReason;

/// Why a connection ended, in a printable form (wraps the session's [`CloseReason`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionClosed(pub CloseReason);

impl fmt::Display for ConnectionClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            CloseReason::Local { code, reason } => write!(
                f,
                "closed locally (code {code}: {})",
                String::from_utf8_lossy(reason)
            ),
            CloseReason::Peer { code, reason } => write!(
                f,
                "closed by peer ({code}: {})",
                String::from_utf8_lossy(reason)
            ),
            CloseReason::IdleTimeout => f.write_str("idle timeout: the peer went silent"),
            CloseReason::Error(e) => write!(f, "closed on error: {e}"),
        }
    }
}

/// Everything the runtime reports to its caller.
///
/// Peer faults inside an established session never surface here directly: the
/// session drops bad datagrams and counts them; a fatal one closes the connection,
/// which shows up as [`Error::Closed`]. Variants carry addresses, codes and static
/// strings, never key material (I8).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address cannot be used (unspecified, port 0, wrong family, unresolvable).
    #[error("bad address: {0}")]
    BadAddress(String),
    /// A socket operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server's certificate does not verify under the pinned key: the server holds
    /// another key, or someone on the path altered the certificate (accidental damage
    /// cannot cause it: a damaged handshake datagram fails its integrity tag and is
    /// dropped).
    #[error("the server's certificate does not verify under the pinned server key")]
    WrongServerKey,
    /// The peer did not answer in time (silent, unreachable, or nothing listening).
    #[error("timed out: no answer from {0}")]
    Timeout(SocketAddr),
    /// The handshake ran out of time although the peer's datagrams arrived: every one
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
    /// The handshake failed for another reason.
    #[error("handshake failed: {0}")]
    Handshake(phantom_handshake::Error),
    /// The session refused an operation (for example an unknown stream).
    #[error("session: {0}")]
    Session(phantom_session::Error),
    /// The connection is closed; here is why.
    #[error("connection {0}")]
    Closed(ConnectionClosed),
    /// `accept` was called on a client endpoint.
    #[error("this endpoint is not a server")]
    NotServer,
    /// The endpoint was closed (or its driver stopped).
    #[error("endpoint closed")]
    EndpointClosed,
    /// A handshake to this address is already in progress on this endpoint
    /// (internal: `Endpoint::connect` waits for its turn instead of returning this).
    #[error("a handshake with {0} is already in progress on this endpoint")]
    HandshakeInProgress(SocketAddr),
    /// No tokio runtime is running on this thread.
    #[error("must be called from within a tokio runtime")]
    NoRuntime,
}

impl Error {
    /// Maps a handshake failure to the runtime's taxonomy.
    pub(crate) fn from_handshake(e: phantom_handshake::Error, peer: SocketAddr) -> Self {
        use phantom_handshake::Error as H;
        match e {
            H::WrongServerKey | H::BadSignature(_) => Error::WrongServerKey,
            H::Timeout => Error::Timeout(peer),
            H::UnusableAnswers { dropped } => Error::UnusableAnswers { peer, dropped },
            other => Error::Handshake(other),
        }
    }

    /// Converts the error into an `io::Error` for the `AsyncRead`/`AsyncWrite` impls.
    pub(crate) fn into_io(self) -> std::io::Error {
        let kind = match &self {
            Error::Closed(_) | Error::EndpointClosed => std::io::ErrorKind::ConnectionAborted,
            Error::Session(phantom_session::Error::Reset(_))
            | Error::Session(phantom_session::Error::Stopped(_)) => {
                std::io::ErrorKind::ConnectionReset
            }
            Error::Io(e) => e.kind(),
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}
