//! quinn 0.11 (rustls 0.23, GSO/GRO via quinn-udp) over loopback UDP, on rustls' ring or
//! aws-lc-rs provider, with a classical (X25519) or hybrid post-quantum (X25519MLKEM768)
//! key exchange, on the kernel-default or Phantom's socket buffers, CUBIC (quinn's default)
//! or BBR.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use phantom_compare::measure::{BulkSample, HandshakeSample, Stopwatch, rss_bytes};
use phantom_compare::phantom_runs::{MemorySample, from_hex, to_hex};
use phantom_compare::sockets::{self, Buffers};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// rustls' crypto provider: the AEAD of the data packets and the handshake's primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Provider {
    /// `rustls::crypto::ring`.
    Ring,
    /// `rustls::crypto::aws_lc_rs`.
    AwsLc,
}

/// The one TLS key-exchange group offered (and so negotiated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kx {
    /// Classical X25519.
    X25519,
    /// Hybrid X25519 + ML-KEM-768 (aws-lc-rs only), as Phantom's handshake is hybrid.
    X25519MlKem768,
}

/// quinn's congestion controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cc {
    /// CUBIC, quinn's default.
    Cubic,
    /// quinn's BBR (`BbrConfig`).
    Bbr,
}

/// Everything a quinn run is configured by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuinnOpts {
    pub(crate) provider: Provider,
    pub(crate) kx: Kx,
    pub(crate) cc: Cc,
    pub(crate) buffers: Buffers,
    pub(crate) mtu: u16,
}

impl QuinnOpts {
    /// ring, X25519, CUBIC, Phantom's buffers, 1452-byte datagrams.
    pub(crate) const DEFAULT: QuinnOpts = QuinnOpts {
        provider: Provider::Ring,
        kx: Kx::X25519,
        cc: Cc::Cubic,
        buffers: Buffers::Equal,
        mtu: 1452,
    };

    /// A short description for the report.
    pub(crate) fn label(&self) -> String {
        let p = match self.provider {
            Provider::Ring => "ring",
            Provider::AwsLc => "aws-lc-rs",
        };
        let k = match self.kx {
            Kx::X25519 => "X25519",
            Kx::X25519MlKem768 => "X25519MLKEM768",
        };
        format!("{p}, {k}")
    }
}

fn provider(opts: QuinnOpts) -> Result<Arc<CryptoProvider>, String> {
    use rustls::crypto::{aws_lc_rs, ring};
    let mut p = match opts.provider {
        Provider::Ring => ring::default_provider(),
        Provider::AwsLc => aws_lc_rs::default_provider(),
    };
    p.kx_groups = match (opts.provider, opts.kx) {
        (Provider::Ring, Kx::X25519) => vec![ring::kx_group::X25519],
        (Provider::AwsLc, Kx::X25519) => vec![aws_lc_rs::kx_group::X25519],
        (Provider::AwsLc, Kx::X25519MlKem768) => vec![aws_lc_rs::kx_group::X25519MLKEM768],
        (Provider::Ring, Kx::X25519MlKem768) => {
            return Err("rustls' ring provider has no X25519MLKEM768".into());
        }
    };
    Ok(Arc::new(p))
}

fn transport(opts: QuinnOpts) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.initial_mtu(opts.mtu)
        .min_mtu(opts.mtu)
        .mtu_discovery_config(None);
    match opts.cc {
        Cc::Cubic => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::CubicConfig::default()))
        }
        Cc::Bbr => {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        }
    };
    Arc::new(t)
}

/// A quinn endpoint on a socket of our own (so its buffers can be set) on 127.0.0.1.
fn endpoint(
    server: Option<quinn::ServerConfig>,
    buffers: Buffers,
) -> Result<quinn::Endpoint, String> {
    let socket = sockets::bind_udp(localhost(), buffers)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| format!("quinn endpoint: {e}"))
}

/// Server-side connections established in this process (for the idle-memory run).
static ESTABLISHED: AtomicUsize = AtomicUsize::new(0);

/// A client config that trusts exactly `cert`.
fn client_config(
    cert: CertificateDer<'static>,
    opts: QuinnOpts,
) -> Result<quinn::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|e| format!("root store: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider(opts)?)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("tls client: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let quic = QuicClientConfig::try_from(tls).map_err(|e| format!("quic tls: {e}"))?;
    let mut client_cfg = quinn::ClientConfig::new(Arc::new(quic));
    client_cfg.transport_config(transport(opts));
    Ok(client_cfg)
}

/// A server endpoint on 127.0.0.1 that counts each bidirectional stream and answers with
/// its length, plus a client config that trusts its self-signed certificate.
fn pair(opts: QuinnOpts) -> Result<(quinn::Endpoint, quinn::ClientConfig), String> {
    pair_with_cert(opts).map(|(e, c, _)| (e, c))
}

/// [`pair`] and the server's certificate (DER).
fn pair_with_cert(
    opts: QuinnOpts,
) -> Result<
    (
        quinn::Endpoint,
        quinn::ClientConfig,
        CertificateDer<'static>,
    ),
    String,
> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(|e| format!("rcgen: {e}"))?;
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let tls = rustls::ServerConfig::builder_with_provider(provider(opts)?)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("tls server: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .map_err(|e| format!("quinn server config: {e}"))?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| format!("quic tls: {e}"))?;
    let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server_cfg.transport_config(transport(opts));
    let server = endpoint(Some(server_cfg), opts.buffers)?;
    let client_cfg = client_config(cert.clone(), opts)?;
    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = srv.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                ESTABLISHED.fetch_add(1, Ordering::Relaxed);
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
    Ok((server, client_cfg, cert))
}

/// One bulk round, shaped like Phantom's: fresh endpoints, handshake not timed, one stream.
pub(crate) async fn bulk(
    bytes: u64,
    opts: QuinnOpts,
    payload: &[u8],
) -> Result<BulkSample, String> {
    let (server, client_cfg) = pair(opts)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let s = bulk_client(addr, client_cfg, opts.buffers, bytes, payload).await;
    server.close(0u32.into(), b"done");
    s
}

/// The server half of a split round: a counting server and the client config to reach it.
pub(crate) fn serve(
    opts: QuinnOpts,
) -> Result<(quinn::Endpoint, SocketAddr, quinn::ClientConfig), String> {
    let (server, cfg) = pair(opts)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    Ok((server, addr, cfg))
}

/// The client half: connect (not timed), send `bytes` on one stream, wait for the count.
pub(crate) async fn bulk_client(
    addr: SocketAddr,
    client_cfg: quinn::ClientConfig,
    buffers: Buffers,
    bytes: u64,
    payload: &[u8],
) -> Result<BulkSample, String> {
    let client = endpoint(None, buffers)?;
    let conn = client
        .connect_with(client_cfg, addr, "localhost")
        .map_err(|e| format!("quinn connect: {e}"))?
        .await
        .map_err(|e| format!("quinn handshake: {e}"))?;
    let before = conn.stats();
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
    let after = conn.stats();
    let datagrams = after
        .udp_tx
        .datagrams
        .saturating_sub(before.udp_tx.datagrams);
    let local = client.local_addr().map_err(|e| e.to_string())?;
    let socket_drops = sockets::socket_drops(&[addr, local]);
    let rcvbuf = sockets::rcvbuf(addr);
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
        lost_packets: Some(
            after
                .path
                .lost_packets
                .saturating_sub(before.path.lost_packets),
        ),
        retransmitted_bytes: Some(after.path.lost_bytes.saturating_sub(before.path.lost_bytes)),
        socket_drops,
        rcvbuf,
    })
}

/// `n` handshakes one after another from one client endpoint.
pub(crate) async fn handshakes_sequential(
    n: usize,
    opts: QuinnOpts,
) -> Result<HandshakeSample, String> {
    let (server, client_cfg) = pair(opts)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let client = endpoint(None, opts.buffers)?;
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

/// `n` handshakes started at once, each from its own client endpoint, to one server.
pub(crate) async fn handshakes_concurrent(
    n: usize,
    opts: QuinnOpts,
) -> Result<HandshakeSample, String> {
    let (server, client_cfg) = pair(opts)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(endpoint(None, opts.buffers)?);
    }
    let watch = Stopwatch::start()?;
    let mut tasks = Vec::with_capacity(n);
    for client in clients {
        let cfg = client_cfg.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let conn = client
                .connect_with(cfg, addr, "localhost")
                .map_err(|e| format!("quinn connect: {e}"))?
                .await
                .map_err(|e| format!("quinn handshake: {e}"))?;
            Ok::<_, String>((t.elapsed(), client, conn))
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    for t in tasks {
        let (lat, client, conn) = t.await.map_err(|e| format!("task: {e}"))??;
        latencies.push(lat);
        keep.push((client, conn));
    }
    let (wall, cpu) = watch.stop()?;
    for (_, conn) in &keep {
        conn.close(0u32.into(), b"");
    }
    drop(keep);
    server.close(0u32.into(), b"done");
    Ok(HandshakeSample {
        latencies,
        wall,
        cpu,
    })
}

/// Opens `n` idle connections to `addr` from `endpoints` client endpoints.
async fn open_idle(
    addr: SocketAddr,
    cfg: &quinn::ClientConfig,
    n: usize,
    endpoints: usize,
) -> Result<Vec<(quinn::Endpoint, Vec<quinn::Connection>)>, String> {
    let endpoints = endpoints.clamp(1, n.max(1));
    let mut out = Vec::with_capacity(endpoints);
    let mut tasks = Vec::with_capacity(endpoints);
    for e in 0..endpoints {
        let share = n / endpoints + usize::from(e < n % endpoints);
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(async move {
            let client = endpoint(None, QuinnOpts::DEFAULT.buffers)?;
            let mut conns = Vec::with_capacity(share);
            for _ in 0..share {
                conns.push(
                    client
                        .connect_with(cfg.clone(), addr, "localhost")
                        .map_err(|e| format!("quinn connect: {e}"))?
                        .await
                        .map_err(|e| format!("quinn handshake: {e}"))?,
                );
            }
            Ok::<_, String>((client, conns))
        }));
    }
    for t in tasks {
        out.push(t.await.map_err(|e| format!("task: {e}"))??);
    }
    Ok(out)
}

async fn wait_established(target: usize) -> Result<(), String> {
    for _ in 0..3000 {
        if ESTABLISHED.load(Ordering::Relaxed) >= target {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("quinn: not every idle connection reached the server".into())
}

/// Idle-connection RSS per connection with both ends in this process (reference).
pub(crate) async fn idle_memory_both_ends(
    n: usize,
    endpoints: usize,
    settle: Duration,
) -> Result<MemorySample, String> {
    let (server, cfg) = pair(QuinnOpts::DEFAULT)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = ESTABLISHED.load(Ordering::Relaxed);
    let before = rss_bytes()?;
    let open = open_idle(addr, &cfg, n, endpoints).await?;
    wait_established(base + n).await?;
    tokio::time::sleep(settle).await;
    let after = rss_bytes()?;
    drop(open);
    server.close(0u32.into(), b"done");
    Ok(MemorySample {
        sessions: n,
        before,
        after,
    })
}

/// Idle-connection RSS per connection, server side only: the clients run in a child
/// process (`child` runs [`idle_clients_child`]; address, certificate, count and endpoint
/// count are appended).
pub(crate) async fn idle_memory_server_only(
    n: usize,
    endpoints: usize,
    settle: Duration,
    mut child: tokio::process::Command,
) -> Result<MemorySample, String> {
    let (server, _, cert) = pair_with_cert(QuinnOpts::DEFAULT)?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let base = ESTABLISHED.load(Ordering::Relaxed);
    let before = rss_bytes()?;
    let mut proc = child
        .arg(addr.to_string())
        .arg(to_hex(cert.as_ref()))
        .arg(n.to_string())
        .arg(endpoints.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning the client process: {e}"))?;
    let stdout = proc.stdout.take().ok_or("child stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .map_err(|_| "the quinn client process did not finish in 120 s".to_string())?
    .map_err(|e| format!("child stdout: {e}"))?;
    if line.trim() != "ready" {
        return Err(format!("quinn client process failed (said {line:?})"));
    }
    wait_established(base + n).await?;
    tokio::time::sleep(settle).await;
    let after = rss_bytes()?;
    drop(proc.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), proc.wait()).await;
    server.close(0u32.into(), b"done");
    Ok(MemorySample {
        sessions: n,
        before,
        after,
    })
}

/// Child side of [`idle_memory_server_only`].
pub(crate) async fn idle_clients_child(
    addr: SocketAddr,
    cert_hex: &str,
    n: usize,
    endpoints: usize,
) -> Result<(), String> {
    let cert = CertificateDer::from(from_hex(cert_hex)?);
    let cfg = client_config(cert, QuinnOpts::DEFAULT)?;
    let open = open_idle(addr, &cfg, n, endpoints).await?;
    println!("ready");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(open);
    Ok(())
}
