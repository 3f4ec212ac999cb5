//! Handshakes through a loopback relay that damages handshake datagrams (one bit
//! flipped): a damaged datagram is dropped by its integrity tag and the retransmission
//! completes the handshake (I12); a handshake whose every answer is damaged times out
//! naming unusable answers, not silence.
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

use common::{localhost, pattern, send_and_read_back, server, within};
use phantom::{ClientOptions, ConnectError, Endpoint};
use tokio::net::UdpSocket;

/// Which handshake datagrams (first byte 0xc3) the relay damages, per direction: one
/// in `every`, picked by a fixed pseudo-random sequence (1: all of them, 0: none).
#[derive(Clone, Copy)]
struct Damage {
    to_server: u64,
    to_client: u64,
}

/// A relay for one client: what arrives at its address goes to `server`, what comes
/// back goes to the last client address seen. Counts the datagrams it damaged.
struct Relay {
    addr: SocketAddr,
    damaged: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// SplitMix64: a fixed pseudo-random sequence indexed by `n`.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Flips one bit (chosen from `n`) of the `n`-th handshake datagram if it is picked.
/// The first one is always picked.
fn maybe_damage(buf: &mut [u8], n: u64, every: u64, damaged: &AtomicU64) {
    if every == 0 || buf.first() != Some(&0xc3) || (n > 1 && !mix(n).is_multiple_of(every)) {
        return;
    }
    let bit = (mix(n ^ 0xdead) >> 7) as usize % (buf.len() * 8);
    buf[bit / 8] ^= 1 << (bit % 8);
    damaged.fetch_add(1, Ordering::Relaxed);
}

async fn relay(server: SocketAddr, damage: Damage) -> Relay {
    let front = Arc::new(UdpSocket::bind(localhost()).await.unwrap());
    let up = Arc::new(UdpSocket::bind(localhost()).await.unwrap());
    let addr = front.local_addr().unwrap();
    let damaged = Arc::new(AtomicU64::new(0));
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    let (f, u, d, c) = (front.clone(), up.clone(), damaged.clone(), client.clone());
    let to_server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0u64;
        loop {
            let Ok((len, from)) = f.recv_from(&mut buf).await else {
                continue;
            };
            *c.lock().unwrap() = Some(from);
            if buf[0] == 0xc3 {
                n += 1;
            }
            maybe_damage(&mut buf[..len], n, damage.to_server, &d);
            let _ = u.send_to(&buf[..len], server).await;
        }
    });
    let (f, u, d) = (front, up, damaged.clone());
    let to_client = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0u64;
        loop {
            let Ok((len, _)) = u.recv_from(&mut buf).await else {
                continue;
            };
            let Some(to) = *client.lock().unwrap() else {
                continue;
            };
            if buf[0] == 0xc3 {
                n += 1;
            }
            maybe_damage(&mut buf[..len], n, damage.to_client, &d);
            let _ = f.send_to(&buf[..len], to).await;
        }
    });
    Relay {
        addr,
        damaged,
        tasks: vec![to_server, to_client],
    }
}

fn spawn_echo(ep: Endpoint) {
    tokio::spawn(async move {
        while let Ok(conn) = ep.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut recv, &mut send).await;
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut send).await;
                    });
                }
            });
        }
    });
}

/// About one handshake datagram in three, in each direction, arrives with one bit
/// flipped (the first ClientHello datagram and the first server datagram among them):
/// three connections in a row (the first in full mode, then PDK with the cached
/// certificate) all complete and echo their data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i12_handshakes_complete_through_a_relay_that_damages_a_third_of_the_datagrams() {
    let (srv, key) = server();
    let server_addr = srv.local_addr();
    spawn_echo(srv);
    let client = Endpoint::client(localhost()).unwrap();
    let mut damaged = 0;
    for i in 0..3u8 {
        let relay = relay(
            server_addr,
            Damage {
                to_server: 3,
                to_client: 3,
            },
        )
        .await;
        // A fresh relay per connection: the server sees a new client address.
        let opts = ClientOptions {
            connect_timeout: Duration::from_secs(20),
            ..ClientOptions::default()
        };
        let conn = within(30, client.connect_with(relay.addr, &key, opts))
            .await
            .unwrap();
        let (send, recv) = within(5, conn.open_bi()).await.unwrap();
        let data = pattern(3000, i);
        let got = send_and_read_back(send, recv, data.clone(), 10).await;
        assert_eq!(got, data);
        conn.close(0, b"done");
        damaged += relay.damaged.load(Ordering::Relaxed);
    }
    // Each connection lost at least its first ClientHello datagram and the server's
    // first datagram to damage.
    assert!(damaged >= 6, "{damaged}");
}

/// Every server datagram arrives damaged: the connect times out with
/// `UnusableAnswers` (naming how many were dropped), not with "no answer".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i12_a_connect_whose_every_answer_is_damaged_says_so() {
    let (srv, key) = server();
    let relay = relay(
        srv.local_addr(),
        Damage {
            to_server: 0,
            to_client: 1,
        },
    )
    .await;
    let client = Endpoint::client(localhost()).unwrap();
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(1500),
        ..ClientOptions::default()
    };
    let err = within(10, client.connect_with(relay.addr, &key, opts))
        .await
        .unwrap_err();
    let damaged = relay.damaged.load(Ordering::Relaxed);
    assert!(damaged >= 1, "{damaged}");
    match err {
        ConnectError::UnusableAnswers { peer, dropped } => {
            assert_eq!(peer, relay.addr);
            assert!(dropped >= 1 && u64::from(dropped) <= damaged, "{dropped}");
        }
        other => panic!("{other:?}"),
    }
    drop(srv);
}
