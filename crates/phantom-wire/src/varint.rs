//! QUIC-style variable-length integers (RFC 9000 §16): 1, 2, 4 or 8 bytes, 62-bit range.

/// An integer in `0..=2^62-1`, the range a varint can carry. The checked constructor
/// makes an out-of-range value unrepresentable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VarInt(u64);

/// A value outside the varint range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value exceeds the varint range (2^62 - 1)")]
pub struct VarIntBoundsExceeded;

impl VarInt {
    /// The largest value a varint carries.
    pub const MAX: VarInt = VarInt((1 << 62) - 1);

    /// A varint from a `u32` (always in range).
    #[must_use]
    pub const fn from_u32(v: u32) -> Self {
        VarInt(v as u64)
    }

    /// The value.
    #[must_use]
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    /// Bytes of the shortest encoding: 1, 2, 4 or 8.
    #[must_use]
    pub const fn encoded_len(self) -> usize {
        if self.0 < 1 << 6 {
            1
        } else if self.0 < 1 << 14 {
            2
        } else if self.0 < 1 << 30 {
            4
        } else {
            8
        }
    }
}

impl TryFrom<u64> for VarInt {
    type Error = VarIntBoundsExceeded;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        if v <= Self::MAX.0 {
            Ok(VarInt(v))
        } else {
            Err(VarIntBoundsExceeded)
        }
    }
}

impl TryFrom<usize> for VarInt {
    type Error = VarIntBoundsExceeded;
    fn try_from(v: usize) -> Result<Self, Self::Error> {
        VarInt::try_from(v as u64)
    }
}

impl From<u32> for VarInt {
    fn from(v: u32) -> Self {
        VarInt::from_u32(v)
    }
}

impl From<VarInt> for u64 {
    fn from(v: VarInt) -> u64 {
        v.0
    }
}
