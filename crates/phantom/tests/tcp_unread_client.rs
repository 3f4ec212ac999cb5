//! A TCP client that makes the server answer but never reads. One test
//! per binary: it counts the process's open sockets (Linux: `/proc/self/fd`).
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::time::Duration;

use phantom_handshake::ClientConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// Open sockets of this process.
fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// The client sends ClientHellos (each answered with up to 3x its bytes) and never
/// reads: the server's writer blocks once the socket buffers are full. Then the
/// client goes quiet and the server's reader closes the connection after its idle
/// timeout — but before, the writer task stayed blocked in its write for ever,
/// holding the socket (outside the connection limit, since its slot was freed). Now
/// the reader's end stops the writer, and the socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_a_tcp_client_that_never_reads_does_not_pin_the_servers_socket() {
    let (srv, tcp, key) = common::tcp_server(|cfg| {
        // Long enough for every burst below to be written on a loaded machine: only
        // the first few ClientHellos reset the idle timer, so the timeout runs from
        // about the start of the bursts.
        cfg.tcp.idle_timeout = Some(Duration::from_secs(4));
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = sockets();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(tcp).await.unwrap();
    // ClientHellos of fresh handshakes (each restarts the last one from this
    // address): every one is answered with up to 3x its size.
    let mut rng: rand::rngs::StdRng = rand::make_rng();
    let now = phantom_handshake::Time {
        instant: phantom::now(),
        unix_secs: phantom::unix_time(),
    };
    let mut bursts = Vec::new();
    for _ in 0..60 {
        let mut burst = Vec::new();
        for _ in 0..40 {
            let mut c =
                phantom_handshake::Client::new(ClientConfig::new(key.clone()), &mut rng, now)
                    .unwrap();
            while let Some(dg) = c.poll_transmit() {
                burst.extend_from_slice(&(dg.len() as u16).to_be_bytes());
                burst.extend_from_slice(&dg);
            }
        }
        bursts.push(burst);
    }
    for burst in &bursts {
        s.write_all(burst).await.unwrap();
        // Paced, so that the answers flow to the writer instead of overflowing its
        // queue at once.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        srv.tcp_dropped_datagrams() > 0,
        "the server's writer never backed up"
    );
    let retries_queued = sockets();
    assert_eq!(
        retries_queued,
        baseline + 2,
        "the connection is open on both ends"
    );
    // Quiet for longer than the idle timeout: the server gives the connection up.
    tokio::time::sleep(Duration::from_millis(6000)).await;
    assert_eq!(
        sockets(),
        baseline + 1,
        "the server still holds the socket of a connection it gave up (only the \
         client's end should be left)"
    );
    drop(s);
    drop(srv);
}
