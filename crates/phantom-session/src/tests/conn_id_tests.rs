//! Rotating connection ids (docs/PROTOCOL.md §5.11, I11): ids are issued, retired
//! and replaced over a lossy link; each path sends with its own id; with none left
//! a new path is refused; a retired id no longer routes; the tables stay bounded.

use std::collections::BTreeSet;

use phantom_wire::{ConnId, PathId, SessionId};

use super::harness::{Pair, SERVER, client_addr, public_addr};
use super::link::LinkConfig;
use crate::{
    ACTIVE_CONN_IDS, Config, ConnIdEvent, DatagramEvent, Dir, Endpoint, Error, NO_UNUSED_CONN_ID,
    Session, SessionHandle,
};

fn lossy() -> LinkConfig {
    LinkConfig {
        loss: 0.1,
        ..LinkConfig::default()
    }
}

/// A routing table fed with a session's id events, as a runtime keeps it.
struct Router {
    ep: Endpoint,
    h: SessionHandle,
    issued: usize,
    retired: usize,
}

impl Router {
    fn new(s: &Session) -> Self {
        let mut ep = Endpoint::new();
        let h = ep.insert(SessionId([7; 32]), &s.local_conn_ids());
        Self {
            ep,
            h,
            issued: 0,
            retired: 0,
        }
    }

    fn apply(&mut self, s: &mut Session) {
        while let Some(e) = s.poll_conn_id_event() {
            match e {
                ConnIdEvent::Issued(c) => {
                    self.issued += 1;
                    self.ep.add_conn_id(self.h, c);
                }
                ConnIdEvent::Retired(c) => {
                    self.retired += 1;
                    self.ep.retire_conn_id(&c);
                }
            }
        }
    }
}

/// A short packet header carrying `id` (routing looks at nothing else).
fn packet_for(id: ConnId) -> Vec<u8> {
    let mut d = vec![0x40];
    d.extend_from_slice(id.as_bytes());
    d.resize(64, 0);
    d
}

/// The connection id of every datagram the server received from `remote`.
fn ids_seen_from(pair: &Pair, remote: std::net::SocketAddr) -> BTreeSet<Vec<u8>> {
    pair.capture
        .iter()
        .flatten()
        .filter(|c| c.to_server && c.rx.remote == remote)
        .filter_map(|c| c.data.get(1..9).map(<[u8]>::to_vec))
        .collect()
}

#[test]
fn i11_ids_are_issued_over_a_lossy_link_and_replaced_when_retired() {
    let mut pair = Pair::with_wire_conn_ids(61, Config::default(), lossy());
    let (mut rc, mut rs) = (Router::new(&pair.client), Router::new(&pair.server));
    let want = ACTIVE_CONN_IDS - 1;
    pair.drive(100_000, |p| {
        p.client.unused_peer_conn_ids() == want && p.server.unused_peer_conn_ids() == want
    })
    .unwrap();
    rc.apply(&mut pair.client);
    rs.apply(&mut pair.server);
    assert_eq!((rc.issued, rs.issued), (want, want));
    assert_eq!(rc.ep.routed_conn_ids(), ACTIVE_CONN_IDS);
    assert_eq!(rs.ep.routed_conn_ids(), ACTIVE_CONN_IDS);
    // A second path takes a fresh id of the server's; removing it retires that id
    // and the server issues a replacement.
    pair.add_iface(client_addr(2), public_addr(2, 41000), lossy());
    let now = pair.now;
    let p1 = pair.client.probe_path(now, client_addr(2), SERVER).unwrap();
    let (id0, id1) = (
        pair.client.path_conn_id(PathId(0)),
        pair.client.path_conn_id(p1),
    );
    assert_ne!(id0, id1);
    assert_eq!(pair.client.unused_peer_conn_ids(), want - 1);
    pair.drive(100_000, |p| {
        p.client.paths().iter().filter(|x| x.validated).count() == 2
    })
    .unwrap();
    pair.client.abandon_path(client_addr(2), SERVER).unwrap();
    pair.drive(100_000, |p| p.client.unused_peer_conn_ids() == want)
        .unwrap();
    rs.apply(&mut pair.server);
    assert_eq!((rs.issued, rs.retired), (want + 1, 1));
    assert_eq!(rs.ep.routed_conn_ids(), ACTIVE_CONN_IDS);
    // The retired id no longer routes; the others do.
    assert_eq!(rs.ep.route(&packet_for(id1)), DatagramEvent::Unknown);
    assert_eq!(rs.ep.route(&packet_for(id0)), DatagramEvent::Session(rs.h));
    for c in pair.server.local_conn_ids() {
        assert_eq!(rs.ep.route(&packet_for(c)), DatagramEvent::Session(rs.h));
    }
    // And a new path takes an id never used before.
    pair.add_iface(client_addr(3), public_addr(3, 42000), lossy());
    let now = pair.now;
    let p2 = pair.client.probe_path(now, client_addr(3), SERVER).unwrap();
    let id2 = pair.client.path_conn_id(p2);
    assert_eq!(BTreeSet::from([id0, id1, id2]).len(), 3);
}

#[test]
fn i11_each_path_sends_with_its_own_id_on_the_wire() {
    let mut pair = Pair::new(62, Config::default(), LinkConfig::default());
    pair.capture = Some(Vec::new());
    pair.add_iface(client_addr(2), public_addr(2, 41000), LinkConfig::default());
    let now = pair.now;
    pair.client.probe_path(now, client_addr(2), SERVER).unwrap();
    pair.drive(10_000, |p| {
        p.client.paths().iter().filter(|x| x.validated).count() == 2
            && p.server.paths().iter().filter(|x| x.validated).count() == 2
    })
    .unwrap();
    pair.client.set_scheduler(crate::SchedulerMode::Redundant);
    pair.request_response(3);
    let a = ids_seen_from(&pair, public_addr(1, 40000));
    let b = ids_seen_from(&pair, public_addr(2, 41000));
    eprintln!("path 0 ids {a:?}, path 1 ids {b:?}");
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(a.intersection(&b).count(), 0);
    // The server answers each path with an id of the client's of its own.
    let down: Vec<BTreeSet<Vec<u8>>> = [client_addr(1), client_addr(2)]
        .iter()
        .map(|l| {
            pair.capture
                .iter()
                .flatten()
                .filter(|c| !c.to_server && c.rx.local == *l)
                .filter_map(|c| c.data.get(1..9).map(<[u8]>::to_vec))
                .collect()
        })
        .collect();
    assert_eq!((down[0].len(), down[1].len()), (1, 1));
    assert_eq!(down[0].intersection(&down[1]).count(), 0);
}

#[test]
fn i11_with_no_unused_id_a_new_path_is_refused_and_the_current_one_kept() {
    let mut pair = Pair::new(63, Config::default(), LinkConfig::default());
    let now = pair.now;
    for i in 0..ACTIVE_CONN_IDS - 1 {
        let local = client_addr(2 + i as u8);
        pair.add_iface(
            local,
            public_addr(2 + i as u8, 41000),
            LinkConfig::default(),
        );
        pair.client.probe_path(now, local, SERVER).unwrap();
    }
    assert_eq!(pair.client.unused_peer_conn_ids(), 0);
    let paths = pair.client.paths().len();
    let err = pair
        .client
        .probe_path(now, client_addr(9), SERVER)
        .unwrap_err();
    assert!(matches!(err, Error::Path(NO_UNUSED_CONN_ID)), "{err:?}");
    assert_eq!(pair.client.paths().len(), paths);
    // Every path has its own id.
    let ids: BTreeSet<ConnId> = pair
        .client
        .paths()
        .iter()
        .map(|p| pair.client.path_conn_id(p.id))
        .collect();
    assert_eq!(ids.len(), ACTIVE_CONN_IDS);
    // Rebinding with no unused id keeps the path's id.
    let before = pair.client.path_conn_id(PathId(0));
    assert!(
        pair.client
            .rebind_local(client_addr(1), client_addr(8))
            .is_err()
    );
    assert_eq!(pair.client.path_conn_id(PathId(0)), before);
    // Data still flows on the current path.
    pair.request_response(5);
}

#[test]
fn i11_rebinding_switches_to_a_fresh_id_and_retires_the_old() {
    let mut pair = Pair::new(64, Config::default(), LinkConfig::default());
    pair.capture = Some(Vec::new());
    let mut rs = Router::new(&pair.server);
    rs.apply(&mut pair.server);
    pair.request_response(0);
    let old = pair.client.path_conn_id(PathId(0));
    assert_eq!(
        pair.client.rebind_local(client_addr(1), client_addr(7)),
        Ok(1)
    );
    let new = pair.client.path_conn_id(PathId(0));
    assert_ne!(old, new);
    pair.request_response(1);
    pair.drive(10_000, |p| {
        p.client.unused_peer_conn_ids() == ACTIVE_CONN_IDS - 1
    })
    .unwrap();
    rs.apply(&mut pair.server);
    assert_eq!(rs.retired, 1);
    assert_eq!(rs.ep.route(&packet_for(old)), DatagramEvent::Unknown);
    // After the switch every packet carries the new id.
    let seen = ids_seen_from(&pair, public_addr(1, 40000));
    assert!(seen.contains(new.as_bytes()) && seen.contains(old.as_bytes()));
    let order: Vec<bool> = pair
        .capture
        .iter()
        .flatten()
        .filter(|c| c.to_server)
        .filter_map(|c| c.data.get(1..9))
        .map(|i| i == new.as_bytes())
        .collect();
    let first_new = order
        .iter()
        .position(|n| *n)
        .expect("a packet with the new id");
    let old_after = order[first_new..].iter().filter(|n| !**n).count();
    assert_eq!(old_after, 0, "{order:?}");
}

#[test]
fn i11_a_reset_token_counts_only_for_ids_in_use() {
    let mut pair = Pair::new(65, Config::default(), LinkConfig::default());
    let (ck, _) = super::harness::keys(65);
    let mut dg = vec![0x4a_u8; 60];
    let tail = dg.len() - 16;
    dg[tail..].copy_from_slice(&ck.peer_reset_token);
    assert!(pair.client.is_stateless_reset(&dg));
    // Path 0 moves to another id: id0 is retired, its token no longer counts.
    pair.client
        .rebind_local(client_addr(1), client_addr(7))
        .unwrap();
    assert!(!pair.client.is_stateless_reset(&dg));
}

#[test]
fn i11_ten_thousand_migrations_keep_id_and_routing_tables_bounded() {
    const MIGRATIONS: u16 = 10_000;
    let mut pair = Pair::new(66, Config::default(), LinkConfig::default());
    let (mut rc, mut rs) = (Router::new(&pair.client), Router::new(&pair.server));
    let id = pair.client.open_stream(Dir::Bi).expect("open");
    let mut buf = [0u8; 4096];
    let (mut written, mut read) = (0usize, 0usize);
    let (mut max_routes, mut max_tables) = (0usize, (0, 0, 0, 0));
    let mut server_ids = BTreeSet::new();
    for i in 0..MIGRATIONS {
        // Every other move the client rebinds (a fresh id of the server's), else its
        // NAT does (the server then answers with a fresh id of the client's).
        if i % 2 == 0 {
            pair.client
                .rebind_local(client_addr(1), client_addr(1))
                .unwrap_or_else(|e| panic!("rebind {i}: {e}"));
        }
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
            // (Moves a round trip apart would outrun the replacement ids: the next
            // move waits for one.)
            read == written
                && p.client.unused_peer_conn_ids() > 0
                && p.server
                    .paths()
                    .iter()
                    .any(|x| x.id == primary && x.remote == public && x.validated)
        })
        .unwrap_or_else(|e| panic!("migration {i}: {e}"));
        rc.apply(&mut pair.client);
        rs.apply(&mut pair.server);
        server_ids.insert(pair.client.path_conn_id(PathId(0)));
        max_routes = max_routes
            .max(rc.ep.routed_conn_ids())
            .max(rs.ep.routed_conn_ids());
        for s in [&pair.client, &pair.server] {
            let t = s.conn_id_table_sizes();
            max_tables = (
                max_tables.0.max(t.0),
                max_tables.1.max(t.1),
                max_tables.2.max(t.2),
                max_tables.3.max(t.3),
            );
        }
    }
    pair.request_response(9);
    eprintln!(
        "routes max {max_routes}, tables max {max_tables:?}, server ids used {}, issued c/s {}/{}",
        server_ids.len(),
        rc.issued,
        rs.issued
    );
    assert_eq!(read, 2 * usize::from(MIGRATIONS));
    assert!(max_routes <= ACTIVE_CONN_IDS + 1, "{max_routes}");
    assert!(max_tables.0 <= ACTIVE_CONN_IDS, "{max_tables:?}");
    assert!(max_tables.1 <= crate::MAX_PEER_CONN_IDS, "{max_tables:?}");
    assert!(
        max_tables.2 <= Config::default().path.max_paths,
        "{max_tables:?}"
    );
    assert!(max_tables.3 <= crate::MAX_PENDING_RETIRES, "{max_tables:?}");
    // The client rebound 5,000 times: each time a new id of the server's.
    assert!(
        server_ids.len() >= usize::from(MIGRATIONS / 2),
        "{}",
        server_ids.len()
    );
    assert!(!pair.server.is_closed() && !pair.client.is_closed());
}

/// A NEW_CONN_ID that arrives again after its id was used and retired (the peer sent
/// it twice, its acknowledgement lost) does not bring the id back: the peer no longer
/// routes it.
#[test]
fn i11_a_repeated_new_conn_id_never_revives_a_retired_id() {
    let mut pair = Pair::new(67, Config::default(), LinkConfig::default());
    let used = pair.client.path_conn_id(PathId(0));
    pair.client
        .rebind_local(client_addr(1), client_addr(1))
        .unwrap();
    let seq1 = pair.client.path_conn_id(PathId(0));
    pair.client
        .rebind_local(client_addr(1), client_addr(1))
        .unwrap();
    let unused = pair.client.unused_peer_conn_ids();
    for (seq, id) in [(0, used), (1, seq1)] {
        let f = phantom_wire::Frame::NewConnId(phantom_wire::frame::NewConnId {
            seq,
            retire_prior_to: 0,
            id,
            reset_token: [1; 16],
        });
        let now = pair.now;
        pair.client.handle_frame_for_test(now, &f).unwrap();
    }
    assert_eq!(pair.client.unused_peer_conn_ids(), unused);
    assert_eq!(unused, ACTIVE_CONN_IDS - 3);
}

/// The fallback's moves (docs/PROTOCOL.md §6.4): onto a TCP path, the UDP path
/// abandoned, then back to UDP. Each carrier's path sends with an id the others never
/// used, and the abandoned ones are retired and replaced.
#[test]
fn i11_the_return_from_a_tcp_path_takes_a_fresh_id() {
    let mut pair = Pair::new(68, Config::default(), LinkConfig::default());
    let udp0 = pair.client.path_conn_id(PathId(0));
    // SwitchToTcp: a path over the TCP connection's addresses, then UDP abandoned.
    pair.add_iface(client_addr(2), public_addr(2, 41000), LinkConfig::default());
    let now = pair.now;
    let tcp = pair.client.probe_path(now, client_addr(2), SERVER).unwrap();
    let tcp_id = pair.client.path_conn_id(tcp);
    pair.drive(10_000, |p| {
        p.client.paths().iter().filter(|x| x.validated).count() == 2
    })
    .unwrap();
    pair.client.abandon_path(client_addr(1), SERVER).unwrap();
    pair.drive(10_000, |p| {
        p.client.unused_peer_conn_ids() == ACTIVE_CONN_IDS - 2
    })
    .unwrap();
    // SwitchToUdp: UDP probed again, then TCP abandoned.
    let now = pair.now;
    let udp = pair.client.probe_path(now, client_addr(1), SERVER).unwrap();
    let udp1 = pair.client.path_conn_id(udp);
    pair.drive(10_000, |p| {
        p.client.paths().iter().filter(|x| x.validated).count() == 2
    })
    .unwrap();
    pair.client.abandon_path(client_addr(2), SERVER).unwrap();
    pair.request_response(4);
    assert_eq!(BTreeSet::from([udp0, tcp_id, udp1]).len(), 3);
    pair.drive(10_000, |p| {
        p.client.unused_peer_conn_ids() == ACTIVE_CONN_IDS - 1
    })
    .unwrap();
}
