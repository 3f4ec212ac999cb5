//! Time to the first response byte over loopback, with and without resumption (0-RTT):
//! from the start of `connect` to the first byte of the server's answer to a 16-byte
//! request on the first bidirectional stream. Rounds alternate between the two modes;
//! prints the median of each.
//!
//! The server takes `work_us` microseconds (default 0) to prepare an answer. It reads a
//! 0-RTT request from `Endpoint::accept_early`, when the ClientHello is accepted, so it
//! prepares the answer while the handshake completes; a 1-RTT request arrives after
//! the handshake, and its answer is prepared then.
//!
//! `cargo run --release -p phantom --example first_byte [rounds] [work_us]` (default 100, 0).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "a measurement program: fails loudly, reads the wall clock"
)]

use std::time::{Duration, Instant};

use phantom::{
    ClientOptions, Connection, EarlyRequest, Endpoint, HybridSigningKey, ServerConfig,
    ServerIdentity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUEST: &[u8; 16] = b"GET /first-byte\n";

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The server's answer to a request, after `work` of preparation.
async fn prepare(request: &[u8], work: Duration) -> &'static [u8] {
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    if request == REQUEST {
        b"200 OK\n"
    } else {
        b"404\n"
    }
}

/// Answers 1-RTT requests on every stream of `conn`.
async fn serve_streams(conn: Connection, work: Duration) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let mut req = [0u8; REQUEST.len()];
            if recv.read_exact(&mut req).await.is_ok() {
                let _ = send.write_all(prepare(&req, work).await).await;
                let _ = send.shutdown().await;
            }
        });
    }
}

/// Answers a 0-RTT request: prepared at once, sent once the handshake completes.
async fn serve_early(early: EarlyRequest, work: Duration) {
    let answer = match early.streams().first() {
        Some(st) if early.is_replayable() => prepare(&st.data, work).await,
        _ => return,
    };
    let Ok(conn) = early.connection().await else {
        return;
    };
    // The early stream comes first, positioned after the request already read.
    if let Ok((mut send, _recv)) = conn.accept_bi().await {
        let _ = send.write_all(answer).await;
        let _ = send.shutdown().await;
    }
    serve_streams(conn, work).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let work = Duration::from_micros(args.next().and_then(|a| a.parse().ok()).unwrap_or(0));
    let mut rng = rand::rng();
    let sk = HybridSigningKey::generate(&mut rng);
    let id = ServerIdentity::generate(&sk, &mut rng, phantom::unix_time() + 86_400).unwrap();
    let key = sk.verifying_key();
    let srv = Endpoint::server(ServerConfig::new(id), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = srv.local_addr();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                conn = srv.accept() => match conn {
                    Ok(conn) => drop(tokio::spawn(serve_streams(conn, work))),
                    Err(_) => break,
                },
                early = srv.accept_early() => match early {
                    Ok(early) => drop(tokio::spawn(serve_early(early, work))),
                    Err(_) => break,
                },
            }
        }
    });
    let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    // Warm up: caches the certificate (every later handshake is PDK) and a ticket.
    let warm = client.connect(addr, &key).await.unwrap();
    let mut ticket = warm.resumption_ticket();
    warm.close(0, b"");
    let (mut fresh, mut resumed) = (Vec::new(), Vec::new());
    let mut early_accepted = 0usize;
    for i in 0..2 * rounds {
        let resume = i % 2 == 1;
        let start = Instant::now();
        let options = if resume {
            ClientOptions {
                resumption: ticket.take(),
                early_data: Some(REQUEST.to_vec()),
                ..ClientOptions::default()
            }
        } else {
            ClientOptions::default()
        };
        let conn = client.connect_with(addr, &key, options).await.unwrap();
        let (mut send, mut recv) = if resume {
            early_accepted += usize::from(conn.early_data_accepted());
            conn.take_early_stream().expect("early stream")
        } else {
            let (mut s, r) = conn.open_bi().await.unwrap();
            s.write_all(REQUEST).await.unwrap();
            (s, r)
        };
        let mut first = [0u8; 1];
        recv.read_exact(&mut first).await.unwrap();
        let t = start.elapsed();
        let _ = send.shutdown().await;
        if let Some(t) = conn.resumption_ticket() {
            ticket = Some(t);
        }
        conn.close(0, b"");
        if resume { &mut resumed } else { &mut fresh }.push(t);
    }
    println!(
        "rounds {rounds}, server work {work:?}: median time to first response byte: 1-RTT (PDK) {:?}, resumed with 0-RTT request {:?} (early data accepted in {early_accepted} of {rounds})",
        median(&mut fresh),
        median(&mut resumed)
    );
}
