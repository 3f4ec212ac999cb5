//! The short packet header (protocol version 2) and its wire image.
//!
//! Layout (docs/PROTOCOL.md §1 is normative; `L` is the length of the destination
//! connection id, which the receiver chose and therefore knows):
//!
//! ```text
//! byte 0        0 1 R R S S Q Q   bit 7 = 0 (short form), bit 6 = 1 (fixed);
//!                                 RR reserved (0), SS stream-id length code,
//!                                 QQ sequence length code (low 6 bits protected)
//! 1 .. 1+L      destination connection id (cleartext)
//! 1+L           meta: epoch mod 32 (bits 7..3) | REKEY | EARLY | ACK_ELICITING (protected)
//! then          stream id: 0, 1, 2 or 4 bytes BE, minimal (protected)
//! then          sequence: 1, 2, 4 or 6 low bytes BE (protected)
//! ```
//!
//! The *unprotected* image (as [`Header::write_image`] writes it) is the AEAD
//! associated data (I2). Header protection (the mask) is applied by `phantom-crypto`;
//! this module only knows which bytes it covers ([`protect_in_place`]).

use crate::codec::Reader;
use crate::error::{Error, ensure};

/// The protocol version this crate speaks (the handshake negotiates it; it is not on
/// the wire of a short packet).
pub const VERSION: u8 = 2;

/// First byte of every cleartext handshake datagram. Receivers demultiplex on the first
/// byte of a datagram: `0b01xx_xxxx` starts a short (protected) packet, this marker
/// starts a handshake datagram (its high bit is set, so it is never a short packet),
/// anything else is dropped.
pub const HANDSHAKE_MARKER: u8 = 0xc3;

/// The two fixed high bits of a short packet's first byte: `0b01`.
pub const SHORT_FORM: u8 = 0x40;
/// Mask of the fixed high bits of byte 0.
pub const FORM_MASK: u8 = 0xc0;
/// The bits of byte 0 header protection masks.
pub const PROTECTED_BITS: u8 = 0x3f;

/// Shortest connection id an endpoint may issue.
pub const MIN_CONN_ID_LEN: usize = 4;
/// Longest connection id.
pub const MAX_CONN_ID_LEN: usize = 20;
/// The connection-id length endpoints issue by default.
pub const DEFAULT_CONN_ID_LEN: usize = 8;

/// Bytes of the header after the connection id at their longest: meta (1), stream id
/// (4), sequence (6).
pub const MAX_PROTECTED_LEN: usize = 11;
/// The longest header: byte 0, a 20-byte id and [`MAX_PROTECTED_LEN`].
pub const MAX_HEADER_LEN: usize = 1 + MAX_CONN_ID_LEN + MAX_PROTECTED_LEN;
/// Length of the header-protection sample.
pub const SAMPLE_LEN: usize = 16;

/// The largest per-space sequence number: sequences are 48-bit so that (stream,
/// sequence) fits the 12-byte AEAD nonce injectively (I3).
pub const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// The header length with a `cid_len`-byte id and every field at its longest; the
/// header-protection sample starts here.
#[must_use]
pub const fn sample_offset(cid_len: usize) -> usize {
    1 + cid_len + MAX_PROTECTED_LEN
}

/// The shortest datagram a short packet with a `cid_len`-byte id may be: the sample
/// must fit ([`sample_offset`] + [`SAMPLE_LEN`]). Senders pad their payload to reach it.
#[must_use]
pub const fn min_packet_len(cid_len: usize) -> usize {
    sample_offset(cid_len) + SAMPLE_LEN
}

/// The 256-bit identifier the server chooses during the handshake. It routes
/// handshake datagrams only and never appears on a 1-RTT packet; it names the session
/// in logs and in the runtime's API.
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
        write!(f, "SessionId(")?;
        for b in self.0.iter().take(6) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A connection id: 4 to 20 bytes chosen by the endpoint that receives packets carrying
/// it, the only cleartext field of a short packet besides two fixed bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    len: u8,
    bytes: [u8; MAX_CONN_ID_LEN],
}

impl ConnId {
    /// An id from its bytes.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] unless `bytes` is 4..=20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        ensure!(
            (MIN_CONN_ID_LEN..=MAX_CONN_ID_LEN).contains(&bytes.len()),
            Error::OutOfRange("connection id length")
        );
        let mut out = [0u8; MAX_CONN_ID_LEN];
        if let Some(dst) = out.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        Ok(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// An id of `len` bytes, clamped to 4..=20, whose bytes `fill` writes (a generator's
    /// constructor: it cannot fail).
    pub fn filled_with(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let len = len.clamp(MIN_CONN_ID_LEN, MAX_CONN_ID_LEN);
        let mut bytes = [0u8; MAX_CONN_ID_LEN];
        if let Some(dst) = bytes.get_mut(..len) {
            fill(dst);
        }
        Self {
            len: len as u8,
            bytes,
        }
    }

    /// The id's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The id's length in bytes (4..=20).
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Always false (an id has at least 4 bytes); for API symmetry.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Debug for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ConnId(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A stream identifier. It is 32 bits in memory, on the wire and in the AEAD nonce,
/// so it can never be silently narrowed (I3). Stream 0 is the session's control stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StreamId(pub u32);

impl StreamId {
    /// The control stream, which carries session-level frames.
    pub const CONTROL: StreamId = StreamId(0);
    /// The largest stream id.
    pub const MAX: StreamId = StreamId(u32::MAX);
}

/// A path identifier, local to each endpoint (never on the wire). 8 bits: at most
/// 256 paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PathId(pub u8);

/// A key epoch: 0 after the handshake, +1 on every rekey, saturating at `u32::MAX`.
/// Its low 5 bits are on the wire (protected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch(pub u32);

impl Epoch {
    /// The highest epoch; a session that reaches it must re-handshake or close.
    pub const MAX: Epoch = Epoch(u32::MAX);

    /// The epoch whose low 5 bits are `low`, in the window `current - 1 ..= current + 30`
    /// (docs/PROTOCOL.md §1.2); `None` below epoch 0 or above `u32::MAX`.
    #[must_use]
    pub fn reconstruct(current: Epoch, low: u8) -> Option<Epoch> {
        let base = i64::from(current.0) - 1;
        let delta = (i64::from(low & 0x1f) - base).rem_euclid(32);
        u32::try_from(base + delta).ok().map(Epoch)
    }
}

/// Packet flags, in the protected meta byte. Unknown bits cannot occur (the epoch
/// takes the rest of the byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// The packet is the first one sealed under a new epoch: the receiver may
    /// follow it by authenticated catch-up.
    pub const REKEY: Flags = Flags(0x04);
    /// Sealed under 0-RTT (early data) keys.
    pub const EARLY: Flags = Flags(0x02);
    /// The payload holds at least one frame that needs an acknowledgement.
    pub const ACK_ELICITING: Flags = Flags(0x01);
    /// Every defined bit.
    pub const ALL: Flags = Flags(0x07);

    /// No flags.
    #[must_use]
    pub const fn empty() -> Self {
        Flags(0)
    }

    /// Flags from raw bits, rejecting undefined bits.
    ///
    /// # Errors
    /// [`Error::Reserved`] if a bit outside [`Flags::ALL`] is set.
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

/// How many bytes of the sequence a packet carries: 1, 2, 4 or 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqLen(u8);

impl SeqLen {
    /// One byte.
    pub const ONE: SeqLen = SeqLen(1);
    /// Two bytes.
    pub const TWO: SeqLen = SeqLen(2);
    /// Four bytes.
    pub const FOUR: SeqLen = SeqLen(4);
    /// The full 48-bit sequence.
    pub const FULL: SeqLen = SeqLen(6);

    /// The length in bytes.
    #[must_use]
    pub const fn bytes(self) -> usize {
        self.0 as usize
    }

    const fn code(self) -> u8 {
        match self.0 {
            1 => 0,
            2 => 1,
            4 => 2,
            _ => 3,
        }
    }

    const fn from_code(code: u8) -> SeqLen {
        match code & 3 {
            0 => SeqLen::ONE,
            1 => SeqLen::TWO,
            2 => SeqLen::FOUR,
            _ => SeqLen::FULL,
        }
    }

    /// The shortest length that lets a receiver whose largest authenticated sequence is
    /// at least `largest_acked` recover `sequence` (RFC 9000 appendix A.2): it covers
    /// twice the distance from `largest_acked`. `None` (nothing acknowledged) gives the
    /// full length.
    #[must_use]
    pub fn for_sequence(sequence: u64, largest_acked: Option<u64>) -> SeqLen {
        let Some(acked) = largest_acked else {
            return SeqLen::FULL;
        };
        let unacked = sequence.saturating_sub(acked).saturating_mul(2);
        if unacked < 1 << 8 {
            SeqLen::ONE
        } else if unacked < 1 << 16 {
            SeqLen::TWO
        } else if unacked < 1 << 32 {
            SeqLen::FOUR
        } else {
            SeqLen::FULL
        }
    }

    /// The sequence a receiver recovers from the `self`-byte `truncated` value, given
    /// the largest sequence it authenticated in that space (`None`: it expects 0),
    /// as RFC 9000 appendix A.3. A wrong guess only fails the AEAD.
    #[must_use]
    pub fn expand(self, truncated: u64, largest: Option<u64>) -> u64 {
        let bits = 8 * self.bytes() as u32;
        if bits >= 48 {
            return truncated & MAX_SEQUENCE;
        }
        let expected = largest.map_or(0, |l| l.saturating_add(1));
        let win = 1u64 << bits;
        let hwin = win / 2;
        let mask = win - 1;
        let candidate = (expected & !mask) | (truncated & mask);
        if candidate.saturating_add(hwin) <= expected && candidate + win <= MAX_SEQUENCE {
            candidate + win
        } else if candidate > expected.saturating_add(hwin) && candidate >= win {
            candidate - win
        } else {
            candidate
        }
    }
}

/// The minimal stream-id length code and byte count.
const fn stream_len(stream: StreamId) -> (u8, usize) {
    match stream.0 {
        0 => (0, 0),
        1..=0xff => (1, 1),
        0x100..=0xffff => (2, 2),
        _ => (3, 4),
    }
}

/// The header of a short (1-RTT) packet, with its fields in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Packet flags.
    pub flags: Flags,
    /// The key epoch the payload is sealed under (its low 5 bits are on the wire).
    pub epoch: Epoch,
    /// The destination connection id.
    pub conn_id: ConnId,
    /// The stream whose sequence space this packet uses.
    pub stream_id: StreamId,
    /// Per-space sequence number, at most [`MAX_SEQUENCE`].
    pub sequence: u64,
    /// How many low bytes of `sequence` are on the wire.
    pub seq_len: SeqLen,
}

impl Header {
    /// The header's length on the wire.
    #[must_use]
    pub const fn len(&self) -> usize {
        1 + self.conn_id.len() + 1 + stream_len(self.stream_id).1 + self.seq_len.bytes()
    }

    /// Always false; for API symmetry with [`Header::len`].
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Writes the unprotected image into the start of `out`; returns its length.
    ///
    /// Only the low `seq_len` bytes of the sequence are written.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if `sequence` exceeds [`MAX_SEQUENCE`];
    /// [`Error::BufferTooSmall`] if `out` is shorter than the header.
    pub fn write_image(&self, out: &mut [u8]) -> Result<usize, Error> {
        ensure!(self.sequence <= MAX_SEQUENCE, Error::OutOfRange("sequence"));
        let len = self.len();
        let available = out.len();
        let Some(out) = out.get_mut(..len) else {
            return Err(Error::BufferTooSmall {
                needed: len,
                available,
            });
        };
        let (scode, slen) = stream_len(self.stream_id);
        let qlen = self.seq_len.bytes();
        let cid = self.conn_id.as_bytes();
        let meta = ((self.epoch.0 & 0x1f) as u8) << 3 | self.flags.0;
        let stream = self.stream_id.0.to_be_bytes();
        let seq = self.sequence.to_be_bytes();
        let b0 = [SHORT_FORM | scode << 2 | self.seq_len.code()];
        let meta = [meta];
        let fields = [
            &b0[..],
            cid,
            &meta[..],
            stream.get(4 - slen..).unwrap_or(&[]),
            seq.get(8 - qlen..).unwrap_or(&[]),
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = out.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        Ok(len)
    }
}

/// A short header as it is on the wire, after header protection was removed: the
/// epoch's low bits and the truncated sequence, not yet reconstructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireHeader {
    /// Packet flags.
    pub flags: Flags,
    /// The epoch's low 5 bits.
    pub epoch_low: u8,
    /// The destination connection id.
    pub conn_id: ConnId,
    /// The stream id (its minimal encoding checked).
    pub stream_id: StreamId,
    /// The sequence's low `seq_len` bytes.
    pub truncated: u64,
    /// How many bytes of the sequence were on the wire.
    pub seq_len: SeqLen,
    /// The header's length.
    pub len: usize,
}

impl WireHeader {
    /// Parses an unprotected image whose connection id is `cid_len` bytes long.
    ///
    /// # Errors
    /// [`Error::Malformed`] if byte 0 is not a short packet's, [`Error::Reserved`] if
    /// the reserved bits are set, [`Error::Malformed`] for a non-minimal stream id,
    /// [`Error::Truncated`] if `image` ends early, [`Error::OutOfRange`] for a bad
    /// `cid_len`.
    pub fn parse(image: &[u8], cid_len: usize) -> Result<Self, Error> {
        let mut r = Reader::new(image);
        let b0 = r.u8()?;
        ensure!(
            b0 & FORM_MASK == SHORT_FORM,
            Error::Malformed("not a short packet")
        );
        ensure!(b0 & 0x30 == 0, Error::Reserved("header bits 5..4"));
        let conn_id = ConnId::from_slice(r.bytes(cid_len)?)?;
        let meta = r.u8()?;
        let slen = match (b0 >> 2) & 3 {
            0 => 0,
            1 => 1,
            2 => 2,
            _ => 4,
        };
        let mut stream = 0u32;
        for b in r.bytes(slen)? {
            stream = stream << 8 | u32::from(*b);
        }
        let stream_id = StreamId(stream);
        ensure!(
            stream_len(stream_id).1 == slen,
            Error::Malformed("stream id not minimally encoded")
        );
        let seq_len = SeqLen::from_code(b0);
        let mut truncated = 0u64;
        for b in r.bytes(seq_len.bytes())? {
            truncated = truncated << 8 | u64::from(*b);
        }
        Ok(Self {
            flags: Flags(meta & Flags::ALL.0),
            epoch_low: meta >> 3,
            conn_id,
            stream_id,
            truncated,
            seq_len,
            len: image.len() - r.remaining(),
        })
    }
}

/// The connection id of a datagram that starts like a short packet, for routing
/// (`cid_len`: the length of the receiver's ids). Reads cleartext bytes only.
#[must_use]
pub fn peek_conn_id(datagram: &[u8], cid_len: usize) -> Option<&[u8]> {
    let (&b0, rest) = datagram.split_first()?;
    if b0 & FORM_MASK != SHORT_FORM {
        return None;
    }
    rest.get(..cid_len)
}

/// Applies (or removes: XOR is its own inverse) a header-protection `mask` to the
/// packet at the start of `packet`, whose id is `cid_len` bytes. `protect`: the low
/// bits of byte 0 are cleartext now (the lengths are read before masking); else they
/// are masked (read after). Returns the header length.
///
/// # Errors
/// [`Error::Truncated`] if the packet is shorter than the header it announces.
pub fn protect_in_place(
    packet: &mut [u8],
    cid_len: usize,
    mask: &[u8; SAMPLE_LEN],
    protect: bool,
) -> Result<usize, Error> {
    let [m0, rest @ ..] = mask;
    let Some(b0) = packet.first_mut() else {
        return Err(Error::Truncated { needed: 1 });
    };
    let clear = if protect {
        *b0
    } else {
        *b0 ^ (m0 & PROTECTED_BITS)
    };
    *b0 ^= m0 & PROTECTED_BITS;
    let slen = match (clear >> 2) & 3 {
        0 => 0,
        1 => 1,
        2 => 2,
        _ => 4,
    };
    let n = 1 + slen + SeqLen::from_code(clear).bytes();
    let start = 1 + cid_len;
    let have = packet.len();
    let Some(fields) = packet.get_mut(start..start + n) else {
        return Err(Error::Truncated {
            needed: (start + n).saturating_sub(have),
        });
    };
    for (b, m) in fields.iter_mut().zip(rest) {
        *b ^= m;
    }
    Ok(start + n)
}
