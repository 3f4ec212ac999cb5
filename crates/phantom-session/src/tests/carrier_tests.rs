//! `Session::abandon_path`: the runtime closing a path's carrier (a TCP connection, a
//! socket) never loses stream data.

use std::time::Duration;

use super::harness::{Pair, SERVER, Transfer, client_addr, public_addr};
use super::link::LinkConfig;
use crate::{Config, Error};

#[test]
fn abandoning_a_path_mid_transfer_loses_no_stream_data() {
    let mut pair = Pair::new(41, Config::default(), LinkConfig::default());
    pair.add_iface(client_addr(2), public_addr(3, 41000), LinkConfig::default());
    let now = pair.now;
    pair.client.probe_path(now, client_addr(2), SERVER).unwrap();
    pair.drive(10_000, |p| {
        p.client.paths().iter().filter(|x| x.validated).count() == 2
    })
    .unwrap();
    pair.client.set_scheduler(crate::SchedulerMode::Aggregate);
    let len = 2u64 << 20;
    let mut t = Transfer::start(&mut pair, 1, len);
    // Let data flow on both paths, then drop the first one (the primary).
    pair.drive(100_000, |p| {
        t.poll(p);
        p.client.paths().iter().all(|x| x.bytes_sent > 64 * 1024)
    })
    .unwrap();
    let first = pair.client.paths()[0];
    pair.client.abandon_path(first.local, first.remote).unwrap();
    assert_eq!(pair.client.paths().len(), 1);
    assert!(
        pair.client.paths()[0].primary,
        "the other path became primary"
    );
    // The last path cannot be abandoned.
    let last = pair.client.paths()[0];
    assert!(matches!(
        pair.client.abandon_path(last.local, last.remote),
        Err(Error::Path(_))
    ));
    pair.drive(2_000_000, |p| t.poll(p)).unwrap();
    assert_eq!(t.corrupt, 0);
    assert_eq!(t.received_total(), len);
    assert!(pair.elapsed() < Duration::from_secs(60));
}
