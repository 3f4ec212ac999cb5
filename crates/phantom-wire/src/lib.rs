//! Phantom's wire format: the protected short packet header, packet flags, the typed
//! control frames and QUIC-style varints, with total, bounded, zero-copy parsing.
//!
//! **What it owns.** Every byte Phantom puts on the network is described here and in
//! `docs/PROTOCOL.md`: the short [`Header`] (protocol version 2: byte 0, the
//! destination [`ConnId`], then the protected meta byte, stream id and truncated
//! sequence, at most 20 bytes with an 8-byte id) whose *unprotected* image is the AEAD
//! associated data, which bytes header protection masks ([`protect_in_place`]), the
//! sequence truncation and expansion rules ([`SeqLen`]), the [`Flags`], the [`Frame`]
//! set carried inside sealed payloads, and the [`Reader`]/[`Writer`] cursors everything
//! is built with. It has no crypto, no I/O and no clock; it depends only on `bytes` and
//! `thiserror`.
//!
//! **Invariants upheld.** I1: every parser is total — arbitrary input yields a typed
//! [`Error`], never a panic, and no allocation is sized by a peer-supplied length
//! before that length is checked against the bytes actually present. I3: [`StreamId`]
//! is 32 bits in memory, on the wire and in the nonce, sequences are capped at
//! [`MAX_SEQUENCE`] (48 bits) and expanded in full before they reach the nonce, so no
//! field is ever narrowed into a repeated nonce. I2 is prepared here: the image
//! [`Header::write_image`] writes, and [`WireHeader::parse`] reads back, is what is
//! authenticated.
//!
//! # Layout of the crate
//!
//! * [`Header`] ([`Header::write_image`]), [`WireHeader`] ([`WireHeader::parse`]),
//!   [`peek_conn_id`], [`protect_in_place`] and the newtypes [`ConnId`],
//!   [`SessionId`], [`StreamId`], [`PathId`], [`Epoch`], [`Flags`], [`SeqLen`].
//! * [`frame`]: one struct per frame type, the [`Frame`] enum, and
//!   [`parse_frames`], which walks a payload and stops at the first error.
//! * [`Reader`] / [`Writer`], the checked cursors, and the [`Encode`] / [`Decode`]
//!   traits every wire object implements: `encoded_len()` sizes the caller's buffer
//!   before `encode` fills it, so nothing here allocates.
//! * [`VarInt`], the 62-bit QUIC variable-length integer.
//!
//! Frames are canonical: every varint inside a frame must use its shortest encoding
//! and every reserved bit must be zero, so a payload that parses re-encodes to
//! exactly the bytes received (the fuzz targets assert this).
//!
//! ```
//! use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId, WireHeader};
//!
//! let header = Header {
//!     flags: Flags::ACK_ELICITING,
//!     epoch: Epoch(0),
//!     conn_id: ConnId::from_slice(&[7; 8])?,
//!     stream_id: StreamId(0x0102_0304),
//!     sequence: 42,
//!     seq_len: SeqLen::ONE,
//! };
//! let mut datagram = [0u8; 64];
//! let n = header.write_image(&mut datagram)?;
//! assert_eq!(n, 1 + 8 + 1 + 4 + 1);
//! let parsed = WireHeader::parse(&datagram, 8)?;
//! assert_eq!(parsed.stream_id, header.stream_id);
//! assert_eq!(parsed.seq_len.expand(parsed.truncated, Some(41)), 42);
//! # Ok::<(), phantom_wire::Error>(())
//! ```

mod codec;
mod error;
pub mod frame;
mod header;
mod varint;

#[cfg(test)]
mod tests;

pub use codec::{Decode, Encode, Reader, Writer};
pub use error::Error;
pub use frame::{Frame, FrameIter, FrameType, parse_frames};
pub use header::{
    ConnId, DEFAULT_CONN_ID_LEN, Epoch, FORM_MASK, Flags, HANDSHAKE_MARKER, Header,
    MAX_CONN_ID_LEN, MAX_HEADER_LEN, MAX_PROTECTED_LEN, MAX_SEQUENCE, MIN_CONN_ID_LEN,
    PROTECTED_BITS, PathId, SAMPLE_LEN, SHORT_FORM, SeqLen, SessionId, StreamId, VERSION,
    WireHeader, min_packet_len, peek_conn_id, protect_in_place, sample_offset,
};
pub use varint::{VarInt, VarIntBoundsExceeded};

/// The anti-amplification factor (I7): before an address is validated, an endpoint
/// sends to it at most this many times the bytes it received from it. The handshake
/// server applies it to a client address, the path registry to a new path; both
/// take it from here.
pub const AMPLIFICATION_FACTOR: u64 = 3;
