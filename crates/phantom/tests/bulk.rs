//! Bulk transfer and many-session tests over real UDP sockets on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use common::{localhost, pattern, server, within};
use phantom::{Connection, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Server task: read each stream to its end, answer with its length and an FNV-1a
/// digest of its bytes (0 without `digest`, so that only the transfer sets the pace).
fn spawn_sink(ep: Endpoint, digest: bool) {
    tokio::spawn(async move {
        while let Ok(conn) = ep.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut len = 0u64;
                        let mut h = Fnv::default();
                        loop {
                            let n = recv.read(&mut buf).await.unwrap();
                            if n == 0 {
                                break;
                            }
                            len += n as u64;
                            if digest {
                                h.update(&buf[..n]);
                            }
                        }
                        send.write_all(&len.to_be_bytes()).await.unwrap();
                        send.write_all(&h.0.to_be_bytes()).await.unwrap();
                        send.shutdown().await.unwrap();
                    });
                }
            });
        }
    });
}

#[derive(Clone, Copy)]
struct Fnv(u64);
impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}
impl Fnv {
    fn update(&mut self, d: &[u8]) {
        for &b in d {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// Sends `data` on a new stream and checks the sink's answer.
async fn send_and_check(conn: &Connection, data: &[u8]) {
    let answer = send_and_check_len(conn, data).await;
    let mut h = Fnv::default();
    h.update(data);
    assert_eq!(
        u64::from_be_bytes(answer[8..].try_into().unwrap()),
        h.0,
        "digest mismatch"
    );
}

/// Sends `data` on a new stream and checks the length the sink answers; returns the
/// whole answer (length, digest).
async fn send_and_check_len(conn: &Connection, data: &[u8]) -> [u8; 16] {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    for chunk in data.chunks(256 * 1024) {
        send.write_all(chunk).await.unwrap();
    }
    send.shutdown().await.unwrap();
    let mut answer = [0u8; 16];
    recv.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        u64::from_be_bytes(answer[..8].try_into().unwrap()),
        data.len() as u64
    );
    answer
}

async fn bulk(len: usize, secs: u64) {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_sink(srv, true);
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let data = pattern(len, 7);
    let start = phantom::now();
    within(secs, send_and_check(&conn, &data)).await;
    let el = start.elapsed();
    let s = conn.stats();
    eprintln!(
        "bulk {len} B in {el:?} ({:.1} MB/s), lost {}, retransmitted {} B, rtt {:?}",
        len as f64 / el.as_secs_f64() / 1e6,
        s.packets_lost,
        s.stream_bytes_retransmitted,
        s.rtt
    );
    conn.close(0, b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfer_16_mib_is_byte_exact() {
    bulk(16 << 20, 40).await;
}

/// `write_chunk` hands `Bytes` over without a copy; mixed with small copied writes
/// and large ones (copied outside the endpoint lock) the sink sees every byte in
/// order, and a chunk larger than the send buffer is queued in pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_chunk_mixed_with_copied_writes_is_byte_exact() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_sink(srv, true);
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let data = bytes::Bytes::from(pattern(6 << 20, 3));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    within(60, async {
        // 3 MiB as one chunk (three times the default send buffer), then rounds of
        // a 300 KiB chunk, a 100-byte copied write and a 40 KiB copied write.
        let mut at = 3 << 20;
        send.write_chunk(data.slice(..at)).await.unwrap();
        while at < data.len() {
            for (len, chunk) in [(300 << 10, true), (100, false), (40 << 10, false)] {
                let end = data.len().min(at + len);
                if chunk {
                    send.write_chunk(data.slice(at..end)).await.unwrap();
                } else {
                    send.write_all(&data[at..end]).await.unwrap();
                }
                at = end;
            }
        }
        send.shutdown().await.unwrap();
    })
    .await;
    let mut answer = [0u8; 16];
    within(30, recv.read_exact(&mut answer)).await.unwrap();
    assert_eq!(
        u64::from_be_bytes(answer[..8].try_into().unwrap()),
        data.len() as u64
    );
    let mut h = Fnv::default();
    h.update(&data);
    assert_eq!(
        u64::from_be_bytes(answer[8..].try_into().unwrap()),
        h.0,
        "digest mismatch"
    );
    conn.close(0, b"");
}

/// Run with `cargo test -p phantom --test bulk -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 256 MiB"]
async fn bulk_transfer_256_mib_is_byte_exact() {
    bulk(256 << 20, 600).await;
}

async fn many_sessions(n: usize, secs: u64) {
    let (srv, key) = server();
    let addr = srv.local_addr();
    let srv2 = srv.clone();
    spawn_sink(srv, true);
    let mut tasks = Vec::new();
    for i in 0..n {
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let client = Endpoint::client(localhost()).unwrap();
            let conn = within(secs, client.connect(addr, &key)).await.unwrap();
            let data = pattern(4096 + i * 13, i as u8);
            within(secs, send_and_check(&conn, &data)).await;
            (client, conn)
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut keep = Vec::new();
    for t in tasks {
        let (client, conn) = t.await.unwrap();
        ids.insert(conn.session_id().unwrap());
        keep.push((client, conn));
    }
    assert_eq!(ids.len(), n, "session ids must be distinct");
    assert_eq!(
        srv2.session_count(),
        n,
        "every session lives on the one server endpoint"
    );
    drop(keep);
    // Dropping the connections closes them; the server drains every session.
    within(secs, async {
        while srv2.session_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sessions_on_one_endpoint() {
    many_sessions(50, 30).await;
}

/// Run with `cargo test -p phantom --test bulk -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: 1000 handshakes"]
async fn thousand_concurrent_sessions_on_one_endpoint() {
    many_sessions(1000, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_parallel_streams_are_byte_exact() {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_sink(srv, true);
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(2 << 20, i);
            send_and_check(&conn, &data).await;
        }));
    }
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(20), all)
        .await
        .is_err()
    {
        let a = conn.stats();
        let t = conn.next_timeout();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        panic!(
            "stalled: {:#?} paths {:#?} next timeout {t:?} sent a second later {}",
            a,
            conn.paths(),
            conn.stats().packets_sent - a.packets_sent
        );
    }
}

/// Goodput of one bulk session while `idle` other sessions stay open, idle, on the
/// same server endpoint (whose driver serves them all). The sink only counts bytes.
async fn bulk_beside_idle_sessions(idle: usize, len: usize) -> f64 {
    let (srv, key) = server();
    let addr = srv.local_addr();
    spawn_sink(srv, false);
    let mut keep = Vec::new();
    for _ in 0..idle {
        let client = Endpoint::client(localhost()).unwrap();
        let conn = within(30, client.connect(addr, &key)).await.unwrap();
        keep.push((client, conn));
    }
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(addr, &key)).await.unwrap();
    let data = pattern(len, 3);
    let start = phantom::now();
    within(120, send_and_check_len(&conn, &data)).await;
    let st = conn.stats();
    eprintln!(
        "  idle {idle}: client sent {} packets, received {} (acks), lost {}",
        st.packets_sent, st.packets_received, st.packets_lost
    );
    len as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// Measures (prints) what 1,000 idle sessions on the server cost a bulk transfer.
/// Run with `cargo test --release -p phantom --test bulk -- --ignored idle_sessions --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: 2,000 handshakes and 4 x 2 bulk transfers of 128 MiB"]
async fn bulk_goodput_beside_a_thousand_idle_sessions() {
    for round in 0..4 {
        // Alternate which runs first, so warm-up does not favour one.
        let (alone, crowded) = if round % 2 == 0 {
            let a = bulk_beside_idle_sessions(0, 128 << 20).await;
            (a, bulk_beside_idle_sessions(1000, 128 << 20).await)
        } else {
            let c = bulk_beside_idle_sessions(1000, 128 << 20).await;
            (bulk_beside_idle_sessions(0, 128 << 20).await, c)
        };
        eprintln!(
            "round {round}: alone {alone:.0} MB/s, beside 1000 idle sessions {crowded:.0} MB/s ({:.2}x)",
            crowded / alone
        );
    }
}
