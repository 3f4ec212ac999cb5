//! Bulk transfers: the congestion window grows while the sender keeps its buffer full
//! (application-limited marking), and a two-path upload survives a path that fails
//! towards the client.

use std::time::Duration;

use super::harness::Pair;
use super::link::LinkConfig;
use crate::Config;

/// A bulk sender that keeps its send buffer full is never application-limited: with
/// NewReno and CUBIC the window grows well past the initial one on a clean link
/// (the session's application-limited marking must not fire between the
/// application's writes while the window is in use).
#[test]
fn loss_based_windows_grow_during_a_bulk_transfer() {
    use super::harness::Transfer;
    for alg in [
        phantom_congestion::Algorithm::NewReno,
        phantom_congestion::Algorithm::Cubic,
    ] {
        let cfg = Config {
            congestion: alg,
            ..Config::default()
        };
        let link = LinkConfig {
            rate_bps: 50_000_000,
            delay: Duration::from_millis(20),
            queue_bytes: 1 << 20,
            ..LinkConfig::default()
        };
        let mut pair = Pair::new(73, cfg, link);
        let initial = pair.client.paths()[0].congestion.cwnd;
        let mut t = Transfer::start(&mut pair, 1, 4 << 20);
        let mut max_cwnd = 0;
        pair.drive(400_000, |p| {
            max_cwnd = max_cwnd.max(p.client.paths()[0].congestion.cwnd);
            t.poll(p)
        })
        .unwrap();
        assert!(
            max_cwnd >= 8 * initial,
            "{alg}: window peaked at {max_cwnd} bytes (initial {initial})"
        );
    }
}

/// A two-path upload whose second path loses its server -> client direction midway
/// (the client's packets still arrive on it, and the client, whose packets there are
/// acknowledged through the other path, may keep using it): the server's
/// acknowledgements and credit must keep reaching the client, so the upload
/// finishes in about the time one path needs.
#[test]
fn upload_survives_a_path_that_only_fails_towards_the_client() {
    use super::harness::{Transfer, client_addr};
    use crate::SchedulerMode;
    let link = LinkConfig {
        rate_bps: 10_000_000,
        delay: Duration::from_millis(10),
        queue_bytes: 128 * 1024,
        ..LinkConfig::default()
    };
    let len = 4u64 << 20;
    let mut times = Vec::new();
    for cut in [false, true] {
        let mut pair =
            super::session_tests::two_path_pair(74, SchedulerMode::Aggregate, link, link);
        let start = pair.now;
        let mut t = Transfer::start(&mut pair, 1, len);
        let mut is_cut = false;
        pair.drive(2_000_000, |p| {
            if cut && !is_cut && t.received_total() > len / 8 {
                p.ifaces.get_mut(&client_addr(2)).unwrap().down.cfg.down = true;
                is_cut = true;
            }
            t.poll(p)
        })
        .unwrap();
        assert_eq!(t.received_total(), len);
        times.push(pair.now - start);
    }
    eprintln!(
        "upload: two paths {:?}, one path cut towards the client {:?}",
        times[0], times[1]
    );
    assert!(
        times[1] <= times[0] * 3,
        "two paths {:?}, one cut towards the client {:?}",
        times[0],
        times[1]
    );
}
