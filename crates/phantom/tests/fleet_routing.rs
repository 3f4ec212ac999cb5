//! Fleet members behind a stand-in for a layer-4 balancer, over real loopback sockets:
//! every connection id a member issues decodes to its server id under the fleet's
//! routing key, and a retry token issued by one member is accepted by another.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{identity, localhost, spawn_echo, within};
use phantom::{Endpoint, FleetKey, RoutableConnIds, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// A one-client UDP relay standing in for a balancer: it forwards the client's
/// datagrams to `first` and records them; with `then`, it forwards them to `then`
/// once `first` has answered once (the balancer's choice changes after the server's
/// first datagram, e.g. a Retry).
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(first: SocketAddr, then: Option<SocketAddr>) -> Relay {
        let front = Arc::new(UdpSocket::bind(localhost()).await.unwrap());
        let addr = front.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let up = Arc::new(UdpSocket::bind(localhost()).await.unwrap());
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (f2, u2, c2, a2) = (front.clone(), up.clone(), client.clone(), answered.clone());
        // Server -> client: whatever the upstream socket receives goes to the client.
        let back = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                a2.store(true, std::sync::atomic::Ordering::Relaxed);
                let to = *c2.lock().unwrap();
                if let Some(to) = to {
                    let _ = f2.send_to(&buf[..n], to).await;
                }
            }
        });
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let _back = back;
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                record.lock().unwrap().push(buf[..n].to_vec());
                let to = match then {
                    Some(t) if answered.load(std::sync::atomic::Ordering::Relaxed) => t,
                    _ => first,
                };
                let _ = up.send_to(&buf[..n], to).await;
            }
        });
        Relay { addr, seen, task }
    }

    fn datagrams(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `len` bytes on a new stream of `conn` and checks that they come back.
async fn echo(conn: &phantom::Connection, len: usize, seed: u8) {
    let data = common::pattern(len, seed);
    let (mut send, mut recv) = within(5, conn.open_bi()).await.unwrap();
    send.write_all(&data).await.unwrap();
    send.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(10, recv.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, data);
}

/// Two members with server ids 0x01 and 0x0203 (the second with two worker sockets, so
/// its ids are steered too): every short packet a client sends to either, across a
/// rebind of the client, carries an id from which the balancer's decoder, holding only
/// the fleet's routing key and lengths, reads that member's server id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_a_fleet_member_issues_decodes_to_its_server_id() {
    let (id, vk) = identity();
    let fleet = FleetKey::generate(&mut rand::rng());
    for (server_id, workers) in [(vec![0x01u8], 1usize), (vec![0x02, 0x03], 2)] {
        // The balancer knows the fleet's id length, server-id length and routing key.
        let decoder = RoutableConnIds::encrypted(
            8,
            0,
            &vec![0xff; server_id.len()],
            fleet.routing_key().as_bytes(),
        )
        .unwrap();
        let mut cfg = ServerConfig::new(id.clone())
            .with_fleet_key(fleet.clone())
            .with_server_id(&server_id, 0)
            .unwrap();
        cfg.workers = workers;
        let server = Endpoint::server(cfg, localhost()).unwrap();
        let relay = Relay::start(server.local_addr(), None).await;
        spawn_echo(server);
        let client = Endpoint::client(localhost()).unwrap();
        let conn = within(10, client.connect(relay.addr, &vk)).await.unwrap();
        echo(&conn, 200_000, 1).await;
        client.rebind(localhost()).unwrap();
        echo(&conn, 200_000, 2).await;
        conn.close(0, b"done");

        let short: Vec<Vec<u8>> = relay
            .datagrams()
            .into_iter()
            .filter(|d| d.len() > 9 && d[0] & 0xc0 == 0x40)
            .collect();
        let ids: std::collections::HashSet<&[u8]> = short.iter().map(|d| &d[1..9]).collect();
        let wrong = short
            .iter()
            .filter(|d| {
                decoder
                    .server_id_of(&d[1..9])
                    .map(|s| s.as_bytes().to_vec())
                    != Some(server_id.clone())
            })
            .count();
        eprintln!(
            "server id {server_id:02x?}: {} short packets, {} distinct ids, {wrong} not routed to it",
            short.len(),
            ids.len()
        );
        assert!(short.len() > 50, "{} short packets", short.len());
        assert!(
            ids.len() >= 2,
            "the rebind moved to a fresh id: {} ids",
            ids.len()
        );
        assert_eq!(wrong, 0);
    }
}

/// Both members require a retry token from every client. The relay sends the client's
/// first flight to A, which answers with a Retry, and everything after it to B: B
/// accepts A's token (the client follows one Retry only, so a refusal would leave it
/// without a connection) and the session works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_token_from_one_fleet_member_is_accepted_by_another() {
    let (id, vk) = identity();
    let fleet = FleetKey::generate(&mut rand::rng());
    let member = || {
        let mut cfg = ServerConfig::new(id.clone()).with_fleet_key(fleet.clone());
        cfg.handshake.require_retry = true;
        cfg.workers = 1;
        Endpoint::server(cfg, localhost()).unwrap()
    };
    let (a, b) = (member(), member());
    let relay = Relay::start(a.local_addr(), Some(b.local_addr())).await;
    spawn_echo(b.clone());
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(relay.addr, &vk)).await.unwrap();
    echo(&conn, 10_000, 3).await;
    assert_eq!(a.session_count(), 0, "A only sent the Retry");
    assert_eq!(b.session_count(), 1, "B holds the session");

    // Control: a server outside the fleet refuses A's token, so the client, which
    // follows one Retry only, never connects.
    let lone = {
        let mut cfg = ServerConfig::new(id.clone());
        cfg.handshake.require_retry = true;
        cfg.workers = 1;
        Endpoint::server(cfg, localhost()).unwrap()
    };
    let a2 = member();
    let relay = Relay::start(a2.local_addr(), Some(lone.local_addr())).await;
    let client = Endpoint::client(localhost()).unwrap();
    let options = phantom::ClientOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..phantom::ClientOptions::default()
    };
    let refused = within(10, client.connect_with(relay.addr, &vk, options)).await;
    assert!(
        refused.is_err(),
        "a token from outside the fleet was accepted"
    );
    assert_eq!(lone.session_count(), 0);
}
