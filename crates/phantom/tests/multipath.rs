//! Several UDP paths per connection (`Connection::add_path`) under each scheduler
//! mode, over 127.0.0.1; a relay shim blackholes one path.
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
use std::sync::atomic::AtomicU64;

use common::{Shim, echo_one, localhost, pattern, send_and_read_back, server, wait_until, within};
use phantom::{Connection, Endpoint, SchedulerMode};

fn validated(conn: &Connection) -> usize {
    conn.paths().iter().filter(|p| p.validated).count()
}

fn bytes_from(conn: &Connection, local: SocketAddr) -> u64 {
    conn.paths()
        .iter()
        .filter(|p| p.local == local)
        .map(|p| p.bytes_sent)
        .sum()
}

/// Connects a client to `addr` and adds a second path; returns the connection, the
/// server's side of it, and the two local addresses.
async fn two_paths(
    srv: &Endpoint,
    addr: SocketAddr,
    key: &phantom::HybridVerifyingKey,
) -> (Endpoint, Connection, Connection, SocketAddr, SocketAddr) {
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let first = client.local_addr();
    let second = conn.add_path(localhost()).unwrap();
    assert_ne!(first, second);
    wait_until(10, "the second path to validate", || validated(&conn) == 2).await;
    (client, conn, server_conn, first, second)
}

async fn echo_transfer(conn: &Connection, server_conn: Connection, len: usize, secs: u64) {
    let seen = Arc::new(AtomicU64::new(0));
    let echo = tokio::spawn(async move {
        echo_one(&server_conn, seen).await;
        // Kept alive until the client has read everything.
        server_conn
    });
    let data = pattern(len, 7);
    let (send, recv) = within(5, conn.open_bi()).await.unwrap();
    let got = send_and_read_back(send, recv, data.clone(), secs).await;
    assert!(
        got == data,
        "echo differs: {} of {} bytes",
        got.len(),
        data.len()
    );
    drop(within(5, echo).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_mode_spreads_a_transfer_over_two_validated_paths() {
    let (srv, key) = server();
    let (_client, conn, server_conn, first, second) = two_paths(&srv, srv.local_addr(), &key).await;
    conn.set_scheduler(SchedulerMode::Aggregate);
    let (a0, b0) = (bytes_from(&conn, first), bytes_from(&conn, second));
    echo_transfer(&conn, server_conn, 8 << 20, 30).await;
    let (a, b) = (
        bytes_from(&conn, first) - a0,
        bytes_from(&conn, second) - b0,
    );
    assert!(
        a > 256 * 1024 && b > 256 * 1024,
        "both paths carry data: {a} and {b} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_latency_mode_works_with_two_paths() {
    let (srv, key) = server();
    let (_client, conn, server_conn, _, _) = two_paths(&srv, srv.local_addr(), &key).await;
    conn.set_scheduler(SchedulerMode::LowLatency);
    echo_transfer(&conn, server_conn, 2 << 20, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_mode_completes_with_one_path_blackholed() {
    let (srv, key) = server();
    let shim = Shim::start(srv.local_addr()).await;
    let (_client, conn, server_conn, first, second) = two_paths(&srv, shim.addr(), &key).await;
    conn.set_scheduler(SchedulerMode::Redundant);
    server_conn.set_scheduler(SchedulerMode::Redundant);
    shim.block(second, true);
    let before = bytes_from(&conn, first);
    echo_transfer(&conn, server_conn, 2 << 20, 30).await;
    assert!(bytes_from(&conn, first) - before > 2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_mode_completes_with_the_primary_path_blackholed() {
    let (srv, key) = server();
    let shim = Shim::start(srv.local_addr()).await;
    let (_client, conn, server_conn, first, second) = two_paths(&srv, shim.addr(), &key).await;
    conn.set_scheduler(SchedulerMode::Failover);
    server_conn.set_scheduler(SchedulerMode::Failover);
    shim.block(first, true);
    let before = bytes_from(&conn, second);
    echo_transfer(&conn, server_conn, 2 << 20, 30).await;
    assert!(bytes_from(&conn, second) - before > 2 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_path_rejects_an_address_of_the_wrong_family() {
    let (srv, key) = server();
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(srv.local_addr(), &key))
        .await
        .unwrap();
    let err = conn.add_path("[::1]:0".parse().unwrap()).unwrap_err();
    assert!(
        matches!(err, phantom::AddPathError::BadAddress(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i7_an_added_path_carries_no_data_until_validated() {
    let (srv, key) = server();
    let shim = Shim::start(srv.local_addr()).await;
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(shim.addr(), &key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    // The new path's datagrams never reach the server: it cannot validate.
    shim.freeze(true);
    let second = conn.add_path(localhost()).unwrap();
    conn.set_scheduler(SchedulerMode::Aggregate);
    echo_transfer(&conn, server_conn, 2 << 20, 30).await;
    let paths = conn.paths();
    let p = paths.iter().find(|p| p.local == second);
    assert!(p.is_none_or(|p| !p.validated), "{paths:?}");
    // Only path challenges (a few padded datagrams) went out on it, no stream data.
    assert!(bytes_from(&conn, second) < 8 * 1024, "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_path_socket_closes_with_its_connection() {
    let (srv, key) = server();
    let (client, conn, _server_conn, _, second) = two_paths(&srv, srv.local_addr(), &key).await;
    conn.close(0, b"done");
    drop(conn);
    within(10, client.wait_idle()).await;
    // The extra socket is released: its address can be bound again.
    wait_until(5, "the path socket to close", || {
        std::net::UdpSocket::bind(second).is_ok()
    })
    .await;
    // The endpoint itself keeps working.
    let again = within(10, client.connect(srv.local_addr(), &key))
        .await
        .unwrap();
    assert!(!again.is_closed());
}
