//! Phantom's receive-side guards: replay windows, the path registry with
//! challenge/response validation, and the anti-amplification budget.
//!
//! **What it owns.** [`ReplayWindow`] is an RFC 6479-style sliding bitmap (a ring of
//! `u64` blocks, O(1) per packet, default width 2048) that decides whether an
//! authenticated sequence number is fresh; [`StreamWindows`] keeps one per stream
//! and counts rejections. [`PathRegistry`] tracks every path of a session through
//! `Unvalidated -> Validating -> Validated` (or `Failed`): it draws 32-byte
//! [`Challenge`]s from the caller's RNG, retransmits them with exponential backoff
//! and a retry budget, verifies responses in constant time, fails paths that stay
//! silent, bounds the number of paths, and keeps each unvalidated path's send
//! budget. It is sans-IO: no sockets, no clock (time is passed in as `Instant`), no
//! threads; it depends only on `phantom-wire` for [`PathId`](phantom_wire::PathId),
//! [`StreamId`](phantom_wire::StreamId) and [`MAX_SEQUENCE`](phantom_wire::MAX_SEQUENCE).
//!
//! **Invariants upheld.** I4: the replay window is meant to be consulted only after
//! the AEAD verified the packet — [`ReplayWindow::accept_authenticated`] and
//! [`ReplayWindow::commit`] are the only mutators and the session calls them with an
//! opened packet, while [`ReplayWindow::check`] cannot mutate; a committed sequence
//! is never accepted twice. I7: an unvalidated path never sends more than
//! [`AMPLIFICATION_FACTOR`] (3) times the bytes received on it
//! ([`PathRegistry::on_sent`] refuses), a path becomes validated only by the exact
//! challenge bytes, and [`PathRegistry::is_validated`] gates application data. I1:
//! no input panics, counters saturate, time arithmetic is checked, memory is bounded
//! (window size fixed at construction, at most `max_paths` paths). I9: randomness and
//! time come only from the caller, and expiry is applied lazily so results do not
//! depend on how often the session polls. I8: [`Challenge`] bytes are zeroized on
//! drop, compared in constant time and never printed by `Debug` or errors.

mod error;
mod path;
mod replay;

#[cfg(any(test, fuzzing))]
mod model;

/// Drivers for the cargo-fuzz targets (compiled only for fuzzing and tests).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;

pub use error::Error;
pub use path::{
    AMPLIFICATION_FACTOR, CHALLENGE_LEN, Challenge, FailReason, MAX_CHALLENGE_RETRANSMITS,
    PathConfig, PathEvent, PathInfo, PathRegistry, PathState, SendBudget,
};
pub use replay::{ReplayError, ReplayWindow, StreamWindows};
