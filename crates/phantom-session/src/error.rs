//! The one error type of the session crate.
//!
//! Caller faults (a write on a finished stream, an unknown stream id) are returned
//! from the app-facing calls. Peer faults never come back as an `Err` from
//! `handle_datagram`: a bad datagram is dropped and counted, and a protocol
//! violation by an authenticated peer closes the session with a [`CloseReason`]
//! built from the `Error` in one place ([`Error::close_code`]).
//!
//! [`CloseReason`]: crate::CloseReason

use crate::types::{AppCode, TransportCode};

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
    Stopped(AppCode),
    /// The peer reset the stream with this code.
    #[error("stream reset by peer with code {0}")]
    Reset(AppCode),
    /// No such stream, or the operation does not apply to its direction.
    #[error("unknown stream {}", .0.0)]
    UnknownStream(phantom_wire::StreamId),
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
    PeerViolation(PeerViolation),
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

/// A protocol rule an authenticated peer broke; each closes the session with the
/// transport code of [`From<PeerViolation> for TransportCode`](TransportCode) (the
/// one mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerViolation {
    /// A frame of an authenticated payload does not parse.
    #[error("malformed frame")]
    MalformedFrame,
    /// An authenticated packet carries no frame.
    #[error("empty payload")]
    EmptyPayload,
    /// More sequence spaces in one epoch than the peer's sealer allows (I1).
    #[error("too many sequence spaces in one epoch")]
    TooManySpaces,
    /// An ACK of a sequence we never sent.
    #[error("ACK of an unsent packet")]
    AckOfUnsentPacket,
    /// STREAM data on a stream the peer cannot send on.
    #[error("STREAM on a send-only stream")]
    StreamOnSendOnlyStream,
    /// STREAM_OPEN of a stream the peer cannot open, or of the wrong kind.
    #[error("bad STREAM_OPEN")]
    BadStreamOpen,
    /// A packet in the space of stream index 0 (no stream).
    #[error("packet in stream index 0")]
    PacketInStreamIndexZero,
    /// A packet in the space of one of our streams we never opened.
    #[error("packet in a stream we never opened")]
    PacketInUnopenedStream,
    /// A stream frame on stream 0 (the control stream).
    #[error("stream frame on the control stream")]
    StreamFrameOnControlStream,
    /// A frame for one of our streams we never opened.
    #[error("frame for a stream we never opened")]
    FrameForUnopenedStream,
    /// A stream id of no known kind.
    #[error("stream kind")]
    StreamKind,
    /// A stream above the limit we granted.
    #[error("stream limit exceeded")]
    StreamLimitExceeded,
    /// Stream data beyond the largest stream offset.
    #[error("stream offset overflow")]
    StreamOffsetOverflow,
    /// Stream data beyond the stream's credit.
    #[error("stream flow control exceeded")]
    StreamFlowControl,
    /// A stream's final size changed.
    #[error("final size changed")]
    FinalSizeChanged,
    /// A final size below data already received.
    #[error("final size below received data")]
    FinalSizeBelowReceived,
    /// More out-of-order fragments than a receive stream buffers.
    #[error("too many out-of-order stream fragments")]
    TooManyFragments,
    /// RESET_STREAM with a final size below data already received.
    #[error("reset final size below received data")]
    ResetFinalSizeBelowReceived,
    /// Stream data beyond the session's credit.
    #[error("session flow control exceeded")]
    SessionFlowControl,
    /// More active connection ids than we accept, or retirements forced faster than
    /// they are acknowledged (docs/PROTOCOL.md §5.11).
    #[error("too many connection ids")]
    TooManyConnIds,
    /// NEW_CONN_ID reusing a sequence number with another id.
    #[error("connection id sequence reused")]
    ConnIdReused,
    /// RETIRE_CONN_ID of a sequence number we never issued.
    #[error("retirement of an unissued connection id")]
    UnknownConnId,
}

impl From<PeerViolation> for TransportCode {
    fn from(v: PeerViolation) -> Self {
        match v {
            PeerViolation::StreamFlowControl | PeerViolation::SessionFlowControl => {
                TransportCode::FLOW_CONTROL
            }
            _ => TransportCode::PROTOCOL_VIOLATION,
        }
    }
}

impl From<PeerViolation> for Error {
    fn from(v: PeerViolation) -> Self {
        Error::PeerViolation(v)
    }
}

impl Error {
    /// The transport close code a fatal error maps to (the single mapping point).
    #[must_use]
    pub fn close_code(&self) -> TransportCode {
        match self {
            Error::PeerViolation(v) => (*v).into(),
            Error::Crypto(_) => TransportCode::CRYPTO_LIMIT,
            _ => TransportCode::INTERNAL,
        }
    }
}
