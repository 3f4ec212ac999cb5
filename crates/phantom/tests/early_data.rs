//! Early (0-RTT) data reaches the server application when the ClientHello is accepted:
//! over loopback, through a relay that holds back the client's second flight.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{localhost, within};
use phantom::{ClientOptions, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

/// A relay for one client that forwards the client's datagrams until the server has
/// answered once, then holds every later client datagram (the second flight: the
/// ClientFinished and the first 1-RTT packets) until `open` is set.
struct GatedRelay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Client datagrams forwarded after the server's first answer.
    passed_after_answer: Arc<AtomicU64>,
    /// Client datagrams held back.
    held: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for GatedRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A server with one worker: the resumptions below come through a relay, from a new
/// client address, which a multi-worker server's kernel may hash to a worker other than
/// the ticket's (whose keys alone decrypt it: a full handshake, no early data).
fn one_worker_server() -> (Endpoint, phantom::HybridVerifyingKey) {
    let (id, key) = common::identity();
    let mut cfg = phantom::ServerConfig::new(id);
    cfg.workers = 1;
    (Endpoint::server(cfg, localhost()).unwrap(), key)
}

async fn gated_relay(server: SocketAddr) -> GatedRelay {
    let front = Arc::new(UdpSocket::bind(localhost()).await.unwrap());
    let up = Arc::new(UdpSocket::bind(localhost()).await.unwrap());
    let addr = front.local_addr().unwrap();
    let open = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicBool::new(false));
    let passed_after_answer = Arc::new(AtomicU64::new(0));
    let held = Arc::new(AtomicU64::new(0));
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    let (f, u, c, o, a, p, h) = (
        front.clone(),
        up.clone(),
        client.clone(),
        open.clone(),
        answered.clone(),
        passed_after_answer.clone(),
        held.clone(),
    );
    let to_server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut queue: Vec<Vec<u8>> = Vec::new();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
        loop {
            tokio::select! {
                r = f.recv_from(&mut buf) => {
                    let Ok((len, from)) = r else { continue };
                    *c.lock().unwrap() = Some(from);
                    if a.load(Ordering::SeqCst) && !o.load(Ordering::SeqCst) {
                        h.fetch_add(1, Ordering::SeqCst);
                        queue.push(buf[..len].to_vec());
                        continue;
                    }
                    if a.load(Ordering::SeqCst) {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = u.send_to(&buf[..len], server).await;
                }
                _ = tick.tick() => {
                    if o.load(Ordering::SeqCst) {
                        for d in queue.drain(..) {
                            let _ = u.send_to(&d, server).await;
                        }
                    }
                }
            }
        }
    });
    let to_client = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok((len, _)) = up.recv_from(&mut buf).await else {
                continue;
            };
            answered.store(true, Ordering::SeqCst);
            let Some(to) = *client.lock().unwrap() else {
                continue;
            };
            let _ = front.send_to(&buf[..len], to).await;
        }
    });
    GatedRelay {
        addr,
        open,
        passed_after_answer,
        held,
        tasks: vec![to_server, to_client],
    }
}

#[tokio::test]
async fn i10_server_reads_early_data_while_the_client_finished_is_held_back() {
    let (srv, key) = one_worker_server();
    let srv = Arc::new(srv);
    let addr = srv.local_addr();
    let acceptor = Arc::clone(&srv);
    // Connections without early data (the first one) are accepted and then dropped.
    tokio::spawn(async move {
        while let Ok(conn) = acceptor.accept().await {
            tokio::spawn(async move {
                let _ = conn.closed().await;
            });
        }
    });
    let client = Endpoint::client(localhost()).unwrap();
    let first = within(10, client.connect(addr, &key)).await.unwrap();
    let ticket = first.resumption_ticket().expect("ticket");
    first.close(0, b"done");

    let relay = gated_relay(addr).await;
    let request = b"GET /early HTTP/0.9\r\n".to_vec();
    let options = ClientOptions {
        resumption: Some(ticket),
        early_data: Some(request.clone()),
        ..ClientOptions::default()
    };
    let relay_addr = relay.addr;
    let key2 = key.clone();
    let connecting = tokio::spawn(async move {
        let conn = client
            .connect_with(relay_addr, &key2, options)
            .await
            .unwrap();
        (client, conn)
    });

    // The server application gets the request while the client's second flight is
    // held back by the relay: before the ClientFinished can have arrived.
    let sessions_before = srv.session_count();
    let early = within(10, srv.accept_early()).await.unwrap();
    assert_eq!(relay.passed_after_answer.load(Ordering::SeqCst), 0);
    assert!(
        srv.session_count() <= sessions_before,
        "no session before the ClientFinished"
    );
    assert!(early.is_replayable());
    assert_eq!(early.streams().len(), 1);
    assert_eq!(early.streams()[0].data, request);
    assert!(!early.streams()[0].fin);
    let answer = b"200 OK, prepared before the handshake completed".to_vec();
    // The client's second flight exists and is held: still no session on the server.
    within(10, async {
        while relay.held.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(srv.session_count() <= sessions_before);

    // Let the second flight through: the handshake completes, the answer follows.
    relay.open.store(true, Ordering::SeqCst);
    let conn = within(10, early.connection()).await.unwrap();
    assert!(conn.is_resumed());
    let (mut send, mut recv) = within(10, conn.accept_bi()).await.unwrap();
    send.write_all(&answer).await.unwrap();
    send.shutdown().await.unwrap();

    let (_client, cconn) = within(10, connecting).await.unwrap();
    assert!(cconn.early_data_accepted());
    assert!(
        relay.held.load(Ordering::SeqCst) > 0,
        "the relay held the second flight"
    );
    let (mut csend, mut crecv) = cconn.take_early_stream().expect("early stream");
    // The rest of the request: the server's stream continues after the early bytes.
    csend.write_all(b"rest").await.unwrap();
    csend.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(10, crecv.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, answer);
    let mut rest = Vec::new();
    let read = within(10, recv.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(rest, b"rest");
}

#[tokio::test]
async fn an_early_request_dropped_before_completion_leaves_the_connection_to_accept() {
    let (srv, key) = one_worker_server();
    let addr = srv.local_addr();
    let client = Endpoint::client(localhost()).unwrap();
    let warm = tokio::spawn({
        let key = key.clone();
        async move {
            let first = client.connect(addr, &key).await.unwrap();
            let ticket = first.resumption_ticket().expect("ticket");
            first.close(0, b"done");
            (client, ticket)
        }
    });
    let first = within(10, srv.accept()).await.unwrap();
    let (client, ticket) = within(10, warm).await.unwrap();
    drop(first);

    let relay = gated_relay(addr).await;
    let request = b"GET /dropped\r\n".to_vec();
    let options = ClientOptions {
        resumption: Some(ticket),
        early_data: Some(request.clone()),
        ..ClientOptions::default()
    };
    let relay_addr = relay.addr;
    let connecting = tokio::spawn(async move {
        let conn = client
            .connect_with(relay_addr, &key, options)
            .await
            .unwrap();
        (client, conn)
    });
    let early = within(10, srv.accept_early()).await.unwrap();
    assert_eq!(early.streams()[0].data, request);
    drop(early);
    relay.open.store(true, Ordering::SeqCst);

    // The connection comes from `accept`; its early stream continues after the
    // request the application already read (and dropped).
    let conn = within(10, srv.accept()).await.unwrap();
    let (_client, cconn) = within(10, connecting).await.unwrap();
    let (mut csend, _crecv) = cconn.take_early_stream().expect("early stream");
    csend.write_all(b"tail").await.unwrap();
    csend.shutdown().await.unwrap();
    let (_send, mut recv) = within(10, conn.accept_bi()).await.unwrap();
    let mut rest = Vec::new();
    let read = within(10, recv.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "{read:?}");
    assert_eq!(rest, b"tail");
}
