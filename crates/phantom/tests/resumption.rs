//! 0-RTT resumption, the certificate cache, unidirectional streams and datagrams over
//! real loopback sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{localhost, pattern, send_and_read_back, server, spawn_echo, within};
use phantom::{ClientOptions, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn i10_resumed_connection_carries_early_stream_and_then_the_rest_byte_exact() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();

    // First contact: a full handshake, a ticket, and a cached certificate.
    let first = within(10, client.connect(addr, &key)).await.unwrap();
    assert!(!first.is_resumed());
    let (s, r) = first.open_bi().await.unwrap();
    assert_eq!(
        send_and_read_back(s, r, b"warm".to_vec(), 10).await,
        b"warm"
    );
    let hint = first.resumption_hint().expect("the server issues a ticket");
    assert!(hint.max_early_data > 0);
    let ticket = first.resumption_ticket().expect("ticket");
    assert!(
        first.resumption_ticket().is_none(),
        "a ticket is taken once"
    );
    first.close(0, b"done");

    // Resumption with 0-RTT: the request's first bytes travel in the ClientHello.
    let head = b"GET /file HTTP/0.9\r\n".to_vec();
    let options = ClientOptions {
        resumption: Some(ticket),
        early_data: Some(head.clone()),
        ..ClientOptions::default()
    };
    let second = within(10, client.connect_with(addr, &key, options))
        .await
        .unwrap();
    assert!(second.is_resumed());
    assert!(second.early_data_accepted());
    let (mut send, mut recv) = second.take_early_stream().expect("early stream");
    assert!(second.take_early_stream().is_none());
    let tail = pattern(300_000, 9);
    let reader = async move {
        let mut got = Vec::new();
        recv.read_to_end(&mut got).await.unwrap();
        got
    };
    let writer = async move {
        send.write_all(&tail).await.unwrap();
        send.shutdown().await.unwrap();
        tail
    };
    let (got, tail) = within(20, async { tokio::join!(reader, writer) }).await;
    let mut expected = head;
    expected.extend_from_slice(&tail);
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "echo differs from the early + 1-RTT bytes");
}

#[tokio::test]
async fn early_data_without_a_ticket_is_sent_as_an_ordinary_first_stream() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();
    let options = ClientOptions {
        early_data: Some(b"hello".to_vec()),
        ..ClientOptions::default()
    };
    let conn = within(10, client.connect_with(addr, &key, options))
        .await
        .unwrap();
    assert!(!conn.is_resumed() && !conn.early_data_accepted());
    let (mut send, mut recv) = conn.take_early_stream().unwrap();
    send.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(10, recv.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"hello");
}

#[tokio::test]
async fn unidirectional_streams_and_datagrams_reach_the_peer() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    let accept = tokio::spawn(async move {
        let conn = srv.accept().await.unwrap();
        let mut uni = conn.accept_uni().await.unwrap();
        let mut got = Vec::new();
        uni.read_to_end(&mut got).await.unwrap();
        let dgram = conn.read_datagram().await.unwrap();
        conn.send_datagram(&dgram).unwrap();
        // Keep the connection until the client has its answer.
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        (got, dgram)
    });
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let mut uni = conn.open_uni().await.unwrap();
    let data = pattern(200_000, 3);
    uni.write_all(&data).await.unwrap();
    uni.shutdown().await.unwrap();
    // Datagrams are unreliable: re-send until the echo comes back (loopback, bounded).
    let echoed = within(10, async {
        loop {
            conn.send_datagram(b"ping-datagram").unwrap();
            if let Ok(Ok(d)) =
                tokio::time::timeout(Duration::from_millis(200), conn.read_datagram()).await
            {
                break d;
            }
        }
    })
    .await;
    assert_eq!(echoed, b"ping-datagram");
    conn.close(0, b"bye");
    let (got, dgram) = within(10, accept).await.unwrap();
    assert!(got == data, "uni stream differs");
    assert_eq!(dgram, b"ping-datagram");
}

#[tokio::test]
async fn back_to_back_connects_use_the_cached_certificate_and_all_succeed() {
    // The first connect verifies the certificate (two flights); later ones are 1-RTT
    // PDK handshakes whose ClientFinished must go out at once, or the next handshake
    // from the same address would meet the previous one still half-open on the server.
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();
    let mut conns = Vec::new();
    for i in 0..4u8 {
        let conn = within(10, client.connect(addr, &key)).await.unwrap();
        let (s, r) = conn.open_bi().await.unwrap();
        assert_eq!(
            send_and_read_back(s, r, vec![i; 1000], 10).await,
            vec![i; 1000]
        );
        conns.push(conn);
    }
    assert_eq!(client.session_count(), 4);
}

/// The server rotates its ticket key on a timer (`ServerConfig::handshake.key_rotation`, here
/// 2 s): a ticket used at once resumes; one used 4.5 s after it was issued (at least
/// two rotations later) no longer does, and the connection falls back to a full
/// handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_resumes_after_one_key_rotation_but_not_after_two() {
    let (id, key) = common::identity();
    let mut cfg = phantom::ServerConfig::new(id);
    cfg.handshake.key_rotation = Duration::from_secs(2);
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    let addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();
    let ticket = |conn: &phantom::Connection| conn.resumption_ticket().expect("ticket");
    let first = within(10, client.connect(addr, &key)).await.unwrap();
    let t1 = ticket(&first);
    first.close(0, b"done");
    let second = within(10, client.connect(addr, &key)).await.unwrap();
    let t_late = ticket(&second);
    second.close(0, b"done");
    let resumed = async |t| {
        let options = ClientOptions {
            resumption: Some(t),
            ..ClientOptions::default()
        };
        let c = within(10, client.connect_with(addr, &key, options))
            .await
            .unwrap();
        let r = c.is_resumed();
        c.close(0, b"done");
        r
    };
    assert!(
        resumed(t1).await,
        "at most one rotation since it was issued"
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(!resumed(t_late).await, "two rotations since it was issued");
}
