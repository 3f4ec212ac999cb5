//! The published `phantom-protocol` crate (0.4) over its PhantomUDP transport.
//!
//! Its API has no datagram-size setting: PhantomUDP's `PATH_MTU` is a 1200-byte constant,
//! so this runner cannot use 1452 like the other two. It has no stream half-close either:
//! `PhantomSession::send` queues bytes on the session's default reliable stream, so the
//! receiver is told the payload length up front and counts to it.

use std::sync::Arc;
use std::time::Duration;

use phantom_compare::measure::{BulkSample, Stopwatch};
use phantom_compare::sockets;
use phantom_protocol::api::session::PhantomSession;
use phantom_protocol::api::udp_listener::PhantomUdpListener;
use phantom_protocol::api::udp_transport::UdpClientTransport;
use phantom_protocol::crypto::hybrid_sign::HybridVerifyingKey;

/// The server: a listener that accepts one session, counts `bytes` and answers with the
/// count; returns the listener, its task, its address and its key (to pin).
pub(crate) struct Served {
    pub(crate) listener: Arc<PhantomUdpListener>,
    pub(crate) task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Binds the listener and spawns the counting server task on the current runtime.
pub(crate) async fn serve(bytes: u64) -> Result<(Served, std::net::SocketAddr, Vec<u8>), String> {
    let listener = PhantomUdpListener::bind_udp("127.0.0.1:0".to_owned())
        .await
        .map_err(|e| format!("phantom-protocol bind: {e}"))?;
    let addr: std::net::SocketAddr = listener
        .local_addr()
        .parse()
        .map_err(|e| format!("phantom-protocol addr: {e}"))?;
    let key = listener.verifying_key_bytes();
    let l = Arc::clone(&listener);
    let task = tokio::spawn(async move {
        let session = l
            .accept()
            .await
            .map_err(|e| format!("phantom-protocol accept: {e}"))?
            .session();
        let mut n = 0u64;
        while n < bytes {
            let part = session
                .recv()
                .await
                .map_err(|e| format!("phantom-protocol server recv: {e}"))?;
            n += part.len() as u64;
        }
        session
            .send(n.to_be_bytes().to_vec())
            .await
            .map_err(|e| format!("phantom-protocol server send: {e}"))?;
        // Keep the session until the client has read the answer.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = session.disconnect().await;
        Ok::<_, String>(())
    });
    Ok((Served { listener, task }, addr, key))
}

/// One bulk round: fresh listener and client, handshake not timed, `bytes` sent with
/// `send` in chunks of `payload.len()`, timed until the server's 8-byte count arrives.
pub(crate) async fn bulk(bytes: u64, payload: &[u8]) -> Result<BulkSample, String> {
    let (served, addr, key) = serve(bytes).await?;
    let s = bulk_client(addr, &key, bytes, payload).await;
    if s.is_ok() {
        served
            .task
            .await
            .map_err(|e| format!("phantom-protocol server task: {e}"))??;
    }
    served.listener.shutdown();
    s
}

/// The client half: connect (not timed), send, wait for the count.
pub(crate) async fn bulk_client(
    addr: std::net::SocketAddr,
    key: &[u8],
    bytes: u64,
    payload: &[u8],
) -> Result<BulkSample, String> {
    let key =
        HybridVerifyingKey::from_bytes(key).map_err(|e| format!("phantom-protocol key: {e}"))?;
    let transport = UdpClientTransport::connect(addr)
        .await
        .map_err(|e| format!("phantom-protocol connect: {e}"))?;
    let client = PhantomSession::connect_with_transport(&addr.to_string(), transport, key);
    client
        .await_ready()
        .await
        .map_err(|e| format!("phantom-protocol handshake: {e}"))?;
    let watch = Stopwatch::start()?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(payload.len() as u64)).unwrap_or(payload.len());
        let chunk = payload.get(..n).ok_or("payload chunk")?;
        client
            .send(chunk.to_vec())
            .await
            .map_err(|e| format!("phantom-protocol send: {e}"))?;
        left -= n as u64;
    }
    let mut answer = Vec::new();
    while answer.len() < 8 {
        let part = client
            .recv()
            .await
            .map_err(|e| format!("phantom-protocol client recv: {e}"))?;
        answer.extend_from_slice(&part);
    }
    let (wall, cpu) = watch.stop()?;
    let sender_thread_cpu = watch.thread()?;
    // The client's socket is inside its transport: only the server's is counted.
    let socket_drops = sockets::socket_drops(&[addr]);
    let rcvbuf = sockets::rcvbuf(addr);
    let _ = client.disconnect().await;
    let got = answer
        .get(..8)
        .and_then(|a| <[u8; 8]>::try_from(a).ok())
        .map(u64::from_be_bytes)
        .ok_or("short answer")?;
    if got != bytes {
        return Err(format!(
            "phantom-protocol: server counted {got} of {bytes} bytes"
        ));
    }
    Ok(BulkSample {
        bytes,
        wall,
        cpu,
        datagrams: None,
        sender_thread_cpu,
        lost_packets: None,
        retransmitted_bytes: None,
        socket_drops,
        rcvbuf,
    })
}
