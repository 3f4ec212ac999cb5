//! The invariants the runtime itself upholds, over real UDP sockets on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use common::{localhost, pattern, server, within};
use phantom::{Endpoint, ServerConfig};
use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Garbage, truncated and forged datagrams thrown at a server endpoint during a
/// transfer are dropped (and counted); the session is undisturbed and no byte is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_garbage_datagrams_do_not_disturb_sessions() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let srv2 = srv.clone();
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let cid = ConnId::from_slice(&conn.peer_conn_id().unwrap()).unwrap();

    // An attacker socket sprays the server while data flows.
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let spray = tokio::spawn(async move {
        let mut x: u32 = 0x1234_5678;
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x % 1400) as usize;
            let mut d: Vec<u8> = (0..len)
                .map(|j| (x.rotate_left(j as u32 % 31)) as u8)
                .collect();
            if i % 3 == 0 {
                // A well-formed header with the server's live connection id and a
                // fresh high sequence number: it must fail authentication, not reach
                // the stream.
                let h = Header {
                    flags: Flags::empty(),
                    epoch: Epoch(0),
                    conn_id: cid,
                    stream_id: StreamId(1),
                    sequence: 1_000 + u64::from(i),
                    seq_len: SeqLen::FULL,
                };
                let mut f = vec![0u8; h.len()];
                h.write_image(&mut f).unwrap();
                f.extend_from_slice(&d);
                f.extend_from_slice(&[0u8; 16]);
                d = f;
            }
            let _ = attacker.send_to(&d, addr).await;
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });

    let (mut send, _recv) = within(5, conn.open_bi()).await.unwrap();
    let data = pattern(2 << 20, 5);
    let expect = data.clone();
    let writer = async move {
        send.write_all(&data).await.unwrap();
        send.shutdown().await.unwrap();
    };
    let reader = async move {
        let (_s, mut r) = server_conn.accept_bi().await.unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        (got, server_conn)
    };
    let ((), (got, server_conn)) = within(30, async { tokio::join!(writer, reader) }).await;
    spray.await.unwrap();
    assert!(got == expect, "stream bytes changed");
    assert!(
        !server_conn.is_closed(),
        "garbage must not close the session"
    );
    let dropped = srv2.dropped_datagrams() + server_conn.stats().dropped.total();
    assert!(dropped > 0, "garbage must be counted");
}

/// Debug output of the runtime's configuration and handles never shows key bytes.
#[tokio::test]
async fn i8_debug_output_never_shows_secret_key_bytes() {
    let (id, _vk) = common::identity();
    let secret = id.to_bytes();
    let cfg = ServerConfig::new(id);
    let text = format!("{cfg:?}");
    let ep = Endpoint::server(cfg, localhost()).unwrap();
    let text = format!("{text} {ep:?}");
    // The first 96 bytes of the key file are the static KEM secret.
    for window in secret[..96].windows(8) {
        let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
        let dec = format!("{:?}", window);
        assert!(!text.contains(&hex) && !text.contains(&dec[1..dec.len() - 1]));
    }
}
