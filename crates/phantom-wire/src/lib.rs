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

mod codec;
mod error;
mod header;
mod varint;

pub use codec::{Decode, Encode, Reader, Writer};
pub use error::Error;
pub use header::{
    Epoch, Flags, HEADER_LEN, Header, MAX_SEQUENCE, PathId, SessionId, StreamId, VERSION,
};
pub use varint::{VarInt, VarIntBoundsExceeded};
