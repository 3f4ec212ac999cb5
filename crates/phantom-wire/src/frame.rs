//! The typed frames carried inside a packet's (sealed) payload.
//!
//! A payload is a sequence of frames, each a varint frame type followed by a body
//! whose layout the type fixes (docs/PROTOCOL.md §2 is normative). Parsing is
//! zero-copy — data-carrying frames borrow the payload — total and bounded:
//!
//! * every varint must use its shortest encoding, so a payload that parses
//!   re-encodes to exactly the bytes received;
//! * every length is checked against a hard cap and against the bytes actually
//!   present before anything is sliced, and nothing is ever allocated;
//! * an unknown frame type, a reserved bit, a range that would underflow or a
//!   truncated body is a typed [`Error`]; [`parse_frames`] stops at the first one.
//!
//! ```
//! use phantom_wire::frame::{Frame, Stream, encode_frames, frames_encoded_len, parse_frames};
//! use phantom_wire::{StreamId, Writer};
//!
//! let frames = [
//!     Frame::Ping,
//!     Frame::Stream(Stream { stream_id: StreamId(7), offset: 0, fin: true, data: b"hi" }),
//! ];
//! let mut buf = vec![0u8; frames_encoded_len(&frames)];
//! encode_frames(&frames, &mut Writer::new(&mut buf))?;
//! let parsed: Vec<Frame<'_>> = parse_frames(&buf).collect::<Result<_, _>>()?;
//! assert_eq!(parsed, frames);
//! # Ok::<(), phantom_wire::Error>(())
//! ```

use core::iter::FusedIterator;
use core::ops::RangeInclusive;

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::{Error, ensure};
use crate::header::{Epoch, MAX_SEQUENCE, StreamId};
use crate::varint::VarInt;

/// The most ranges one ACK frame may carry, the first range included.
pub const MAX_ACK_RANGES: usize = 256;
/// The longest reason phrase a CLOSE frame may carry, in bytes.
pub const MAX_CLOSE_REASON_LEN: usize = 1024;
/// The longest handshake message a HANDSHAKE fragment may belong to, in bytes.
pub const MAX_HANDSHAKE_MESSAGE_LEN: usize = 65_535;
/// The most handshake bytes one HANDSHAKE fragment may carry.
pub const MAX_HANDSHAKE_FRAGMENT_LEN: usize = 1200;
/// The largest stream offset: `offset + length` of a STREAM frame, a final size and
/// every flow-control limit must not exceed it (the varint range, 2^62 - 1).
pub const MAX_STREAM_OFFSET: u64 = VarInt::MAX.into_inner();
/// The largest stream count a MAX_STREAMS or STREAMS_BLOCKED frame may name: one
/// more than the largest [`StreamId`] value, since ids are 32 bits (I3).
pub const MAX_STREAM_COUNT: u64 = 1 << 32;
/// Length of a PATH_CHALLENGE / PATH_RESPONSE token.
pub const PATH_TOKEN_LEN: usize = 32;

/// Bit of the STREAM frame's flags byte that marks the end of the stream.
const STREAM_FLAG_FIN: u8 = 0x01;
/// Bit of the STREAM_OPEN frame's flags byte that marks the stream replay-safe.
const OPEN_FLAG_REPLAY_SAFE: u8 = 0x01;

/// The type code of every frame, as carried in the leading varint.
///
/// All codes are below 64, so on the wire every frame type is one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FrameType {
    /// `0x00` PADDING.
    Padding = 0x00,
    /// `0x01` PING.
    Ping = 0x01,
    /// `0x02` ACK.
    Ack = 0x02,
    /// `0x03` STREAM.
    Stream = 0x03,
    /// `0x04` RESET_STREAM.
    ResetStream = 0x04,
    /// `0x05` STREAM_OPEN.
    StreamOpen = 0x05,
    /// `0x06` MAX_DATA.
    MaxData = 0x06,
    /// `0x07` MAX_STREAM_DATA.
    MaxStreamData = 0x07,
    /// `0x08` PATH_CHALLENGE.
    PathChallenge = 0x08,
    /// `0x09` PATH_RESPONSE.
    PathResponse = 0x09,
    /// `0x0a` REKEY.
    Rekey = 0x0a,
    /// `0x0b` CLOSE.
    Close = 0x0b,
    /// `0x0c` HANDSHAKE.
    Handshake = 0x0c,
    /// `0x0d` DATAGRAM.
    Datagram = 0x0d,
    /// `0x0e` STOP_SENDING.
    StopSending = 0x0e,
    /// `0x0f` DATA_BLOCKED.
    DataBlocked = 0x0f,
    /// `0x10` STREAM_DATA_BLOCKED.
    StreamDataBlocked = 0x10,
    /// `0x11` MAX_STREAMS.
    MaxStreams = 0x11,
    /// `0x12` STREAMS_BLOCKED.
    StreamsBlocked = 0x12,
    /// `0x13` NEW_CONN_ID.
    NewConnId = 0x13,
    /// `0x14` RETIRE_CONN_ID.
    RetireConnId = 0x14,
}

impl FrameType {
    /// Every frame type, in code order.
    pub const ALL: [FrameType; 21] = [
        FrameType::Padding,
        FrameType::Ping,
        FrameType::Ack,
        FrameType::Stream,
        FrameType::ResetStream,
        FrameType::StreamOpen,
        FrameType::MaxData,
        FrameType::MaxStreamData,
        FrameType::PathChallenge,
        FrameType::PathResponse,
        FrameType::Rekey,
        FrameType::Close,
        FrameType::Handshake,
        FrameType::Datagram,
        FrameType::StopSending,
        FrameType::DataBlocked,
        FrameType::StreamDataBlocked,
        FrameType::MaxStreams,
        FrameType::StreamsBlocked,
        FrameType::NewConnId,
        FrameType::RetireConnId,
    ];

    /// The type code carried on the wire.
    #[must_use]
    pub const fn code(self) -> u64 {
        self as u64
    }

    /// The frame type with wire code `code`, if there is one.
    #[must_use]
    pub const fn from_code(code: u64) -> Option<FrameType> {
        Some(match code {
            0x00 => FrameType::Padding,
            0x01 => FrameType::Ping,
            0x02 => FrameType::Ack,
            0x03 => FrameType::Stream,
            0x04 => FrameType::ResetStream,
            0x05 => FrameType::StreamOpen,
            0x06 => FrameType::MaxData,
            0x07 => FrameType::MaxStreamData,
            0x08 => FrameType::PathChallenge,
            0x09 => FrameType::PathResponse,
            0x0a => FrameType::Rekey,
            0x0b => FrameType::Close,
            0x0c => FrameType::Handshake,
            0x0d => FrameType::Datagram,
            0x0e => FrameType::StopSending,
            0x0f => FrameType::DataBlocked,
            0x10 => FrameType::StreamDataBlocked,
            0x11 => FrameType::MaxStreams,
            0x12 => FrameType::StreamsBlocked,
            0x13 => FrameType::NewConnId,
            0x14 => FrameType::RetireConnId,
            _ => return None,
        })
    }

    /// True if a packet carrying a frame of this type must be acknowledged.
    /// PADDING, ACK and CLOSE are the only frames that are not ack-eliciting.
    #[must_use]
    pub const fn is_ack_eliciting(self) -> bool {
        !matches!(self, FrameType::Padding | FrameType::Ack | FrameType::Close)
    }

    /// True if the frame may appear in a cleartext handshake datagram (one that starts
    /// with [`HANDSHAKE_MARKER`](crate::HANDSHAKE_MARKER)): only HANDSHAKE and PADDING.
    /// Every other frame travels only under AEAD protection (I2).
    #[must_use]
    pub const fn is_allowed_in_cleartext(self) -> bool {
        matches!(self, FrameType::Padding | FrameType::Handshake)
    }
}

/// Which directions a stream carries data in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Both peers send (wire byte `0x00`).
    Bidi,
    /// Only the opener sends (wire byte `0x01`).
    Uni,
}

impl StreamKind {
    fn to_byte(self) -> u8 {
        match self {
            StreamKind::Bidi => 0,
            StreamKind::Uni => 1,
        }
    }

    fn from_byte(b: u8) -> Result<Self, Error> {
        match b {
            0 => Ok(StreamKind::Bidi),
            1 => Ok(StreamKind::Uni),
            _ => Err(Error::Malformed("stream kind")),
        }
    }
}

/// PADDING (`0x00`): a run of zero bytes. The type byte is the first zero; the
/// decoder takes every zero byte that follows as part of the same frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Padding {
    /// Total length in bytes, type byte included; at least 1.
    pub len: usize,
}

/// An inclusive range of acknowledged sequence numbers, highest first in an [`Ack`].
pub type AckRange = RangeInclusive<u64>;

/// Where an [`Ack`]'s ranges live: validated wire bytes (decoded) or a caller's
/// slice (to be encoded). Both are validated at construction.
#[derive(Debug, Clone, Copy)]
enum AckRepr<'a> {
    Wire {
        largest: u64,
        first_len: u64,
        /// Number of (gap, length) pairs in `pairs`.
        count: usize,
        /// The canonical varint encoding of the pairs.
        pairs: &'a [u8],
    },
    Ranges(&'a [AckRange]),
}

/// ACK (`0x02`): the sequence numbers received on one stream's sequence space, as
/// descending, disjoint, non-adjacent inclusive ranges (QUIC-style gap encoding).
///
/// # Invariants
/// At least one and at most [`MAX_ACK_RANGES`] ranges; every bound is at most
/// [`MAX_SEQUENCE`]; each range lies strictly below the previous one with at least
/// one unacknowledged number between them, so no range can underflow below 0. These
/// hold for every `Ack`, decoded ([`Decode`]) or built ([`Ack::new`]).
#[derive(Clone, Copy)]
pub struct Ack<'a> {
    /// The stream whose packet sequence numbers are acknowledged.
    pub stream_id: StreamId,
    /// How long the sender held the largest acknowledged packet before acking, in µs.
    /// Must fit a varint (2^62 - 1) to be encoded.
    pub ack_delay_us: u64,
    repr: AckRepr<'a>,
}

impl<'a> Ack<'a> {
    /// An ACK of `ranges`, which must be in descending order and non-empty (see the
    /// type's invariants); the slice is borrowed, not copied.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `ranges` is empty, a range is empty, or the ranges are
    /// not descending with a gap; [`Error::OutOfRange`] if there are more than
    /// [`MAX_ACK_RANGES`], a bound exceeds [`MAX_SEQUENCE`] or the delay exceeds the
    /// varint range.
    pub fn new(
        stream_id: StreamId,
        ack_delay_us: u64,
        ranges: &'a [AckRange],
    ) -> Result<Self, Error> {
        ensure!(!ranges.is_empty(), Error::Malformed("ack without ranges"));
        ensure!(
            ranges.len() <= MAX_ACK_RANGES,
            Error::OutOfRange("ack range count")
        );
        ensure!(
            ack_delay_us <= VarInt::MAX.into_inner(),
            Error::OutOfRange("ack delay")
        );
        let mut prev_start: Option<u64> = None;
        for r in ranges {
            let (start, end) = (*r.start(), *r.end());
            ensure!(start <= end, Error::Malformed("empty ack range"));
            ensure!(end <= MAX_SEQUENCE, Error::OutOfRange("ack largest"));
            if let Some(prev) = prev_start {
                // The gap field is `prev - end - 2`: ranges must be separated by at
                // least one missing number (adjacent ranges must be merged).
                ensure!(
                    end.checked_add(2).is_some_and(|e| e <= prev),
                    Error::Malformed("ack ranges not descending")
                );
            }
            prev_start = Some(start);
        }
        Ok(Ack {
            stream_id,
            ack_delay_us,
            repr: AckRepr::Ranges(ranges),
        })
    }

    /// The largest acknowledged sequence number.
    #[must_use]
    pub fn largest(&self) -> u64 {
        match self.repr {
            AckRepr::Wire { largest, .. } => largest,
            AckRepr::Ranges(r) => r.first().map_or(0, |r| *r.end()),
        }
    }

    /// The smallest acknowledged sequence number (walks at most
    /// [`MAX_ACK_RANGES`] ranges).
    #[must_use]
    pub fn smallest(&self) -> u64 {
        self.ranges().last().map_or(0, |r| *r.start())
    }

    /// How many ranges the ACK carries, the first included (1..=[`MAX_ACK_RANGES`]).
    #[must_use]
    pub fn range_count(&self) -> usize {
        match self.repr {
            AckRepr::Wire { count, .. } => count + 1,
            AckRepr::Ranges(r) => r.len(),
        }
    }

    /// The acknowledged ranges, highest first. Decoding is lazy and allocation-free.
    #[must_use]
    pub fn ranges(&self) -> AckRanges<'a> {
        let inner = match self.repr {
            AckRepr::Wire {
                largest,
                first_len,
                count,
                pairs,
            } => AckRangesInner::Wire {
                next: largest.checked_sub(first_len).map(|s| (s, largest)),
                pairs: Reader::new(pairs),
                left: count,
            },
            AckRepr::Ranges(r) => AckRangesInner::Ranges(r.iter()),
        };
        AckRanges { inner }
    }

    /// True if sequence number `seq` is inside one of the ranges.
    #[must_use]
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges().any(|r| r.contains(&seq))
    }

    /// Encoded length of the range part: largest, first range length, pair count
    /// and the (gap, length) pairs.
    fn ranges_len(&self) -> usize {
        match self.repr {
            AckRepr::Wire {
                largest,
                first_len,
                count,
                pairs,
            } => {
                varint_len(largest) + varint_len(first_len) + varint_len(count as u64) + pairs.len()
            }
            AckRepr::Ranges(ranges) => {
                let mut len = 0;
                let mut prev_start = None;
                for r in ranges {
                    let (start, end) = (*r.start(), *r.end());
                    match prev_start {
                        None => len += varint_len(end) + varint_len(end.saturating_sub(start)),
                        Some(prev) => {
                            len += varint_len(prev_gap(prev, end))
                                + varint_len(end.saturating_sub(start));
                        }
                    }
                    prev_start = Some(start);
                }
                len + varint_len(ranges.len().saturating_sub(1) as u64)
            }
        }
    }

    fn decode_body(r: &mut Reader<'a>) -> Result<Self, Error> {
        let stream_id = read_stream_id(r)?;
        let ack_delay_us = read_u64(r)?;
        let largest = read_u64(r)?;
        ensure!(largest <= MAX_SEQUENCE, Error::OutOfRange("ack largest"));
        let first_len = read_u64(r)?;
        let mut smallest = largest
            .checked_sub(first_len)
            .ok_or(Error::Malformed("ack range underflow"))?;
        let count = read_u64(r)?;
        // I1: the count is capped by a constant and by the bytes present (each pair
        // is at least two bytes) before the loop that walks it.
        ensure!(
            count < MAX_ACK_RANGES as u64,
            Error::OutOfRange("ack range count")
        );
        let count = count as usize;
        ensure!(
            count * 2 <= r.remaining(),
            Error::Truncated {
                needed: count * 2 - r.remaining()
            }
        );
        let start = r.peek_rest();
        for _ in 0..count {
            let gap = read_u64(r)?;
            let len = read_u64(r)?;
            let end = smallest
                .checked_sub(gap)
                .and_then(|v| v.checked_sub(2))
                .ok_or(Error::Malformed("ack range underflow"))?;
            smallest = end
                .checked_sub(len)
                .ok_or(Error::Malformed("ack range underflow"))?;
        }
        let pairs = start
            .get(..start.len() - r.remaining())
            .ok_or(Error::Malformed("ack ranges"))?;
        Ok(Ack {
            stream_id,
            ack_delay_us,
            repr: AckRepr::Wire {
                largest,
                first_len,
                count,
                pairs,
            },
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        put_stream_id(w, self.stream_id)?;
        w.put_varint_u64(self.ack_delay_us)?;
        match self.repr {
            AckRepr::Wire {
                largest,
                first_len,
                count,
                pairs,
            } => {
                w.put_varint_u64(largest)?;
                w.put_varint_u64(first_len)?;
                w.put_varint_u64(count as u64)?;
                w.put_slice(pairs)
            }
            AckRepr::Ranges(ranges) => {
                let mut prev_start = None;
                for r in ranges {
                    let (start, end) = (*r.start(), *r.end());
                    let len = end
                        .checked_sub(start)
                        .ok_or(Error::Malformed("empty ack range"))?;
                    match prev_start {
                        None => {
                            w.put_varint_u64(end)?;
                            w.put_varint_u64(len)?;
                            w.put_varint_u64(ranges.len().saturating_sub(1) as u64)?;
                        }
                        Some(prev) => {
                            w.put_varint_u64(prev_gap(prev, end))?;
                            w.put_varint_u64(len)?;
                        }
                    }
                    prev_start = Some(start);
                }
                Ok(())
            }
        }
    }
}

/// The gap field between a range starting at `prev_start` and the next one ending
/// at `end` (validated by [`Ack::new`] to be at least 0).
fn prev_gap(prev_start: u64, end: u64) -> u64 {
    prev_start.saturating_sub(end).saturating_sub(2)
}

impl PartialEq for Ack<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.stream_id == other.stream_id
            && self.ack_delay_us == other.ack_delay_us
            && self.ranges().eq(other.ranges())
    }
}

impl Eq for Ack<'_> {}

impl core::fmt::Debug for Ack<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ack")
            .field("stream_id", &self.stream_id)
            .field("ack_delay_us", &self.ack_delay_us)
            .field("ranges", &DebugRanges(self))
            .finish()
    }
}

struct DebugRanges<'r, 'a>(&'r Ack<'a>);

impl core::fmt::Debug for DebugRanges<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.0.ranges()).finish()
    }
}

/// Iterator over an [`Ack`]'s ranges, highest first. Never allocates; yields at most
/// [`MAX_ACK_RANGES`] items.
#[derive(Debug, Clone)]
pub struct AckRanges<'a> {
    inner: AckRangesInner<'a>,
}

#[derive(Debug, Clone)]
enum AckRangesInner<'a> {
    Wire {
        /// The next range to yield, as (start, end).
        next: Option<(u64, u64)>,
        pairs: Reader<'a>,
        left: usize,
    },
    Ranges(core::slice::Iter<'a, AckRange>),
}

impl Iterator for AckRanges<'_> {
    type Item = AckRange;

    fn next(&mut self) -> Option<AckRange> {
        match &mut self.inner {
            AckRangesInner::Ranges(it) => it.next().cloned(),
            AckRangesInner::Wire { next, pairs, left } => {
                let (start, end) = next.take()?;
                if *left > 0 {
                    *left -= 1;
                    // Validated at decode time; a failure here only ends the walk.
                    *next = (|| {
                        let gap = pairs.varint().ok()?.into_inner();
                        let len = pairs.varint().ok()?.into_inner();
                        let e = start.checked_sub(gap)?.checked_sub(2)?;
                        Some((e.checked_sub(len)?, e))
                    })();
                }
                Some(start..=end)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            AckRangesInner::Ranges(it) => it.size_hint(),
            AckRangesInner::Wire { next, left, .. } => {
                let n = if next.is_some() { left + 1 } else { 0 };
                (0, Some(n))
            }
        }
    }
}

impl FusedIterator for AckRanges<'_> {}

/// STREAM (`0x03`): bytes of a stream at an offset.
///
/// `offset + data.len()` never exceeds [`MAX_STREAM_OFFSET`] in a decoded frame and
/// must not in one to be encoded.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stream<'a> {
    /// The stream the data belongs to.
    pub stream_id: StreamId,
    /// Offset of `data[0]` in the stream.
    pub offset: u64,
    /// This frame carries the last byte of the stream (its final size is
    /// `offset + data.len()`).
    pub fin: bool,
    /// The stream bytes, borrowed from the payload.
    pub data: &'a [u8],
}

impl Stream<'_> {
    /// The offset just past this frame's data (saturating; exact for any valid frame).
    #[must_use]
    pub fn end_offset(&self) -> u64 {
        self.offset.saturating_add(self.data.len() as u64)
    }
}

impl core::fmt::Debug for Stream<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stream")
            .field("stream_id", &self.stream_id)
            .field("offset", &self.offset)
            .field("fin", &self.fin)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// RESET_STREAM (`0x04`): the sender abandons its side of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetStream {
    /// The stream being reset.
    pub stream_id: StreamId,
    /// Application error code.
    pub error_code: u64,
    /// The stream's final size; at most [`MAX_STREAM_OFFSET`].
    pub final_size: u64,
}

/// STREAM_OPEN (`0x05`): announces a new stream and its properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamOpen {
    /// The new stream.
    pub stream_id: StreamId,
    /// Bidirectional or unidirectional.
    pub kind: StreamKind,
    /// The application marked the stream safe to replay, so it may carry 0-RTT
    /// (early) data (flags bit `0x01`).
    pub replay_safe: bool,
}

/// MAX_DATA (`0x06`): the session-wide flow-control limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxData {
    /// Total bytes the peer may send across all streams; at most [`MAX_STREAM_OFFSET`].
    pub max: u64,
}

/// MAX_STREAM_DATA (`0x07`): one stream's flow-control limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxStreamData {
    /// The stream the limit applies to.
    pub stream_id: StreamId,
    /// Highest offset the peer may send on it; at most [`MAX_STREAM_OFFSET`].
    pub max: u64,
}

/// PATH_CHALLENGE (`0x08`): an unpredictable token the peer must echo on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathChallenge {
    /// The 32-byte token.
    pub token: [u8; PATH_TOKEN_LEN],
}

/// PATH_RESPONSE (`0x09`): echoes a PATH_CHALLENGE token (compare it in constant time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PathResponse {
    /// The 32-byte token from the challenge.
    pub token: [u8; PATH_TOKEN_LEN],
}

/// REKEY (`0x0a`): the sender has moved its sending keys to `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rekey {
    /// The sender's new epoch (a fixed 4-byte big-endian field).
    pub epoch: Epoch,
}

/// CLOSE (`0x0b`): the sender closes the session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Close<'a> {
    /// Transport or application error code.
    pub error_code: u64,
    /// `error_code` is an application code (byte `0x01`) rather than a transport
    /// code (byte `0x00`).
    pub application: bool,
    /// Human-readable reason, at most [`MAX_CLOSE_REASON_LEN`] bytes (not
    /// necessarily UTF-8).
    pub reason: &'a [u8],
}

impl core::fmt::Debug for Close<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Close")
            .field("error_code", &self.error_code)
            .field("application", &self.application)
            .field("reason_len", &self.reason.len())
            .finish()
    }
}

/// HANDSHAKE (`0x0c`): one fragment of a handshake message.
///
/// A decoded fragment satisfies `data.len() <= MAX_HANDSHAKE_FRAGMENT_LEN`,
/// `total_len <= MAX_HANDSHAKE_MESSAGE_LEN` and `offset + data.len() <= total_len`,
/// so a reassembly buffer of `total_len` bytes can hold it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakeFragment<'a> {
    /// Sequence number of the message this fragment belongs to.
    pub message_seq: u32,
    /// Length of the whole message.
    pub total_len: usize,
    /// Offset of `data[0]` within the message.
    pub offset: usize,
    /// The fragment's bytes, borrowed from the payload.
    pub data: &'a [u8],
}

impl core::fmt::Debug for HandshakeFragment<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HandshakeFragment")
            .field("message_seq", &self.message_seq)
            .field("total_len", &self.total_len)
            .field("offset", &self.offset)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// DATAGRAM (`0x0d`): an unreliable application datagram.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Datagram<'a> {
    /// The datagram's bytes, borrowed from the payload.
    pub data: &'a [u8],
}

impl core::fmt::Debug for Datagram<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Datagram")
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// STOP_SENDING (`0x0e`): asks the peer to stop sending on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StopSending {
    /// The stream.
    pub stream_id: StreamId,
    /// Application error code.
    pub error_code: u64,
}

/// DATA_BLOCKED (`0x0f`): the sender is blocked by the session-wide limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataBlocked {
    /// The MAX_DATA limit it is blocked at; at most [`MAX_STREAM_OFFSET`].
    pub limit: u64,
}

/// STREAM_DATA_BLOCKED (`0x10`): the sender is blocked by a stream's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamDataBlocked {
    /// The blocked stream.
    pub stream_id: StreamId,
    /// The MAX_STREAM_DATA limit it is blocked at; at most [`MAX_STREAM_OFFSET`].
    pub limit: u64,
}

/// MAX_STREAMS (`0x11`): how many streams of a kind the peer may open in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxStreams {
    /// Which kind of stream the limit counts.
    pub kind: StreamKind,
    /// Cumulative stream count; at most [`MAX_STREAM_COUNT`].
    pub max: u64,
}

/// STREAMS_BLOCKED (`0x12`): the sender is blocked by a MAX_STREAMS limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamsBlocked {
    /// Which kind of stream is blocked.
    pub kind: StreamKind,
    /// The limit it is blocked at; at most [`MAX_STREAM_COUNT`].
    pub limit: u64,
}

/// Any frame. Data-carrying variants borrow the payload they were parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `0x00` a run of zero bytes.
    Padding(Padding),
    /// `0x01` elicits an acknowledgement; no body.
    Ping,
    /// `0x02` acknowledged sequence ranges of one stream.
    Ack(Ack<'a>),
    /// `0x03` stream data.
    Stream(Stream<'a>),
    /// `0x04` abandon sending on a stream.
    ResetStream(ResetStream),
    /// `0x05` open a stream.
    StreamOpen(StreamOpen),
    /// `0x06` session flow-control limit.
    MaxData(MaxData),
    /// `0x07` stream flow-control limit.
    MaxStreamData(MaxStreamData),
    /// `0x08` path validation challenge.
    PathChallenge(PathChallenge),
    /// `0x09` path validation response.
    PathResponse(PathResponse),
    /// `0x0a` the sender moved to a new epoch.
    Rekey(Rekey),
    /// `0x0b` close the session.
    Close(Close<'a>),
    /// `0x0c` handshake message fragment.
    Handshake(HandshakeFragment<'a>),
    /// `0x0d` unreliable datagram.
    Datagram(Datagram<'a>),
    /// `0x0e` ask the peer to stop sending on a stream.
    StopSending(StopSending),
    /// `0x0f` blocked by MAX_DATA.
    DataBlocked(DataBlocked),
    /// `0x10` blocked by MAX_STREAM_DATA.
    StreamDataBlocked(StreamDataBlocked),
    /// `0x11` stream count limit.
    MaxStreams(MaxStreams),
    /// `0x12` blocked by MAX_STREAMS.
    StreamsBlocked(StreamsBlocked),
    /// `0x13` a connection id the sender issues.
    NewConnId(NewConnId),
    /// `0x14` the sender stops using one of our connection ids.
    RetireConnId(RetireConnId),
}

impl Frame<'_> {
    /// The frame's type.
    #[must_use]
    pub const fn frame_type(&self) -> FrameType {
        match self {
            Frame::Padding(_) => FrameType::Padding,
            Frame::Ping => FrameType::Ping,
            Frame::Ack(_) => FrameType::Ack,
            Frame::Stream(_) => FrameType::Stream,
            Frame::ResetStream(_) => FrameType::ResetStream,
            Frame::StreamOpen(_) => FrameType::StreamOpen,
            Frame::MaxData(_) => FrameType::MaxData,
            Frame::MaxStreamData(_) => FrameType::MaxStreamData,
            Frame::PathChallenge(_) => FrameType::PathChallenge,
            Frame::PathResponse(_) => FrameType::PathResponse,
            Frame::Rekey(_) => FrameType::Rekey,
            Frame::Close(_) => FrameType::Close,
            Frame::Handshake(_) => FrameType::Handshake,
            Frame::Datagram(_) => FrameType::Datagram,
            Frame::StopSending(_) => FrameType::StopSending,
            Frame::DataBlocked(_) => FrameType::DataBlocked,
            Frame::StreamDataBlocked(_) => FrameType::StreamDataBlocked,
            Frame::MaxStreams(_) => FrameType::MaxStreams,
            Frame::StreamsBlocked(_) => FrameType::StreamsBlocked,
            Frame::NewConnId(_) => FrameType::NewConnId,
            Frame::RetireConnId(_) => FrameType::RetireConnId,
        }
    }

    /// True if a packet carrying this frame must be acknowledged (everything but
    /// PADDING, ACK and CLOSE).
    #[must_use]
    pub const fn is_ack_eliciting(&self) -> bool {
        self.frame_type().is_ack_eliciting()
    }
}

/// True if any frame in `frames` is ack-eliciting: the packet carrying them must
/// set [`Flags::ACK_ELICITING`](crate::Flags::ACK_ELICITING) and be acknowledged.
pub fn is_ack_eliciting<'f, 'a: 'f>(frames: impl IntoIterator<Item = &'f Frame<'a>>) -> bool {
    frames.into_iter().any(Frame::is_ack_eliciting)
}

/// Parses the whole of `payload` and reports whether it is ack-eliciting.
///
/// # Errors
/// The first frame error, if any frame is malformed.
pub fn payload_is_ack_eliciting(payload: &[u8]) -> Result<bool, Error> {
    let mut eliciting = false;
    for frame in parse_frames(payload) {
        eliciting |= frame?.is_ack_eliciting();
    }
    Ok(eliciting)
}

/// Iterates over the frames of `payload`, in order. It yields `Err` for the first
/// malformed frame and then nothing more (a payload is accepted whole or not at
/// all; the session drops it). An empty payload yields nothing.
#[must_use]
pub fn parse_frames(payload: &[u8]) -> FrameIter<'_> {
    FrameIter {
        reader: Reader::new(payload),
        failed: false,
    }
}

/// Iterator returned by [`parse_frames`]. Each step is bounded by the bytes it
/// consumes, so a whole payload parses in linear time.
#[derive(Debug, Clone)]
pub struct FrameIter<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl FrameIter<'_> {
    /// Bytes not yet parsed.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.reader.remaining()
    }
}

impl<'a> Iterator for FrameIter<'a> {
    type Item = Result<Frame<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let result = Frame::decode(&mut self.reader);
        self.failed = result.is_err();
        Some(result)
    }
}

impl FusedIterator for FrameIter<'_> {}

/// Total encoded length of `frames`.
#[must_use]
pub fn frames_encoded_len(frames: &[Frame<'_>]) -> usize {
    frames.iter().map(Encode::encoded_len).sum()
}

/// Encodes `frames` one after another.
///
/// # Errors
/// [`Error::BufferTooSmall`] if they do not fit, or the first frame's field error.
pub fn encode_frames(frames: &[Frame<'_>], w: &mut Writer<'_>) -> Result<(), Error> {
    frames.iter().try_for_each(|f| f.encode(w))
}

mod fields;

use self::fields::{
    expect_type, put_capped, put_stream_id, put_type, read_capped, read_len_prefixed,
    read_stream_id, read_token, read_type, read_u64, stream_id_len, varint_len,
};

// --- per-frame bodies ----------------------------------------------------------

/// Implements [`Encode`] and [`Decode`] for a frame struct from its body functions:
/// the struct's encoding is its type byte followed by its body.
macro_rules! frame_codec {
    ($ty:ident $(<$lt:lifetime>)?, $code:expr) => {
        impl$(<$lt>)? Encode for $ty$(<$lt>)? {
            fn encoded_len(&self) -> usize {
                1 + self.body_len()
            }

            fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                put_type(w, $code)?;
                self.encode_body(w)
            }
        }

        impl<'a> Decode<'a> for $ty$(<$lt>)? {
            fn decode(r: &mut Reader<'a>) -> Result<Self, Error> {
                expect_type(r, $code)?;
                Self::decode_body(r)
            }
        }
    };
}

/// A frame whose body is one varint (`MaxData`, `DataBlocked`).
macro_rules! varint_frame {
    ($ty:ident { $field:ident }, $code:expr) => {
        impl $ty {
            fn body_len(&self) -> usize {
                varint_len(self.$field)
            }

            fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok($ty {
                    $field: read_u64(r)?,
                })
            }

            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                w.put_varint_u64(self.$field)
            }
        }
        frame_codec!($ty, $code);
    };
}

/// A frame whose body is a stream id and one varint (`MaxStreamData`,
/// `StreamDataBlocked`).
macro_rules! stream_varint_frame {
    ($ty:ident { $field:ident }, $code:expr) => {
        impl $ty {
            fn body_len(&self) -> usize {
                stream_id_len(self.stream_id) + varint_len(self.$field)
            }

            fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok($ty {
                    stream_id: read_stream_id(r)?,
                    $field: read_u64(r)?,
                })
            }

            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                put_stream_id(w, self.stream_id)?;
                w.put_varint_u64(self.$field)
            }
        }
        frame_codec!($ty, $code);
    };
}

/// A frame whose body is a path-validation token (`PathChallenge`, `PathResponse`).
macro_rules! token_frame {
    ($ty:ident, $code:expr) => {
        impl $ty {
            fn body_len(&self) -> usize {
                PATH_TOKEN_LEN
            }

            fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok($ty {
                    token: read_token(r)?,
                })
            }

            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                w.put_slice(&self.token)
            }
        }
        frame_codec!($ty, $code);
    };
}

/// A frame whose body is a stream kind and a capped stream count (`MaxStreams`,
/// `StreamsBlocked`).
macro_rules! stream_count_frame {
    ($ty:ident { $field:ident }, $what:literal, $code:expr) => {
        impl $ty {
            fn body_len(&self) -> usize {
                1 + varint_len(self.$field)
            }

            fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok($ty {
                    kind: StreamKind::from_byte(r.u8()?)?,
                    $field: read_capped(r, MAX_STREAM_COUNT, $what)?,
                })
            }

            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                w.put_u8(self.kind.to_byte())?;
                put_capped(w, self.$field, MAX_STREAM_COUNT, $what)
            }
        }
        frame_codec!($ty, $code);
    };
}

varint_frame!(MaxData { max }, FrameType::MaxData);
stream_varint_frame!(MaxStreamData { max }, FrameType::MaxStreamData);
token_frame!(PathChallenge, FrameType::PathChallenge);
token_frame!(PathResponse, FrameType::PathResponse);
varint_frame!(DataBlocked { limit }, FrameType::DataBlocked);
stream_varint_frame!(StreamDataBlocked { limit }, FrameType::StreamDataBlocked);
stream_count_frame!(MaxStreams { max }, "max streams", FrameType::MaxStreams);
stream_count_frame!(
    StreamsBlocked { limit },
    "streams blocked limit",
    FrameType::StreamsBlocked
);

mod conn_id;
pub use self::conn_id::{NewConnId, RESET_TOKEN_LEN, RetireConnId};

impl Padding {
    fn body_len(&self) -> usize {
        self.len.saturating_sub(1)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        let zeros = r.peek_rest().iter().take_while(|b| **b == 0).count();
        r.bytes(zeros)?;
        Ok(Padding { len: zeros + 1 })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        ensure!(self.len >= 1, Error::OutOfRange("padding length"));
        w.put_zeros(self.len - 1)
    }
}
frame_codec!(Padding, FrameType::Padding);

impl Ack<'_> {
    fn full_body_len(&self) -> usize {
        stream_id_len(self.stream_id) + varint_len(self.ack_delay_us) + self.ranges_len()
    }
}

impl Encode for Ack<'_> {
    fn encoded_len(&self) -> usize {
        1 + self.full_body_len()
    }

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        put_type(w, FrameType::Ack)?;
        self.encode_body(w)
    }
}

impl<'a> Decode<'a> for Ack<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, Error> {
        expect_type(r, FrameType::Ack)?;
        Self::decode_body(r)
    }
}

impl<'a> Stream<'a> {
    fn body_len(&self) -> usize {
        stream_id_len(self.stream_id)
            + varint_len(self.offset)
            + 1
            + varint_len(self.data.len() as u64)
            + self.data.len()
    }

    // Inlined into `Frame::decode`: the frame of nearly every data packet (the
    // plain hint is not taken there; measured per packet with callgrind).
    #[inline(always)]
    fn decode_body(r: &mut Reader<'a>) -> Result<Self, Error> {
        let stream_id = read_stream_id(r)?;
        let offset = read_u64(r)?;
        let flags = r.u8()?;
        ensure!(
            flags & !STREAM_FLAG_FIN == 0,
            Error::Reserved("stream flags")
        );
        let len = read_u64(r)?;
        ensure!(
            offset
                .checked_add(len)
                .is_some_and(|end| end <= MAX_STREAM_OFFSET),
            Error::OutOfRange("stream offset + length")
        );
        let len = usize::try_from(len).map_err(|_| Error::OutOfRange("stream length"))?;
        let data = r.bytes(len)?;
        Ok(Stream {
            stream_id,
            offset,
            fin: flags & STREAM_FLAG_FIN != 0,
            data,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let len = self.data.len() as u64;
        ensure!(
            self.offset
                .checked_add(len)
                .is_some_and(|end| end <= MAX_STREAM_OFFSET),
            Error::OutOfRange("stream offset + length")
        );
        put_stream_id(w, self.stream_id)?;
        w.put_varint_u64(self.offset)?;
        w.put_u8(if self.fin { STREAM_FLAG_FIN } else { 0 })?;
        w.put_varint_u64(len)?;
        w.put_slice(self.data)
    }
}
frame_codec!(Stream<'a>, FrameType::Stream);

impl ResetStream {
    fn body_len(&self) -> usize {
        stream_id_len(self.stream_id) + varint_len(self.error_code) + varint_len(self.final_size)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(ResetStream {
            stream_id: read_stream_id(r)?,
            error_code: read_u64(r)?,
            final_size: read_u64(r)?,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        put_stream_id(w, self.stream_id)?;
        w.put_varint_u64(self.error_code)?;
        w.put_varint_u64(self.final_size)
    }
}
frame_codec!(ResetStream, FrameType::ResetStream);

impl StreamOpen {
    fn body_len(&self) -> usize {
        stream_id_len(self.stream_id) + 2
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        let stream_id = read_stream_id(r)?;
        let kind = StreamKind::from_byte(r.u8()?)?;
        let flags = r.u8()?;
        ensure!(
            flags & !OPEN_FLAG_REPLAY_SAFE == 0,
            Error::Reserved("stream open flags")
        );
        Ok(StreamOpen {
            stream_id,
            kind,
            replay_safe: flags & OPEN_FLAG_REPLAY_SAFE != 0,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        put_stream_id(w, self.stream_id)?;
        w.put_u8(self.kind.to_byte())?;
        w.put_u8(if self.replay_safe {
            OPEN_FLAG_REPLAY_SAFE
        } else {
            0
        })
    }
}
frame_codec!(StreamOpen, FrameType::StreamOpen);

impl Rekey {
    fn body_len(&self) -> usize {
        4
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Rekey {
            epoch: Epoch(r.u32()?),
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.put_u32(self.epoch.0)
    }
}
frame_codec!(Rekey, FrameType::Rekey);

impl<'a> Close<'a> {
    fn body_len(&self) -> usize {
        varint_len(self.error_code) + 1 + varint_len(self.reason.len() as u64) + self.reason.len()
    }

    fn decode_body(r: &mut Reader<'a>) -> Result<Self, Error> {
        let error_code = read_u64(r)?;
        let application = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(Error::Malformed("close kind")),
        };
        let reason = read_len_prefixed(r, MAX_CLOSE_REASON_LEN, "close reason length")?;
        Ok(Close {
            error_code,
            application,
            reason,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        ensure!(
            self.reason.len() <= MAX_CLOSE_REASON_LEN,
            Error::OutOfRange("close reason length")
        );
        w.put_varint_u64(self.error_code)?;
        w.put_u8(u8::from(self.application))?;
        w.put_varint_u64(self.reason.len() as u64)?;
        w.put_slice(self.reason)
    }
}
frame_codec!(Close<'a>, FrameType::Close);

impl<'a> HandshakeFragment<'a> {
    fn body_len(&self) -> usize {
        varint_len(u64::from(self.message_seq))
            + varint_len(self.total_len as u64)
            + varint_len(self.offset as u64)
            + varint_len(self.data.len() as u64)
            + self.data.len()
    }

    fn decode_body(r: &mut Reader<'a>) -> Result<Self, Error> {
        let message_seq = u32::try_from(read_u64(r)?)
            .map_err(|_| Error::OutOfRange("handshake message sequence"))?;
        let total_len = read_capped(
            r,
            MAX_HANDSHAKE_MESSAGE_LEN as u64,
            "handshake message length",
        )? as usize;
        let offset = read_capped(r, total_len as u64, "handshake fragment offset")? as usize;
        let data = read_len_prefixed(r, MAX_HANDSHAKE_FRAGMENT_LEN, "handshake fragment length")?;
        ensure!(
            data.len() <= total_len - offset,
            Error::OutOfRange("handshake fragment beyond message")
        );
        Ok(HandshakeFragment {
            message_seq,
            total_len,
            offset,
            data,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        ensure!(
            self.total_len <= MAX_HANDSHAKE_MESSAGE_LEN,
            Error::OutOfRange("handshake message length")
        );
        ensure!(
            self.data.len() <= MAX_HANDSHAKE_FRAGMENT_LEN,
            Error::OutOfRange("handshake fragment length")
        );
        ensure!(
            self.offset
                .checked_add(self.data.len())
                .is_some_and(|end| end <= self.total_len),
            Error::OutOfRange("handshake fragment beyond message")
        );
        w.put_varint(VarInt::from_u32(self.message_seq))?;
        w.put_varint_u64(self.total_len as u64)?;
        w.put_varint_u64(self.offset as u64)?;
        w.put_varint_u64(self.data.len() as u64)?;
        w.put_slice(self.data)
    }
}
frame_codec!(HandshakeFragment<'a>, FrameType::Handshake);

impl<'a> Datagram<'a> {
    fn body_len(&self) -> usize {
        varint_len(self.data.len() as u64) + self.data.len()
    }

    fn decode_body(r: &mut Reader<'a>) -> Result<Self, Error> {
        // The only cap is the payload itself: `bytes` checks the length against it.
        let data = read_len_prefixed(r, usize::MAX, "datagram length")?;
        Ok(Datagram { data })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.put_varint_u64(self.data.len() as u64)?;
        w.put_slice(self.data)
    }
}
frame_codec!(Datagram<'a>, FrameType::Datagram);

impl StopSending {
    fn body_len(&self) -> usize {
        stream_id_len(self.stream_id) + varint_len(self.error_code)
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(StopSending {
            stream_id: read_stream_id(r)?,
            error_code: read_u64(r)?,
        })
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        put_stream_id(w, self.stream_id)?;
        w.put_varint_u64(self.error_code)
    }
}
frame_codec!(StopSending, FrameType::StopSending);

impl Encode for Frame<'_> {
    fn encoded_len(&self) -> usize {
        match self {
            Frame::Padding(f) => f.encoded_len(),
            Frame::Ping => 1,
            Frame::Ack(f) => f.encoded_len(),
            Frame::Stream(f) => f.encoded_len(),
            Frame::ResetStream(f) => f.encoded_len(),
            Frame::StreamOpen(f) => f.encoded_len(),
            Frame::MaxData(f) => f.encoded_len(),
            Frame::MaxStreamData(f) => f.encoded_len(),
            Frame::PathChallenge(f) => f.encoded_len(),
            Frame::PathResponse(f) => f.encoded_len(),
            Frame::Rekey(f) => f.encoded_len(),
            Frame::Close(f) => f.encoded_len(),
            Frame::Handshake(f) => f.encoded_len(),
            Frame::Datagram(f) => f.encoded_len(),
            Frame::StopSending(f) => f.encoded_len(),
            Frame::DataBlocked(f) => f.encoded_len(),
            Frame::StreamDataBlocked(f) => f.encoded_len(),
            Frame::MaxStreams(f) => f.encoded_len(),
            Frame::StreamsBlocked(f) => f.encoded_len(),
            Frame::NewConnId(f) => f.encoded_len(),
            Frame::RetireConnId(f) => f.encoded_len(),
        }
    }

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            Frame::Padding(f) => f.encode(w),
            Frame::Ping => put_type(w, FrameType::Ping),
            Frame::Ack(f) => f.encode(w),
            Frame::Stream(f) => f.encode(w),
            Frame::ResetStream(f) => f.encode(w),
            Frame::StreamOpen(f) => f.encode(w),
            Frame::MaxData(f) => f.encode(w),
            Frame::MaxStreamData(f) => f.encode(w),
            Frame::PathChallenge(f) => f.encode(w),
            Frame::PathResponse(f) => f.encode(w),
            Frame::Rekey(f) => f.encode(w),
            Frame::Close(f) => f.encode(w),
            Frame::Handshake(f) => f.encode(w),
            Frame::Datagram(f) => f.encode(w),
            Frame::StopSending(f) => f.encode(w),
            Frame::DataBlocked(f) => f.encode(w),
            Frame::StreamDataBlocked(f) => f.encode(w),
            Frame::MaxStreams(f) => f.encode(w),
            Frame::StreamsBlocked(f) => f.encode(w),
            Frame::NewConnId(f) => f.encode(w),
            Frame::RetireConnId(f) => f.encode(w),
        }
    }
}

impl<'a> Decode<'a> for Frame<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, Error> {
        Ok(match read_type(r)? {
            FrameType::Padding => Frame::Padding(Padding::decode_body(r)?),
            FrameType::Ping => Frame::Ping,
            FrameType::Ack => Frame::Ack(Ack::decode_body(r)?),
            FrameType::Stream => Frame::Stream(Stream::decode_body(r)?),
            FrameType::ResetStream => Frame::ResetStream(ResetStream::decode_body(r)?),
            FrameType::StreamOpen => Frame::StreamOpen(StreamOpen::decode_body(r)?),
            FrameType::MaxData => Frame::MaxData(MaxData::decode_body(r)?),
            FrameType::MaxStreamData => Frame::MaxStreamData(MaxStreamData::decode_body(r)?),
            FrameType::PathChallenge => Frame::PathChallenge(PathChallenge::decode_body(r)?),
            FrameType::PathResponse => Frame::PathResponse(PathResponse::decode_body(r)?),
            FrameType::Rekey => Frame::Rekey(Rekey::decode_body(r)?),
            FrameType::Close => Frame::Close(Close::decode_body(r)?),
            FrameType::Handshake => Frame::Handshake(HandshakeFragment::decode_body(r)?),
            FrameType::Datagram => Frame::Datagram(Datagram::decode_body(r)?),
            FrameType::StopSending => Frame::StopSending(StopSending::decode_body(r)?),
            FrameType::DataBlocked => Frame::DataBlocked(DataBlocked::decode_body(r)?),
            FrameType::StreamDataBlocked => {
                Frame::StreamDataBlocked(StreamDataBlocked::decode_body(r)?)
            }
            FrameType::MaxStreams => Frame::MaxStreams(MaxStreams::decode_body(r)?),
            FrameType::StreamsBlocked => Frame::StreamsBlocked(StreamsBlocked::decode_body(r)?),
            FrameType::NewConnId => Frame::NewConnId(NewConnId::decode_body(r)?),
            FrameType::RetireConnId => Frame::RetireConnId(RetireConnId::decode_body(r)?),
        })
    }
}
