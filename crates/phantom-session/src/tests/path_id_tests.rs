//! Path ids are recycled: a session follows any number of address changes with a
//! bounded path table, and reusing an id never repeats a nonce (I3).

use std::collections::{BTreeSet, HashSet};

use phantom_wire::Epoch;

use super::harness::{Pair, SERVER, client_addr, open_captured, public_addr};
use super::link::LinkConfig;
use crate::{Config, Dir, Event};

/// Moves the datagrams sent since the last call into `all`.
fn note_sent(pair: &mut Pair, all: &mut Vec<(bool, Vec<u8>)>) {
    all.extend(pair.capture_sent.replace(Vec::new()).unwrap_or_default());
}

/// Opens every captured datagram of the pair built from `seed` and counts the
/// (sender, epoch, stream, sequence) nonce inputs seen twice; also returns how many
/// were seen in all.
fn count_repeated_nonces(seed: u8, all: &[(bool, Vec<u8>)]) -> (usize, usize) {
    let mut seen = HashSet::new();
    let opened = open_captured(seed, all);
    assert_eq!(opened.len(), all.len(), "every captured datagram opens");
    let repeats = opened
        .iter()
        .filter(|(client, h)| !seen.insert((*client, h.epoch.0, h.stream_id.0, h.sequence)))
        .count();
    (repeats, seen.len())
}

#[test]
fn i3_ten_thousand_migrations_reuse_path_ids_without_nonce_reuse() {
    const MIGRATIONS: u16 = 10_000;
    let mut pair = Pair::new(41, Config::default(), LinkConfig::default());
    pair.capture_sent = Some(Vec::new());
    let max_paths = Config::default().path.max_paths;
    let id = pair.client.open_stream(Dir::Bi).expect("open");
    let mut buf = [0u8; 4096];
    let (mut written, mut read) = (0usize, 0usize);
    let mut all = Vec::new();
    let mut ids_used = BTreeSet::new();
    let (mut reused, mut largest_table, mut closed) = (0u32, 0usize, 0u32);
    for i in 0..MIGRATIONS {
        // NAT rebinding: the client's public address changes, the old one is dead.
        let public = public_addr(9, 10_000 + i);
        pair.ifaces.get_mut(&client_addr(1)).expect("iface").public = public;
        written += pair.client.write(id, &i.to_le_bytes()).expect("write");
        pair.drive(10_000, |p| {
            while let Ok(Some(n)) = p.server.read(id, &mut buf) {
                if n == 0 {
                    break;
                }
                read += n;
            }
            let primary = p.server.primary_path();
            read == written
                && p.server
                    .paths()
                    .iter()
                    .any(|x| x.id == primary && x.remote == public && x.validated)
        })
        .unwrap_or_else(|e| panic!("migration {i}: {e}"));
        let primary = pair.server.primary_path();
        if !ids_used.insert(primary.0) {
            reused += 1;
        }
        largest_table = largest_table.max(pair.server.paths().len());
        note_sent(&mut pair, &mut all);
        let (c, s) = pair.events();
        closed += u32::try_from(
            c.iter()
                .chain(&s)
                .filter(|e| matches!(e, Event::Closed(_)))
                .count(),
        )
        .expect("small");
    }
    // Data flows after the last move, both ways.
    pair.request_response(7);
    note_sent(&mut pair, &mut all);
    let (repeats, datagrams) = count_repeated_nonces(41, &all);
    let s = pair.server.stats();
    eprintln!(
        "migrations {} table max {largest_table} ids used {} reused {reused} datagrams {}",
        s.migrations,
        ids_used.len(),
        datagrams
    );
    assert_eq!(s.migrations, u64::from(MIGRATIONS));
    assert_eq!(read, 2 * usize::from(MIGRATIONS));
    assert!(largest_table <= max_paths, "{largest_table}");
    // Ids were recycled: far more moves than ids.
    assert!(ids_used.len() <= 256);
    assert!(reused >= u32::from(MIGRATIONS) - 256, "{reused}");
    // I3: no (sender, epoch, stream, sequence) sealed twice, so no (path, stream,
    // sequence) either, and the sealer never refused (a refusal closes the session).
    assert_eq!(repeats, 0);
    assert_eq!(closed, 0);
    // All of it in one epoch: the sealer saw the reused ids under one key.
    assert_eq!(pair.server.epochs().0, Epoch(0));
    assert!(!pair.server.is_closed() && !pair.client.is_closed());
}

/// A client that re-probes a path (as the runtime re-probes UDP while carried over
/// TCP: abandon the path, probe it anew) more often than there are path ids.
#[test]
fn reprobing_a_path_a_thousand_times_recycles_its_id() {
    let mut pair = Pair::new(42, Config::default(), LinkConfig::default());
    pair.add_iface(client_addr(2), public_addr(3, 41000), LinkConfig::default());
    let mut ids = BTreeSet::new();
    for round in 0..1000u32 {
        let now = pair.now;
        let p = pair
            .client
            .probe_path(now, client_addr(2), SERVER)
            .unwrap_or_else(|e| panic!("probe {round}: {e}"));
        ids.insert(p.0);
        pair.drive(10_000, |x| {
            x.client.paths().iter().any(|s| s.id == p && s.validated)
        })
        .unwrap_or_else(|e| panic!("validate {round}: {e}"));
        pair.client
            .abandon_path(client_addr(2), SERVER)
            .expect("abandon");
        assert!(pair.client.paths().len() <= 2);
        let _ = pair.events();
    }
    pair.request_response(3);
    assert!(ids.len() <= 255, "{}", ids.len());
    assert!(!pair.client.is_closed() && !pair.server.is_closed());
}
