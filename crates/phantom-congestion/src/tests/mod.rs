//! Unit, scenario and simulation tests.

mod controllers;
mod fuzz_body;
mod loss;
mod pacer;
mod rtt;
mod short_rtt;
mod simulation;

use std::time::Instant;

/// The one clock read in this crate: an arbitrary base for virtual time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}
