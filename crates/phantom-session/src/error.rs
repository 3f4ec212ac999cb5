//! The one error type of the session crate.
//!
//! Caller faults (a write on a finished stream, an unknown stream id) are returned
//! from the app-facing calls. Peer faults never come back as an `Err` from
//! `handle_datagram`: a bad datagram is dropped and counted, and a protocol
//! violation by an authenticated peer closes the session with a [`CloseReason`]
//! built from the `Error` in one place ([`Error::close_code`]).
//!
//! [`CloseReason`]: crate::CloseReason

use crate::types::TransportCode;

/// Everything that can go wrong in the session layer.
///
/// Variants carry only small numbers and static strings, never key material or payloads (I8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream's send buffer is full; wait for `Event::StreamWritable`.
    #[error("stream send buffer full")]
    Blocked,
    /// The stream was already finished.
    #[error("stream already finished")]
    Finished,
    /// The peer asked us to stop sending (or we reset the stream) with this code.
    #[error("stream stopped with code {0}")]
    Stopped(u64),
    /// The peer reset the stream with this code.
    #[error("stream reset by peer with code {0}")]
    Reset(u64),
    /// No such stream, or the operation does not apply to its direction.
    #[error("unknown stream {0}")]
    UnknownStream(u32),
    /// Every stream id of this kind has been used; ids are never reused (I3).
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// The peer's stream limit does not allow another stream yet.
    #[error("stream limit reached")]
    StreamLimit,
    /// The session is closing or closed.
    #[error("session closed")]
    Closed,
    /// The datagram does not fit in one packet.
    #[error("datagram too large")]
    DatagramTooLarge,
    /// Early (0-RTT) data above what one ClientHello carries.
    #[error("early data larger than a ClientHello carries")]
    EarlyDataTooLarge,
    /// Replayed early data does not match the streams the session opens.
    #[error("early data does not match the session's streams: {0}")]
    EarlyDataMismatch(&'static str),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// No such path, or too many paths.
    #[error("path error: {0}")]
    Path(&'static str),
    /// The peer broke a protocol rule (closes the session).
    #[error("peer protocol violation: {0}")]
    PeerViolation(&'static str),
    /// Packet protection failed in a way that ends the session (key exhaustion,
    /// epoch saturation, integrity limit).
    #[error("crypto: {0}")]
    Crypto(&'static str),
    /// The handshake refused a datagram or failed (server endpoints).
    #[error("handshake: {0}")]
    Handshake(phantom_handshake::Error),
    /// A wire encoding error on our own output (a bug or a too-small buffer).
    #[error("encode: {0}")]
    Encode(#[from] phantom_wire::Error),
}

impl Error {
    /// The transport close code a fatal error maps to (the single mapping point).
    #[must_use]
    pub fn close_code(&self) -> TransportCode {
        match self {
            Error::PeerViolation(m) if m.contains("flow control") => TransportCode::FLOW_CONTROL,
            Error::PeerViolation(_) => TransportCode::PROTOCOL_VIOLATION,
            Error::Crypto(_) => TransportCode::CRYPTO_LIMIT,
            _ => TransportCode::INTERNAL,
        }
    }
}
