//! Reference models used by the property tests and the fuzz target.
//!
//! They state the intended behaviour as plainly as possible, with no attention to
//! speed or memory; the real types must agree with them on every input.

use std::collections::BTreeSet;

use phantom_wire::MAX_SEQUENCE;

use crate::ReplayError;

/// The replay window rule over a plain set: accept a sequence when it is at most
/// `MAX_SEQUENCE`, and either above everything seen so far or less than `width` below
/// the highest and not seen yet.
#[derive(Debug, Clone)]
pub(crate) struct ReplayModel {
    seen: BTreeSet<u64>,
    width: u64,
}

impl ReplayModel {
    /// A model of a window `width` wide (already rounded as the real window rounds).
    pub(crate) fn new(width: u64) -> Self {
        Self {
            seen: BTreeSet::new(),
            width,
        }
    }

    /// What the window's `check` must return.
    pub(crate) fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq > MAX_SEQUENCE {
            return Err(ReplayError::BeyondMax);
        }
        if let Some(&top) = self.seen.last()
            && seq <= top
        {
            if top - seq >= self.width {
                return Err(ReplayError::TooOld);
            }
            if self.seen.contains(&seq) {
                return Err(ReplayError::Duplicate);
            }
        }
        Ok(())
    }

    /// What the window's `commit` must return; records `seq` on success.
    pub(crate) fn commit(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        self.seen.insert(seq);
        Ok(())
    }

    /// The highest accepted sequence.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.seen.last().copied()
    }
}
