//! Stream state: the send buffer with retransmission tracking by offset ranges,
//! the receive reassembly buffer bounded by the flow-control window, and the
//! session-level flow-control accounting.
//!
//! Neither side knows about packets: the session asks a [`SendStream`] for the next
//! chunk to put in a STREAM frame, tells it which chunks were acknowledged or lost,
//! and feeds received STREAM frames to a [`RecvStream`].

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;

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

/// Sending half of a stream.
#[derive(Debug)]
pub(crate) struct SendStream {
    /// Bytes from offset `base` up to `base + buf.len()`; everything below `base` is acknowledged.
    buf: VecDeque<u8>,
    base: u64,
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
            buf: VecDeque::new(),
            base: 0,
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
        self.base + self.buf.len() as u64
    }

    /// Appends application data; returns how many bytes were accepted.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        if let Some(code) = self.reset {
            return Err(Error::Stopped(code));
        }
        if self.fin {
            return Err(Error::Finished);
        }
        let room = self.limit.saturating_sub(self.buf.len());
        let n = room.min(data.len());
        if n == 0 && !data.is_empty() {
            self.blocked = true;
            return Err(Error::Blocked);
        }
        self.buf.extend(data.get(..n).unwrap_or_default());
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
        let Some(skip) = offset.checked_sub(self.base) else {
            return false;
        };
        let Ok(skip) = usize::try_from(skip) else {
            return false;
        };
        if skip.saturating_add(out.len()) > self.buf.len() {
            return false;
        }
        let (a, b) = self.buf.as_slices();
        let mut written = 0;
        for (part, part_start) in [(a, 0usize), (b, a.len())] {
            let part_end = part_start + part.len();
            let from = (skip + written).max(part_start);
            let to = (skip + out.len()).min(part_end);
            if from < to
                && let (Some(src), Some(dst)) = (
                    part.get(from - part_start..to - part_start),
                    out.get_mut(written..written + (to - from)),
                )
            {
                dst.copy_from_slice(src);
                written += to - from;
            }
        }
        written == out.len()
    }

    /// `[offset, offset+len)` of the buffered data if it is contiguous in memory.
    pub(crate) fn contiguous(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let skip = usize::try_from(offset.checked_sub(self.base)?).ok()?;
        let end = skip.checked_add(len)?;
        let (a, b) = self.buf.as_slices();
        if end <= a.len() {
            a.get(skip..end)
        } else if skip >= a.len() {
            b.get(skip - a.len()..end - a.len())
        } else {
            None
        }
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
        let new_base = if offset <= self.base {
            // In-order acknowledgement (the common case): no range bookkeeping
            // unless something above was acknowledged out of order.
            if end <= self.base {
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
        let n = usize::try_from(new_base - self.base).unwrap_or(usize::MAX);
        self.buf.drain(..n.min(self.buf.len()));
        self.base = new_base;
        true
    }

    /// A chunk was declared lost: the parts not yet acknowledged go back to pending.
    pub(crate) fn on_lost(&mut self, offset: u64, len: usize, fin: bool) {
        if self.reset.is_some() {
            return;
        }
        let r: Range<u64> = offset.max(self.base)..offset + len as u64;
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
        (self.fin_acked && self.buf.is_empty()) || self.reset_acked
    }

    /// Free buffer space.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }
}

/// Capacity of an emptied in-order receive buffer that is kept for reuse.
const CONTIG_KEEP: usize = 1 << 20;

/// Receiving half of a stream.
#[derive(Debug)]
pub(crate) struct RecvStream {
    /// In-order data: the bytes `[read_offset, read_offset + contig.len())`, all
    /// received. In-order frames are appended here directly (one copy, no
    /// allocation per frame once the ring has grown).
    contig: VecDeque<u8>,
    /// Out-of-order data beyond the end of `contig`, non-overlapping, keyed by
    /// offset; all of it lies in `[read_offset, max_data)`, so memory is bounded by
    /// the window (I1).
    chunks: BTreeMap<u64, Bytes>,
    /// The ranges held in `chunks` (only data beyond the end of `contig`).
    received: RangeSet,
    read_offset: u64,
    /// Highest offset received (flow-control accounting).
    pub(crate) highest: u64,
    final_size: Option<u64>,
    /// Limit we advertised.
    pub(crate) max_data: u64,
    window: u64,
    /// A MAX_STREAM_DATA frame should be sent.
    pub(crate) credit_pending: bool,
    /// The peer reset the stream with this code.
    pub(crate) reset: Option<u64>,
    /// We asked the peer to stop (code), STOP_SENDING pending.
    pub(crate) stop: Option<u64>,
    pub(crate) stop_pending: bool,
    /// The app has seen the end (fin or reset).
    pub(crate) finished_read: bool,
}

impl RecvStream {
    pub(crate) fn new(window: u64) -> Self {
        Self {
            contig: VecDeque::new(),
            chunks: BTreeMap::new(),
            received: RangeSet::new(),
            read_offset: 0,
            highest: 0,
            final_size: None,
            max_data: window,
            window,
            credit_pending: false,
            reset: None,
            stop: None,
            stop_pending: false,
            finished_read: false,
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
        if self.reset.is_some() || self.stop.is_some() {
            return Ok(grew);
        }
        let cend = self.contig_end();
        if end <= cend {
            // Everything in this frame was already received.
            return Ok(grew);
        }
        if offset <= cend {
            // In order (possibly overlapping what we hold): append the new tail.
            let skip = usize::try_from(cend - offset).unwrap_or(usize::MAX);
            self.contig.extend(data.get(skip..).unwrap_or_default());
            self.absorb_chunks();
            return Ok(grew);
        }
        for gap in self.received.gaps_in(offset..end) {
            let (Ok(a), Ok(b)) = (
                usize::try_from(gap.start - offset),
                usize::try_from(gap.end - offset),
            ) else {
                continue;
            };
            if let Some(slice) = data.get(a..b) {
                self.chunks.insert(gap.start, Bytes::copy_from_slice(slice));
            }
        }
        self.received.insert(offset..end);
        Ok(grew)
    }

    /// One past the last in-order byte received.
    fn contig_end(&self) -> u64 {
        self.read_offset + self.contig.len() as u64
    }

    /// Moves out-of-order chunks that the in-order data now reaches into `contig`.
    fn absorb_chunks(&mut self) {
        if self.chunks.is_empty() {
            return;
        }
        while let Some(entry) = self.chunks.first_entry() {
            let cend = self.read_offset + self.contig.len() as u64;
            let start = *entry.key();
            if start > cend {
                break;
            }
            let chunk = entry.remove();
            let skip = usize::try_from(cend - start).unwrap_or(usize::MAX);
            if let Some(tail) = chunk.get(skip..) {
                self.contig.extend(tail);
            }
        }
        self.received.remove_below(self.contig_end());
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
            self.chunks.clear();
            self.contig = VecDeque::new();
        }
        Ok(grew)
    }

    /// True if `read` would return something now.
    pub(crate) fn is_readable(&self) -> bool {
        if self.finished_read {
            return false;
        }
        self.reset.is_some() || !self.contig.is_empty() || self.final_size == Some(self.read_offset)
    }

    /// Reads contiguous data. `Ok(None)` = end of stream; `Ok(Some(0))` = nothing yet.
    /// Returns the bytes consumed (for session-level credit).
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if let Some(code) = self.reset {
            self.finished_read = true;
            return Err(Error::Reset(code));
        }
        let n = self.contig.len().min(out.len());
        let (a, b) = self.contig.as_slices();
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
        let chunk = self.contig.as_slices().0;
        let n = if chunk.is_empty() {
            0
        } else {
            f(chunk).min(chunk.len())
        };
        self.consume(n)
    }

    /// Removes `n` read bytes from the front and updates the credit to grant.
    fn consume(&mut self, n: usize) -> Result<Option<usize>, Error> {
        self.contig.drain(..n);
        self.read_offset += n as u64;
        if self.contig.is_empty() && self.contig.capacity() > CONTIG_KEEP {
            // Do not keep a large burst's worth of memory around once it is read.
            self.contig = VecDeque::new();
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

    /// Bytes buffered but not yet read.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> u64 {
        self.contig.len() as u64 + self.chunks.values().map(|c| c.len() as u64).sum::<u64>()
    }

    /// All data and the fin have been read (or the reset seen).
    pub(crate) fn is_done(&self) -> bool {
        self.finished_read
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
    fn contiguous_view_matches_copy_out_across_wraparound() {
        let mut s = SendStream::new(1 << 20, 256);
        let data: Vec<u8> = (0..=255u8).collect();
        s.write(&data[..200]).unwrap();
        let c = s.next_chunk(150, u64::MAX).unwrap();
        s.on_ack(c.offset, c.len, false);
        s.write(&data[..150]).unwrap();
        for off in 150..350u64 {
            for len in [1usize, 7, 40, 100] {
                if off + len as u64 > s.write_end() {
                    continue;
                }
                let mut out = vec![0u8; len];
                assert!(s.copy_out(off, &mut out));
                if let Some(view) = s.contiguous(off, len) {
                    assert_eq!(view, &out[..]);
                }
            }
        }
        assert!(s.contiguous(10, 5).is_none(), "below the acknowledged base");
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
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
