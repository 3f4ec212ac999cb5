//! Feeds arbitrary send/ACK/loss/idle sequences to BBR, CUBIC and NewReno at once;
//! the driver checks window floors, snapshot consistency and NewReno against a
//! reference model (`phantom_congestion::fuzzing::congestion_ops`).
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

/// The time origin, read once (the congestion crate itself never reads the clock).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *ORIGIN.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let _events = phantom_congestion::fuzzing::congestion_ops(origin(), data);
});
