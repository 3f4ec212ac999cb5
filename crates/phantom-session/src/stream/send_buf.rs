//! The send buffer: the unacknowledged bytes of a send stream, held either in a
//! reused copy ring or as the chunks the application handed over.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    }
}
