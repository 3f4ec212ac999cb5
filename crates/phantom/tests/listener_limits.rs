//! Server resource limits against hostile clients: TCP connections of the fallback
//! carrier that never complete a frame or authenticate nothing, more TCP connections
//! than the server holds (in all and from one address), and more completed sessions
//! than the accept backlog.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::time::Duration;

use common::{identity, localhost};
use phantom::{Endpoint, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True if the server closes `s` within `secs` (EOF or a reset).
async fn closed_within(s: &mut TcpStream, secs: u64) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(secs), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A slowloris client (a frame header promising 100 bytes, then one byte now and
/// then) and a silent one: before, the server held both connections — their tasks,
/// read buffers and carrier entries — for as long as the client liked (there was no
/// timeout at all). Now a connection that completes no frame within the idle timeout
/// (by default the session idle timeout) is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_tcp_connections_completing_no_frame_are_closed_after_the_idle_timeout() {
    let (_srv, tcp, _key) = common::tcp_server(|cfg| {
        cfg.session.idle_timeout = Duration::from_secs(2);
    });
    let mut slow = TcpStream::connect(tcp).await.unwrap();
    let mut silent = TcpStream::connect(tcp).await.unwrap();
    slow.write_all(&[0, 100, 1]).await.unwrap();
    let trickle = async {
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if slow.write_all(&[1]).await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    assert!(
        closed_within(&mut slow, 3).await,
        "a slowloris TCP connection is still open after 4 s"
    );
    assert!(
        closed_within(&mut silent, 3).await,
        "a silent TCP connection is still open after 7 s"
    );
}

/// A client opening many TCP connections: the server holds at most
/// `tcp.max_connections` of them (each costs a read buffer, two tasks and a file
/// descriptor); further ones are closed at once, and slots come back as connections
/// end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_tcp_connections_beyond_the_limit_are_closed_at_once() {
    let (_srv, tcp, _key) = common::tcp_server(|cfg| {
        cfg.tcp.max_connections = 4;
        cfg.tcp.idle_timeout = Some(Duration::from_secs(30));
    });
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(tcp).await.unwrap());
    }
    let mut extra = TcpStream::connect(tcp).await.unwrap();
    assert!(
        closed_within(&mut extra, 3).await,
        "a fifth TCP connection was held beyond the limit of 4"
    );
    for s in &mut held {
        assert!(
            !closed_within(s, 0).await,
            "a connection within the limit was closed"
        );
    }
    // One ends: its slot is free again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(tcp).await.unwrap();
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), again.read(&mut buf))
            .await
            .is_err(),
        "a connection within the limit was closed"
    );
}

/// Peers that complete handshakes faster than the application accepts them (or an
/// application that stopped accepting): before, every completed session waited in
/// the accept queue — and stayed in memory, kept alive by its peer — without limit.
/// Now at most `max_pending_accepts` wait; a session completing beyond that is closed
/// at once with `ACCEPT_BACKLOG_FULL`, and the waiting ones are still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_sessions_beyond_the_accept_backlog_are_closed_not_queued() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.max_pending_accepts = 2;
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let client = Endpoint::client(localhost()).unwrap();
        let conn = common::within(10, client.connect(srv.local_addr(), &key))
            .await
            .unwrap();
        conns.push((client, conn));
    }
    for (i, (_, conn)) in conns.iter().enumerate().skip(2) {
        let reason = common::within(10, conn.closed()).await;
        assert!(
            matches!(reason, phantom::CloseReason::Peer { code, .. }
                if code == phantom::CloseCode::Application(phantom::ACCEPT_BACKLOG_FULL)),
            "connection {i}: {reason:?}"
        );
    }
    let mut accepted = Vec::new();
    for _ in 0..2 {
        let c = common::within(5, srv.accept()).await.unwrap();
        assert!(!c.is_closed());
        accepted.push(c);
    }
    assert!(!conns[0].1.is_closed() && !conns[1].1.is_closed());
    // The refused sessions drain and are forgotten.
    common::wait_until(10, "the refused sessions to drain", || {
        srv.session_count() == 2
    })
    .await;
    drop(accepted);
}

/// A client that sends well-formed frames of garbage (random bytes: no session
/// authenticates them, no handshake parses them): before, every complete frame reset
/// the idle timer, so one 3-byte frame a second held the connection (its tasks, its
/// buffer, a slot of `tcp.max_connections`) for good. Now only datagrams that
/// authenticate in a session, or a few that carry handshake progress, count as use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_tcp_frames_that_authenticate_nowhere_do_not_keep_the_connection_open() {
    let (_srv, tcp, _key) = common::tcp_server(|cfg| {
        cfg.tcp.idle_timeout = Some(Duration::from_secs(1));
    });
    let mut garbage = TcpStream::connect(tcp).await.unwrap();
    let mut closed = false;
    // 5 s of a garbage frame every 200 ms; the server must close within ~1 s of idleness.
    for i in 0u8..25 {
        let frame = [0, 3, 0x40 ^ i, i, 7];
        if garbage.write_all(&frame).await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut garbage, 0).await {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        closed,
        "a TCP connection carrying a garbage frame every 200 ms is still open after 5 s \
         (idle timeout 1 s)"
    );
}

/// One address opening many TCP connections: the server holds at most
/// `tcp.max_connections_per_ip` from one IP address, so one client cannot take every
/// slot of `tcp.max_connections` from the others; another address still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_one_address_cannot_take_every_tcp_slot() {
    let (_srv, tcp, _key) = common::tcp_server(|cfg| {
        cfg.tcp.max_connections = 8;
        cfg.tcp.max_connections_per_ip = 2;
        cfg.tcp.idle_timeout = Some(Duration::from_secs(30));
    });
    let from = |ip: [u8; 4]| async move {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
        s.connect(tcp).await.unwrap()
    };
    let mut held = vec![from([127, 0, 0, 1]).await, from([127, 0, 0, 1]).await];
    let mut third = from([127, 0, 0, 1]).await;
    assert!(
        closed_within(&mut third, 3).await,
        "a third TCP connection from one address was held beyond its limit of 2"
    );
    for s in &mut held {
        assert!(
            !closed_within(s, 0).await,
            "a connection within the per-address limit was closed"
        );
    }
    let mut other = from([127, 0, 0, 2]).await;
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), other.read(&mut buf))
            .await
            .is_err(),
        "a connection from another address was refused"
    );
    // A slot of the first address comes back when one of its connections ends.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = from([127, 0, 0, 1]).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), again.read(&mut buf))
            .await
            .is_err(),
        "a freed per-address slot was not given back"
    );
}
