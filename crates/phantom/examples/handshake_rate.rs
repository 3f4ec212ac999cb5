//! Handshakes per second against a server with 1 and with 2 workers, side by side in
//! one run: each round runs both configurations in a random order.
//!
//! ```text
//! cargo run -p phantom --example handshake_rate --release -- [rounds] [secs] [clients]
//! ```
//!
//! Defaults: 5 rounds of 3 s per configuration, 32 client endpoints. Each client
//! endpoint connects, drops the connection (the server's accept loop drops its side
//! too) and connects again; its first handshake verifies the server certificate and
//! is not counted, every later one is a 1-RTT PDK handshake (X25519 + ML-KEM-768 on
//! each side, no signature checks). Clients and server share the machine's cores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use phantom::{Endpoint, HybridSigningKey, ServerConfig, ServerIdentity};
use rand::seq::SliceRandom as _;

async fn trial(workers: usize, secs: u64, clients: usize) -> f64 {
    let mut rng = rand::rng();
    let sk = HybridSigningKey::generate(&mut rng);
    let id = ServerIdentity::generate(&sk, &mut rng, phantom::unix_time() + 86_400).unwrap();
    let vk = Arc::new(sk.verifying_key());
    let mut cfg = ServerConfig::new(id);
    cfg.workers = workers;
    cfg.max_pending_accepts = 65_536;
    let srv = Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(srv.workers(), workers, "reuseport steering refused");
    let addr = srv.local_addr();
    let acceptor = srv.clone();
    tokio::spawn(async move { while acceptor.accept().await.is_ok() {} });

    let count = Arc::new(AtomicU64::new(0));
    let go = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (vk, count, go, stop) = (vk.clone(), count.clone(), go.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let ep = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            // Warm-up: the full handshake that caches the certificate.
            drop(ep.connect(addr, &vk).await.unwrap());
            go.wait().await;
            while !stop.load(Ordering::Relaxed) {
                if ep.connect(addr, &vk).await.is_ok() && !stop.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            ep.close(0u64, b"");
        }));
    }
    go.wait().await;
    let start = phantom::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let done = count.load(Ordering::Relaxed);
    let elapsed = phantom::now()
        .saturating_duration_since(start)
        .as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    srv.close(0u64, b"");
    let _ = tokio::time::timeout(Duration::from_secs(5), srv.wait_idle()).await;
    done as f64 / elapsed
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, d: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (rounds, secs, clients) = (arg(1, 5), arg(2, 3), arg(3, 32) as usize);
    println!(
        "handshake_rate: {rounds} rounds x {secs} s, {clients} clients, {} cores",
        phantom::default_workers()
    );
    let mut one = Vec::new();
    let mut two = Vec::new();
    let mut rng = rand::rng();
    for r in 0..rounds {
        let mut order = [1usize, 2];
        order.shuffle(&mut rng);
        for w in order {
            let rate = trial(w, secs, clients).await;
            println!("round {r}  workers {w}  {rate:8.0} handshakes/s");
            if w == 1 {
                one.push(rate)
            } else {
                two.push(rate)
            }
        }
    }
    let (m1, m2) = (median(&mut one), median(&mut two));
    println!(
        "median: 1 worker {m1:.0}/s, 2 workers {m2:.0}/s, ratio {:.2}",
        m2 / m1
    );
}
