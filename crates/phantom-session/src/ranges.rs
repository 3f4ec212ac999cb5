//! A set of disjoint half-open `u64` ranges, used for stream offsets (what was sent,
//! acknowledged, received) and for received packet sequences (what to acknowledge).

use std::collections::BTreeMap;
use std::ops::Range;

/// Disjoint, non-adjacent half-open ranges `[start, end)`, kept coalesced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    /// start -> end (exclusive). Invariant: ranges are non-empty, disjoint and
    /// non-adjacent (adjacent ranges are merged).
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Number of disjoint ranges.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// True if `r` overlaps or is adjacent to a range of the set (inserting it adds
    /// no new range).
    pub(crate) fn touches(&self, r: Range<u64>) -> bool {
        if self
            .map
            .range(..=r.start)
            .next_back()
            .is_some_and(|(_, &e)| e >= r.start)
        {
            return true;
        }
        self.map.range(r.start..=r.end).next().is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// True if `x` is in the set.
    pub(crate) fn contains(&self, x: u64) -> bool {
        self.map
            .range(..=x)
            .next_back()
            .is_some_and(|(_, &end)| x < end)
    }

    /// Adds `r`; returns how many values were not in the set before.
    pub(crate) fn insert(&mut self, r: Range<u64>) -> u64 {
        if r.start >= r.end {
            return 0;
        }
        // Fast path: at or beyond the start of the last range (in-order arrivals).
        if let Some(mut last) = self.map.last_entry()
            && *last.key() <= r.start
        {
            let e = *last.get();
            if e >= r.start {
                let fresh = r.end.saturating_sub(e);
                if fresh > 0 {
                    *last.get_mut() = r.end;
                }
                return fresh;
            }
            self.map.insert(r.start, r.end);
            return r.end - r.start;
        }
        let mut start = r.start;
        let mut end = r.end;
        let mut covered = 0u64;
        // Merge with a range that starts at or before `start` and reaches it.
        if let Some((&s, &e)) = self.map.range(..=start).next_back()
            && e >= start
        {
            covered += e.min(end).saturating_sub(start);
            start = s;
            end = end.max(e);
            self.map.remove(&s);
        }
        // Merge every range that starts inside [start, end].
        while let Some((&s, &e)) = self.map.range(start..=end).next() {
            covered += e.min(r.end).saturating_sub(s.max(r.start));
            end = end.max(e);
            self.map.remove(&s);
        }
        self.map.insert(start, end);
        (r.end - r.start).saturating_sub(covered)
    }

    /// Removes `r` from the set.
    pub(crate) fn remove(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        // A range starting before r.start that overlaps it: trim, maybe split.
        if let Some((&s, &e)) = self.map.range(..r.start).next_back()
            && e > r.start
        {
            self.map.insert(s, r.start);
            if e > r.end {
                self.map.insert(r.end, e);
                return;
            }
        }
        while let Some((&s, &e)) = self.map.range(r.start..r.end).next() {
            self.map.remove(&s);
            if e > r.end {
                self.map.insert(r.end, e);
                break;
            }
        }
    }

    /// One past the largest value in the set.
    /// [`Self::insert`], answering whether `r.end` is the set's largest end
    /// afterwards (`max_end() == Some(r.end)`): in the in-order case without a
    /// second walk to the last range.
    pub(crate) fn insert_reaches_top(&mut self, r: Range<u64>) -> bool {
        if r.start < r.end
            && let Some(mut last) = self.map.last_entry()
            && *last.key() <= r.start
        {
            let e = *last.get();
            if e >= r.start {
                // Extends (or lies inside) the last range.
                if r.end > e {
                    *last.get_mut() = r.end;
                    return true;
                }
                return r.end == e;
            }
            // A new last range.
            self.map.insert(r.start, r.end);
            return true;
        }
        let end = r.end;
        self.insert(r);
        self.max_end() == Some(end)
    }

    pub(crate) fn max_end(&self) -> Option<u64> {
        self.map.values().next_back().copied()
    }

    /// The first range.
    pub(crate) fn first(&self) -> Option<Range<u64>> {
        self.map.iter().next().map(|(&s, &e)| s..e)
    }

    /// Ranges in ascending order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.map.iter().map(|(&s, &e)| s..e)
    }

    /// The end of the range containing `x`, if any (how far data is contiguous from `x`).
    pub(crate) fn contiguous_end_from(&self, x: u64) -> Option<u64> {
        self.map
            .range(..=x)
            .next_back()
            .and_then(|(_, &end)| (x < end).then_some(end))
    }

    /// The sub-ranges of `r` that are *not* in the set, in ascending order.
    pub(crate) fn gaps_in(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        if r.start >= r.end {
            return out;
        }
        let mut cursor = r.start;
        if let Some((_, &e)) = self.map.range(..=r.start).next_back()
            && e > cursor
        {
            cursor = e;
        }
        for (&s, &e) in self.map.range(r.start..r.end) {
            if s > cursor {
                out.push(cursor..s.min(r.end));
            }
            cursor = cursor.max(e);
            if cursor >= r.end {
                break;
            }
        }
        if cursor < r.end {
            out.push(cursor..r.end);
        }
        out
    }

    /// Drops the lowest ranges until at most `max` remain.
    pub(crate) fn truncate_low(&mut self, max: usize) {
        while self.map.len() > max {
            self.map.pop_first();
        }
    }

    /// Removes every value below `floor`.
    pub(crate) fn remove_below(&mut self, floor: u64) {
        self.remove(0..floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn insert_merges_and_counts_new_values() {
        let mut s = RangeSet::new();
        assert_eq!(s.insert(0..10), 10);
        assert_eq!(s.insert(20..30), 10);
        assert_eq!(s.insert(5..25), 10);
        assert_eq!(s.len(), 1);
        assert_eq!(s.first(), Some(0..30));
        assert_eq!(s.insert(30..31), 1);
        assert_eq!(s.first(), Some(0..31));
        assert_eq!(s.insert(3..4), 0);
    }

    #[test]
    fn remove_splits() {
        let mut s = RangeSet::new();
        s.insert(0..100);
        s.remove(10..20);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..10, 20..100]);
        assert_eq!(s.gaps_in(5..30), vec![10..20]);
        assert!(s.contains(20) && s.contains(99) && !s.contains(100) && !s.contains(10));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64),
        Remove(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..200, 0u64..30).prop_map(|(a, l)| Op::Insert(a, a + l)),
            (0u64..200, 0u64..30).prop_map(|(a, l)| Op::Remove(a, a + l)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn matches_btreeset_model(ops in proptest::collection::vec(op(), 0..60), probe in 0u64..240, lo in 0u64..240, len in 0u64..40) {
            let mut s = RangeSet::new();
            let mut model = BTreeSet::new();
            for o in ops {
                match o {
                    Op::Insert(a, b) => {
                        let fresh = (a..b).filter(|x| !model.contains(x)).count() as u64;
                        // Alternately through `insert_reaches_top`, checked against
                        // `max_end` after a plain insert.
                        if a % 2 == 0 {
                            let mut plain = s.clone();
                            plain.insert(a..b);
                            let top = s.insert_reaches_top(a..b);
                            prop_assert_eq!(&s, &plain);
                            prop_assert_eq!(top, plain.max_end() == Some(b));
                        } else {
                            prop_assert_eq!(s.insert(a..b), fresh);
                        }
                        model.extend(a..b);
                    }
                    Op::Remove(a, b) => {
                        s.remove(a..b);
                        for x in a..b { model.remove(&x); }
                    }
                }
            }
            prop_assert_eq!(s.contains(probe), model.contains(&probe));
            let flat: BTreeSet<u64> = s.iter().flatten().collect();
            prop_assert_eq!(&flat, &model);
            // Coalesced: no two ranges touch.
            let v: Vec<_> = s.iter().collect();
            for w in v.windows(2) { prop_assert!(w[0].end < w[1].start); }
            let gaps: BTreeSet<u64> = s.gaps_in(lo..lo + len).into_iter().flatten().collect();
            let model_gaps: BTreeSet<u64> = (lo..lo + len).filter(|x| !model.contains(x)).collect();
            prop_assert_eq!(gaps, model_gaps);
        }
    }
}
