//! The one error type of the wire crate.

/// Why a byte string is not a valid Phantom wire object.
///
/// Variants carry only small numbers and static strings, never payload bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the object did.
    #[error("truncated: needed {needed} more bytes")]
    Truncated {
        /// How many more bytes the decoder needed.
        needed: usize,
    },
    /// The object was followed by bytes that belong to nothing.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The packet's version byte is not one this implementation speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A reserved bit or byte was not zero.
    #[error("reserved bits set: {0}")]
    Reserved(&'static str),
    /// A frame type this implementation does not know.
    #[error("unknown frame type {0:#x}")]
    UnknownFrame(u64),
    /// A field is outside the range the format allows.
    #[error("field out of range: {0}")]
    OutOfRange(&'static str),
    /// A structural rule of the format is broken.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The output buffer is too small for the object being written.
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the buffer had left.
        available: usize,
    },
}

/// Returns `Err($err)` from the enclosing function unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $err:expr) => {
        if !($cond) {
            return Err($err);
        }
    };
}
pub(crate) use ensure;
