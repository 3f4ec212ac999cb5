//! The single place the whole workspace reads the clock.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Reads the monotonic clock and the wall clock (seconds since the Unix epoch).
///
/// Everything below the runtime takes time as an argument (I9); this is the only
/// call site of `Instant::now`/`SystemTime::now` in the project.
#[expect(clippy::disallowed_methods, reason = "runtime owns the clock")]
pub(crate) fn read() -> (Instant, u64) {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (Instant::now(), unix)
}

/// The monotonic clock, for applications that measure durations (the CLI's bench).
#[must_use]
pub fn now() -> Instant {
    read().0
}

/// Wall-clock seconds since the Unix epoch (certificate lifetimes at key generation).
#[must_use]
pub fn unix_time() -> u64 {
    read().1
}
