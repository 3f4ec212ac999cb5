//! quinn 0.11 (rustls 0.23 with the ring provider: AES-GCM, GSO/GRO via quinn-udp) over loopback UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phantom_compare::measure::{BulkSample, HandshakeSample, Stopwatch};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn transport(mtu: u16) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.initial_mtu(mtu).min_mtu(mtu).mtu_discovery_config(None);
    Arc::new(t)
}

/// A server endpoint on 127.0.0.1 that counts each bidirectional stream and answers with
/// its length, plus a client config that trusts its self-signed certificate.
fn pair(mtu: u16) -> Result<(quinn::Endpoint, quinn::ClientConfig), String> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| format!("rcgen: {e}"))?;
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut server_cfg = quinn::ServerConfig::with_single_cert(vec![cert.clone()], key)
        .map_err(|e| format!("quinn server config: {e}"))?;
    server_cfg.transport_config(transport(mtu));
    let server =
        quinn::Endpoint::server(server_cfg, localhost()).map_err(|e| format!("quinn bind: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| format!("root store: {e}"))?;
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let quic = QuicClientConfig::try_from(tls).map_err(|e| format!("quic tls: {e}"))?;
    let mut client_cfg = quinn::ClientConfig::new(Arc::new(quic));
    client_cfg.transport_config(transport(mtu));
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = srv.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; phantom_compare::phantom_runs::WRITE_CHUNK];
                        let mut n = 0u64;
                        while let Ok(Some(k)) = recv.read(&mut buf).await {
                            n += k as u64;
                        }
                        let _ = send.write_all(&n.to_be_bytes()).await;
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    Ok((server, client_cfg))
}

/// One bulk round, shaped like Phantom's: fresh endpoints, handshake not timed, one stream.
pub(crate) async fn bulk(bytes: u64, mtu: u16, payload: &[u8]) -> Result<BulkSample, String> {
    let (server, client_cfg) = pair(mtu)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let s = bulk_client(addr, client_cfg, bytes, payload).await;
    server.close(0u32.into(), b"done");
    s
}

/// The server half of a split round: a counting server and the client config to reach it.
pub(crate) fn serve(
    mtu: u16,
) -> Result<(quinn::Endpoint, SocketAddr, quinn::ClientConfig), String> {
    let (server, cfg) = pair(mtu)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    Ok((server, addr, cfg))
}

/// The client half: connect (not timed), send `bytes` on one stream, wait for the count.
pub(crate) async fn bulk_client(
    addr: SocketAddr,
    client_cfg: quinn::ClientConfig,
    bytes: u64,
    payload: &[u8],
) -> Result<BulkSample, String> {
    let client = quinn::Endpoint::client(localhost()).map_err(|e| format!("quinn client: {e}"))?;
    let conn = client
        .connect_with(client_cfg, addr, "localhost")
        .map_err(|e| format!("quinn connect: {e}"))?
        .await
        .map_err(|e| format!("quinn handshake: {e}"))?;
    let sent_before = conn.stats().udp_tx.datagrams;
    let watch = Stopwatch::start()?;
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("quinn open_bi: {e}"))?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(payload.len() as u64)).unwrap_or(payload.len());
        let chunk = payload.get(..n).ok_or("payload chunk")?;
        send.write_all(chunk)
            .await
            .map_err(|e| format!("quinn write: {e}"))?;
        left -= n as u64;
    }
    send.finish().map_err(|e| format!("quinn finish: {e}"))?;
    let mut answer = [0u8; 8];
    recv.read_exact(&mut answer)
        .await
        .map_err(|e| format!("quinn read answer: {e}"))?;
    let (wall, cpu) = watch.stop()?;
    let sender_thread_cpu = watch.thread()?;
    let datagrams = conn.stats().udp_tx.datagrams.saturating_sub(sent_before);
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), client.wait_idle()).await;
    let got = u64::from_be_bytes(answer);
    if got != bytes {
        return Err(format!("quinn: server counted {got} of {bytes} bytes"));
    }
    Ok(BulkSample {
        bytes,
        wall,
        cpu,
        datagrams: Some(datagrams),
        sender_thread_cpu,
    })
}

/// `n` handshakes one after another from one client endpoint (reference for Phantom's).
pub(crate) async fn handshakes_sequential(n: usize) -> Result<HandshakeSample, String> {
    let (server, client_cfg) = pair(1452)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let client = quinn::Endpoint::client(localhost()).map_err(|e| format!("quinn client: {e}"))?;
    let mut latencies = Vec::with_capacity(n);
    let watch = Stopwatch::start()?;
    for _ in 0..n {
        let t = Instant::now();
        let conn = client
            .connect_with(client_cfg.clone(), addr, "localhost")
            .map_err(|e| format!("quinn connect: {e}"))?
            .await
            .map_err(|e| format!("quinn handshake: {e}"))?;
        latencies.push(t.elapsed());
        conn.close(0u32.into(), b"");
    }
    let (wall, cpu) = watch.stop()?;
    server.close(0u32.into(), b"done");
    Ok(HandshakeSample {
        latencies,
        wall,
        cpu,
    })
}
