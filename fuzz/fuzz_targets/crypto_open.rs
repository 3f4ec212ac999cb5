//! Arbitrary bytes opened under a fixed key (both suites): never a panic, a failed
//! open leaves the datagram and the epoch unchanged, a successful one yields exactly
//! the datagram minus header and tag (`phantom_crypto::fuzzing::open_arbitrary`); the
//! same bytes also drive a seal/tamper/open round trip (`seal_open_roundtrip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    phantom_crypto::fuzzing::open_arbitrary(data);
    phantom_crypto::fuzzing::seal_open_roundtrip(data);
});
