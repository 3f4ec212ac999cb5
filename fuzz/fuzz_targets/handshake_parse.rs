//! Handshake datagram, fragment, reassembly and message parsers: never panic, never
//! exceed the reassembly cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    phantom_handshake::fuzzing::parse_all(data);
});
