//! The runtime's TCP carrier framing: arbitrary streams (or encoded datagrams) read
//! in arbitrary chunks must frame exactly as a whole-stream parse
//! (`phantom::fuzzing::tcp_framing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _frames = phantom::fuzzing::tcp_framing(data);
});
