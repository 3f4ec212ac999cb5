//! The `congestion_ops` fuzz body run as a property test, and its checks shown to bite.

use proptest::prelude::*;

use super::epoch;
use crate::fuzzing::congestion_ops;

/// A config prefix (mss 1163, 10 initial, 2 minimum, 101 ms, 25 ms, seed 7), then
/// seven events: sends, ACKs, losses (one persistent) and an idle gap.
const SCRIPT: &[u8] = &[
    0x04, 0x4b, 9, 1, 0, 100, 25, 0, 7, // config
    0xf0, 0, 10, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0,
    4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, // 16 sends
    0x71, 0x10, 0, 0, 5, // ack 8
    0x02, 0, 1, // lose 1
    0xf0, 0, 10, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0,
    4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, 4, 0xb0, // 16 sends
    0xf1, 0x20, 0, 0, 5, // ack 16
    0x03, 0, 1, 0x10, 0, // idle 4 s
    0x82, 0, 1, // persistent loss
];

#[test]
fn i1_congestion_script_applies_every_event_and_matches_the_model() {
    assert_eq!(congestion_ops(epoch(), SCRIPT), 7);
    // Every truncation of the script runs too.
    for n in 0..SCRIPT.len() {
        congestion_ops(epoch(), &SCRIPT[..n]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn i1_arbitrary_congestion_events_keep_every_controller_sane(
        data in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        congestion_ops(epoch(), &data);
    }
}
