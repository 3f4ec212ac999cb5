//! Multipath failover (docs/PROTOCOL.md §5.6): how soon data flows on the surviving
//! path once a path goes dead, that a jittery but lossless path is never failed
//! over, and that a path that comes back is used again. Two paths of 10 Mbit/s and
//! 20 ms RTT each, in simulated time.

use std::time::Duration;

use super::harness::{Pair, Transfer, client_addr};
use super::link::LinkConfig;
use super::session_tests::{ten_mbit, two_path_pair};
use crate::SchedulerMode;

/// Failover must deliver on the surviving path within max(200 ms, 3 RTT).
fn failover_budget(rtt: Duration) -> Duration {
    (rtt * 3).max(Duration::from_millis(200))
}

/// Starts a bulk transfer and drives it until `bytes` were read.
fn transfer_until(pair: &mut Pair, len: u64, bytes: u64) -> Transfer {
    let mut t = Transfer::start(pair, 1, len);
    pair.drive(2_000_000, |p| {
        t.poll(p);
        t.received_total() > bytes
    })
    .unwrap();
    t
}

/// In failover mode the backup path carries no data, so every stream byte read after
/// path 0 drops everything (both directions, and what it was carrying) came over
/// path 1: the gap is measured from the cut to the first new byte the server reads.
/// The links lose nothing at random, so the cut is placed at four points of the
/// transfer (different phases of the window and of the acknowledgements).
#[test]
fn failover_delivers_on_the_surviving_path_within_max_200ms_or_3_rtt() {
    let mut gaps = Vec::new();
    for cut_after in [256_000, 384_000, 512_000, 640_000] {
        let mut pair = two_path_pair(18, SchedulerMode::Failover, ten_mbit(), ten_mbit());
        let mut t = transfer_until(&mut pair, 2 << 20, cut_after);
        let backup_before = pair.client.paths()[1].bytes_sent;
        assert!(backup_before < 10_000, "backup idle: {backup_before}");
        let rtt = pair.client.paths()[0].rtt;
        let failovers_before = pair.client.failovers();
        let down_at = pair.now;
        let read_at_cut = t.received_total();
        pair.cut_iface(client_addr(1));
        pair.drive(2_000_000, |p| {
            t.poll(p);
            t.received_total() > read_at_cut
        })
        .unwrap();
        let gap = pair.now - down_at;
        eprintln!("cut after {cut_after}: failover gap {gap:?} (srtt {rtt:?})");
        gaps.push((cut_after, gap, failover_budget(rtt)));
        assert_eq!(
            pair.client.failovers(),
            failovers_before + 1,
            "cut after {cut_after}"
        );
        pair.drive(20_000_000, |p| t.poll(p)).unwrap();
        assert_eq!(t.corrupt, 0);
        assert_eq!(t.received_total(), 2 << 20);
    }
    for (cut_after, gap, budget) in gaps {
        assert!(
            gap <= budget,
            "cut after {cut_after}: gap {gap:?} over {budget:?}"
        );
    }
}

/// A path whose delay jitters by ±30 % of its RTT (one-way 10 ms ± 3 ms each way,
/// datagrams in order) and loses nothing is never failed over during a 10 s bulk
/// transfer, neither as the only data path (failover mode) nor beside a steady one
/// (aggregate mode), by either end.
#[test]
fn a_jittery_lossless_path_is_never_failed_over_in_10_s() {
    let jittery = LinkConfig {
        jitter: Duration::from_millis(3),
        ..ten_mbit()
    };
    for (seed, mode) in [
        (51, SchedulerMode::Failover),
        (52, SchedulerMode::Aggregate),
    ] {
        let mut pair = two_path_pair(seed, mode, jittery, ten_mbit());
        let start = pair.now;
        let mut t = Transfer::start(&mut pair, 1, 1 << 30);
        pair.drive(20_000_000, |p| {
            t.poll(p);
            p.now - start >= Duration::from_secs(10)
        })
        .unwrap();
        let on_jittery = pair.client.paths()[0].bytes_sent;
        eprintln!(
            "{mode:?}: {} bytes read in 10 s, {on_jittery} sent on the jittery path",
            t.received_total()
        );
        assert_eq!(t.corrupt, 0);
        assert!(on_jittery > 4_000_000, "{mode:?}: {on_jittery}");
        assert!(t.received_total() > 8_000_000, "{mode:?}");
        assert_eq!(pair.client.failovers(), 0, "{mode:?}: client");
        assert_eq!(pair.server.failovers(), 0, "{mode:?}: server");
    }
}

/// A path failed over because it went dead is probed; once it carries packets
/// again its acknowledgement puts it back in service and the aggregate scheduler
/// fills it again.
#[test]
fn a_failed_over_path_that_comes_back_is_used_again() {
    let mut pair = two_path_pair(53, SchedulerMode::Aggregate, ten_mbit(), ten_mbit());
    let mut t = transfer_until(&mut pair, 64 << 20, 512 * 1024);
    pair.cut_iface(client_addr(1));
    let cut_at = pair.now;
    pair.drive(2_000_000, |p| {
        t.poll(p);
        p.now - cut_at >= Duration::from_secs(1)
    })
    .unwrap();
    assert_eq!(pair.client.failovers(), 1);
    let dead_sent = pair.client.paths()[0].bytes_sent;
    pair.set_iface_down(client_addr(1), false);
    let back_at = pair.now;
    pair.drive(2_000_000, |p| {
        t.poll(p);
        p.now - back_at >= Duration::from_secs(3)
    })
    .unwrap();
    let resumed = pair.client.paths()[0].bytes_sent - dead_sent;
    eprintln!("path 0 carried {resumed} bytes in the 3 s after it came back");
    assert!(
        resumed > 1_000_000,
        "path 0 carried {resumed} bytes after it came back"
    );
    assert_eq!(pair.client.failovers(), 1, "no further failover");
    assert_eq!(t.corrupt, 0);
}
