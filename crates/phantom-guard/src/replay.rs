//! Sliding-window replay protection in the style of RFC 6479.

use phantom_wire::{MAX_SEQUENCE, StreamId};

use crate::Error;

/// Bits per bitmap block.
const BLOCK_BITS: u64 = 64;

/// Why a replay window refused a sequence number. All three are peer faults: the
/// session drops the packet and counts it (`replay_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The sequence number was already accepted.
    #[error("duplicate sequence number")]
    Duplicate,
    /// The sequence number lies below the window: it can no longer be told apart
    /// from a replay, so it is refused.
    #[error("sequence number below the replay window")]
    TooOld,
    /// The sequence number exceeds [`MAX_SEQUENCE`]; no honest sender produces it.
    #[error("sequence number beyond the maximum")]
    BeyondMax,
}

/// A sliding bitmap window over one sequence space (one stream), after RFC 6479.
///
/// The window remembers the highest accepted sequence number `top` and, for every
/// sequence `s` with `top - s < width`, whether `s` was accepted. A sequence is
/// accepted when it is at most [`MAX_SEQUENCE`], above `top`, or inside the window
/// and not yet seen. Everything below the window is refused as too old.
///
/// The bitmap is a ring of `u64` blocks, `len = (width / 64 + 1).next_power_of_two()`
/// of them: block `b` holds sequences `64 b ..= 64 b + 63` at ring index `b & (len - 1)`
/// (a mask, not a division). Advancing `top` clears only the blocks the window slides
/// over (at most the whole ring, so every call is bounded by `len` word writes, and
/// an in-order packet costs O(1)); bits are never shifted. The ring holds at least
/// one block more than the window, so every sequence inside the window keeps its bit
/// whatever `top`'s offset inside its block; the explicit distance check makes the
/// window exactly `width` wide.
///
/// Memory: 512 bytes at the default width, 16 KiB at [`ReplayWindow::MAX_WIDTH`].
///
/// Sequence numbers never wrap: the largest is [`MAX_SEQUENCE`], and a window whose
/// `top` is `MAX_SEQUENCE` simply accepts nothing newer. Nothing ever maps a large
/// number back onto old ones.
///
/// # Invariants
///
/// **I4 — consulted only after authentication.** The session calls
/// [`ReplayWindow::accept_authenticated`] (or [`ReplayWindow::commit`]) only with the
/// sequence number of a packet whose AEAD open succeeded, i.e. after it holds an
/// opened packet. A forged packet therefore never reaches the window: it can neither
/// advance `top` (which would make genuine packets look too old) nor mark a sequence
/// number seen. [`ReplayWindow::check`] takes `&self` and cannot change the window,
/// so even a pre-check on unauthenticated input would be harmless; the session does
/// not need one. Once a sequence is committed, committing it again fails, so no
/// payload is delivered twice.
///
/// **I1.** Every input, including `u64::MAX`, yields a typed [`ReplayError`]; nothing
/// panics. The bitmap starts at one 64-bit block and doubles as the highest sequence
/// grows, up to the ring that covers the whole window (64 blocks, 512 bytes, for the
/// default width: six allocations at most over the window's life), so short streams
/// stay cheap; after that nothing allocates.
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Ring of bitmap blocks; its length is a power of two.
    blocks: Box<[u64]>,
    /// `blocks.len() - 1`.
    mask: u64,
    /// Highest committed sequence number, `None` before the first commit.
    top: Option<u64>,
    /// Window width in sequence numbers, a multiple of 64.
    width: u64,
}

impl ReplayWindow {
    /// The default window width: 2048 sequence numbers (a ring of 64 blocks).
    pub const DEFAULT_WIDTH: u64 = 2048;
    /// The largest configurable width: 65 536 sequence numbers (16 KiB of bitmap).
    pub const MAX_WIDTH: u64 = 1 << 16;

    /// A window of [`ReplayWindow::DEFAULT_WIDTH`].
    #[must_use]
    pub fn new() -> Self {
        Self::build(Self::DEFAULT_WIDTH)
    }

    /// A window at least `width` sequence numbers wide, rounded up to a multiple of 64.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `width` is 0 or above [`ReplayWindow::MAX_WIDTH`].
    pub fn with_width(width: u64) -> Result<Self, Error> {
        if width == 0 {
            return Err(Error::InvalidConfig("replay window width must be positive"));
        }
        if width > Self::MAX_WIDTH {
            return Err(Error::InvalidConfig("replay window width above MAX_WIDTH"));
        }
        Ok(Self::build(width.div_ceil(BLOCK_BITS) * BLOCK_BITS))
    }

    fn build(width: u64) -> Self {
        debug_assert!(width > 0 && width.is_multiple_of(BLOCK_BITS) && width <= Self::MAX_WIDTH);
        // The ring starts at one block and grows with the highest sequence (see
        // `grow_for`): a stream that carries a few packets costs 8 bytes, not the
        // full ring.
        Self {
            mask: 0,
            blocks: vec![0u64; 1].into_boxed_slice(),
            top: None,
            width,
        }
    }

    /// The ring length that covers the whole window: a power of two above
    /// `width / 64` (one spare block, so the block being filled never aliases the
    /// oldest one still inside the window).
    fn full_len(&self) -> u64 {
        (self.width / BLOCK_BITS + 1).next_power_of_two()
    }

    /// Bytes of bitmap this window holds now (it grows up to the full ring).
    #[must_use]
    pub fn bitmap_bytes(&self) -> usize {
        self.blocks.len() * 8
    }

    /// Grows the ring, before `top` moves into block `new_block`, so that no block
    /// still inside the window is overwritten. Until it reaches its full length the
    /// ring has never wrapped: block `b` sits at slot `b`, so growing only appends
    /// zeroed blocks.
    fn grow_for(&mut self, new_block: u64) {
        let len = self.blocks.len() as u64;
        let full = self.full_len();
        if len >= full || new_block < len {
            return;
        }
        let want = new_block
            .saturating_add(1)
            .checked_next_power_of_two()
            .map_or(full, |n| n.min(full));
        // want <= full <= 2^11, so it fits any usize.
        let mut grown = vec![0u64; usize::try_from(want).unwrap_or(1)].into_boxed_slice();
        if let Some(prefix) = grown.get_mut(..self.blocks.len()) {
            prefix.copy_from_slice(&self.blocks);
        }
        self.blocks = grown;
        self.mask = want.saturating_sub(1);
    }

    /// The window width in sequence numbers (a multiple of 64).
    #[must_use]
    pub fn width(&self) -> u64 {
        self.width
    }

    /// The highest accepted sequence number, if any.
    #[must_use]
    pub fn highest(&self) -> Option<u64> {
        self.top
    }

    /// Would `seq` be accepted? Never changes the window.
    ///
    /// # Errors
    ///
    /// [`ReplayError::BeyondMax`] above [`MAX_SEQUENCE`], [`ReplayError::TooOld`] below
    /// the window, [`ReplayError::Duplicate`] if already accepted.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq > MAX_SEQUENCE {
            return Err(ReplayError::BeyondMax);
        }
        let Some(top) = self.top else {
            return Ok(());
        };
        if seq > top {
            return Ok(());
        }
        // seq <= top, so this cannot underflow.
        if top - seq >= self.width {
            return Err(ReplayError::TooOld);
        }
        if self.is_marked(seq) {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as accepted, re-checking it first; on error nothing changes.
    ///
    /// Call only for a packet whose AEAD verified (I4).
    ///
    /// # Errors
    ///
    /// As [`ReplayWindow::check`].
    #[inline]
    pub fn commit(&mut self, seq: u64) -> Result<(), ReplayError> {
        // The same decisions as `check`, taken in one pass.
        if seq > MAX_SEQUENCE {
            return Err(ReplayError::BeyondMax);
        }
        match self.top {
            Some(top) if seq <= top => {
                if top - seq >= self.width {
                    return Err(ReplayError::TooOld);
                }
                let bit = 1u64 << (seq % BLOCK_BITS);
                let slot = self.slot(seq / BLOCK_BITS);
                // Fail closed: a missing block (impossible) reads as "seen".
                match self.blocks.get_mut(slot) {
                    Some(b) if *b & bit == 0 => {
                        *b |= bit;
                        Ok(())
                    }
                    _ => Err(ReplayError::Duplicate),
                }
            }
            _ => {
                self.advance(seq);
                self.mark(seq);
                Ok(())
            }
        }
    }

    /// Checks and commits `seq` in one step; `true` if the packet is fresh and its
    /// payload may be delivered.
    ///
    /// I4: call this only after the packet's AEAD verified.
    #[must_use = "a `false` return means the packet is a replay and must be dropped"]
    #[inline]
    pub fn accept_authenticated(&mut self, seq: u64) -> bool {
        self.commit(seq).is_ok()
    }

    /// Ring index of block number `block` (sequences `64 block ..= 64 block + 63`).
    #[inline]
    fn slot(&self, block: u64) -> usize {
        // The result is < blocks.len(), so the cast is lossless.
        (block & self.mask) as usize
    }

    #[inline]
    fn is_marked(&self, seq: u64) -> bool {
        let bit = 1u64 << (seq % BLOCK_BITS);
        // Fail closed: a missing block (impossible) reads as "seen".
        self.blocks
            .get(self.slot(seq / BLOCK_BITS))
            .is_none_or(|b| b & bit != 0)
    }

    #[inline]
    fn mark(&mut self, seq: u64) {
        let bit = 1u64 << (seq % BLOCK_BITS);
        let slot = self.slot(seq / BLOCK_BITS);
        if let Some(b) = self.blocks.get_mut(slot) {
            *b |= bit;
        }
    }

    /// Moves `top` up to `new_top`, clearing the blocks the window slides over.
    #[inline]
    fn advance(&mut self, new_top: u64) {
        if let Some(top) = self.top
            && new_top / BLOCK_BITS == top / BLOCK_BITS
        {
            // Still in the top's block (63 of 64 in-order packets): nothing to grow
            // or clear.
            self.top = Some(new_top);
            return;
        }
        self.grow_for(new_top / BLOCK_BITS);
        if let Some(top) = self.top {
            debug_assert!(new_top > top);
            let old_block = top / BLOCK_BITS;
            let new_block = new_top / BLOCK_BITS;
            let crossed = new_block - old_block;
            if crossed > self.mask {
                // The jump leaves the whole ring behind.
                self.blocks.fill(0);
            } else {
                // At most blocks.len() - 1 iterations.
                for block in old_block + 1..=new_block {
                    let slot = self.slot(block);
                    if let Some(b) = self.blocks.get_mut(slot) {
                        *b = 0;
                    }
                }
            }
        }
        self.top = Some(new_top);
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("width", &self.width)
            .field("highest", &self.top)
            .finish_non_exhaustive()
    }
}

/// One [`ReplayWindow`] per stream, created lazily, plus the rejection counter the
/// session exposes as `replay_rejected_total`.
///
/// Streams are kept in a vector sorted by stream id, so behaviour depends on nothing
/// but the calls made (I9), and a session with one stream holds exactly one entry (a
/// `BTreeMap` node has room for eleven). A window costs 512 bytes at the default
/// width; the session bounds the number of streams through its stream limits.
///
/// # Invariants
///
/// As [`ReplayWindow`]: I4 — [`StreamWindows::accept_authenticated`] is called only
/// after the AEAD verified the packet, so a forged packet neither creates a window
/// nor changes one. A sequence above [`MAX_SEQUENCE`] is refused before any window
/// is created.
#[derive(Debug, Clone)]
pub struct StreamWindows {
    /// Sorted by stream id, at most one entry per stream.
    windows: Vec<(StreamId, ReplayWindow)>,
    width: u64,
    rejected_total: u64,
}

impl StreamWindows {
    /// Windows of [`ReplayWindow::DEFAULT_WIDTH`].
    #[must_use]
    pub fn new() -> Self {
        Self {
            windows: Vec::new(),
            width: ReplayWindow::DEFAULT_WIDTH,
            rejected_total: 0,
        }
    }

    /// Windows of at least `width` sequence numbers each (see
    /// [`ReplayWindow::with_width`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for [`ReplayWindow::with_width`].
    pub fn with_width(width: u64) -> Result<Self, Error> {
        let probe = ReplayWindow::with_width(width)?;
        Ok(Self {
            windows: Vec::new(),
            width: probe.width(),
            rejected_total: 0,
        })
    }

    /// Would `seq` on `stream` be accepted? Never changes anything.
    ///
    /// # Errors
    ///
    /// As [`ReplayWindow::check`].
    pub fn check(&self, stream: StreamId, seq: u64) -> Result<(), ReplayError> {
        match self.get(stream) {
            Some(w) => w.check(seq),
            None if seq > MAX_SEQUENCE => Err(ReplayError::BeyondMax),
            None => Ok(()),
        }
    }

    /// Checks and commits `seq` on `stream`; a refusal increments
    /// [`StreamWindows::rejected_total`].
    ///
    /// I4: call only after the packet's AEAD verified.
    ///
    /// # Errors
    ///
    /// As [`ReplayWindow::check`].
    pub fn accept_authenticated(&mut self, stream: StreamId, seq: u64) -> Result<(), ReplayError> {
        let result = self.commit(stream, seq);
        if result.is_err() {
            self.rejected_total = self.rejected_total.saturating_add(1);
        }
        result
    }

    fn commit(&mut self, stream: StreamId, seq: u64) -> Result<(), ReplayError> {
        let at = match self.find(stream) {
            Ok(i) => {
                if let Some((_, w)) = self.windows.get_mut(i) {
                    return w.commit(seq);
                }
                i
            }
            Err(i) => i,
        };
        if seq > MAX_SEQUENCE {
            return Err(ReplayError::BeyondMax);
        }
        let mut w = ReplayWindow::build(self.width);
        let result = w.commit(seq);
        if self.windows.len() == self.windows.capacity() && self.windows.len() < 4 {
            // Most sessions keep one or two streams: room for exactly those.
            self.windows.reserve_exact(1);
        }
        self.windows.insert(at, (stream, w));
        result
    }

    /// Where `stream`'s window is (`Ok`), or where it would go (`Err`). The newest
    /// stream is the likeliest, so the last entry is tried first.
    fn find(&self, stream: StreamId) -> Result<usize, usize> {
        match self.windows.last() {
            Some((last, _)) if *last < stream => Err(self.windows.len()),
            Some((last, _)) if *last == stream => Ok(self.windows.len() - 1),
            _ => self.windows.binary_search_by(|(s, _)| s.cmp(&stream)),
        }
    }

    /// The width of every window (a multiple of 64).
    #[must_use]
    pub fn width(&self) -> u64 {
        self.width
    }

    /// How many packets were refused as replays (saturating).
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected_total
    }

    /// Number of streams with a window.
    #[must_use]
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// `true` if no stream has a window yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The window of `stream`, if one exists.
    #[must_use]
    pub fn get(&self, stream: StreamId) -> Option<&ReplayWindow> {
        let i = self.find(stream).ok()?;
        self.windows.get(i).map(|(_, w)| w)
    }

    /// Forgets the window of `stream`; `true` if it existed.
    ///
    /// After this, old packets of `stream` would be accepted again by a fresh window.
    /// Call it only for a stream the session will never deliver data on again (for
    /// example a finished stream whose id the session itself refuses from now on).
    pub fn remove(&mut self, stream: StreamId) -> bool {
        match self.find(stream) {
            Ok(i) => {
                self.windows.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

impl Default for StreamWindows {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
