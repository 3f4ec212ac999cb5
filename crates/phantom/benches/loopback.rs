//! `loopback_throughput`: one 4 MiB stream through the runtime over loopback UDP,
//! beside a baseline measured in the same run: the same bytes as raw 1200-byte UDP
//! datagrams between two tokio sockets, sent in windows of 32 acknowledged by a
//! one-byte reply (no crypto, no retransmission, no congestion control). The ratio
//! is the runtime's cost over bare datagram I/O.
//!
//! Run: `cargo bench -p phantom --bench loopback -- --warm-up-time 1 --measurement-time 5`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phantom::{Connection, Endpoint, HybridSigningKey, ServerConfig, ServerIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BULK: usize = 4 << 20;
const DATAGRAM: usize = 1200;

fn setup(rt: &tokio::runtime::Runtime) -> (Endpoint, Endpoint, Connection) {
    rt.block_on(async {
        let mut rng = rand::rng();
        let sk = HybridSigningKey::generate(&mut rng);
        let id = ServerIdentity::generate(&sk, &mut rng, phantom::unix_time() + 3600).unwrap();
        let server =
            Endpoint::server(ServerConfig::new(id), "127.0.0.1:0".parse().unwrap()).unwrap();
        let srv = server.clone();
        tokio::spawn(async move {
            while let Ok(conn) = srv.accept().await {
                tokio::spawn(async move {
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 256 * 1024];
                            let mut n = 0u64;
                            while let Ok(k) = recv.read(&mut buf).await {
                                if k == 0 {
                                    break;
                                }
                                n += k as u64;
                            }
                            let _ = send.write_all(&n.to_be_bytes()).await;
                            let _ = send.shutdown().await;
                        });
                    }
                });
            }
        });
        let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = client
            .connect(server.local_addr(), &sk.verifying_key())
            .await
            .unwrap();
        (server, client, conn)
    })
}

async fn transfer(conn: &Connection, data: &[u8]) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(data).await.unwrap();
    send.shutdown().await.unwrap();
    let mut n = [0u8; 8];
    recv.read_exact(&mut n).await.unwrap();
    assert_eq!(u64::from_be_bytes(n), data.len() as u64);
}

/// Raw datagrams in windows of `WINDOW`: the receiver answers each full window with
/// a one-byte ack, so the socket buffers never overflow and nothing is lost.
const WINDOW: usize = 32;

async fn raw_udp(tx: &tokio::net::UdpSocket, rx: &tokio::net::UdpSocket, data: &[u8]) {
    let dst = rx.local_addr().unwrap();
    let back = tx.local_addr().unwrap();
    let chunks: Vec<&[u8]> = data.chunks(DATAGRAM).collect();
    let total = chunks.len();
    let recv = async {
        let mut buf = vec![0u8; 2048];
        let mut got = 0usize;
        let mut bytes = 0usize;
        while got < total {
            bytes += rx.recv(&mut buf).await.unwrap();
            got += 1;
            if got.is_multiple_of(WINDOW) || got == total {
                rx.send_to(&[1], back).await.unwrap();
            }
        }
        bytes
    };
    let send = async {
        let mut ack = [0u8; 16];
        for window in chunks.chunks(WINDOW) {
            for c in window {
                tx.send_to(c, dst).await.unwrap();
            }
            tx.recv(&mut ack).await.unwrap();
        }
    };
    let (bytes, ()) = tokio::join!(recv, send);
    assert_eq!(bytes, data.len());
}

fn loopback_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = vec![0x5au8; BULK];
    let mut g = c.benchmark_group("loopback_throughput");
    g.throughput(Throughput::Bytes(BULK as u64));
    g.sample_size(10);
    let (tx, rx) = rt.block_on(async {
        (
            tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    g.bench_function("baseline_raw_udp_4MiB", |b| {
        b.iter(|| rt.block_on(raw_udp(&tx, &rx, &data)));
    });
    let (_server, _client, conn) = setup(&rt);
    g.bench_function("phantom_stream_4MiB", |b| {
        b.iter(|| rt.block_on(transfer(&conn, &data)));
    });
    g.finish();
}

criterion_group!(benches, loopback_throughput);
criterion_main!(benches);
