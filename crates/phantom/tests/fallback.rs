//! The TCP fallback carrier over 127.0.0.1: a relay shim between client and server
//! blocks UDP (from the start, or in the middle of a transfer, then restores it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{
    Shim, echo_one, identity, localhost, pattern, send_and_read_back, wait_until, within,
};
use phantom::{Carrier, FallbackConfig};
use phantom::{ClientOptions, Connection, Endpoint, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server on UDP and TCP, a shim in front of its UDP socket, and client options
/// with a quick fallback state machine.
async fn setup() -> (
    Endpoint,
    Shim,
    SocketAddr,
    phantom::HybridVerifyingKey,
    ClientOptions,
) {
    let (id, key) = identity();
    let srv = Endpoint::server_with_tcp(ServerConfig::new(id), localhost(), localhost()).unwrap();
    let tcp = srv.tcp_local_addr().unwrap();
    let shim = Shim::start(srv.local_addr()).await;
    let mut opts = ClientOptions {
        tcp_fallback: Some(tcp),
        connect_timeout: Duration::from_secs(15),
        ..ClientOptions::default()
    };
    opts.session.fallback = FallbackConfig {
        max_udp_ptos: 3,
        probe_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_secs(2),
        max_probe_interval: Duration::from_secs(2),
        ..FallbackConfig::default()
    };
    (srv, shim, tcp, key, opts)
}

/// Connects a new client endpoint to `srv` through `shim` and accepts the session on
/// the server: `(client endpoint, client connection, server connection)`.
async fn connect_through(
    srv: &Endpoint,
    shim: &Shim,
    key: &phantom::HybridVerifyingKey,
    opts: ClientOptions,
    secs: u64,
) -> (Endpoint, Connection, Connection) {
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(secs, client.connect_with(shim.addr(), key, opts))
        .await
        .unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    (client, conn, server_conn)
}

fn tcp_bytes(conn: &Connection, tcp: SocketAddr) -> Option<u64> {
    conn.paths()
        .iter()
        .find(|p| p.remote == tcp)
        .map(|p| p.bytes_sent)
}

fn udp_bytes(conn: &Connection, udp: SocketAddr) -> Option<u64> {
    conn.paths()
        .iter()
        .find(|p| p.remote == udp && p.validated)
        .map(|p| p.bytes_sent)
}

/// Echoes `data` through `conn`; `mid` runs once the server has seen `at` bytes.
async fn echo_with(
    conn: &Connection,
    server_conn: Connection,
    data: Vec<u8>,
    at: u64,
    mid: impl FnOnce(),
    secs: u64,
) {
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let echo = tokio::spawn(async move {
        echo_one(&server_conn, s2).await;
        server_conn
    });
    let (mut send, mut recv) = within(5, conn.open_bi()).await.unwrap();
    let len = data.len();
    let split = usize::try_from(at).unwrap().min(len);
    let expected = data.clone();
    let writer = async move {
        send.write_all(&data[..split]).await.unwrap();
        wait_until(secs, "the server to read the first part", || {
            seen.load(Ordering::Relaxed) >= at
        })
        .await;
        mid();
        send.write_all(&data[split..]).await.unwrap();
        send.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut got = Vec::with_capacity(len);
        recv.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = within(secs, async { tokio::join!(writer, reader) }).await;
    assert!(
        got == expected,
        "echo differs: {} of {} bytes",
        got.len(),
        len
    );
    drop(within(5, echo).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_blocked_from_the_start_connects_over_tcp_and_moves_4_mib_exactly() {
    let (srv, shim, tcp, key, opts) = setup().await;
    shim.set_drop(true);
    let (_client, conn, server_conn) = connect_through(&srv, &shim, &key, opts, 20).await;
    let paths = conn.paths();
    assert!(
        paths
            .iter()
            .any(|p| p.remote == tcp && p.validated && p.primary),
        "carried over TCP: {paths:?}"
    );
    echo_with(&conn, server_conn, pattern(4 << 20, 3), 0, || {}, 60).await;
    assert!(tcp_bytes(&conn, tcp).unwrap() > 4 << 20);
    assert!(udp_bytes(&conn, shim.addr()).is_none(), "UDP stays blocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_survives_udp_failing_midway_over_tcp_and_returns_to_udp() {
    let (srv, shim, tcp, key, opts) = setup().await;
    let (_client, conn, server_conn) = connect_through(&srv, &shim, &key, opts, 10).await;
    assert!(tcp_bytes(&conn, tcp).is_none(), "starts on UDP");
    let server_again = server_conn.clone();
    // 1. UDP fails in the middle of a 4 MiB echo: it completes over TCP.
    echo_with(
        &conn,
        server_conn,
        pattern(4 << 20, 5),
        1 << 20,
        || shim.set_drop(true),
        60,
    )
    .await;
    let over_tcp = tcp_bytes(&conn, tcp).expect("a TCP path");
    assert!(over_tcp > 1 << 20, "TCP carried the rest: {over_tcp} bytes");
    // 2. UDP comes back: the session returns to it and retires TCP.
    shim.set_drop(false);
    wait_until(20, "the session to return to UDP", || {
        tcp_bytes(&conn, tcp).is_none() && udp_bytes(&conn, shim.addr()).is_some()
    })
    .await;
    let before = udp_bytes(&conn, shim.addr()).unwrap();
    echo_with(&conn, server_again, pattern(1 << 20, 9), 0, || {}, 30).await;
    let after = udp_bytes(&conn, shim.addr()).unwrap();
    assert!(after - before > 1 << 20, "UDP carries data again");
    assert!(tcp_bytes(&conn, tcp).is_none(), "TCP stays retired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_a_bad_tcp_frame_closes_only_that_connection() {
    let (srv, _shim, tcp, key, _opts) = setup().await;
    // A zero length and garbage frames: the server closes this TCP connection.
    let mut bad = tokio::net::TcpStream::connect(tcp).await.unwrap();
    bad.write_all(&[0, 3, 1, 2, 3, 0, 0, 9, 9]).await.unwrap();
    let mut sink = Vec::new();
    // The server closes this connection: reading ends (EOF or a reset) instead of
    // waiting forever, and garbage gets no answer.
    let _ = within(5, bad.read_to_end(&mut sink)).await;
    assert!(sink.is_empty(), "garbage got an answer");
    // The server still serves UDP clients.
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(srv.local_addr(), &key))
        .await
        .unwrap();
    assert!(!conn.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_started_over_tcp_moves_to_udp_once_udp_works() {
    let (srv, shim, tcp, key, opts) = setup().await;
    shim.set_drop(true);
    let (_client, conn, server_conn) = connect_through(&srv, &shim, &key, opts, 20).await;
    assert!(tcp_bytes(&conn, tcp).is_some(), "started over TCP");
    shim.set_drop(false);
    wait_until(20, "the session to move to UDP", || {
        tcp_bytes(&conn, tcp).is_none() && udp_bytes(&conn, shim.addr()).is_some()
    })
    .await;
    echo_with(&conn, server_conn, pattern(1 << 20, 11), 0, || {}, 30).await;
    assert!(udp_bytes(&conn, shim.addr()).unwrap() > 1 << 20);
    assert_eq!(
        srv.session_count(),
        1,
        "the same session, carried by UDP now"
    );
}

/// The carrier each path of `conn` uses, by remote address.
fn carrier_to(conn: &Connection, remote: SocketAddr) -> Option<Carrier> {
    conn.paths_with_carrier()
        .into_iter()
        .find(|(p, _)| p.remote == remote)
        .map(|(_, c)| c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_over_tcp_share_one_server_endpoint_each_byte_exact() {
    const ENDPOINTS: usize = 3;
    const PER_ENDPOINT: usize = 2;
    let (srv, shim, tcp, key, opts) = setup().await;
    shim.set_drop(true);
    // The server echoes every stream of every session it accepts.
    let srv2 = srv.clone();
    let server = tokio::spawn(async move {
        let mut conns = Vec::new();
        for _ in 0..ENDPOINTS * PER_ENDPOINT {
            let c = within(60, srv2.accept()).await.unwrap();
            let c2 = c.clone();
            tokio::spawn(async move { echo_one(&c2, Arc::new(AtomicU64::new(0))).await });
            conns.push(c);
        }
        conns
    });
    let mut tasks = Vec::new();
    for e in 0..ENDPOINTS {
        let client = Endpoint::client(localhost()).unwrap();
        for s in 0..PER_ENDPOINT {
            let (client, key, opts, udp) = (client.clone(), key.clone(), opts.clone(), shim.addr());
            tasks.push(tokio::spawn(async move {
                let conn = within(60, client.connect_with(udp, &key, opts))
                    .await
                    .unwrap();
                let seed = u8::try_from(e * PER_ENDPOINT + s).unwrap();
                // Different sizes so that no two transfers line up.
                let data = pattern((256 << 10) + usize::from(seed) * 7919, seed);
                let (send, recv) = within(10, conn.open_bi()).await.unwrap();
                let got = send_and_read_back(send, recv, data.clone(), 60).await;
                assert!(
                    got == data,
                    "session {seed}: echo differs ({} bytes)",
                    got.len()
                );
                (client, conn)
            }));
        }
    }
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(within(120, t).await.unwrap());
    }
    let server_conns = within(10, server).await.unwrap();
    // Every session is carried by TCP only, each over a TCP connection of its own.
    let mut locals = std::collections::BTreeSet::new();
    for (_, conn) in &keep {
        let paths = conn.paths_with_carrier();
        let (p, carrier) = paths
            .iter()
            .find(|(p, _)| p.primary)
            .copied()
            .expect("a primary path");
        assert_eq!(carrier, Carrier::Tcp, "carried over TCP: {paths:?}");
        assert_eq!(p.remote, tcp);
        assert!(locals.insert(p.local), "a TCP connection per session");
        // (UDP is re-probed every 500 ms here, and never answers.)
        assert!(
            udp_bytes(conn, shim.addr()).is_none(),
            "no validated UDP path: {paths:?}"
        );
        if let Some(c) = carrier_to(conn, shim.addr()) {
            assert_eq!(c, Carrier::Udp, "the UDP probe's carrier: {paths:?}");
        }
    }
    assert_eq!(srv.session_count(), ENDPOINTS * PER_ENDPOINT);
    for c in &server_conns {
        let paths = c.paths_with_carrier();
        assert!(
            paths.iter().any(|(p, carrier)| *carrier == Carrier::Tcp
                && p.primary
                && locals.contains(&p.remote)),
            "the server sees the client's TCP connection: {paths:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_is_probed_again_only_after_the_configured_interval() {
    let (srv, shim, tcp, key, mut opts) = setup().await;
    // An interval far beyond the test: UDP coming back goes unnoticed.
    opts.session.fallback.probe_interval = Duration::from_secs(120);
    opts.session.fallback.max_probe_interval = Duration::from_secs(120);
    shim.set_drop(true);
    let (_client, conn, _server_conn) = connect_through(&srv, &shim, &key, opts, 20).await;
    assert_eq!(carrier_to(&conn, tcp), Some(Carrier::Tcp));
    shim.set_drop(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(carrier_to(&conn, tcp), Some(Carrier::Tcp), "still on TCP");
    assert!(
        udp_bytes(&conn, shim.addr()).is_none(),
        "no UDP probe before the interval: {:?}",
        conn.paths_with_carrier()
    );
}
