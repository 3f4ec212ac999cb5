//! Drives `phantom_guard::ReplayWindow` and `PathRegistry` with an operation
//! sequence decoded from the input; the driver asserts the window matches its
//! reference model, the 3x anti-amplification bound, and the path state machine.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

/// The time origin, read once (the guard crate itself never reads the clock).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *ORIGIN.get_or_init(Instant::now)
}

fuzz_target!(|data: &[u8]| {
    let _coverage = phantom_guard::fuzzing::guard_ops(origin(), data);
});
