//! Server endpoints with several workers: reuseport sockets steered by connection id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use common::{identity, localhost, pattern, within};
use phantom::{Endpoint, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SESSIONS: usize = 200;
const WORKERS: usize = 4;
const HALF: usize = 32 * 1024;

/// 200 clients connect to a 4-worker server at once; each moves to a new socket
/// (`Endpoint::rebind`) halfway through sending 64 KiB, which the server echoes. Every
/// echo is byte-exact, every worker took sessions, the sessions add up to 200, and no
/// worker received a short packet for an id it does not hold: no session's packets
/// reached another worker, before or after its client's address changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_keep_200_migrating_sessions_on_their_workers() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.workers = WORKERS;
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    assert_eq!(
        srv.workers(),
        WORKERS,
        "the kernel refused reuseport steering"
    );
    let addr = srv.local_addr();

    // The server echoes the first stream of each session.
    let acceptor = srv.clone();
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..SESSIONS {
            let conn = acceptor.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut send, mut recv) = conn.accept_bi().await.unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = recv.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    send.write_all(&buf[..n]).await.unwrap();
                }
                send.shutdown().await.unwrap();
                conn
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });

    let key = Arc::new(key);
    let mut clients = Vec::new();
    for i in 0..SESSIONS {
        let key = Arc::clone(&key);
        clients.push(tokio::spawn(async move {
            let ep = Endpoint::client(localhost()).unwrap();
            let conn = ep.connect(addr, &key).await.unwrap();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            let data = pattern(2 * HALF, i as u8);
            let reader = async move {
                let mut got = Vec::new();
                recv.read_to_end(&mut got).await.unwrap();
                got
            };
            let writer = async {
                send.write_all(&data[..HALF]).await.unwrap();
                let before = ep.local_addr();
                let after = ep.rebind(localhost()).unwrap();
                assert_ne!(before, after);
                send.write_all(&data[HALF..]).await.unwrap();
                send.shutdown().await.unwrap();
            };
            let (got, ()) = tokio::join!(reader, writer);
            (got == data, got.len(), ep, conn)
        }));
    }
    let results = within(180, async {
        let mut out = Vec::new();
        for c in clients {
            out.push(c.await.unwrap());
        }
        out
    })
    .await;
    let exact = results.iter().filter(|(ok, ..)| *ok).count();
    let bytes: usize = results.iter().map(|(_, n, ..)| n).sum();
    assert_eq!((exact, bytes), (SESSIONS, SESSIONS * 2 * HALF));

    // Each client read its whole echo, the second half of it at its new address: the
    // server validated that address and moved the session there.
    let served = within(30, server).await.unwrap();
    let migrated = served.iter().filter(|c| c.stats().migrations >= 1).count();
    assert_eq!(migrated, SESSIONS);

    // Every session is still open: nothing was dropped as an unknown id anywhere.
    let stats = srv.worker_stats();
    assert_eq!(stats.len(), WORKERS);
    eprintln!(
        "sessions per worker {:?}",
        stats.iter().map(|s| s.sessions).collect::<Vec<_>>()
    );
    let sessions: Vec<u64> = stats.iter().map(|s| s.sessions).collect();
    let unknown: Vec<u64> = stats.iter().map(|s| s.unknown_id_datagrams).collect();
    assert_eq!(sessions.iter().sum::<u64>(), SESSIONS as u64, "{stats:?}");
    assert!(sessions.iter().all(|n| *n > 0), "{stats:?}");
    assert_eq!(unknown, vec![0; WORKERS], "{stats:?}");
    assert_eq!(srv.session_count(), SESSIONS);
    drop(results);
    drop(served);
    srv.close(0u64, b"done");
    within(20, srv.wait_idle()).await;
}

/// One worker behaves as before: one socket, and its counters are the endpoint's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_is_a_single_socket_endpoint() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.workers = 1;
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    assert_eq!(srv.workers(), 1);
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(srv.local_addr(), &key))
        .await
        .unwrap();
    let _server_conn = within(5, srv.accept()).await.unwrap();
    let stats = srv.worker_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].sessions, stats[0].unknown_id_datagrams), (1, 0));
    drop(conn);
}

/// A server with a TCP listener keeps one worker (the TCP carrier stays single), and
/// a multi-worker server refuses to connect out (answers would reach any worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_servers_keep_one_worker_and_worker_groups_do_not_connect_out() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.workers = 3;
    let tcp_srv = Endpoint::server_with_tcp(cfg.clone(), localhost(), localhost()).unwrap();
    assert_eq!(tcp_srv.workers(), 1);
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    assert_eq!(srv.workers(), 3);
    let err = srv.connect(tcp_srv.local_addr(), &key).await.unwrap_err();
    assert!(
        matches!(err, phantom::ConnectError::SeveralWorkers(3)),
        "{err:?}"
    );
    assert!(srv.rebind(localhost()).is_err());
}

/// Resuming from new client addresses on a 2-worker server: whichever worker the
/// kernel hashes each ClientHello to, the connection is established and its early
/// stream arrives byte-exact (resumed with 0-RTT at the ticket's worker, a full
/// handshake and the 1-RTT copy elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumptions_from_new_addresses_connect_on_any_worker() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.workers = 2;
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    assert_eq!(srv.workers(), 2);
    let addr = srv.local_addr();
    let acceptor = srv.clone();
    let server = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..9 {
            let conn = acceptor.accept().await.unwrap();
            let (_send, mut recv) = conn.accept_bi().await.unwrap();
            let mut data = Vec::new();
            recv.read_to_end(&mut data).await.unwrap();
            got.push(data);
        }
        // Accepted in the order the workers finished them: compare as a set.
        got.sort();
        got
    });
    let first = Endpoint::client(localhost()).unwrap();
    let conn = within(10, first.connect(addr, &key)).await.unwrap();
    let (mut s, _r) = conn.open_bi().await.unwrap();
    s.write_all(b"first").await.unwrap();
    s.shutdown().await.unwrap();
    let mut tickets = Vec::new();
    // One ticket per resumption: a ticket is taken once; each new connection gives one.
    tickets.push(conn.resumption_ticket().expect("ticket"));
    let mut resumed = 0;
    let mut keep = Vec::new();
    for i in 0..8u8 {
        let client = Endpoint::client(localhost()).unwrap();
        let options = phantom::ClientOptions {
            resumption: tickets.pop(),
            early_data: Some(vec![i; 100]),
            ..phantom::ClientOptions::default()
        };
        let c = within(10, client.connect_with(addr, &key, options))
            .await
            .unwrap();
        resumed += usize::from(c.is_resumed());
        let (mut send, _recv) = c.take_early_stream().expect("early stream");
        send.shutdown().await.unwrap();
        if let Some(t) = c.resumption_ticket() {
            tickets.push(t);
        }
        // Kept until the server has read every stream.
        keep.push((c, client));
    }
    let got = within(20, server).await.unwrap();
    let mut want: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 100]).collect();
    want.push(b"first".to_vec());
    want.sort();
    assert_eq!(got, want);
    eprintln!("resumed {resumed} of 8 on 2 workers");
    drop((keep, conn));
}
