use std::time::Instant;

use proptest::prelude::*;

use super::guard_ops;

#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary time origin"
)]
fn t0() -> Instant {
    Instant::now()
}

/// Header: width byte, max_paths, challenge timeout, retransmits, idle (u16), seed (u64).
fn header() -> Vec<u8> {
    let mut v = vec![127, 3, 10, 2, 0x10, 0x27];
    v.extend_from_slice(&7u64.to_le_bytes());
    v
}

/// A script that walks a path through validation and exercises the window.
fn scripted() -> Vec<u8> {
    let mut v = header();
    // Replay: accept seqs ahead, repeat, near MAX, beyond MAX, at the edge.
    v.extend_from_slice(&[0, 0, 1, 5]); // accept top+5
    v.extend_from_slice(&[1, 0, 1, 0]); // check+accept top (duplicate)
    v.extend_from_slice(&[0, 0, 3, 2]); // MAX - 2
    v.extend_from_slice(&[0, 0, 4, 9]); // beyond MAX
    v.extend_from_slice(&[0, 0, 6, 1]); // window edge
    v.extend_from_slice(&[0, 0, 2, 1, 0]); // top - 1
    // Paths: insert 1, receive, send, challenge, wrong, right, send more.
    v.extend_from_slice(&[2, 1, 0x50, 0x00, 0]); // insert path 1 unvalidated
    v.extend_from_slice(&[9, 1, 100, 0]); // received 100
    v.extend_from_slice(&[10, 1, 44, 1]); // send 300 (ok)
    v.extend_from_slice(&[10, 1, 1, 0]); // send 1 (refused)
    v.extend_from_slice(&[3, 1]); // issue
    v.extend_from_slice(&[5, 1, 4, 0x80]); // wrong response
    v.extend_from_slice(&[7, 0, 10, 0]); // +10 ms
    v.extend_from_slice(&[8, 0]); // poll: retransmit
    v.extend_from_slice(&[4, 1]); // right response
    v.extend_from_slice(&[10, 1, 0xff, 0xff]); // send 65535 (validated)
    // Path 2 runs out of retries; path 3 goes idle.
    v.extend_from_slice(&[2, 2, 1, 0, 0, 3, 2]);
    v.extend_from_slice(&[2, 3, 2, 0, 0]);
    for _ in 0..6 {
        v.extend_from_slice(&[7, 0, 0xff, 0x00, 8, 0]);
    }
    v.extend_from_slice(&[4, 2]); // late response
    v.extend_from_slice(&[7, 0, 0x20, 0x4e, 8, 0]); // +20 s: idle
    v.extend_from_slice(&[2, 4, 3, 0, 0]); // fills the registry
    v.extend_from_slice(&[2, 5, 4, 0, 0]); // evicts a failed path
    v.extend_from_slice(&[11, 1]); // remove
    v
}

#[test]
fn i7_guard_ops_scripted_input_holds_all_properties() {
    let cov = guard_ops(t0(), &scripted());
    // The script reaches every behaviour it is meant to exercise.
    assert!(cov.replay_accepted >= 3, "{cov:?}");
    assert!(cov.replay_rejected >= 2, "{cov:?}");
    assert_eq!(cov.validated, 1, "{cov:?}");
    assert_eq!(cov.wrong_refused, 1, "{cov:?}");
    assert!(cov.retransmits >= 2, "{cov:?}");
    assert_eq!(cov.retries_exhausted, 1, "{cov:?}");
    assert_eq!(cov.late_refused, 1, "{cov:?}");
    assert!(cov.idle_failures >= 1, "{cov:?}");
    assert_eq!(cov.evictions, 1, "{cov:?}");
    assert_eq!(cov.amplification_refused, 1, "{cov:?}");
}

#[test]
fn i1_guard_ops_handles_degenerate_inputs() {
    let now = t0();
    assert_eq!(guard_ops(now, &[]), super::Coverage::default());
    assert_eq!(guard_ops(now, &[0]), super::Coverage::default());
    let _ = guard_ops(now, &[0xff; 64]);
    let _ = guard_ops(now, &[0x00; 64]);
    let _ = guard_ops(now, &(0..=255u8).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn i4_i7_guard_ops_random_inputs_hold_all_properties(
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = guard_ops(t0(), &data);
    }

    #[test]
    fn i4_i7_guard_ops_random_ops_on_a_fixed_header(
        ops in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut data = header();
        data.extend_from_slice(&ops);
        let _ = guard_ops(t0(), &data);
    }
}
