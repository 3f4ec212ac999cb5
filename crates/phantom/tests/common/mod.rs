//! Shared fixtures for the runtime's integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use phantom::{
    Endpoint, HybridSigningKey, HybridVerifyingKey, RecvStream, SendStream, ServerConfig,
    ServerIdentity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fresh signing key and the identity it certifies (valid for a day).
pub fn identity() -> (ServerIdentity, HybridVerifyingKey) {
    let mut rng = rand::rng();
    let sk = HybridSigningKey::generate(&mut rng);
    let unix = phantom::unix_time();
    let id = ServerIdentity::generate(&sk, &mut rng, unix + 86_400).unwrap();
    (id, sk.verifying_key())
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server endpoint on loopback UDP and TCP, its config tuned by `tune`: the endpoint,
/// its TCP listening address and the key clients must pin.
pub fn tcp_server(
    tune: impl FnOnce(&mut ServerConfig),
) -> (Endpoint, SocketAddr, HybridVerifyingKey) {
    let (id, vk) = identity();
    let mut cfg = ServerConfig::new(id);
    tune(&mut cfg);
    let srv = Endpoint::server_with_tcp(cfg, localhost(), localhost()).unwrap();
    let tcp = srv.tcp_local_addr().unwrap();
    (srv, tcp, vk)
}

/// A server endpoint on loopback and the key clients must pin.
pub fn server() -> (Endpoint, HybridVerifyingKey) {
    let (id, vk) = identity();
    (
        Endpoint::server(ServerConfig::new(id), localhost()).unwrap(),
        vk,
    )
}

/// Awaits `f`, failing the test after `secs` seconds.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

/// Deterministic test payload.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// Writes `data` and finishes `send` while reading `recv` to its end, concurrently (so a
/// peer that echoes as it reads cannot deadlock on flow control); all within `secs`.
pub async fn send_and_read_back(
    mut send: SendStream,
    mut recv: RecvStream,
    data: Vec<u8>,
    secs: u64,
) -> Vec<u8> {
    let writer = async move {
        send.write_all(&data).await.unwrap();
        send.shutdown().await.unwrap();
    };
    let reader = async move {
        let mut got = Vec::new();
        recv.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), got) = within(secs, async { tokio::join!(writer, reader) }).await;
    got
}

/// A loopback UDP relay between clients and a server, acting like a NAT: each
/// client source address gets its own upstream socket (so the server sees one
/// address per client path). It can drop every datagram, or those of chosen client
/// addresses, in both directions.
pub struct Shim {
    addr: SocketAddr,
    drop_all: std::sync::Arc<std::sync::atomic::AtomicBool>,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    blocked: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<SocketAddr>>>,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    /// Bytes of every datagram received from clients (before any drop).
    upstream: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Where client datagrams go ([`Shim::retarget`]).
    server: std::sync::Arc<std::sync::Mutex<SocketAddr>>,
}

impl Shim {
    /// Starts a relay to `server` on 127.0.0.1.
    pub async fn start(server: SocketAddr) -> Shim {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let front = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
        let addr = front.local_addr().unwrap();
        let drop_all = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let blocked: Arc<Mutex<std::collections::HashSet<SocketAddr>>> = Arc::default();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let upstream = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let up_count = upstream.clone();
        let target = Arc::new(Mutex::new(server));
        let server_at = target.clone();
        let (d, b, t, fz) = (
            drop_all.clone(),
            blocked.clone(),
            tasks.clone(),
            frozen.clone(),
        );
        let main = tokio::spawn(async move {
            let mut ups: std::collections::HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> =
                std::collections::HashMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    continue;
                };
                up_count.fetch_add(n as u64, Ordering::Relaxed);
                if d.load(Ordering::Relaxed)
                    || b.lock().unwrap().contains(&from)
                    || (fz.load(Ordering::Relaxed) && !ups.contains_key(&from))
                {
                    continue;
                }
                let up = match ups.get(&from) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(tokio::net::UdpSocket::bind(localhost()).await.unwrap());
                        ups.insert(from, u.clone());
                        let (u2, f2, d2, b2) = (u.clone(), front.clone(), d.clone(), b.clone());
                        let back = tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            loop {
                                let Ok((n, _)) = u2.recv_from(&mut buf).await else {
                                    continue;
                                };
                                if d2.load(Ordering::Relaxed) || b2.lock().unwrap().contains(&from)
                                {
                                    continue;
                                }
                                let _ = f2.send_to(&buf[..n], from).await;
                            }
                        });
                        t.lock().unwrap().push(back);
                        u
                    }
                };
                let to = *server_at.lock().unwrap();
                let _ = up.send_to(&buf[..n], to).await;
            }
        });
        tasks.lock().unwrap().push(main);
        Shim {
            addr,
            drop_all,
            frozen,
            blocked,
            tasks,
            upstream,
            server: target,
        }
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends client datagrams to `server` from now on (a server "restarted" elsewhere;
    /// the clients still see the relay's address).
    pub fn retarget(&self, server: SocketAddr) {
        *self.server.lock().unwrap() = server;
    }

    /// Bytes of the datagrams clients sent through the relay so far.
    pub fn upstream_bytes(&self) -> u64 {
        self.upstream.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops every datagram (both directions) while `on`.
    pub fn set_drop(&self, on: bool) {
        self.drop_all
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// While `on`, datagrams from client addresses not seen before are dropped (new
    /// paths are blackholed from their first datagram).
    pub fn freeze(&self, on: bool) {
        self.frozen.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops the datagrams of client address `client` (both directions) while `on`.
    pub fn block(&self, client: SocketAddr, on: bool) {
        let mut b = self.blocked.lock().unwrap();
        if on {
            b.insert(client);
        } else {
            b.remove(&client);
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Echoes every bidirectional stream of every connection `server` accepts: reads
/// each stream to its end, then writes the bytes back and finishes the stream.
pub fn spawn_echo(server: Endpoint) {
    tokio::spawn(async move {
        while let Ok(conn) = server.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        if recv.read_to_end(&mut buf).await.is_ok() {
                            let _ = send.write_all(&buf).await;
                            let _ = send.shutdown().await;
                        }
                    });
                }
            });
        }
    });
}

/// Server side of a transfer: accepts one stream and echoes it back as it reads,
/// counting the bytes read into `seen`.
pub async fn echo_one(
    conn: &phantom::Connection,
    seen: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let (mut send, mut recv) = conn.accept_bi().await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = recv.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        seen.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        send.write_all(&buf[..n]).await.unwrap();
    }
    send.shutdown().await.unwrap();
}

/// Polls `cond` every 20 ms until it holds, failing the test after `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
