//! Phantom's wire format: the versioned packet header, packet flags, the typed
//! control frames and QUIC-style varints, with total, bounded, zero-copy parsing.
//!
//! **What it owns.** Every byte Phantom puts on the network is described here and in
//! `docs/PROTOCOL.md`: the fixed 52-byte [`Header`] whose exact wire image is the AEAD
//! associated data, the [`Flags`], the [`Frame`] set carried inside sealed payloads,
//! and the [`Reader`]/[`Writer`] cursors everything is built with. It has no crypto,
//! no I/O and no clock; it depends only on `bytes` and `thiserror`.
//!
//! **Invariants upheld.** I1: every parser is total — arbitrary input yields a typed
//! [`Error`], never a panic, and no allocation is sized by a peer-supplied length
//! before that length is checked against the bytes actually present. I3: [`StreamId`]
//! is 32 bits in memory, on the wire and in the nonce, and sequences are capped at
//! [`MAX_SEQUENCE`] (48 bits), so no field is ever narrowed into a repeated nonce.
//! I2 is prepared here: [`Header::parse`] hands back the exact image that is
//! authenticated.
//!
//! # Layout of the crate
//!
//! * [`Header`] ([`Header::parse`], [`Header::write_image`]) and its newtypes
//!   [`SessionId`], [`StreamId`], [`PathId`], [`Epoch`], [`Flags`].
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
//! use phantom_wire::{Epoch, Flags, Header, PathId, SessionId, StreamId};
//!
//! let header = Header {
//!     flags: Flags::ACK_ELICITING,
//!     path_id: PathId(0),
//!     epoch: Epoch(0),
//!     session_id: SessionId([7; 32]),
//!     stream_id: StreamId(0x0102_0304),
//!     sequence: 42,
//! };
//! let mut datagram = header.to_bytes()?.to_vec();
//! datagram.extend_from_slice(b"sealed payload");
//! let (parsed, image, payload) = Header::parse(&datagram)?;
//! assert_eq!(parsed, header);
//! assert_eq!(&image[..], &datagram[..52]); // the AEAD associated data
//! assert_eq!(payload, b"sealed payload");
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
    Epoch, Flags, HANDSHAKE_MARKER, HEADER_LEN, Header, MAX_SEQUENCE, PathId, SessionId, StreamId,
    VERSION,
};
pub use varint::{VarInt, VarIntBoundsExceeded};

/// The anti-amplification factor (I7): before an address is validated, an endpoint
/// sends to it at most this many times the bytes it received from it. The handshake
/// server applies it to a client address, the path registry to a new path; both
/// take it from here.
pub const AMPLIFICATION_FACTOR: u64 = 3;
