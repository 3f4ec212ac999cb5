//! Two server endpoints sharing a fleet key over real loopback sockets: a ticket from
//! one resumes on the other, and a client redirected from one to the other is reset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::time::Duration;

use common::{Shim, identity, localhost, spawn_echo, within};
use phantom::{
    ClientOptions, ConnectionError, Endpoint, FleetKey, ResumptionTicket, ServerConfig,
    ServerIdentity,
};
use phantom_handshake::ResetKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A member of the fleet of `key`, whose own configured reset key (`own_reset`) the
/// fleet's replaces.
fn member(id: &ServerIdentity, key: &FleetKey, own_reset: u8) -> Endpoint {
    let mut cfg = ServerConfig::new(id.clone()).with_fleet_key(key.clone());
    cfg.handshake.reset_key = ResetKey::from_bytes([own_reset; 32]);
    assert!(cfg.fleet_key().is_some());
    Endpoint::server(cfg, localhost()).unwrap()
}

/// Connects to `addr` resuming `ticket` with early data `head`, checks that the early
/// stream's bytes come back, and returns (resumed, early data accepted, the new ticket).
async fn resume_echo(
    client: &Endpoint,
    addr: std::net::SocketAddr,
    key: &phantom::HybridVerifyingKey,
    ticket: ResumptionTicket,
    head: &[u8],
) -> (bool, bool, ResumptionTicket) {
    let options = ClientOptions {
        resumption: Some(ticket),
        early_data: Some(head.to_vec()),
        ..ClientOptions::default()
    };
    let conn = within(10, client.connect_with(addr, key, options))
        .await
        .unwrap();
    let (mut send, mut recv) = conn.take_early_stream().expect("early stream");
    send.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(10, recv.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, head);
    let out = (
        conn.is_resumed(),
        conn.early_data_accepted(),
        conn.resumption_ticket().expect("ticket"),
    );
    conn.close(0, b"done");
    out
}

/// A's ticket resumes on B, without 0-RTT (the early bytes arrive one round trip later
/// as ordinary data); B's ticket resumes on A; a server with the same identity but no
/// fleet key cannot open the fleet's tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i10_fleet_member_resumes_a_ticket_without_early_data_over_udp() {
    let (id, vk) = identity();
    let fleet = FleetKey::generate(&mut rand::rng());
    let a = member(&id, &fleet, 1);
    let b = member(&id, &fleet, 2);
    let lone = Endpoint::server(ServerConfig::new(id.clone()), localhost()).unwrap();
    let (a_addr, b_addr, lone_addr) = (a.local_addr(), b.local_addr(), lone.local_addr());
    spawn_echo(a);
    spawn_echo(b);
    spawn_echo(lone);
    let client = Endpoint::client(localhost()).unwrap();

    let first = within(10, client.connect(a_addr, &vk)).await.unwrap();
    assert!(!first.is_resumed());
    let from_a = first.resumption_ticket().expect("ticket");
    first.close(0, b"done");

    let (resumed, early, from_b) = resume_echo(&client, b_addr, &vk, from_a, b"GET /b").await;
    assert!(resumed, "A's ticket resumes on B");
    assert!(!early, "B refuses the early data of A's ticket");
    let (resumed, early, from_a) = resume_echo(&client, a_addr, &vk, from_b, b"GET /a").await;
    assert!(resumed, "B's ticket resumes on A");
    assert!(!early, "A refuses the early data of B's ticket");
    let (resumed, early, _) = resume_echo(&client, lone_addr, &vk, from_a, b"GET /c").await;
    assert!(!resumed && !early, "no fleet key: the ticket does not open");
}

/// A client talks to member A through a relay; the relay switches to member B (a load
/// balancer's change of mind). B never saw the session, so it answers the client's next
/// packet with a stateless reset under the fleet's reset key (each member's own
/// configured reset key differs and is replaced), and the client's session closes within
/// one second with `ConnectionError::StatelessReset`, as a restarted server's does
/// (stateless_reset.rs), instead of waiting out its idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_member_resets_a_client_redirected_from_another_member_within_one_second() {
    let (id, vk) = identity();
    let fleet = FleetKey::generate(&mut rand::rng());
    let a = member(&id, &fleet, 1);
    let b = member(&id, &fleet, 2);
    let shim = Shim::start(a.local_addr()).await;
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(shim.addr(), &vk)).await.unwrap();
    let _a_conn = within(5, a.accept()).await.unwrap();

    shim.retarget(b.local_addr());
    let start = phantom::now();
    let (mut send, _recv) = within(5, conn.open_bi()).await.unwrap();
    let _ = send.write_all(b"after the switch").await;
    let reason = within(5, conn.closed()).await;
    let took = start.elapsed();
    eprintln!("fleet reset after {} us", took.as_micros());
    assert_eq!(reason, phantom::CloseReason::Reset, "{reason:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(matches!(
        conn.accept_bi().await,
        Err(ConnectionError::StatelessReset)
    ));
    assert_eq!(b.session_count(), 0);
    assert_eq!(a.session_count(), 1);
}
