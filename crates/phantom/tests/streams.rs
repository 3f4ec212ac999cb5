//! End-to-end stream tests over real UDP sockets on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use common::{localhost, pattern, send_and_read_back, server, within};
use phantom::{ConnectError, Endpoint, StreamId};
use tokio::io::AsyncWriteExt;

/// Server task: echo every stream of every connection back.
fn spawn_echo(ep: Endpoint) {
    tokio::spawn(async move {
        while let Ok(conn) = ep.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut recv, &mut send).await;
                        let _ = send.shutdown().await;
                    });
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_on_several_streams() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..5u8 {
        let (send, recv) = within(5, conn.open_bi()).await.unwrap();
        let data = pattern(10_000 + usize::from(i) * 7_001, i);
        tasks.push(tokio::spawn(async move {
            let expect = data.clone();
            let got = send_and_read_back(send, recv, data, 20).await;
            assert_eq!(got, expect, "stream {i} echoed wrong bytes");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = conn.stats();
    assert!(stats.packets_sent > 0 && stats.packets_received > 0);
    conn.close(0, b"done");
    let reason = within(5, conn.closed()).await;
    assert!(matches!(
        reason,
        phantom::CloseReason::Local {
            code: phantom::AppCode(0),
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_key_is_a_typed_error() {
    let (srv, _key) = server();
    let addr = srv.local_addr();
    let (_other_id, other_key) = common::identity();
    let client = Endpoint::client(localhost()).unwrap();
    let err = within(10, client.connect(addr, &other_key))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::WrongServerKey), "{err:?}");
    drop(srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_of_4_mib_exceeds_initial_stream_credit_both_ways() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let (send, recv) = within(5, conn.open_bi()).await.unwrap();
    let data = pattern(4 << 20, 3);
    let expect = data.clone();
    let got = send_and_read_back(send, recv, data, 30).await;
    assert_eq!(got.len(), expect.len());
    assert!(got == expect, "echoed bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ids_are_typed_and_the_same_on_both_ends() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let conn = srv.accept().await.unwrap();
        while let Ok((send, recv)) = conn.accept_bi().await {
            tx.send((send.id(), recv.id())).unwrap();
        }
    });
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let mut opened = Vec::new();
    for _ in 0..3 {
        let (mut send, recv) = within(5, conn.open_bi()).await.unwrap();
        assert_eq!(send.id(), recv.id());
        send.write_all(b"x").await.unwrap();
        opened.push((send, recv));
    }
    let ids: Vec<StreamId> = opened.iter().map(|(s, _)| s.id()).collect();
    // Client-opened bidirectional streams: index << 2, starting at index 1.
    assert_eq!(ids, [StreamId(4), StreamId(8), StreamId(12)]);
    for want in ids {
        let (send_id, recv_id) = within(5, rx.recv()).await.unwrap();
        assert_eq!((send_id, recv_id), (want, want));
    }
}
