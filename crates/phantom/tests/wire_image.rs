//! What an observer of the wire sees (I11): every datagram of a session that uses two
//! paths and then rebinds is recorded by a loopback UDP relay, and the first 24 bytes
//! of the short packets of one path (or of one side of the rebind) share no frequent
//! 4-byte window with those of the other; no header byte counts up. Also: a 12-byte
//! connection id setting works end to end.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use common::{echo_one, identity, localhost, pattern, send_and_read_back, wait_until, within};
use phantom::{
    ClientOptions, ConnIdSource, Connection, Endpoint, RandomConnIds, SchedulerMode, ServerConfig,
};

/// How many leading bytes of a datagram the comparison looks at.
const PREFIX: usize = 24;

/// One recorded datagram: the client address of its path, whether it went towards
/// the server, and its bytes.
type Record = (SocketAddr, bool, Vec<u8>);

/// A recording relay: each client source address gets its own upstream socket (the
/// server sees one address per client path), and every datagram is recorded.
struct Relay {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Record>>>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Relay {
        let front = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        let addr = front.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Record>>> = Arc::default();
        let up_log = log.clone();
        tokio::spawn(async move {
            let mut ups: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                up_log.lock().unwrap().push((from, true, buf[..n].to_vec()));
                let up = match ups.get(&from) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
                        ups.insert(from, u.clone());
                        let (front, log, u2) = (front.clone(), up_log.clone(), u.clone());
                        tokio::spawn(async move {
                            let mut b = vec![0u8; 65_536];
                            while let Ok((n, _)) = u2.recv_from(&mut b).await {
                                log.lock().unwrap().push((from, false, b[..n].to_vec()));
                                let _ = front.send_to(&b[..n], from).await;
                            }
                        });
                        u
                    }
                };
                let _ = up.send_to(&buf[..n], server).await;
            }
        });
        Relay { addr, log }
    }

    /// The first [`PREFIX`] bytes of the short packets (not handshake datagrams) of
    /// client address `client` in one direction.
    fn prefixes(&self, client: SocketAddr, to_server: bool) -> Vec<Vec<u8>> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, up, d)| *c == client && *up == to_server && d[0] & 0xc0 == 0x40)
            .map(|(_, _, d)| d[..d.len().min(PREFIX)].to_vec())
            .collect()
    }
}

/// Every 4-byte window of a prefix.
fn windows(p: &[u8]) -> HashSet<[u8; 4]> {
    p.windows(4).map(|w| [w[0], w[1], w[2], w[3]]).collect()
}

/// Windows of `a` found in at least half of its packets that appear anywhere in a
/// packet of `b`.
fn frequent_windows_shared(a: &[Vec<u8>], b: &[Vec<u8>]) -> usize {
    let mut count: HashMap<[u8; 4], usize> = HashMap::new();
    for p in a {
        for w in windows(p) {
            *count.entry(w).or_default() += 1;
        }
    }
    let frequent: HashSet<[u8; 4]> = count
        .into_iter()
        .filter(|&(_, n)| 2 * n >= a.len())
        .map(|(w, _)| w)
        .collect();
    let in_b: HashSet<[u8; 4]> = b.iter().flat_map(|p| windows(p)).collect();
    frequent.intersection(&in_b).count()
}

/// The largest share (in percent) of consecutive packet pairs in which byte `i`
/// (9 ≤ i < 24) of the second is one more than in the first, over every position.
fn counting_up_percent(ps: &[Vec<u8>]) -> usize {
    (9..PREFIX)
        .map(|i| {
            let pairs: Vec<_> = ps
                .windows(2)
                .filter(|w| w[0].len() > i && w[1].len() > i)
                .collect();
            let up = pairs
                .iter()
                .filter(|w| w[1][i] == w[0][i].wrapping_add(1))
                .count();
            100 * up / pairs.len().max(1)
        })
        .max()
        .unwrap_or(0)
}

/// Echoes `len` bytes through a fresh stream of `conn` (the server echoes).
async fn echo(conn: &Connection, server_conn: &Connection, len: usize, seed: u8) {
    let seen = Arc::new(AtomicU64::new(0));
    let server_conn = server_conn.clone();
    let task = tokio::spawn(async move { echo_one(&server_conn, seen).await });
    let (send, recv) = within(5, conn.open_bi()).await.unwrap();
    let data = pattern(len, seed);
    let got = send_and_read_back(send, recv, data.clone(), 30).await;
    assert!(got == data, "echo of {len} bytes differs");
    within(5, task).await.unwrap();
}

/// Compares two groups of packets in both directions; returns a line per check.
fn compare(relay: &Relay, a: SocketAddr, b: SocketAddr, what: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for up in [true, false] {
        let (pa, pb) = (relay.prefixes(a, up), relay.prefixes(b, up));
        let dir = if up { "to server" } else { "to client" };
        assert!(
            pa.len() >= 10 && pb.len() >= 10,
            "{what} {dir}: too few packets ({}, {})",
            pa.len(),
            pb.len()
        );
        out.push((
            format!(
                "{what} {dir}: {} vs {} packets, shared frequent windows a->b",
                pa.len(),
                pb.len()
            ),
            frequent_windows_shared(&pa, &pb),
        ));
        out.push((
            format!("{what} {dir}: shared frequent windows b->a"),
            frequent_windows_shared(&pb, &pa),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i11_two_paths_and_a_rebind_share_no_cleartext_and_nothing_counts_up() {
    let (id, key) = identity();
    let srv = Endpoint::server(ServerConfig::new(id), localhost()).unwrap();
    let relay = Relay::start(srv.local_addr()).await;
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(relay.addr, &key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let first = client.local_addr();
    echo(&conn, &server_conn, 256 * 1024, 1).await;
    // A second path; both carry data.
    let second = conn.add_path(localhost()).unwrap();
    wait_until(10, "the second path to validate", || {
        conn.paths().iter().filter(|p| p.validated).count() == 2
    })
    .await;
    conn.set_scheduler(SchedulerMode::Redundant);
    echo(&conn, &server_conn, 256 * 1024, 2).await;
    // The primary socket moves.
    let third = client.rebind(localhost()).unwrap();
    echo(&conn, &server_conn, 256 * 1024, 3).await;
    wait_until(10, "the server to use the rebound address", || {
        server_conn.paths().iter().any(|p| p.primary && p.validated)
    })
    .await;
    echo(&conn, &server_conn, 128 * 1024, 4).await;
    let mut report = compare(&relay, first, second, "paths");
    report.extend(compare(&relay, first, third, "rebind"));
    let mut ups = Vec::new();
    for c in [first, second, third] {
        for up in [true, false] {
            ups.push((
                format!("{c} up={up}"),
                counting_up_percent(&relay.prefixes(c, up)),
            ));
        }
    }
    // Control: the two halves of one path's packets (one id) do share windows, so
    // the comparison sees an id that does not change.
    let a = relay.prefixes(first, true);
    let control = frequent_windows_shared(&a[..a.len() / 2], &a[a.len() / 2..]);
    assert!(control > 0, "control: {control}");
    let shared: usize = report.iter().map(|r| r.1).sum();
    let worst_up = ups.iter().map(|u| u.1).max().unwrap_or(0);
    eprintln!("{report:#?}\ncounting up (max % of pairs per position): {ups:?}");
    assert_eq!(shared, 0, "{report:#?}");
    assert!(worst_up < 10, "{ups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_byte_connection_ids_work_end_to_end() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.handshake.conn_ids = Arc::new(RandomConnIds::new(12).unwrap());
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    let relay = Relay::start(srv.local_addr()).await;
    let client = Endpoint::client(localhost()).unwrap();
    let mut opts = ClientOptions::default();
    opts.session.conn_ids = ConnIdSource {
        generator: Arc::new(RandomConnIds::new(12).unwrap()),
        reset_key: None,
    };
    let conn = within(10, client.connect_with(relay.addr, &key, opts))
        .await
        .unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    echo(&conn, &server_conn, 64 * 1024, 5).await;
    let second = conn.add_path(localhost()).unwrap();
    wait_until(10, "the second path to validate", || {
        conn.paths().iter().filter(|p| p.validated).count() == 2
    })
    .await;
    echo(&conn, &server_conn, 64 * 1024, 6).await;
    let lens: HashSet<usize> = [conn.peer_conn_id(), server_conn.peer_conn_id()]
        .into_iter()
        .flatten()
        .map(|c| c.len())
        .collect();
    assert_eq!(lens, HashSet::from([12]));
    // Each path's packets carry a 12-byte id of their own.
    let ids = |c: SocketAddr| -> HashSet<Vec<u8>> {
        relay
            .prefixes(c, true)
            .iter()
            .map(|p| p[1..13].to_vec())
            .collect()
    };
    let (a, b) = (ids(client.local_addr()), ids(second));
    assert_eq!(a.intersection(&b).count(), 0, "{a:?} {b:?}");
}
