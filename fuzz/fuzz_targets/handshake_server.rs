//! Arbitrary datagrams into a server built from a fixed seed (optionally after a genuine
//! ClientHello): no panic, half-open cap and 3x amplification limit hold.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static START: OnceLock<Instant> = OnceLock::new();
    let now = *START.get_or_init(Instant::now);
    phantom_handshake::fuzzing::server_datagrams(data, now);
});
