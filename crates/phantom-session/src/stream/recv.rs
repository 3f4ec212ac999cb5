//! The receiving half of a stream: reassembly in place, bounded by the
//! stream's flow-control window.

use std::collections::VecDeque;

use crate::error::{Error, PeerViolation};
use crate::ranges::RangeSet;
use crate::types::AppCode;

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
    highest: u64,
    final_size: Option<u64>,
    /// Limit we advertised.
    pub(crate) max_data: u64,
    window: u64,
    /// Most disjoint out-of-order ranges held before the peer is refused.
    max_ranges: usize,
    /// A MAX_STREAM_DATA frame should be sent.
    pub(crate) credit_pending: bool,
    /// The peer reset the stream with this code.
    reset: Option<AppCode>,
    /// We asked the peer to stop (code), STOP_SENDING pending.
    pub(crate) stop: Option<AppCode>,
    pub(crate) stop_pending: bool,
    /// The app has seen the end (fin or reset).
    finished_read: bool,
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
            .ok_or(Error::PeerViolation(PeerViolation::StreamOffsetOverflow))?;
        if end > self.max_data {
            return Err(Error::PeerViolation(PeerViolation::StreamFlowControl));
        }
        if let Some(fs) = self.final_size
            && (end > fs || (fin && end != fs))
        {
            return Err(Error::PeerViolation(PeerViolation::FinalSizeChanged));
        }
        if fin {
            if end < self.highest {
                return Err(Error::PeerViolation(PeerViolation::FinalSizeBelowReceived));
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
            return Err(Error::PeerViolation(PeerViolation::StreamOffsetOverflow));
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
            return Err(Error::PeerViolation(PeerViolation::TooManyFragments));
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
    pub(crate) fn stop(&mut self, code: AppCode) -> bool {
        if self.stop.is_some() || self.reset.is_some() {
            return false;
        }
        self.stop = Some(code);
        self.stop_pending = true;
        self.discard();
        true
    }

    /// Takes a RESET_STREAM frame. Returns the flow-control growth.
    pub(crate) fn on_reset(&mut self, code: AppCode, final_size: u64) -> Result<u64, Error> {
        if final_size < self.highest {
            return Err(Error::PeerViolation(
                PeerViolation::ResetFinalSizeBelowReceived,
            ));
        }
        if let Some(fs) = self.final_size
            && fs != final_size
        {
            return Err(Error::PeerViolation(PeerViolation::FinalSizeChanged));
        }
        if final_size > self.max_data {
            return Err(Error::PeerViolation(PeerViolation::StreamFlowControl));
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert!(r.on_reset(AppCode(1), 44).is_err());
        assert_eq!(r.on_reset(AppCode(1), 43).unwrap(), 0);
        assert!(matches!(r.read(&mut out), Err(Error::Reset(AppCode(1)))));
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
        assert!(r.on_reset(AppCode(2), 50).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
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
