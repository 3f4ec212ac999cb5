//! The sending half of a stream: what to send next, what to retransmit, and
//! what the peer's stream-level credit allows.

use std::ops::Range;

use bytes::Bytes;

use super::send_buf::SendBuf;
use crate::error::Error;
use crate::ranges::RangeSet;
use crate::types::AppCode;

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

/// Where a send stream's fin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fin {
    /// The application has not finished the stream.
    Open,
    /// Finished; the fin waits to be sent (first time or again after a loss).
    Queued,
    /// Sent and neither acknowledged nor declared lost since (or no longer
    /// queued because the stream was reset).
    Sent,
    /// Acknowledged.
    Acked,
    /// Acknowledged after a loss had queued it again: it is sent once more.
    AckedQueued,
}

impl Fin {
    /// The fin waits to be sent.
    fn is_queued(self) -> bool {
        matches!(self, Fin::Queued | Fin::AckedQueued)
    }

    /// The peer acknowledged the fin.
    fn is_acked(self) -> bool {
        matches!(self, Fin::Acked | Fin::AckedQueued)
    }

    /// The fin went out in a chunk, or the stream was reset: it waits no more.
    fn unqueued(self) -> Fin {
        match self {
            Fin::Queued => Fin::Sent,
            Fin::AckedQueued => Fin::Acked,
            other => other,
        }
    }

    /// A chunk carrying the fin was acknowledged.
    fn on_ack(self) -> Fin {
        match self {
            Fin::Queued => Fin::AckedQueued,
            Fin::Sent => Fin::Acked,
            // No fin was sent from `Open`; `Acked*` stay as they are.
            other => other,
        }
    }

    /// A chunk carrying the fin was declared lost.
    fn on_lost(self) -> Fin {
        match self {
            Fin::Sent => Fin::Queued,
            // No fin was sent from `Open`; an acknowledged fin is not resent.
            other => other,
        }
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
    /// Whether the app called finish, and where the fin stands since.
    fin: Fin,
    /// Reset by us (code), or stopped by the peer.
    pub(crate) reset: Option<AppCode>,
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
            fin: Fin::Open,
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
        if self.fin != Fin::Open {
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
        if self.fin != Fin::Open {
            return Err(Error::Finished);
        }
        self.fin = Fin::Queued;
        Ok(())
    }

    /// Abandons the stream with `code`; the session sends RESET_STREAM.
    pub(crate) fn reset(&mut self, code: AppCode) {
        if self.reset.is_some() || self.fin.is_acked() {
            return;
        }
        self.reset = Some(code);
        self.reset_pending = true;
        self.pending = RangeSet::new();
        self.fin = self.fin.unqueued();
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
            None => self.fin.is_queued(),
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
            let fin = self.fin.is_queued() && end == self.write_end();
            if fin {
                self.fin = self.fin.unqueued();
            }
            return Some(Chunk {
                offset: r.start,
                len: (end - r.start) as usize,
                fin,
                new_bytes,
            });
        }
        if self.fin.is_queued() {
            self.fin = self.fin.unqueued();
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
            self.fin = self.fin.on_ack();
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
    /// Returns how many of its bytes were acknowledged already (another copy of
    /// them arrived first, e.g. a redundant copy on another path).
    pub(crate) fn on_lost(&mut self, offset: u64, len: usize, fin: bool) -> u64 {
        if self.reset.is_some() {
            return 0;
        }
        let r: Range<u64> = offset.max(self.buf.base())..offset + len as u64;
        if r.start >= r.end {
            return len as u64;
        }
        let mut requeued = 0;
        for gap in self.acked.gaps_in(r) {
            requeued += gap.end - gap.start;
            self.pending.insert(gap);
        }
        if fin {
            self.fin = self.fin.on_lost();
        }
        (len as u64).saturating_sub(requeued)
    }

    /// Everything, fin included, is acknowledged (or the reset is).
    pub(crate) fn is_done(&self) -> bool {
        (self.fin.is_acked() && self.buf.len() == 0) || self.reset_acked
    }

    /// Free buffer space.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    /// A fin declared lost and then acknowledged after all completes the stream: it
    /// goes out once more (the loss queued it), and a reset afterwards does nothing.
    #[test]
    fn fin_acknowledged_after_its_loss_completes_the_stream() {
        let mut s = SendStream::new(1 << 20, 1 << 20);
        s.write(&[1u8; 10]).unwrap();
        s.finish().unwrap();
        let c = s.next_chunk(100, u64::MAX).unwrap();
        assert_eq!((c.offset, c.len, c.fin), (0, 10, true));
        s.on_lost(c.offset, c.len, c.fin);
        assert!(!s.is_done());
        s.on_ack(c.offset, c.len, c.fin);
        assert!(s.is_done());
        let resent: Vec<Chunk> = std::iter::from_fn(|| s.next_chunk(100, u64::MAX))
            .take(10)
            .collect();
        assert_eq!(resent.iter().filter(|c| c.fin).count(), 1);
        assert_eq!(resent.iter().map(|c| c.new_bytes).sum::<u64>(), 0);
        assert!(s.is_done());
        s.reset(AppCode(7));
        assert_eq!((s.reset, s.reset_pending), (None, false));
        assert!(matches!(s.finish(), Err(Error::Finished)));
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
    }
}
