//! The fixed packet header and its wire image.
//!
//! Layout (52 bytes, big-endian; docs/PROTOCOL.md §1 is normative):
//!
//! ```text
//!  0       1       2       3       4               8
//! +-------+-------+-------+-------+---------------+
//! |version| flags |path id| rsvd=0|  epoch (u32)  |
//! +-------+-------+-------+-------+---------------+
//! |            session id (32 bytes)              |  8..40
//! +-----------------------+-----------------------+
//! |   stream id (u32)     |   sequence (u64)      |  40..44, 44..52
//! +-----------------------+-----------------------+
//! ```
//!
//! The 52 bytes exactly as received are the AEAD associated data (I2): a receiver
//! authenticates the image it parsed, not a re-encoding.

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::{Error, ensure};

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;

/// First byte of every cleartext handshake datagram. Receivers demultiplex on the first
/// byte of a datagram: [`VERSION`] starts a protected packet (a [`Header`]), this marker
/// starts a handshake datagram, anything else is dropped. Its high bit is set, so it can
/// never be mistaken for a version byte.
pub const HANDSHAKE_MARKER: u8 = 0xc3;

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 52;

/// The largest per-stream sequence number: sequences are 48-bit so that
/// (path, stream, sequence) fits the 12-byte AEAD nonce injectively (I3).
pub const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// A 256-bit session identifier, unpredictable and chosen by the server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// The identifier's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The id is public (it is in every header); print a short prefix for logs.
        write!(f, "SessionId(")?;
        for b in self.0.iter().take(6) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A stream identifier. It is 32 bits in memory, on the wire and in the AEAD nonce,
/// so it can never be silently narrowed (the reference design's u32-to-u16 defect, I3).
/// Stream 0 is the session's control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The control stream, which carries session-level frames.
    pub const CONTROL: StreamId = StreamId(0);
    /// The largest stream id.
    pub const MAX: StreamId = StreamId(u32::MAX);
}

/// A path identifier, chosen by the sender of the packet. 8 bits: at most 256 paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PathId(pub u8);

/// A key epoch: 0 after the handshake, +1 on every rekey, saturating at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch(pub u32);

impl Epoch {
    /// The highest epoch; a session that reaches it must re-handshake or close.
    pub const MAX: Epoch = Epoch(u32::MAX);
}

/// Packet flags (one byte). Unknown bits are rejected by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// The packet is the first one sealed under a new epoch: the receiver may
    /// follow it by authenticated catch-up.
    pub const REKEY: Flags = Flags(0x01);
    /// The payload is a cleartext handshake packet (HANDSHAKE frames only), sent
    /// before any traffic key exists. Every other packet is AEAD-sealed (I2).
    pub const HANDSHAKE: Flags = Flags(0x02);
    /// Sealed under 0-RTT (early data) keys.
    pub const EARLY: Flags = Flags(0x04);
    /// The payload holds at least one frame that needs an acknowledgement.
    pub const ACK_ELICITING: Flags = Flags(0x08);
    /// Every defined bit.
    pub const ALL: Flags = Flags(0x0f);

    /// No flags.
    #[must_use]
    pub const fn empty() -> Self {
        Flags(0)
    }

    /// Flags from raw bits, rejecting undefined bits.
    pub const fn from_bits(bits: u8) -> Result<Self, Error> {
        if bits & !Self::ALL.0 != 0 {
            return Err(Error::Reserved("undefined flag bits"));
        }
        Ok(Flags(bits))
    }

    /// The raw bits.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every bit of `other` is set.
    #[must_use]
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` added.
    #[must_use]
    pub const fn with(self, other: Flags) -> Self {
        Flags(self.0 | other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

/// The parsed fixed header of every Phantom packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Packet flags.
    pub flags: Flags,
    /// The path the sender sent this packet on.
    pub path_id: PathId,
    /// The key epoch the payload is sealed under.
    pub epoch: Epoch,
    /// The session this packet belongs to.
    pub session_id: SessionId,
    /// The stream whose sequence space this packet uses.
    pub stream_id: StreamId,
    /// Per-stream sequence number, at most [`MAX_SEQUENCE`].
    pub sequence: u64,
}

impl Header {
    /// The header's wire image, exactly [`HEADER_LEN`] bytes.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `sequence` exceeds [`MAX_SEQUENCE`].
    pub fn to_bytes(&self) -> Result<[u8; HEADER_LEN], Error> {
        let mut out = [0u8; HEADER_LEN];
        self.write_image(&mut out)?;
        Ok(out)
    }

    /// Writes the wire image into a fixed array (no allocation, used on the hot path).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `sequence` exceeds [`MAX_SEQUENCE`].
    pub fn write_image(&self, out: &mut [u8; HEADER_LEN]) -> Result<(), Error> {
        ensure!(self.sequence <= MAX_SEQUENCE, Error::OutOfRange("sequence"));
        let (fixed, rest) = out.split_at_mut(8);
        fixed.copy_from_slice(&[VERSION, self.flags.0, self.path_id.0, 0, 0, 0, 0, 0]);
        if let Some(epoch) = fixed.get_mut(4..8) {
            epoch.copy_from_slice(&self.epoch.0.to_be_bytes());
        }
        let (sid, rest) = rest.split_at_mut(32);
        sid.copy_from_slice(&self.session_id.0);
        let (stream, seq) = rest.split_at_mut(4);
        stream.copy_from_slice(&self.stream_id.0.to_be_bytes());
        seq.copy_from_slice(&self.sequence.to_be_bytes());
        Ok(())
    }

    /// Parses the header at the start of `datagram`, returning it with its exact
    /// wire image and the bytes after it (the sealed payload).
    pub fn parse(datagram: &[u8]) -> Result<(Header, &[u8; HEADER_LEN], &[u8]), Error> {
        let Some((image, rest)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated {
                needed: HEADER_LEN - datagram.len(),
            });
        };
        let header = Header::decode(&mut Reader::new(image))?;
        Ok((header, image, rest))
    }

    /// [`Header::parse`] over a shared [`bytes::Bytes`] buffer: the header image and the
    /// payload come back as zero-copy `Bytes` views of the same allocation, so a receive
    /// path can hand the sealed payload on without copying it.
    pub fn parse_bytes(
        datagram: &bytes::Bytes,
    ) -> Result<(Header, bytes::Bytes, bytes::Bytes), Error> {
        let (header, _, _) = Header::parse(datagram)?;
        Ok((
            header,
            datagram.slice(..HEADER_LEN),
            datagram.slice(HEADER_LEN..),
        ))
    }
}

impl Encode for Header {
    fn encoded_len(&self) -> usize {
        HEADER_LEN
    }

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let image = self.to_bytes()?;
        w.put_slice(&image)
    }
}

impl<'a> Decode<'a> for Header {
    fn decode(r: &mut Reader<'a>) -> Result<Self, Error> {
        let version = r.u8()?;
        ensure!(version == VERSION, Error::UnsupportedVersion(version));
        let flags = Flags::from_bits(r.u8()?)?;
        let path_id = PathId(r.u8()?);
        ensure!(r.u8()? == 0, Error::Reserved("header byte 3"));
        let epoch = Epoch(r.u32()?);
        let session_id = SessionId(*r.array::<32>()?);
        let stream_id = StreamId(r.u32()?);
        let sequence = r.u64()?;
        ensure!(sequence <= MAX_SEQUENCE, Error::OutOfRange("sequence"));
        Ok(Header {
            flags,
            path_id,
            epoch,
            session_id,
            stream_id,
            sequence,
        })
    }
}
