//! Arbitrary datagrams, and arbitrary payloads sealed with the peer's (public, fixed)
//! key, fed to a connected session: no panic, and no state change unless a datagram
//! authenticated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The fuzz harness supplies the time origin; the session never reads the clock.
    phantom_session::fuzzing::session_recv(std::time::Instant::now(), data);
});
