//! IPv6 end to end over real loopback sockets, and a dual-stack client endpoint
//! (bound to `[::]`, `IPV6_V6ONLY` off) reaching IPv4 and IPv6 servers alike.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;

use common::{identity, pattern, send_and_read_back, spawn_echo, within};
use phantom::{Endpoint, HybridVerifyingKey, ServerConfig};

/// A server on `addr` echoing every bidirectional stream, and its key.
fn echo_server(addr: &str) -> (Endpoint, HybridVerifyingKey) {
    let (id, key) = identity();
    let srv = Endpoint::server(ServerConfig::new(id), addr.parse().unwrap()).unwrap();
    spawn_echo(srv.clone());
    (srv, key)
}

/// Connects from `client` to `server`, echoes 100 KB and returns what came back.
async fn echo_through(client: &Endpoint, server: SocketAddr, key: &HybridVerifyingKey) -> usize {
    let conn = within(10, client.connect(server, key)).await.unwrap();
    let (s, r) = within(5, conn.open_bi()).await.unwrap();
    let data = pattern(100_000, 6);
    let back = send_and_read_back(s, r, data.clone(), 20).await;
    assert_eq!(back, data);
    conn.close(0, b"done");
    back.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_carries_a_stream_end_to_end() {
    let (srv, key) = echo_server("[::1]:0");
    let addr = srv.local_addr();
    assert!(addr.is_ipv6());
    let client = Endpoint::client("[::1]:0".parse().unwrap()).unwrap();
    assert_eq!(echo_through(&client, addr, &key).await, 100_000);
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    assert_eq!(conn.remote_address(), Some(addr));
    assert!(
        conn.paths()
            .iter()
            .all(|p| p.remote == addr && p.local.is_ipv6())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_client_reaches_an_ipv4_and_an_ipv6_server() {
    let (v4, key4) = echo_server("127.0.0.1:0");
    let (v6, key6) = echo_server("[::1]:0");
    let client = Endpoint::client("[::]:0".parse().unwrap()).unwrap();
    assert!(client.local_addr().is_ipv6());
    // The IPv4 server, through its v4-mapped address.
    assert_eq!(echo_through(&client, v4.local_addr(), &key4).await, 100_000);
    // The IPv6 server, from the same socket.
    assert_eq!(echo_through(&client, v6.local_addr(), &key6).await, 100_000);
    // The client knows the IPv4 server by its v4-mapped address.
    let conn = within(10, client.connect(v4.local_addr(), &key4))
        .await
        .unwrap();
    let mapped = conn.remote_address().unwrap();
    let SocketAddr::V6(m) = mapped else {
        panic!("a dual-stack socket knows the server by its v4-mapped address");
    };
    assert_eq!(m.ip().to_ipv4_mapped(), Some(std::net::Ipv4Addr::LOCALHOST));
    assert_eq!(m.port(), v4.local_addr().port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_socket_bound_to_a_specific_address_refuses_an_ipv4_server() {
    let (v4, key) = echo_server("127.0.0.1:0");
    let client = Endpoint::client("[::1]:0".parse().unwrap()).unwrap();
    let err = within(5, client.connect(v4.local_addr(), &key))
        .await
        .unwrap_err();
    assert!(
        matches!(err, phantom::ConnectError::BadAddress(_)),
        "{err:?}"
    );
}
