//! Cursor types: [`Reader`] borrows a datagram and never panics, [`Writer`] fills a
//! caller-owned slice and never allocates.

use crate::error::{Error, ensure};
use crate::varint::VarInt;

/// A consuming cursor over borrowed bytes. Every read is checked and returns a typed
/// [`Error`]; nothing here can panic or allocate, whatever the input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet consumed.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// True once every byte has been consumed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unconsumed bytes, without consuming them.
    #[must_use]
    pub fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Consumes and returns the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        ensure!(
            n <= self.buf.len(),
            Error::Truncated {
                needed: n - self.buf.len()
            }
        );
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Consumes and returns the next `N` bytes as an array reference.
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], Error> {
        match self.buf.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.buf = tail;
                Ok(head)
            }
            None => Err(Error::Truncated {
                needed: N - self.buf.len(),
            }),
        }
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        self.array::<1>().map(|b| b[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Error> {
        self.array::<2>().map(|b| u16::from_be_bytes(*b))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Error> {
        self.array::<4>().map(|b| u32::from_be_bytes(*b))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, Error> {
        self.array::<8>().map(|b| u64::from_be_bytes(*b))
    }

    /// Reads a QUIC-style variable-length integer (RFC 9000 §16).
    pub fn varint(&mut self) -> Result<VarInt, Error> {
        let (value, _) = self.varint_raw()?;
        // A value inside the varint range by construction (at most 62 bits).
        VarInt::try_from(value).map_err(|_| Error::OutOfRange("varint"))
    }

    /// A varint's value and the smallest value its length may encode canonically
    /// (what [`Self::varint_canonical`] checks); consumes it.
    #[inline]
    fn varint_raw(&mut self) -> Result<(u64, u64), Error> {
        let Some((&first, after_first)) = self.buf.split_first() else {
            return Err(Error::Truncated { needed: 1 });
        };
        // One big-endian load per length (no byte loop); the two length bits are
        // masked off the top. Each arm splits off exactly its bytes, so the rest
        // needs no second bounds check.
        let (value, rest, min) = match first >> 6 {
            0 => (u64::from(first), after_first, 0),
            1 => match self.buf.split_first_chunk::<2>() {
                Some((b, rest)) => (u64::from(u16::from_be_bytes(*b) & 0x3fff), rest, 1 << 6),
                None => return Err(self.truncated_varint(2)),
            },
            2 => match self.buf.split_first_chunk::<4>() {
                Some((b, rest)) => (
                    u64::from(u32::from_be_bytes(*b) & 0x3fff_ffff),
                    rest,
                    1 << 14,
                ),
                None => return Err(self.truncated_varint(4)),
            },
            _ => match self.buf.split_first_chunk::<8>() {
                Some((b, rest)) => (
                    u64::from_be_bytes(*b) & 0x3fff_ffff_ffff_ffff,
                    rest,
                    1 << 30,
                ),
                None => return Err(self.truncated_varint(8)),
            },
        };
        self.buf = rest;
        Ok((value, min))
    }

    /// The error for a varint of `len` bytes cut short: as a byte-by-byte read, it
    /// consumes the length byte and reports the bytes missing after it.
    #[cold]
    fn truncated_varint(&mut self, len: usize) -> Error {
        let needed = len - self.buf.len();
        self.buf = self.buf.get(1..).unwrap_or_default();
        Error::Truncated { needed }
    }

    /// Reads a varint that must use its shortest encoding (every varint inside a
    /// frame does), so that a parsed value re-encodes to exactly the bytes received.
    ///
    /// # Errors
    /// [`Error::Truncated`] if the input ends inside the varint, [`Error::Malformed`]
    /// if a shorter encoding of the same value exists.
    pub fn varint_canonical(&mut self) -> Result<VarInt, Error> {
        let (value, min) = self.varint_raw()?;
        let v = VarInt::try_from(value).map_err(|_| Error::OutOfRange("varint"))?;
        // Shortest encoding: a value a shorter length could hold is refused (the
        // same test as comparing the length read with `v.encoded_len()`).
        ensure!(value >= min, Error::Malformed("non-minimal varint"));
        Ok(v)
    }

    /// Reads a varint and checks it fits a `usize` no larger than `max`.
    pub fn varint_len(&mut self, max: usize) -> Result<usize, Error> {
        let v = self.varint()?.into_inner();
        let v = usize::try_from(v).map_err(|_| Error::OutOfRange("length"))?;
        ensure!(v <= max, Error::OutOfRange("length"));
        Ok(v)
    }

    /// Splits off a sub-reader over the next `n` bytes.
    pub fn sub(&mut self, n: usize) -> Result<Reader<'a>, Error> {
        self.bytes(n).map(Reader::new)
    }

    /// Succeeds only if every byte has been consumed (rejects trailing bytes).
    pub fn finish(self) -> Result<(), Error> {
        ensure!(self.buf.is_empty(), Error::TrailingBytes(self.buf.len()));
        Ok(())
    }
}

/// A cursor that writes into a caller-owned slice. Every write is checked; a full
/// buffer is an [`Error::BufferTooSmall`], never a panic or a reallocation.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer that starts at the beginning of `buf`.
    #[must_use]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    #[must_use]
    pub fn written(&self) -> usize {
        self.pos
    }

    /// The bytes written so far.
    #[must_use]
    pub fn filled(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    /// Bytes still free.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends `data`.
    pub fn put_slice(&mut self, data: &[u8]) -> Result<(), Error> {
        let available = self.remaining();
        let dst =
            self.buf
                .get_mut(self.pos..self.pos + data.len())
                .ok_or(Error::BufferTooSmall {
                    needed: data.len(),
                    available,
                })?;
        dst.copy_from_slice(data);
        self.pos += data.len();
        Ok(())
    }

    /// Appends one byte.
    pub fn put_u8(&mut self, v: u8) -> Result<(), Error> {
        self.put_slice(&[v])
    }

    /// Appends `n` zero bytes (padding).
    pub fn put_zeros(&mut self, n: usize) -> Result<(), Error> {
        let available = self.remaining();
        let dst = self
            .buf
            .get_mut(self.pos..)
            .and_then(|rest| rest.get_mut(..n))
            .ok_or(Error::BufferTooSmall {
                needed: n,
                available,
            })?;
        dst.fill(0);
        self.pos += n;
        Ok(())
    }

    /// Appends a big-endian `u16`.
    pub fn put_u16(&mut self, v: u16) -> Result<(), Error> {
        self.put_slice(&v.to_be_bytes())
    }

    /// Appends a big-endian `u32`.
    pub fn put_u32(&mut self, v: u32) -> Result<(), Error> {
        self.put_slice(&v.to_be_bytes())
    }

    /// Appends a big-endian `u64`.
    pub fn put_u64(&mut self, v: u64) -> Result<(), Error> {
        self.put_slice(&v.to_be_bytes())
    }

    /// Appends a varint in its shortest encoding.
    pub fn put_varint(&mut self, v: VarInt) -> Result<(), Error> {
        let x = v.into_inner();
        match v.encoded_len() {
            1 => self.put_u8(x as u8),
            2 => self.put_u16(0x4000 | x as u16),
            4 => self.put_u32(0x8000_0000 | x as u32),
            _ => self.put_u64(0xc000_0000_0000_0000 | x),
        }
    }

    /// Appends a `u64` as a varint; fails if it exceeds the varint range.
    pub fn put_varint_u64(&mut self, v: u64) -> Result<(), Error> {
        self.put_varint(VarInt::try_from(v).map_err(|_| Error::OutOfRange("varint"))?)
    }
}

/// A value with a known wire encoding, sized before it is written.
pub trait Encode {
    /// Exact number of bytes [`Encode::encode`] writes.
    fn encoded_len(&self) -> usize;
    /// Writes the encoding; fails only if the writer is too small or a field is out of range.
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error>;
}

/// A value that can be parsed, borrowing from the input where it can.
pub trait Decode<'a>: Sized {
    /// Parses one value from the reader, consuming exactly its bytes.
    fn decode(r: &mut Reader<'a>) -> Result<Self, Error>;
}
