//! Exhaustive model checks of the handshake, the epoch ratchet and path validation
//! (`phantom_model`), one test binary so that the release build links once. Each run
//! prints a line with its depth and the states it explored. In debug builds the tests
//! are ignored: `cargo xtask ci` runs them in release (step `model`).

use std::sync::OnceLock;
use std::time::Instant;

mod epoch;
mod handshake;
mod path;

/// The origin of the models' clocks (the model crate reads no clock itself).
#[expect(
    clippy::disallowed_methods,
    reason = "tests pick the model clock's origin"
)]
fn base() -> Instant {
    static B: OnceLock<Instant> = OnceLock::new();
    *B.get_or_init(Instant::now)
}
