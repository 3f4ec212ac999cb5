//! Stream state: the send buffer with retransmission tracking by offset ranges,
//! the receive reassembly buffer bounded by the flow-control window, and the
//! session-level flow-control accounting.
//!
//! Neither side knows about packets: the session asks a [`SendStream`] for the next
//! chunk to put in a STREAM frame, tells it which chunks were acknowledged or lost,
//! and feeds received STREAM frames to a [`RecvStream`].

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Buf, Bytes};

use crate::error::Error;
use crate::ranges::RangeSet;

/// Which way a stream carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Both peers send and receive.
    Bi,
    /// Only the opener sends.
    Uni,
}

/// Which end of the session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that initiated the handshake.
    Client,
    /// The end that accepted it.
    Server,
}

impl Side {
    /// The other side.
    #[must_use]
    pub const fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Stream-id layout: bit 0 = initiator (0 client, 1 server), bit 1 = unidirectional,
/// the remaining 30 bits a per-(initiator, direction) index starting at 1, so that
/// id 0 stays the control stream and ids are never reused (I3).
pub(crate) fn stream_id_for(side: Side, dir: Dir, index: u32) -> Option<u32> {
    if index == 0 || index >= 1 << 30 {
        return None;
    }
    let s = match side {
        Side::Client => 0,
        Side::Server => 1,
    };
    let d = match dir {
        Dir::Bi => 0,
        Dir::Uni => 2,
    };
    Some((index << 2) | d | s)
}

/// The initiator of a (non-control) stream id.
pub(crate) fn stream_initiator(id: u32) -> Side {
    if id & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    }
}

/// The direction of a stream id.
pub(crate) fn stream_dir(id: u32) -> Dir {
    if id & 2 == 0 { Dir::Bi } else { Dir::Uni }
}

/// The per-(initiator, direction) index of a stream id.
pub(crate) fn stream_index(id: u32) -> u32 {
    id >> 2
}

/// A chunk of stream data the session should put in a STREAM frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunk {
    pub(crate) offset: u64,
    pub(crate) len: usize,
    pub(crate) fin: bool,
    /// Bytes of this chunk above the highest offset sent before: they consume
    /// session-level flow-control credit.
    pub(crate) new_bytes: u64,
}

/// Where the bytes of one [`SendBuf`] segment live.
#[derive(Debug)]
enum SegData {
    /// In the copy ring, from ring coordinate `pos` (bytes ever pushed to the ring).
    Ring { pos: u64 },
    /// In a chunk the application handed over.
    Chunk(Bytes),
}

/// One run of bytes `[start, start + len)` of the stream.
#[derive(Debug)]
struct Seg {
    start: u64,
    len: usize,
    data: SegData,
}

/// The unacknowledged bytes of a send stream. Copied writes go to one ring buffer
/// whose memory is reused for the stream's life (no allocation per write once it
/// has grown); chunks handed over with [`SendBuf::push_bytes`] are kept as they
/// are (no copy). A list of segments says, in offset order, which holds what:
/// consecutive copied writes share one segment, so a stream written only by
/// copy has a single segment. Offsets are absolute stream offsets.
#[derive(Debug, Default)]
pub(crate) struct SendBuf {
    ring: VecDeque<u8>,
    /// Ring coordinate of `ring[0]`.
    ring_front: u64,
    segs: VecDeque<Seg>,
    /// Offset of the first byte held (everything below is acknowledged).
    base: u64,
    len: usize,
}

impl SendBuf {
    /// Offset of the first byte held.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn end(&self) -> u64 {
        self.base + self.len as u64
    }

    /// Appends a copy of `data`.
    pub(crate) fn push_slice(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        match self.segs.back_mut() {
            Some(Seg {
                len,
                data: SegData::Ring { .. },
                ..
            }) => *len += data.len(),
            _ => {
                let seg = Seg {
                    start: self.end(),
                    len: data.len(),
                    data: SegData::Ring {
                        pos: self.ring_front + self.ring.len() as u64,
                    },
                };
                self.segs.push_back(seg);
            }
        }
        self.ring.extend(data);
        self.len += data.len();
    }

    /// Appends `data` without copying it.
    pub(crate) fn push_bytes(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let seg = Seg {
            start: self.end(),
            len: data.len(),
            data: SegData::Chunk(data),
        };
        self.len += seg.len;
        self.segs.push_back(seg);
    }

    /// The bytes of `seg` from `from` (relative to its start) on, as at most two
    /// slices (the ring may wrap).
    fn seg_slices<'a>(&'a self, seg: &'a Seg, from: usize) -> (&'a [u8], &'a [u8]) {
        match &seg.data {
            SegData::Chunk(b) => (b.get(from..).unwrap_or_default(), &[]),
            SegData::Ring { pos } => {
                let Some(at) = usize::try_from(pos.saturating_sub(self.ring_front))
                    .ok()
                    .and_then(|p| p.checked_add(from))
                else {
                    return (&[], &[]);
                };
                let Some(end) = at.checked_add(seg.len.saturating_sub(from)) else {
                    return (&[], &[]);
                };
                let (a, b) = self.ring.as_slices();
                if end <= a.len() {
                    (a.get(at..end).unwrap_or_default(), &[])
                } else if at >= a.len() {
                    (b.get(at - a.len()..end - a.len()).unwrap_or_default(), &[])
                } else {
                    (
                        a.get(at..).unwrap_or_default(),
                        b.get(..end - a.len()).unwrap_or_default(),
                    )
                }
            }
        }
    }

    /// Index of the segment holding `offset` (which must lie in `[base, end)`).
    fn seg_index(&self, offset: u64) -> usize {
        // A stream written only by copy has one segment: no search then.
        if let Some(front) = self.segs.front()
            && offset < front.start + front.len as u64
        {
            return 0;
        }
        self.segs
            .partition_point(|s| s.start + s.len as u64 <= offset)
    }

    /// `[offset, offset + len)` if it lies in one piece of memory.
    pub(crate) fn contiguous(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len as u64)?;
        if offset < self.base || end > self.end() {
            return None;
        }
        let seg = self.segs.get(self.seg_index(offset))?;
        let from = usize::try_from(offset - seg.start).ok()?;
        if len > seg.len.saturating_sub(from) {
            // The range runs past its segment.
            return None;
        }
        match &seg.data {
            SegData::Chunk(b) => b.get(from..from.checked_add(len)?),
            SegData::Ring { pos } => {
                // Only the slice the range starts in is looked at (no second slice
                // worked out, as `seg_slices` does for `copy_out`).
                let at = usize::try_from(pos.saturating_sub(self.ring_front))
                    .ok()?
                    .checked_add(from)?;
                let end = at.checked_add(len)?;
                let (a, b) = self.ring.as_slices();
                if end <= a.len() {
                    a.get(at..end)
                } else {
                    b.get(at.checked_sub(a.len())?..end - a.len())
                }
            }
        }
    }

    /// Copies `[offset, offset + out.len())` into `out`; false if not all held.
    pub(crate) fn copy_out(&self, offset: u64, out: &mut [u8]) -> bool {
        let end = offset.saturating_add(out.len() as u64);
        if offset < self.base || end > self.end() {
            return false;
        }
        let mut written = 0usize;
        for seg in self.segs.range(self.seg_index(offset)..) {
            if written == out.len() {
                break;
            }
            let at = offset + written as u64;
            let Ok(from) = usize::try_from(at.saturating_sub(seg.start)) else {
                return false;
            };
            let (a, b) = self.seg_slices(seg, from);
            for part in [a, b] {
                let take = part.len().min(out.len() - written);
                match (part.get(..take), out.get_mut(written..written + take)) {
                    (Some(src), Some(dst)) => dst.copy_from_slice(src),
                    _ => return false,
                }
                written += take;
            }
        }
        written == out.len()
    }

    /// Frees everything below `offset`.
    pub(crate) fn drain_to(&mut self, offset: u64) {
        let offset = offset.min(self.end());
        if offset <= self.base {
            return;
        }
        while let Some(seg) = self.segs.front_mut() {
            if offset <= seg.start {
                break;
            }
            let n = usize::try_from(offset - seg.start)
                .unwrap_or(usize::MAX)
                .min(seg.len);
            if let SegData::Ring { pos } = &mut seg.data {
                self.ring.drain(..n.min(self.ring.len()));
                self.ring_front += n as u64;
                *pos += n as u64;
            } else if let SegData::Chunk(b) = &mut seg.data {
                b.advance(n);
            }
            seg.start += n as u64;
            seg.len -= n;
            if seg.len == 0 {
                self.segs.pop_front();
            }
        }
        self.len -= usize::try_from(offset - self.base)
            .unwrap_or(self.len)
            .min(self.len);
        self.base = offset;
    }
}

/// Sending half of a stream.
#[derive(Debug)]
pub(crate) struct SendStream {
    /// Bytes from offset `buf.base()` up to `write_end()`; everything below
    /// `buf.base()` is acknowledged.
    buf: SendBuf,
    /// Ranges below `sent_max` that must be retransmitted. Never-sent data,
    /// `[sent_max, write_end)`, is pending implicitly (no range bookkeeping per write
    /// or per chunk on the in-order path).
    pending: RangeSet,
    /// Ranges the peer acknowledged (above `base`).
    acked: RangeSet,
    /// Highest offset ever sent (flow-control accounting).
    sent_max: u64,
    /// Peer's MAX_STREAM_DATA.
    pub(crate) max_data: u64,
    /// The app called finish.
    fin: bool,
    fin_pending: bool,
    fin_acked: bool,
    /// Reset by us (code), or stopped by the peer.
    pub(crate) reset: Option<u64>,
    /// A RESET_STREAM frame must be (re)sent.
    pub(crate) reset_pending: bool,
    pub(crate) reset_acked: bool,
    /// Buffer limit for unacknowledged bytes.
    limit: usize,
    /// Signalled writable since the last blocked write.
    pub(crate) blocked: bool,
}

impl SendStream {
    pub(crate) fn new(max_data: u64, limit: usize) -> Self {
        Self {
            buf: SendBuf::default(),
            pending: RangeSet::new(),
            acked: RangeSet::new(),
            sent_max: 0,
            max_data,
            fin: false,
            fin_pending: false,
            fin_acked: false,
            reset: None,
            reset_pending: false,
            reset_acked: false,
            limit,
            blocked: false,
        }
    }

    /// Offset one past the last byte written.
    pub(crate) fn write_end(&self) -> u64 {
        self.buf.base() + self.buf.len() as u64
    }

    /// How many of `len` offered bytes may be buffered now; `Err(Blocked)` (and
    /// the writable signal armed) if none.
    fn accept(&mut self, len: usize) -> Result<usize, Error> {
        if let Some(code) = self.reset {
            return Err(Error::Stopped(code));
        }
        if self.fin {
            return Err(Error::Finished);
        }
        let n = self.room().min(len);
        if n == 0 && len > 0 {
            self.blocked = true;
            return Err(Error::Blocked);
        }
        Ok(n)
    }

    /// Appends a copy of application data; returns how many bytes were accepted.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        let n = self.accept(data.len())?;
        self.buf.push_slice(data.get(..n).unwrap_or_default());
        Ok(n)
    }

    /// Takes as much of `data` as the buffer has room for, without copying it;
    /// `data` keeps the rest. Returns how many bytes were taken.
    pub(crate) fn write_bytes(&mut self, data: &mut Bytes) -> Result<usize, Error> {
        let n = self.accept(data.len())?;
        self.buf.push_bytes(data.split_to(n));
        Ok(n)
    }

    pub(crate) fn finish(&mut self) -> Result<(), Error> {
        if let Some(code) = self.reset {
            return Err(Error::Stopped(code));
        }
        if self.fin {
            return Err(Error::Finished);
        }
        self.fin = true;
        self.fin_pending = true;
        Ok(())
    }

    /// Abandons the stream with `code`; the session sends RESET_STREAM.
    pub(crate) fn reset(&mut self, code: u64) {
        if self.reset.is_some() || self.fin_acked {
            return;
        }
        self.reset = Some(code);
        self.reset_pending = true;
        self.pending = RangeSet::new();
        self.fin_pending = false;
    }

    /// Final size for a RESET_STREAM frame: the highest offset sent.
    pub(crate) fn final_size(&self) -> u64 {
        self.sent_max
    }

    /// True if `next_chunk` would return something with `conn_credit` session credit.
    pub(crate) fn can_send(&self, conn_credit: u64) -> bool {
        if self.reset.is_some() {
            return false;
        }
        match self.next_pending() {
            Some(r) => r.start < self.sent_max || (r.start < self.max_data && conn_credit > 0),
            None => self.fin_pending,
        }
    }

    /// The lowest range waiting to be sent: the first retransmission range, merged
    /// with the never-sent tail when they touch (as one range set held them before).
    fn next_pending(&self) -> Option<Range<u64>> {
        let end = self.write_end();
        match self.pending.first() {
            Some(r) if r.end >= self.sent_max => Some(r.start..end.max(r.end)),
            Some(r) => Some(r),
            None => (self.sent_max < end).then_some(self.sent_max..end),
        }
    }

    /// True if data is waiting but stream-level credit blocks it.
    #[cfg(test)]
    pub(crate) fn flow_blocked(&self) -> bool {
        self.reset.is_none()
            && self
                .next_pending()
                .is_some_and(|r| r.start >= self.max_data)
    }

    /// The next chunk to send, at most `max_len` bytes, with at most `conn_credit`
    /// bytes above the highest offset ever sent. Marks it in flight.
    pub(crate) fn next_chunk(&mut self, max_len: usize, conn_credit: u64) -> Option<Chunk> {
        if self.reset.is_some() {
            return None;
        }
        if let Some(r) = self.next_pending() {
            // Bytes below `sent_max` were already counted against both credits;
            // only bytes above it need fresh credit.
            let limit = self.max_data.min(self.sent_max.saturating_add(conn_credit));
            let allowed = limit.max(self.sent_max);
            let end = r
                .end
                .min(r.start.saturating_add(max_len as u64))
                .min(allowed);
            if end <= r.start {
                return None;
            }
            if r.start < self.sent_max {
                self.pending.remove(r.start..end.min(self.sent_max));
            }
            let new_bytes = end.saturating_sub(self.sent_max.max(r.start));
            self.sent_max = self.sent_max.max(end);
            let fin = self.fin_pending && end == self.write_end();
            if fin {
                self.fin_pending = false;
            }
            return Some(Chunk {
                offset: r.start,
                len: (end - r.start) as usize,
                fin,
                new_bytes,
            });
        }
        if self.fin_pending {
            self.fin_pending = false;
            let end = self.write_end();
            self.sent_max = self.sent_max.max(end);
            return Some(Chunk {
                offset: end,
                len: 0,
                fin: true,
                new_bytes: 0,
            });
        }
        None
    }

    /// Copies `[offset, offset+out.len())` of the buffered data into `out`.
    pub(crate) fn copy_out(&self, offset: u64, out: &mut [u8]) -> bool {
        self.buf.copy_out(offset, out)
    }

    /// `[offset, offset+len)` of the buffered data if it is contiguous in memory.
    pub(crate) fn contiguous(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.buf.contiguous(offset, len)
    }

    /// A chunk was acknowledged. Returns true if buffer space was freed.
    pub(crate) fn on_ack(&mut self, offset: u64, len: usize, fin: bool) -> bool {
        if fin {
            self.fin_acked = true;
        }
        if len == 0 {
            return false;
        }
        let end = offset + len as u64;
        let base = self.buf.base();
        let new_base = if offset <= base {
            // In-order acknowledgement (the common case): no range bookkeeping
            // unless something above was acknowledged out of order.
            if end <= base {
                return false;
            }
            if self.acked.is_empty() {
                end
            } else {
                let e = self.acked.contiguous_end_from(end).unwrap_or(end);
                self.acked.remove_below(e);
                e
            }
        } else {
            self.acked.insert(offset..end);
            return false;
        };
        self.buf.drain_to(new_base);
        true
    }

    /// A chunk was declared lost: the parts not yet acknowledged go back to pending.
    pub(crate) fn on_lost(&mut self, offset: u64, len: usize, fin: bool) {
        if self.reset.is_some() {
            return;
        }
        let r: Range<u64> = offset.max(self.buf.base())..offset + len as u64;
        if r.start >= r.end {
            return;
        }
        for gap in self.acked.gaps_in(r) {
            self.pending.insert(gap);
        }
        if fin && !self.fin_acked {
            self.fin_pending = true;
        }
    }

    /// Everything, fin included, is acknowledged (or the reset is).
    pub(crate) fn is_done(&self) -> bool {
        (self.fin_acked && self.buf.len() == 0) || self.reset_acked
    }

    /// Free buffer space.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }
}

/// Capacity of an emptied receive buffer that is kept for reuse.
const CONTIG_KEEP: usize = 1 << 20;

/// Out-of-order data may leave at most one disjoint received range per this many
/// bytes of the receive window (and at least [`MIN_RECV_RANGES`]): a peer whose
/// frames leave more holes than that is refused, so the range bookkeeping stays a
/// small fraction of the window it is for (I1).
const WINDOW_BYTES_PER_RANGE: u64 = 256;
/// Disjoint out-of-order ranges always allowed, whatever the window.
const MIN_RECV_RANGES: usize = 256;

/// Copies `src` over `buf[at..at + src.len()]` (nothing if that is out of range).
fn write_at(buf: &mut VecDeque<u8>, at: usize, src: &[u8]) {
    if at.saturating_add(src.len()) > buf.len() {
        return;
    }
    let (a, b) = buf.as_mut_slices();
    let in_a = a.len().saturating_sub(at).min(src.len());
    if let (Some(dst), Some(part)) = (a.get_mut(at..at + in_a), src.get(..in_a)) {
        dst.copy_from_slice(part);
    }
    let rest = src.get(in_a..).unwrap_or_default();
    let from = at.saturating_sub(a.len());
    if let Some(dst) = b.get_mut(from..from + rest.len()) {
        dst.copy_from_slice(rest);
    }
}

/// Receiving half of a stream.
#[derive(Debug)]
pub(crate) struct RecvStream {
    /// The bytes `[read_offset, read_offset + buf.len())`: the first `ready` are
    /// received and in order; beyond them, out-of-order data sits at its place, the
    /// holes between (zero-filled) listed by `received`. Everything lies below
    /// `max_data`, so the stream's memory is its window and the session's is its
    /// window (I1): nothing per frame, however small the frames.
    buf: VecDeque<u8>,
    /// In-order bytes at the front of `buf`.
    ready: usize,
    /// The ranges held beyond the in-order data (only data above its end).
    received: RangeSet,
    read_offset: u64,
    /// Highest offset received (flow-control accounting).
    pub(crate) highest: u64,
    final_size: Option<u64>,
    /// Limit we advertised.
    pub(crate) max_data: u64,
    window: u64,
    /// Most disjoint out-of-order ranges held before the peer is refused.
    max_ranges: usize,
    /// A MAX_STREAM_DATA frame should be sent.
    pub(crate) credit_pending: bool,
    /// The peer reset the stream with this code.
    pub(crate) reset: Option<u64>,
    /// We asked the peer to stop (code), STOP_SENDING pending.
    pub(crate) stop: Option<u64>,
    pub(crate) stop_pending: bool,
    /// The app has seen the end (fin or reset).
    pub(crate) finished_read: bool,
    /// Once the data is discarded (reset or stopped), the offset up to which its
    /// session-level credit was given back.
    released_to: Option<u64>,
}

impl RecvStream {
    pub(crate) fn new(window: u64) -> Self {
        let per_window = usize::try_from(window / WINDOW_BYTES_PER_RANGE).unwrap_or(usize::MAX);
        Self {
            buf: VecDeque::new(),
            ready: 0,
            received: RangeSet::new(),
            read_offset: 0,
            highest: 0,
            final_size: None,
            max_data: window,
            window,
            max_ranges: per_window.max(MIN_RECV_RANGES),
            credit_pending: false,
            reset: None,
            stop: None,
            stop_pending: false,
            finished_read: false,
            released_to: None,
        }
    }

    /// Takes a STREAM frame. Returns the number of bytes by which `highest` grew
    /// (for session-level flow control). Errors are peer protocol violations.
    pub(crate) fn on_data(&mut self, offset: u64, data: &[u8], fin: bool) -> Result<u64, Error> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(Error::PeerViolation("stream offset overflow"))?;
        if end > self.max_data {
            return Err(Error::PeerViolation("stream flow control exceeded"));
        }
        if let Some(fs) = self.final_size
            && (end > fs || (fin && end != fs))
        {
            return Err(Error::PeerViolation("final size changed"));
        }
        if fin {
            if end < self.highest {
                return Err(Error::PeerViolation("final size below received data"));
            }
            self.final_size = Some(end);
        }
        let grew = end.saturating_sub(self.highest);
        self.highest = self.highest.max(end);
        if self.released_to.is_some() {
            return Ok(grew);
        }
        let cend = self.contig_end();
        if end <= cend {
            // Everything in this frame was already received.
            return Ok(grew);
        }
        let start = offset.max(cend);
        let (Ok(skip), Ok(from)) = (
            usize::try_from(start - offset),
            usize::try_from(start - self.read_offset),
        ) else {
            return Err(Error::PeerViolation("stream offset overflow"));
        };
        let new = data.get(skip..).unwrap_or_default();
        if start == cend && self.buf.len() == self.ready {
            // In order with nothing held beyond (the common case): append.
            self.buf.extend(new);
            self.ready += new.len();
            return Ok(grew);
        }
        // A new disjoint range beyond the in-order data (one at its end is absorbed
        // at once and adds none).
        if start > cend
            && self.received.len() >= self.max_ranges
            && !self.received.touches(start..end)
        {
            return Err(Error::PeerViolation(
                "too many out-of-order stream fragments",
            ));
        }
        let upto = from.saturating_add(new.len());
        if self.buf.len() < upto {
            self.buf.resize(upto, 0);
        }
        // Fill the holes only: bytes already received stay as they first came.
        for gap in self.received.gaps_in(start..end) {
            let (Ok(a), Ok(b), Ok(at)) = (
                usize::try_from(gap.start - start),
                usize::try_from(gap.end - start),
                usize::try_from(gap.start - self.read_offset),
            ) else {
                continue;
            };
            if let Some(src) = new.get(a..b) {
                write_at(&mut self.buf, at, src);
            }
        }
        self.received.insert(start..end);
        // Whatever is now in order becomes readable.
        if let Some(r) = self.received.first()
            && r.start == cend
        {
            let n = usize::try_from(r.end - r.start).unwrap_or(usize::MAX);
            self.ready = self.ready.saturating_add(n).min(self.buf.len());
            self.received.remove_below(r.end);
        }
        Ok(grew)
    }

    /// One past the last in-order byte received.
    fn contig_end(&self) -> u64 {
        self.read_offset + self.ready as u64
    }

    /// Drops the data for good (reset or stopped): its session-level credit is
    /// given back from now on ([`Self::take_released`]).
    fn discard(&mut self) {
        if self.released_to.is_none() {
            self.released_to = Some(self.read_offset);
        }
        self.buf = VecDeque::new();
        self.ready = 0;
        self.received = RangeSet::new();
    }

    /// Session-level credit to give back for discarded bytes received since the last
    /// call (they will never be read): without it every reset or stopped stream keeps
    /// its bytes charged to the session window for good, and the session stalls.
    pub(crate) fn take_released(&mut self) -> u64 {
        let Some(from) = self.released_to else {
            return 0;
        };
        let to = self.highest.max(from);
        self.released_to = Some(to);
        to - from
    }

    /// Asks the peer to stop sending (`code`); received data is discarded. False if
    /// the stream was already stopped or reset.
    pub(crate) fn stop(&mut self, code: u64) -> bool {
        if self.stop.is_some() || self.reset.is_some() {
            return false;
        }
        self.stop = Some(code);
        self.stop_pending = true;
        self.discard();
        true
    }

    /// Takes a RESET_STREAM frame. Returns the flow-control growth.
    pub(crate) fn on_reset(&mut self, code: u64, final_size: u64) -> Result<u64, Error> {
        if final_size < self.highest {
            return Err(Error::PeerViolation("reset final size below received data"));
        }
        if let Some(fs) = self.final_size
            && fs != final_size
        {
            return Err(Error::PeerViolation("final size changed"));
        }
        if final_size > self.max_data {
            return Err(Error::PeerViolation("stream flow control exceeded"));
        }
        let grew = final_size - self.highest;
        self.highest = final_size;
        self.final_size = Some(final_size);
        if self.reset.is_none() {
            self.reset = Some(code);
            self.discard();
        }
        Ok(grew)
    }

    /// True if `read` would return something now.
    pub(crate) fn is_readable(&self) -> bool {
        if self.finished_read {
            return false;
        }
        self.reset.is_some() || self.ready > 0 || self.final_size == Some(self.read_offset)
    }

    /// Reads contiguous data. `Ok(None)` = end of stream; `Ok(Some(0))` = nothing yet.
    /// Returns the bytes consumed (for session-level credit).
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if let Some(code) = self.reset {
            self.finished_read = true;
            return Err(Error::Reset(code));
        }
        let n = self.ready.min(out.len());
        let (a, b) = self.buf.as_slices();
        let from_a = a.len().min(n);
        if let (Some(dst), Some(src)) = (out.get_mut(..from_a), a.get(..from_a)) {
            dst.copy_from_slice(src);
        }
        if let (Some(dst), Some(src)) = (out.get_mut(from_a..n), b.get(..n - from_a)) {
            dst.copy_from_slice(src);
        }
        self.consume(n)
    }

    /// Hands the next contiguous in-order bytes to `f` without copying them out; `f`
    /// returns how many it took (at most the slice's length). Same results as
    /// [`Self::read`]; `f` is not called when nothing is buffered.
    pub(crate) fn read_with(
        &mut self,
        f: impl FnOnce(&[u8]) -> usize,
    ) -> Result<Option<usize>, Error> {
        if let Some(code) = self.reset {
            self.finished_read = true;
            return Err(Error::Reset(code));
        }
        let front = self.buf.as_slices().0;
        let chunk = front.get(..self.ready.min(front.len())).unwrap_or_default();
        let n = if chunk.is_empty() {
            0
        } else {
            f(chunk).min(chunk.len())
        };
        self.consume(n)
    }

    /// Removes `n` read bytes from the front and updates the credit to grant.
    fn consume(&mut self, n: usize) -> Result<Option<usize>, Error> {
        let n = n.min(self.ready);
        self.buf.drain(..n);
        self.ready -= n;
        self.read_offset += n as u64;
        if self.buf.is_empty() && self.buf.capacity() > CONTIG_KEEP {
            // Do not keep a large burst's worth of memory around once it is read.
            self.buf = VecDeque::new();
        }
        if self.max_data.saturating_sub(self.read_offset) < self.window / 2
            && self.final_size.is_none()
        {
            self.max_data = self.read_offset + self.window;
            self.credit_pending = true;
        }
        if n == 0 && self.final_size == Some(self.read_offset) {
            self.finished_read = true;
            return Ok(None);
        }
        Ok(Some(n))
    }

    /// Bytes received but not yet read.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> u64 {
        self.ready as u64 + self.received.iter().map(|r| r.end - r.start).sum::<u64>()
    }

    /// All data and the fin have been read (or the reset seen), or the stream was
    /// stopped and its final size is known (nothing more to wait for: a stopped
    /// stream is not read to its end).
    pub(crate) fn is_done(&self) -> bool {
        self.finished_read || (self.stop.is_some() && self.final_size.is_some())
    }

    /// Disjoint out-of-order ranges held.
    #[cfg(test)]
    pub(crate) fn fragments(&self) -> usize {
        self.received.len()
    }
}

/// Session-level flow control for both directions.
#[derive(Debug)]
pub(crate) struct ConnFlow {
    /// Peer's MAX_DATA.
    pub(crate) send_max: u64,
    /// Sum of highest offsets sent over all streams.
    pub(crate) sent: u64,
    /// Our advertised MAX_DATA.
    pub(crate) recv_max: u64,
    /// Sum of highest offsets received.
    pub(crate) received: u64,
    /// Bytes the application consumed.
    pub(crate) consumed: u64,
    window: u64,
    pub(crate) credit_pending: bool,
}

impl ConnFlow {
    pub(crate) fn new(send_max: u64, window: u64) -> Self {
        Self {
            send_max,
            sent: 0,
            recv_max: window,
            received: 0,
            consumed: 0,
            window,
            credit_pending: false,
        }
    }

    pub(crate) fn send_credit(&self) -> u64 {
        self.send_max.saturating_sub(self.sent)
    }

    pub(crate) fn on_received(&mut self, grew: u64) -> Result<(), Error> {
        self.received = self.received.saturating_add(grew);
        if self.received > self.recv_max {
            return Err(Error::PeerViolation("session flow control exceeded"));
        }
        Ok(())
    }

    pub(crate) fn on_consumed(&mut self, n: u64) {
        self.consumed = self.consumed.saturating_add(n);
        if self.recv_max.saturating_sub(self.consumed) < self.window / 2 {
            self.recv_max = self.consumed + self.window;
            self.credit_pending = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stream_ids_never_repeat_and_skip_control() {
        let mut seen = std::collections::BTreeSet::new();
        for side in [Side::Client, Side::Server] {
            for dir in [Dir::Bi, Dir::Uni] {
                assert_eq!(stream_id_for(side, dir, 0), None);
                assert_eq!(stream_id_for(side, dir, 1 << 30), None);
                for i in 1..100 {
                    let id = stream_id_for(side, dir, i).unwrap();
                    assert_ne!(id, 0);
                    assert_eq!(stream_initiator(id), side);
                    assert_eq!(stream_dir(id), dir);
                    assert_eq!(stream_index(id), i);
                    assert!(seen.insert(id));
                }
            }
        }
    }

    #[test]
    fn send_stream_retransmits_lost_ranges_only() {
        let mut s = SendStream::new(1 << 20, 1 << 20);
        assert_eq!(s.write(&[7u8; 3000]).unwrap(), 3000);
        s.finish().unwrap();
        let a = s.next_chunk(1000, u64::MAX).unwrap();
        let b = s.next_chunk(1000, u64::MAX).unwrap();
        let c = s.next_chunk(1000, u64::MAX).unwrap();
        assert_eq!((a.offset, b.offset, c.offset), (0, 1000, 2000));
        assert!(c.fin && !a.fin);
        assert!(s.next_chunk(1000, u64::MAX).is_none());
        s.on_ack(a.offset, a.len, a.fin);
        s.on_lost(b.offset, b.len, b.fin);
        s.on_lost(c.offset, c.len, c.fin);
        let b2 = s.next_chunk(5000, u64::MAX).unwrap();
        assert_eq!(
            (b2.offset, b2.len, b2.fin, b2.new_bytes),
            (1000, 2000, true, 0)
        );
        s.on_ack(b2.offset, b2.len, b2.fin);
        assert!(s.is_done());
    }

    #[test]
    fn send_stream_respects_stream_and_session_credit() {
        let mut s = SendStream::new(1500, 1 << 20);
        s.write(&[1u8; 4000]).unwrap();
        let a = s.next_chunk(1000, 700).unwrap();
        assert_eq!((a.offset, a.len, a.new_bytes), (0, 700, 700));
        let b = s.next_chunk(1000, 10_000).unwrap();
        assert_eq!((b.offset, b.len), (700, 800));
        assert!(s.next_chunk(1000, 10_000).is_none());
        assert!(s.flow_blocked());
        // A loss below sent_max is retransmitted without new session credit.
        s.on_lost(0, 700, false);
        let r = s.next_chunk(1000, 0).unwrap();
        assert_eq!((r.offset, r.len, r.new_bytes), (0, 700, 0));
    }

    #[test]
    fn send_buffer_is_bounded() {
        let mut s = SendStream::new(1 << 20, 100);
        assert_eq!(s.write(&[0u8; 150]).unwrap(), 100);
        assert!(matches!(s.write(&[0u8; 1]), Err(Error::Blocked)));
        let c = s.next_chunk(60, u64::MAX).unwrap();
        assert!(s.on_ack(c.offset, c.len, false));
        assert_eq!(s.room(), 60);
    }

    #[test]
    fn contiguous_view_matches_copy_out_across_segments() {
        let mut s = SendStream::new(1 << 20, 512);
        let data: Vec<u8> = (0..=255u8).collect();
        s.write(&data[..200]).unwrap();
        let c = s.next_chunk(150, u64::MAX).unwrap();
        s.on_ack(c.offset, c.len, false);
        // A handed-over chunk between two copied tails: [200, 300) shares `data`'s bytes.
        let mut chunk = Bytes::copy_from_slice(&data[..100]);
        assert_eq!(s.write_bytes(&mut chunk).unwrap(), 100);
        assert!(chunk.is_empty());
        s.write(&data[..150]).unwrap();
        let expect = |off: u64| -> u8 {
            match off {
                0..200 => data[off as usize],
                200..300 => data[off as usize - 200],
                _ => data[off as usize - 300],
            }
        };
        for off in 150..450u64 {
            for len in [1usize, 7, 40, 100] {
                if off + len as u64 > s.write_end() {
                    continue;
                }
                let mut out = vec![0u8; len];
                assert!(s.copy_out(off, &mut out));
                let want: Vec<u8> = (off..off + len as u64).map(expect).collect();
                assert_eq!(out, want, "offset {off} len {len}");
                match s.contiguous(off, len) {
                    Some(view) => assert_eq!(view, &out[..]),
                    // Copied bytes may wrap around the ring; a handed-over chunk never does.
                    None => assert!(
                        !(off >= 200 && off + len as u64 <= 300),
                        "[{off}, +{len}) lies in the handed-over chunk but had no contiguous view"
                    ),
                }
            }
        }
        assert!(s.contiguous(10, 5).is_none(), "below the acknowledged base");
        // A write that does not fit is cut to the room left; the rest stays with the caller.
        let mut big = Bytes::from(vec![9u8; 400]);
        assert_eq!(s.write_bytes(&mut big).unwrap(), 512 - 300);
        assert_eq!(big.len(), 400 - 212);
        assert!(matches!(s.write_bytes(&mut big), Err(Error::Blocked)));
    }

    #[test]
    fn recv_rejects_data_beyond_window() {
        let mut r = RecvStream::new(100);
        assert!(matches!(
            r.on_data(90, &[0u8; 11], false),
            Err(Error::PeerViolation(_))
        ));
        assert!(r.on_data(90, &[0u8; 10], false).is_ok());
        assert!(matches!(
            r.on_data(0, &[0u8; 5], true),
            Err(Error::PeerViolation(_))
        ));
    }

    #[test]
    fn recv_final_size_is_fixed() {
        let mut r = RecvStream::new(100);
        r.on_data(0, b"abc", true).unwrap();
        assert!(r.on_data(0, b"abcd", false).is_err());
        assert!(r.on_data(1, b"bc", true).is_ok());
        let mut out = [0u8; 10];
        assert_eq!(r.read(&mut out).unwrap(), Some(3));
        assert_eq!(r.read(&mut out).unwrap(), None);
    }

    #[test]
    fn write_at_copies_across_the_ring_wrap() {
        for shift in 0..16usize {
            let mut d: VecDeque<u8> = VecDeque::with_capacity(16);
            d.extend(std::iter::repeat_n(0u8, shift));
            d.extend(0..16 - shift as u8);
            d.drain(..shift);
            d.extend(16 - shift as u8..16);
            assert_eq!(d.as_slices().1.is_empty(), shift == 0, "the ring wraps");
            for at in 0..16usize {
                for len in 0..=16 - at {
                    let mut x = d.clone();
                    let src: Vec<u8> = (100..100 + len as u8).collect();
                    write_at(&mut x, at, &src);
                    let mut model: Vec<u8> = (0..16u8).collect();
                    model[at..at + len].copy_from_slice(&src);
                    assert_eq!(
                        x.iter().copied().collect::<Vec<_>>(),
                        model,
                        "{shift} {at} {len}"
                    );
                }
            }
            let mut x = d.clone();
            write_at(&mut x, 10, &[1u8; 7]);
            assert_eq!(x, d, "out of range: unchanged");
        }
    }

    /// What a misbehaving peer's STREAM and RESET_STREAM frames get from
    /// the in-place receive buffer. Retransmissions that overlap held data with other
    /// bytes never change what was received first (in order or not); holes are never
    /// readable; offsets beyond the window, the final size or 2^62 are violations
    /// refused before any allocation.
    #[test]
    fn i1_recv_buffer_keeps_first_bytes_and_refuses_impossible_offsets() {
        let mut r = RecvStream::new(1000);
        r.on_data(10, b"KLMNO", false).unwrap();
        r.on_data(20, b"UVW", false).unwrap();
        // Overlaps both held ranges and the hole between them with other bytes.
        r.on_data(8, b"xxxxxxxxxxxxxxxxx", false).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(
            r.read(&mut out).unwrap(),
            Some(0),
            "a hole at 0..8 is not readable"
        );
        r.on_data(0, b"abcdefgh", false).unwrap();
        let n = r.read(&mut out).unwrap().unwrap();
        assert_eq!(&out[..n], b"abcdefghxxKLMNOxxxxxUVWxx");
        // In-order overlap with other bytes: the first bytes stay.
        r.on_data(30, b"123", false).unwrap();
        r.on_data(25, b"zzzzzzzzzz", false).unwrap();
        let n = r.read(&mut out).unwrap().unwrap();
        assert_eq!(&out[..n], b"zzzzz123zz");
        // Beyond the window, or near 2^62 / u64::MAX: refused, nothing buffered.
        assert!(r.on_data(995, b"0123456789", false).is_err());
        assert!(r.on_data((1 << 62) - 1, b"x", false).is_err());
        assert!(r.on_data(u64::MAX - 1, b"xyz", false).is_err());
        assert_eq!(r.buffered(), 0);
        // A final size, then data beyond it, another final size, or a reset moving it.
        r.on_data(40, b"end", true).unwrap();
        assert!(r.on_data(43, b"!", false).is_err());
        assert!(r.on_data(41, b"nd!", true).is_err());
        assert!(r.on_reset(1, 44).is_err());
        assert_eq!(r.on_reset(1, 43).unwrap(), 0);
        assert!(matches!(r.read(&mut out), Err(Error::Reset(1))));
        // At the range cap, a frame extending the in-order data still fits; a new
        // disjoint range does not.
        let mut r = RecvStream::new(1000);
        for k in 0..MIN_RECV_RANGES as u64 {
            r.on_data(10 + 2 * k, b"x", false).unwrap();
        }
        assert_eq!(r.fragments(), MIN_RECV_RANGES);
        r.on_data(0, b"abcd", false).unwrap();
        assert!(r.on_data(900, b"y", false).is_err());
        // A reset whose final size is below data already received is refused.
        let mut r = RecvStream::new(1000);
        r.on_data(100, b"x", false).unwrap();
        assert!(r.on_reset(2, 50).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// The chunked send buffer holds exactly the bytes written and not yet
        /// drained, whichever mix of copied and handed-over writes built it: every
        /// range reads back as written (contiguous when inside one segment), and
        /// reads outside the held range are refused.
        #[test]
        fn send_buf_matches_a_flat_model(
            ops in proptest::collection::vec((0u8..4, 0usize..150_000, 0usize..4000), 1..60),
        ) {
            let mut b = SendBuf::default();
            let mut model: Vec<u8> = Vec::new();
            let mut base = 0usize;
            let mut next = 0u8;
            for (op, size, at) in ops {
                let size = if op == 0 { size } else { size % 3000 };
                let data: Vec<u8> = (0..size).map(|_| { next = next.wrapping_add(7); next }).collect();
                match op {
                    0 | 1 => b.push_slice(&data),
                    2 => b.push_bytes(Bytes::from(data.clone())),
                    _ => {
                        let held = model.len() - base;
                        let to = base + if held == 0 { 0 } else { at % (held + 1) };
                        b.drain_to(to as u64);
                        base = to;
                        prop_assert_eq!(b.base(), base as u64);
                        prop_assert_eq!(b.len(), model.len() - base);
                        continue;
                    }
                }
                model.extend_from_slice(&data);
                prop_assert_eq!(b.len(), model.len() - base);
                let held = model.len() - base;
                if held == 0 {
                    continue;
                }
                let from = base + at % held;
                let len = (size % 1500).min(model.len() - from);
                let mut out = vec![0u8; len];
                prop_assert!(b.copy_out(from as u64, &mut out));
                prop_assert_eq!(&out[..], &model[from..from + len]);
                if let Some(c) = b.contiguous(from as u64, len) {
                    prop_assert_eq!(c, &model[from..from + len]);
                }
                let mut past = vec![0u8; 1];
                prop_assert!(!b.copy_out(model.len() as u64, &mut past));
                prop_assert!(b.contiguous(model.len() as u64, 1).is_none());
                if base > 0 {
                    prop_assert!(!b.copy_out(base as u64 - 1, &mut past));
                }
            }
        }

        /// Whatever the order of acknowledgements and losses, every byte is sent until
        /// acknowledged, retransmissions never consume session credit twice, and the
        /// stream completes with the fin acknowledged.
        #[test]
        fn send_stream_completes_under_any_ack_and_loss_order(
            writes in proptest::collection::vec(1usize..700, 1..12),
            ops in proptest::collection::vec((0usize..64, any::<bool>(), 1usize..900), 1..200),
        ) {
            let total: usize = writes.iter().sum();
            let mut s = SendStream::new(1 << 20, 1 << 20);
            for w in &writes {
                prop_assert_eq!(s.write(&vec![5u8; *w]).unwrap(), *w);
            }
            s.finish().unwrap();
            let mut in_flight: Vec<Chunk> = Vec::new();
            let mut acked = RangeSet::new();
            let mut new_total = 0u64;
            let mut step = |s: &mut SendStream, in_flight: &mut Vec<Chunk>, pick: usize, ack: bool, max_len: usize| {
                if let Some(c) = s.next_chunk(max_len, u64::MAX) {
                    assert!(c.offset + c.len as u64 <= total as u64);
                    new_total += c.new_bytes;
                    in_flight.push(c);
                }
                if !in_flight.is_empty() {
                    let c = in_flight.remove(pick % in_flight.len());
                    if ack {
                        s.on_ack(c.offset, c.len, c.fin);
                        acked.insert(c.offset..c.offset + c.len as u64);
                    } else {
                        s.on_lost(c.offset, c.len, c.fin);
                    }
                }
            };
            for &(pick, ack, max_len) in &ops {
                step(&mut s, &mut in_flight, pick, ack, max_len);
            }
            // Then acknowledge everything until done.
            let mut guard = 0;
            while !s.is_done() {
                guard += 1;
                prop_assert!(guard < 10_000, "stalled");
                step(&mut s, &mut in_flight, 0, true, 900);
            }
            prop_assert_eq!(new_total, total as u64);
            if total > 0 {
                prop_assert_eq!(acked.first(), Some(0..total as u64));
            }
            prop_assert_eq!(s.final_size(), total as u64);
        }

        /// Out-of-order, duplicated, overlapping chunks reassemble to the exact bytes.
        #[test]
        fn reassembly_is_exact(data in proptest::collection::vec(any::<u8>(), 1..2000),
                               cuts in proptest::collection::vec((0usize..2000, 1usize..300), 1..40),
                               read_sizes in proptest::collection::vec(1usize..500, 1..20)) {
            let mut r = RecvStream::new(4096);
            let mut out = Vec::new();
            let mut buf = [0u8; 512];
            let mut rs = read_sizes.iter().cycle();
            let feed = |r: &mut RecvStream, a: usize, l: usize| {
                let a = a % data.len();
                let b = (a + l).min(data.len());
                r.on_data(a as u64, &data[a..b], b == data.len()).unwrap();
            };
            for &(a, l) in &cuts {
                feed(&mut r, a, l);
                let n = *rs.next().unwrap();
                if let Ok(Some(k)) = r.read(&mut buf[..n]) { out.extend_from_slice(&buf[..k]); }
            }
            // Then everything, in order, so the stream completes.
            let mut off = 0;
            while off < data.len() { feed(&mut r, off, 97); off += 97; }
            loop {
                match r.read(&mut buf).unwrap() {
                    Some(0) => prop_assert!(false, "stalled"),
                    Some(k) => out.extend_from_slice(&buf[..k]),
                    None => break,
                }
            }
            prop_assert_eq!(out, data.clone());
            prop_assert_eq!(r.buffered(), 0);
        }
    }
}
