//! Shared fixtures for the runtime's integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
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
