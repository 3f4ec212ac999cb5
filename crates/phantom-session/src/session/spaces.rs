//! Sequence spaces: our per-space sequence counters and sent-packet index, the
//! peer's per-space ACK state and replay windows, and the retirement of the spaces
//! of closed streams.
//!
//! A sequence space is named by the [`StreamId`] of the stream whose packets it
//! numbers (the wire header's and the ACK frame's stream id); packets without stream
//! data use the control stream's space ([`StreamId::CONTROL`]).

use std::collections::{BTreeSet, VecDeque};
use std::ops::RangeInclusive;
use std::time::Instant;

use phantom_guard::StreamWindows;
use phantom_wire::frame::Ack;
use phantom_wire::{Encode, Frame, PathId, StreamId, Writer};

use super::CONTROL_SPACE;
use crate::error::{Error, PeerViolation};
use crate::ranges::RangeSet;
use crate::stream::{stream_index, stream_kind};
use crate::vecmap::VecMap;

/// Most ACK ranges remembered per space.
const MAX_ACK_RANGES_KEPT: usize = 32;

/// Acknowledgement state of one received sequence space.
#[derive(Debug, Default)]
struct AckSpace {
    received: RangeSet,
    largest_at: Option<Instant>,
    /// The peer epoch of the latest packet in this space, if it was the first of
    /// its epoch here counted in `spaces_this_epoch`.
    epoch: Option<u32>,
    /// The newest peer epoch of any packet received in this space.
    newest: u32,
    unacked_eliciting: u32,
    pending: bool,
}

/// Where each tracked packet of one sequence space went: `(path, ppn)` indexed by
/// `seq - base`. Sequences are dense per space, so a ring replaces a map; packets
/// that were not tracked, or are acknowledged or lost, are `None` holes until the
/// front is trimmed.
#[derive(Debug, Default)]
struct SpaceSent {
    base: u64,
    slots: VecDeque<Option<(PathId, u64)>>,
    /// Number of `Some` slots: an ACK scan stops as soon as nothing is left.
    live: usize,
}

impl SpaceSent {
    fn insert(&mut self, seq: u64, v: (PathId, u64)) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        // The next sequence of the space (the common case): append.
        if seq.checked_sub(self.base) == Some(self.slots.len() as u64) {
            self.slots.push_back(Some(v));
            self.live += 1;
            return;
        }
        let Some(i) = seq
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        while self.slots.len() < i {
            self.slots.push_back(None);
        }
        match self.slots.get_mut(i) {
            Some(slot) => {
                if slot.replace(v).is_none() {
                    self.live += 1;
                }
            }
            None => {
                self.slots.push_back(Some(v));
                self.live += 1;
            }
        }
    }

    /// Takes every tracked packet with a sequence in `[lo, hi)` out, appending
    /// `(path, ppn, seq)` to `out` in sequence order, then trims the front once
    /// (what `remove` of each sequence in turn does, without a front check per
    /// packet).
    fn take_range(&mut self, lo: u64, hi: u64, out: &mut Vec<(PathId, u64, u64)>) {
        let end = self.base + self.slots.len() as u64;
        let lo = lo.max(self.base);
        let hi = hi.min(end);
        if lo >= hi {
            return;
        }
        let (Ok(i0), Ok(i1)) = (
            usize::try_from(lo - self.base),
            usize::try_from(hi - self.base),
        ) else {
            return;
        };
        for (seq, slot) in (lo..).zip(self.slots.range_mut(i0..i1)) {
            if let Some((path, ppn)) = slot.take() {
                out.push((path, ppn, seq));
                self.live = self.live.saturating_sub(1);
            }
        }
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Forgets every tracked packet that went on `path` (the path was removed, and
    /// its id may be given to a new path whose packet numbers start again).
    fn forget_path(&mut self, path: PathId) {
        for slot in &mut self.slots {
            if slot.is_some_and(|(p, _)| p == path) {
                *slot = None;
                self.live = self.live.saturating_sub(1);
            }
        }
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    fn remove(&mut self, seq: u64) -> Option<(PathId, u64)> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let v = self.slots.get_mut(i)?.take()?;
        self.live = self.live.saturating_sub(1);
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(v)
    }
}

/// Our sending state of one space: the next sequence (I3: only grows) and the largest
/// one the peer acknowledged (which sequence truncation measures from).
#[derive(Debug, Clone, Copy)]
struct SendSpace {
    next: u64,
    largest_acked: Option<u64>,
}

/// Every sequence space's state, both directions.
pub(super) struct Spaces {
    /// Our sending state per space.
    next_seq: VecMap<StreamId, SendSpace>,
    /// The peer's packets received per space.
    acks: VecMap<StreamId, AckSpace>,
    /// The peer's replay windows per space (I4).
    replay: StreamWindows,
    sent_index: VecMap<StreamId, SpaceSent>,
    /// The ring of the space whose tracked packets were last all resolved, kept for
    /// the next space entry (a bulk stream's entry empties after every burst; reusing
    /// its ring saves growing a new one, and the allocations, per burst).
    spare_sent: VecDeque<Option<(PathId, u64)>>,
    /// Closed streams whose own sequence counters are dropped, as stream indices per
    /// kind ([`stream_kind`]): compact ranges, since streams close roughly in id order.
    retired: [RangeSet; 4],
    /// Distinct sequence spaces the peer used in its current epoch (I1: bounded).
    spaces_this_epoch: usize,
    /// Most distinct spaces a peer may use in one epoch (its sealer rekeys long before).
    space_limit: usize,
    /// Spaces with an ACK to send, and the ack-eliciting packets they hold
    /// unacknowledged in total (an ACK is due at two).
    ack_pending: BTreeSet<StreamId>,
    unacked_eliciting_total: u32,
    /// Scratch list of space ids.
    list_buf: Vec<StreamId>,
    /// Scratch ranges of the ACK frame being written.
    ack_ranges: Vec<RangeInclusive<u64>>,
}

impl Spaces {
    pub(super) fn new(replay: StreamWindows) -> Self {
        Self {
            next_seq: VecMap::new(),
            acks: VecMap::new(),
            replay,
            sent_index: VecMap::new(),
            spare_sent: VecDeque::new(),
            retired: Default::default(),
            spaces_this_epoch: 0,
            space_limit: phantom_crypto::STREAM_TABLE_HARD_LIMIT,
            ack_pending: BTreeSet::new(),
            unacked_eliciting_total: 0,
            list_buf: Vec::new(),
            ack_ranges: Vec::new(),
        }
    }

    // ── receive direction ──

    /// I4: consults the replay window of an authenticated packet; false if it is a
    /// replay.
    pub(super) fn accept_replay(&mut self, space: StreamId, seq: u64) -> bool {
        self.replay.accept_authenticated(space, seq).is_ok()
    }

    /// The largest sequence of `space` the peer's authenticated packets carried (what a
    /// truncated sequence is expanded against), if the space has state.
    pub(super) fn largest_received(&self, space: StreamId) -> Option<u64> {
        self.replay.get(space).and_then(|w| w.highest())
    }

    /// Every replay the windows refused.
    pub(super) fn replay_rejected_total(&self) -> u64 {
        self.replay.rejected_total()
    }

    /// The peer moved to a new epoch: its spaces are counted afresh.
    pub(super) fn on_peer_epoch(&mut self) {
        self.spaces_this_epoch = 0;
    }

    /// Records an authenticated packet `seq` of `space`, sealed in `epoch` while the
    /// peer's current epoch is `current`.
    #[inline]
    pub(super) fn on_received(
        &mut self,
        now: Instant,
        space: StreamId,
        epoch: u32,
        current: u32,
        seq: u64,
        eliciting: bool,
    ) -> Result<(), Error> {
        // (An existing space through the inlined lookup; the generic insert only for
        // a new one.)
        let ack = match self.acks.index_of(&space) {
            Some(i) => self.acks.value_at_mut(i),
            None => self.acks.get_or_insert_with(space, AckSpace::default),
        };
        let Some(ack) = ack else {
            return Ok(());
        };
        if epoch == current && ack.epoch != Some(current) {
            // I1: the peer's sealer rekeys before it uses this many (path, stream)
            // pairs in one epoch, so more spaces than that is a violation — and the
            // per-space state of one epoch stays bounded.
            ack.epoch = Some(current);
            self.spaces_this_epoch += 1;
            if self.spaces_this_epoch > self.space_limit {
                return Err(Error::PeerViolation(PeerViolation::TooManySpaces));
            }
        }
        ack.newest = ack.newest.max(epoch);
        // (Dropping the lowest ranges never drops the top one.)
        let top = ack.received.insert_reaches_top(seq..seq + 1);
        ack.received.truncate_low(MAX_ACK_RANGES_KEPT);
        if top {
            ack.largest_at = Some(now);
        }
        if eliciting {
            // A pending space is always in `ack_pending` (both change together).
            if !ack.pending {
                self.ack_pending.insert(space);
            }
            ack.pending = true;
            ack.unacked_eliciting += 1;
            self.unacked_eliciting_total = self.unacked_eliciting_total.saturating_add(1);
        }
        Ok(())
    }

    /// True if some space owes an ACK.
    pub(super) fn ack_owed(&self) -> bool {
        !self.ack_pending.is_empty()
    }

    /// Ack-eliciting packets received and not yet acknowledged, over all spaces.
    pub(super) fn unacked_eliciting(&self) -> u32 {
        self.unacked_eliciting_total
    }

    /// Writes an ACK frame for every space that owes one while they fit (leaving
    /// 64 bytes of room after each). Returns true once no ACK is owed any more.
    pub(super) fn write_acks(&mut self, now: Instant, w: &mut Writer<'_>) -> bool {
        // (The scratch list is taken only when there is something to list.)
        let ack_due = !self.ack_pending.is_empty();
        let mut spaces = Vec::new();
        if ack_due {
            spaces = std::mem::take(&mut self.list_buf);
            spaces.clear();
            spaces.extend(self.ack_pending.iter().copied());
        }
        for &space in &spaces {
            let Some(a) = self.acks.get_mut(&space) else {
                self.ack_pending.remove(&space);
                continue;
            };
            if !a.pending || a.received.is_empty() {
                a.pending = false;
                self.ack_pending.remove(&space);
                continue;
            }
            self.ack_ranges.clear();
            for r in a.received.iter().rev() {
                if r.end > r.start {
                    self.ack_ranges.push(r.start..=r.end - 1);
                }
            }
            let delay = a
                .largest_at
                .map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64);
            let Ok(ack) = Ack::new(space, delay, &self.ack_ranges) else {
                continue;
            };
            let f = Frame::Ack(ack);
            if f.encoded_len() + 64 > w.remaining() {
                break;
            }
            if f.encode(w).is_ok() {
                a.pending = false;
                self.unacked_eliciting_total = self
                    .unacked_eliciting_total
                    .saturating_sub(std::mem::take(&mut a.unacked_eliciting));
                self.ack_pending.remove(&space);
            }
        }
        if ack_due {
            self.list_buf = spaces;
        }
        self.ack_pending.is_empty()
    }

    /// A peer epoch key was just dropped (the previous one retired, or an older one
    /// replaced when the opener followed a rekey): the ACK ranges and replay window
    /// of every space whose packets are all of epochs older than `oldest_open` (and
    /// that owes no acknowledgement) are dropped. A later packet in such a space is
    /// of an epoch still open or newer and starts a fresh window that every replay
    /// of it will meet (I4). With at most `space_limit` spaces per peer epoch, the
    /// per-space state of the peer's direction stays bounded however many streams
    /// the session carries — also while the peer rekeys faster than every 3 PTOs,
    /// which keeps postponing the retirement of its previous key.
    pub(super) fn forget_quiet(&mut self, oldest_open: u32) {
        let mut quiet = std::mem::take(&mut self.list_buf);
        quiet.clear();
        quiet.extend(
            self.acks
                .iter()
                .filter(|(space, a)| {
                    **space != CONTROL_SPACE && a.newest < oldest_open && !a.pending
                })
                .map(|(space, _)| *space),
        );
        for &space in &quiet {
            self.acks.remove(&space);
            self.ack_pending.remove(&space);
            self.replay.remove(space);
        }
        self.list_buf = quiet;
    }

    // ── send direction ──

    /// Our next sequence of `space` and the counter's position (for
    /// [`Self::advance_seq`]; a new space's counter is inserted only once its first
    /// packet is sealed).
    pub(super) fn peek_seq(&self, space: StreamId) -> (Option<usize>, u64) {
        let at = self.next_seq.index_of(&space);
        let seq = at
            .and_then(|i| self.next_seq.value_at(i))
            .map_or(0, |s| s.next);
        (at, seq)
    }

    /// The largest sequence of `space` (at `at`, from [`Self::peek_seq`]) the peer
    /// acknowledged.
    pub(super) fn largest_acked(&self, at: Option<usize>) -> Option<u64> {
        at.and_then(|i| self.next_seq.value_at(i))
            .and_then(|s| s.largest_acked)
    }

    /// An ACK frame of `space` (checked by [`Self::check_ack`]) acknowledged `largest`.
    pub(super) fn note_acked(&mut self, space: StreamId, largest: u64) {
        if let Some(s) = self.next_seq.get_mut(&space) {
            s.largest_acked = Some(s.largest_acked.map_or(largest, |l| l.max(largest)));
        }
    }

    /// Packet `seq` of `space` (found at `at` by [`Self::peek_seq`]) was sealed.
    pub(super) fn advance_seq(&mut self, at: Option<usize>, space: StreamId, seq: u64) {
        match at.and_then(|i| self.next_seq.value_at_mut(i)) {
            Some(n) => n.next = seq + 1,
            None => {
                self.next_seq.insert(
                    space,
                    SendSpace {
                        next: seq + 1,
                        largest_acked: None,
                    },
                );
            }
        }
    }

    /// Remembers which path (and its packet number) carried packet `seq` of `space`.
    pub(super) fn track_sent(&mut self, space: StreamId, seq: u64, path: PathId, ppn: u64) {
        // The space's index is mostly there already (an inlined lookup); a new
        // one takes over the spare ring.
        let index = match self.sent_index.index_of(&space) {
            Some(i) => self.sent_index.value_at_mut(i),
            None => {
                let spare = &mut self.spare_sent;
                self.sent_index.get_or_insert_with(space, || SpaceSent {
                    base: 0,
                    slots: std::mem::take(spare),
                    live: 0,
                })
            }
        };
        if let Some(index) = index {
            index.insert(seq, (path, ppn));
        }
    }

    /// Checks an ACK frame of `space` against what we sent: `Ok(false)` if the space
    /// is retired (a late or repeated acknowledgement of what was acknowledged before
    /// the space was retired; ignored).
    pub(super) fn check_ack(&self, space: StreamId, largest: u64) -> Result<bool, Error> {
        if self.is_retired(space) {
            return Ok(false);
        }
        let next = self.next_seq.get(&space).map_or(0, |s| s.next);
        if largest >= next {
            return Err(Error::PeerViolation(PeerViolation::AckOfUnsentPacket));
        }
        Ok(true)
    }

    /// Takes the tracked packets of `space` an ACK frame's `ranges` cover out of the
    /// index, appending `(path, ppn, seq)` to `out`. `keep_spare`: see
    /// [`Self::drop_sent`].
    pub(super) fn take_acked(
        &mut self,
        space: StreamId,
        ranges: impl Iterator<Item = RangeInclusive<u64>>,
        out: &mut Vec<(PathId, u64, u64)>,
        keep_spare: bool,
    ) {
        if let Some(index) = self.sent_index.get_mut(&space) {
            for r in ranges {
                if index.live == 0 {
                    break;
                }
                index.take_range(*r.start(), r.end().saturating_add(1), out);
            }
            if index.slots.is_empty() && space != CONTROL_SPACE {
                self.drop_sent(space, keep_spare);
            }
        }
    }

    /// Path `path` was removed: no tracked packet may still name it, since its id
    /// can be reused by a new path whose packet numbers start at zero again (an
    /// acknowledgement of an old packet must not acknowledge a new one).
    pub(super) fn forget_path(&mut self, path: PathId) {
        for index in self.sent_index.values_mut() {
            index.forget_path(path);
        }
    }

    /// Packet `seq` of `space` was declared lost.
    pub(super) fn on_lost(&mut self, space: StreamId, seq: u64, keep_spare: bool) {
        if let Some(index) = self.sent_index.get_mut(&space) {
            index.remove(seq);
            if index.slots.is_empty() && space != CONTROL_SPACE {
                self.drop_sent(space, keep_spare);
            }
        }
    }

    /// Forgets the (empty) sent-packet index of `space`, keeping its ring's memory
    /// for the next space entry if `keep_spare` (a stream has data queued: a bulk
    /// stream's entry empties after every burst); a session with nothing left to
    /// send keeps no spare (idle sessions hold no memory for a burst that may never
    /// come).
    fn drop_sent(&mut self, space: StreamId, keep_spare: bool) {
        if let Some(old) = self.sent_index.remove(&space) {
            if !keep_spare {
                self.spare_sent = VecDeque::new();
                return;
            }
            let mut slots = old.slots;
            slots.clear();
            if slots.capacity() > self.spare_sent.capacity() {
                self.spare_sent = slots;
            }
        }
    }

    // ── retirement ──

    /// True if our sequence counter of stream `id`'s space was retired.
    fn is_retired(&self, id: StreamId) -> bool {
        self.retired
            .get(stream_kind(id))
            .is_some_and(|r| r.contains(u64::from(stream_index(id))))
    }

    /// Drops our sequence counter of closed stream `id`'s space if none of its
    /// packets is outstanding, and remembers the stream in a compact retired set;
    /// false if packets are still outstanding.
    ///
    /// A closed stream is never sent in again (ids are never reused, I3), so its
    /// counter is not needed; a late acknowledgement of its space is ignored (it
    /// acknowledges what was acknowledged or declared lost already). The peer's
    /// direction of a space is forgotten by epoch instead ([`Self::forget_quiet`]).
    pub(super) fn try_retire(&mut self, id: StreamId) -> bool {
        if self.sent_index.contains_key(&id) {
            return false;
        }
        self.next_seq.remove(&id);
        if let Some(r) = self.retired.get_mut(stream_kind(id)) {
            let i = u64::from(stream_index(id));
            r.insert(i..i + 1);
        }
        true
    }

    /// (ACK spaces, our sequence counters, replay windows) held.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (usize, usize, usize) {
        (self.acks.len(), self.next_seq.len(), self.replay.len())
    }

    /// Capacity of the spare sent-packet ring.
    #[cfg(test)]
    pub(super) fn spare_capacity(&self) -> usize {
        self.spare_sent.capacity()
    }

    /// Lowers the most distinct spaces the peer may use in one epoch.
    #[cfg(test)]
    pub(super) fn set_space_limit(&mut self, n: usize) {
        self.space_limit = n;
    }
}

#[cfg(test)]
mod tests {
    use super::SpaceSent;
    use phantom_wire::PathId;

    #[test]
    fn ring_index_tracks_live_packets_across_holes() {
        let mut s = SpaceSent::default();
        s.insert(10, (PathId(0), 100));
        s.insert(13, (PathId(1), 101)); // 11 and 12 were not tracked
        s.insert(14, (PathId(0), 102));
        assert_eq!((s.base, s.slots.len(), s.live), (10, 5, 3));
        assert_eq!(s.remove(13), Some((PathId(1), 101)));
        assert_eq!(s.remove(13), None, "removed twice");
        assert_eq!(s.remove(12), None, "never tracked");
        assert_eq!(s.remove(9), None, "below the ring");
        assert_eq!(s.remove(10), Some((PathId(0), 100)));
        // The front is trimmed past the holes.
        assert_eq!((s.base, s.slots.len(), s.live), (14, 1, 1));
        assert_eq!(s.remove(14), Some((PathId(0), 102)));
        assert!(s.slots.is_empty() && s.live == 0);
        // An empty ring restarts at the next tracked sequence.
        s.insert(40, (PathId(2), 7));
        assert_eq!((s.base, s.live), (40, 1));
        assert_eq!(s.remove(40), Some((PathId(2), 7)));
    }

    #[test]
    fn i3_forgetting_a_path_leaves_no_record_naming_it() {
        let mut s = SpaceSent::default();
        s.insert(10, (PathId(3), 0));
        s.insert(11, (PathId(1), 5));
        s.insert(12, (PathId(3), 1));
        s.forget_path(PathId(3));
        assert_eq!((s.live, s.base, s.slots.len()), (1, 11, 2));
        // A reused id 3 whose packet numbers restart at 0 matches nothing old.
        assert_eq!(s.remove(12), None);
        assert_eq!(s.remove(11), Some((PathId(1), 5)));
        assert_eq!(s.live, 0);
    }
}
