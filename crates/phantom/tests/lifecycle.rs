//! Connect failures, close propagation and client address change, over real UDP
//! sockets on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::time::Duration;

use common::{localhost, pattern, send_and_read_back, server, within};
use phantom::{
    AppCode, ClientOptions, CloseCode, CloseReason, ConnectError, ConnectionError, Endpoint,
    EndpointError, OpenStreamError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_a_typed_timeout() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let (_id, key) = common::identity();
    let client = Endpoint::client(localhost()).unwrap();
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(800),
        ..ClientOptions::default()
    };
    let err = within(5, client.connect_with(addr, &key, opts))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::Timeout(a) if a == addr),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_addresses_are_typed_errors() {
    let (_id, key) = common::identity();
    let client = Endpoint::client(localhost()).unwrap();
    for bad in ["0.0.0.0:4433", "127.0.0.1:0", "[::1]:4433"] {
        let err = within(5, client.connect(bad.parse().unwrap(), &key))
            .await
            .unwrap_err();
        assert!(matches!(err, ConnectError::BadAddress(_)), "{bad}: {err:?}");
    }
    assert!(matches!(
        phantom::resolve("not an address"),
        Err(EndpointError::BadAddress(_))
    ));
    assert!(matches!(
        client.accept().await,
        Err(EndpointError::NotServer)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reason_reaches_the_peer_and_fails_its_streams() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let (mut send, _recv) = within(5, conn.open_bi()).await.unwrap();
    send.write_all(b"hello").await.unwrap();
    let (_s, mut r) = within(5, server_conn.accept_bi()).await.unwrap();
    let mut hello = [0u8; 5];
    within(5, r.read_exact(&mut hello)).await.unwrap();
    assert_eq!(&hello, b"hello");
    server_conn.close(7, b"maintenance");
    let reason = within(5, conn.closed()).await;
    assert_eq!(
        reason,
        CloseReason::Peer {
            code: CloseCode::Application(AppCode(7)),
            reason: b"maintenance".to_vec()
        }
    );
    let err = send.write_all(b"more").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(matches!(
        within(5, conn.open_bi()).await,
        Err(OpenStreamError::ConnectionLost(
            ConnectionError::ApplicationClosed {
                code: AppCode(7),
                ..
            }
        ))
    ));
    // Both endpoints drain the session.
    within(10, srv.wait_idle()).await;
    within(10, client.wait_idle()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_client_address_change() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let (mut send, _recv) = within(5, conn.open_bi()).await.unwrap();
    let (_s, r) = {
        send.write_all(b"x").await.unwrap();
        within(5, server_conn.accept_bi()).await.unwrap()
    };
    let new_addr = client.rebind(localhost()).unwrap();
    let data = pattern(512 * 1024, 9);
    let expect = data.clone();
    let got = send_and_read_back(send, r, data, 20).await;
    assert_eq!(got.len(), expect.len() + 1);
    assert!(got[1..] == expect[..]);
    // The echo fits in the new address's anti-amplification allowance (3x what the
    // client sent), so it may finish before the validation does: wait for it.
    let on_new_path = || {
        server_conn
            .paths()
            .iter()
            .any(|p| p.remote == new_addr && p.validated && p.primary)
    };
    for _ in 0..100 {
        if on_new_path() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        on_new_path(),
        "server must validate and use the new address: {:?}",
        server_conn.paths()
    );
    assert!(server_conn.stats().migrations >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_the_session_at_the_peer() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let (send, recv) = within(5, conn.open_bi()).await.unwrap();
    // Streams keep the connection alive.
    drop(conn);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!server_conn.is_closed());
    drop((send, recv));
    let reason = within(5, server_conn.closed()).await;
    assert!(
        matches!(
            reason,
            CloseReason::Peer {
                code: CloseCode::Application(AppCode(0)),
                ..
            }
        ),
        "{reason:?}"
    );
    drop(client);
    within(10, srv.wait_idle()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_from_one_endpoint_get_separate_sessions() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    let (a, b, c) = within(20, async {
        tokio::join!(
            client.connect(addr, &key),
            client.connect(addr, &key),
            client.connect(addr, &key)
        )
    })
    .await;
    let ids: std::collections::BTreeSet<_> = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .map(|c| c.session_id().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(client.session_count(), 3);
    // A client completes when it sends its last flight; the server installs the session
    // when that flight arrives, so its count may lag the connects by a moment.
    within(5, async {
        while srv.session_count() < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(srv.session_count(), 3);
}

/// Every session of an endpoint runs its own timers: of 40 sessions to one server, the
/// 20 whose client sends keep-alives stay open and the 20 silent ones close on their
/// idle timeout, at both ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_forty_sessions_keeps_alive_or_times_out_on_its_own_timer() {
    const EACH: usize = 20;
    let idle = phantom::SessionConfig {
        idle_timeout: Duration::from_millis(800),
        keep_alive: None,
        ..phantom::default_session_config()
    };
    let (id, key) = common::identity();
    let mut cfg = phantom::ServerConfig::new(id);
    cfg.session = idle.clone();
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    let addr = srv.local_addr();
    let acceptor = srv.clone();
    let accepted = tokio::spawn(async move {
        let mut held = Vec::new();
        while held.len() < 2 * EACH {
            held.push(acceptor.accept().await.unwrap());
        }
        held
    });
    let lively = Endpoint::client(localhost()).unwrap();
    let silent = Endpoint::client(localhost()).unwrap();
    let mut pinging = Vec::new();
    let mut quiet = Vec::new();
    for _ in 0..EACH {
        let opts = ClientOptions {
            session: phantom::SessionConfig {
                keep_alive: Some(Duration::from_millis(150)),
                ..idle.clone()
            },
            ..ClientOptions::default()
        };
        pinging.push(
            within(10, lively.connect_with(addr, &key, opts))
                .await
                .unwrap(),
        );
        let opts = ClientOptions {
            session: idle.clone(),
            ..ClientOptions::default()
        };
        quiet.push(
            within(10, silent.connect_with(addr, &key, opts))
                .await
                .unwrap(),
        );
    }
    let held = within(10, accepted).await.unwrap();
    assert_eq!(srv.session_count(), 2 * EACH);
    for c in &quiet {
        assert_eq!(within(5, c.closed()).await, CloseReason::IdleTimeout);
    }
    // The server's silent sessions time out too (at about the same time); the
    // pinging ones outlive two more idle timeouts.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(srv.session_count(), EACH);
    assert_eq!(pinging.iter().filter(|c| c.is_closed()).count(), 0);
    assert_eq!(held.iter().filter(|c| c.is_closed()).count(), EACH);
}
