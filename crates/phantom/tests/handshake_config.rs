//! The handshake as the runtime configures and reports it: the client's suite offer,
//! the server's embedded handshake configuration, and each connection's handshake
//! mode (full, PDK with a cached certificate, resumed with a ticket).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{identity, localhost, server, within};
use phantom::{ClientOptions, Endpoint, HandshakeMode, ServerConfig, Suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reports_the_suite_the_client_chose() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        let opts = ClientOptions {
            suites: vec![suite],
            ..ClientOptions::default()
        };
        let conn = within(10, client.connect_with(addr, &key, opts))
            .await
            .unwrap();
        let server_conn = within(5, srv.accept()).await.unwrap();
        assert_eq!(conn.suite(), suite);
        assert_eq!(server_conn.suite(), suite);
        assert_eq!(conn.stats().suite, suite);
        assert_eq!(server_conn.stats().suite, suite);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_handshake_config_limits_the_suites_it_accepts() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.handshake.suites = vec![Suite::ChaCha20Poly1305];
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    let client = Endpoint::client(localhost()).unwrap();
    // The client prefers AES but offers both: the server's only suite wins.
    let opts = ClientOptions {
        suites: vec![Suite::Aes256Gcm, Suite::ChaCha20Poly1305],
        ..ClientOptions::default()
    };
    let conn = within(10, client.connect_with(srv.local_addr(), &key, opts))
        .await
        .unwrap();
    assert_eq!(conn.suite(), Suite::ChaCha20Poly1305);
    // Offering only a suite the server refuses fails the handshake.
    let opts = ClientOptions {
        suites: vec![Suite::Aes256Gcm],
        ..ClientOptions::default()
    };
    let other = Endpoint::client(localhost()).unwrap();
    let err = within(15, other.connect_with(srv.local_addr(), &key, opts))
        .await
        .unwrap_err();
    assert!(
        matches!(err, phantom::ConnectError::Handshake(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_modes_are_full_then_pdk_then_resumed() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();

    // First contact: the certificate is verified (and cached by the endpoint).
    let first = within(10, client.connect(addr, &key)).await.unwrap();
    let first_srv = within(5, srv.accept()).await.unwrap();
    assert_eq!(first.handshake_mode(), HandshakeMode::Full);
    assert_eq!(first_srv.handshake_mode(), HandshakeMode::Full);
    assert_eq!(first.stats().handshake_mode, HandshakeMode::Full);
    let ticket = first
        .resumption_ticket()
        .expect("the server issues a ticket");

    // Same endpoint, no ticket: the cached certificate makes it a PDK handshake.
    let second = within(10, client.connect(addr, &key)).await.unwrap();
    let second_srv = within(5, srv.accept()).await.unwrap();
    assert_eq!(second.handshake_mode(), HandshakeMode::Pdk);
    assert_eq!(second_srv.handshake_mode(), HandshakeMode::Pdk);
    assert_eq!(second_srv.stats().handshake_mode, HandshakeMode::Pdk);

    // With the ticket: resumed.
    let opts = ClientOptions {
        resumption: Some(ticket),
        ..ClientOptions::default()
    };
    let third = within(10, client.connect_with(addr, &key, opts))
        .await
        .unwrap();
    let third_srv = within(5, srv.accept()).await.unwrap();
    assert_eq!(third.handshake_mode(), HandshakeMode::Resumed);
    assert_eq!(third_srv.handshake_mode(), HandshakeMode::Resumed);
    assert!(third.is_resumed());

    // A fresh endpoint has no certificate cached: full again.
    let fresh = Endpoint::client(localhost()).unwrap();
    let fourth = within(10, fresh.connect(addr, &key)).await.unwrap();
    assert_eq!(fourth.handshake_mode(), HandshakeMode::Full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_handshake_config_turns_tickets_and_early_data_off() {
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id.clone());
    cfg.handshake.ticket_lifetime = 0;
    let no_tickets = Endpoint::server(cfg, localhost()).unwrap();
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(no_tickets.local_addr(), &key))
        .await
        .unwrap();
    assert!(conn.resumption_ticket().is_none());

    let mut cfg = ServerConfig::new(id);
    cfg.handshake.max_early_data = 0;
    let no_0rtt = Endpoint::server(cfg, localhost()).unwrap();
    let addr = no_0rtt.local_addr();
    let first = within(10, client.connect(addr, &key)).await.unwrap();
    let hint = first.resumption_hint().expect("tickets are still issued");
    assert_eq!(hint.max_early_data, 0);
    let ticket = first.resumption_ticket().expect("tickets are still issued");
    // The ticket allows no early data: the client refuses to send any.
    let opts = ClientOptions {
        resumption: Some(ticket.clone()),
        early_data: Some(b"hello".to_vec()),
        ..ClientOptions::default()
    };
    let err = within(10, client.connect_with(addr, &key, opts))
        .await
        .unwrap_err();
    assert!(
        matches!(err, phantom::ConnectError::Handshake(_)),
        "{err:?}"
    );
    // Without early data the ticket still resumes.
    let opts = ClientOptions {
        resumption: Some(ticket),
        ..ClientOptions::default()
    };
    let resumed = within(10, client.connect_with(addr, &key, opts))
        .await
        .unwrap();
    assert_eq!(resumed.handshake_mode(), HandshakeMode::Resumed);
    assert!(!resumed.early_data_accepted());
}
