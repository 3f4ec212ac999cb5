//! A small ordered map kept as a sorted vector: for the session's per-packet lookups
//! in maps that hold a handful of entries (paths, sequence spaces), where a binary
//! search over one contiguous allocation beats walking B-tree nodes. Iteration is in
//! key order, as with `BTreeMap`, so behaviour stays deterministic (I9).

/// Entries a [`VecMap`] allocates one at a time before it grows as a `Vec` does.
const EXACT_UP_TO: usize = 4;

/// Sorted-vector map. Insertion and removal are O(n): use it only for maps whose
/// size is bounded by configuration (paths) or that grow at the end (spaces).
#[derive(Debug, Clone)]
pub(crate) struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord + Copy, V> VecMap<K, V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn find(&self, k: &K) -> Result<usize, usize> {
        // Keys mostly arrive in increasing order, and the busiest key (the one path,
        // the newest stream or space) is mostly the last: check it first.
        match self.entries.last() {
            Some((last, _)) if *last < *k => Err(self.entries.len()),
            Some((last, _)) if *last == *k => Ok(self.entries.len() - 1),
            _ => self.entries.binary_search_by(|(e, _)| e.cmp(k)),
        }
    }

    #[inline]
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        let i = self.find(k).ok()?;
        self.entries.get(i).map(|(_, v)| v)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.find(k).ok()?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// Where `k` sits, for [`Self::value_at_mut`]: one search where a
    /// `contains_key` then `get_mut` pair (for the borrow checker) would do two.
    #[inline]
    pub(crate) fn index_of(&self, k: &K) -> Option<usize> {
        self.find(k).ok()
    }

    /// The value at position `i` (from [`Self::index_of`]).
    #[inline]
    pub(crate) fn value_at(&self, i: usize) -> Option<&V> {
        self.entries.get(i).map(|(_, v)| v)
    }

    /// The value at position `i` (from [`Self::index_of`]).
    #[inline]
    pub(crate) fn value_at_mut(&mut self, i: usize) -> Option<&mut V> {
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    #[inline]
    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_ok()
    }

    /// Room for one more entry. A map that grows one entry at a time takes exactly
    /// what it holds up to [`EXACT_UP_TO`] entries (most sessions keep one path and
    /// one space for their whole life: a `Vec`'s first growth would allocate room for
    /// four), and doubles beyond, as a `Vec` does.
    fn reserve_one(&mut self) {
        if self.entries.len() == self.entries.capacity() && self.entries.len() < EXACT_UP_TO {
            self.entries.reserve_exact(1);
        }
    }

    /// Inserts or replaces; returns the previous value.
    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => self
                .entries
                .get_mut(i)
                .map(|slot| std::mem::replace(&mut slot.1, v)),
            Err(i) => {
                self.reserve_one();
                self.entries.insert(i, (k, v));
                None
            }
        }
    }

    /// The value for `k`, inserting `make()` first if absent (always `Some`).
    pub(crate) fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> Option<&mut V> {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                self.reserve_one();
                self.entries.insert(i, (k, make()));
                i
            }
        };
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.find(k).ok()?;
        Some(self.entries.remove(i).1)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(key, value)` pairs in key order.
    #[inline]
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    #[inline]
    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.entries.iter().map(|(k, _)| k)
    }

    #[inline]
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.entries.iter().map(|(_, v)| v)
    }

    #[inline]
    pub(crate) fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + '_ {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    #[inline]
    pub(crate) fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + '_ {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn matches_btreemap_model(ops in proptest::collection::vec((0u8..3, 0u8..20, any::<u16>()), 0..80)) {
            let mut m = VecMap::new();
            let mut model = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(m.insert(k, v), model.insert(k, v)),
                    1 => prop_assert_eq!(m.remove(&k), model.remove(&k)),
                    _ => {
                        // Wrapping: the values are arbitrary `u16`s (65535 + 1 must not panic).
                        let v = m.get_or_insert_with(k, || 7).unwrap();
                        *v = v.wrapping_add(1);
                        let w = model.entry(k).or_insert(7);
                        *w = w.wrapping_add(1);
                    }
                }
                prop_assert_eq!(m.get(&k), model.get(&k));
                prop_assert_eq!(m.contains_key(&k), model.contains_key(&k));
            }
            prop_assert_eq!(m.len(), model.len());
            let a: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
            let b: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(a, b);
        }
    }
}
