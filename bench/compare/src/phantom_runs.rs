//! Phantom's side of the comparison: a loopback bulk transfer on one stream, handshakes per
//! second over real sockets, and resident memory per idle session.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use phantom::{
    ClientOptions, CongestionAlgorithm, Connection, Endpoint, HybridSigningKey, HybridVerifyingKey,
    ServerConfig, ServerIdentity, SessionConfig,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::measure::{BulkSample, HandshakeSample, Stopwatch, rss_bytes};
use crate::sockets::{self, Buffers};

/// The conditions of one bulk round: congestion controller and socket buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOpts {
    /// Phantom's congestion controller (the default is BBR).
    pub congestion: CongestionAlgorithm,
    /// Socket buffers of both endpoints.
    pub buffers: Buffers,
}

impl Default for RunOpts {
    fn default() -> Self {
        Self {
            congestion: CongestionAlgorithm::default(),
            buffers: Buffers::Equal,
        }
    }
}

/// Bytes per write call on the sending side (the same for every implementation).
pub const WRITE_CHUNK: usize = 256 * 1024;

fn err<E: Into<phantom::Error>>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("phantom {what}: {}", e.into())
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("phantom {what}: {e}")
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The session tuning of every run: defaults with `max_datagram_size` set.
#[must_use]
pub fn session_config(max_datagram_size: usize) -> SessionConfig {
    SessionConfig {
        max_datagram_size,
        ..phantom::default_session_config()
    }
}

/// [`session_config`] with the congestion controller of `opts`.
#[must_use]
pub fn bulk_session_config(max_datagram_size: usize, opts: RunOpts) -> SessionConfig {
    SessionConfig {
        congestion: opts.congestion,
        ..session_config(max_datagram_size)
    }
}

/// A [`counting_server`] for a bulk round: `opts`' controller, its buffers applied.
///
/// # Errors
/// As [`counting_server`], or if the buffers cannot be set.
pub async fn bulk_server(
    max_datagram_size: usize,
    opts: RunOpts,
) -> Result<(Endpoint, HybridVerifyingKey), String> {
    let (ep, vk) = counting_server(bulk_session_config(max_datagram_size, opts))?;
    sockets::apply_to_own(ep.local_addr(), opts.buffers).await?;
    Ok((ep, vk))
}

/// A fresh server identity (valid for a day) and the key clients pin.
///
/// # Errors
/// If the identity cannot be certified.
pub fn identity() -> Result<(ServerIdentity, HybridVerifyingKey), String> {
    let mut rng = rand::rng();
    let sk = HybridSigningKey::generate(&mut rng);
    let id = ServerIdentity::generate(&sk, &mut rng, phantom::unix_time() + 86_400)
        .map_err(|e| format!("phantom identity: {e}"))?;
    Ok((id, sk.verifying_key()))
}

/// A server endpoint on 127.0.0.1 whose every stream is counted and answered with its
/// length (8 bytes, big endian); returns it and the key to pin.
///
/// # Errors
/// If the identity or the socket cannot be made.
pub fn counting_server(session: SessionConfig) -> Result<(Endpoint, HybridVerifyingKey), String> {
    let (id, vk) = identity()?;
    let mut cfg = ServerConfig::new(id);
    cfg.session = session;
    let server = Endpoint::server(cfg, localhost()).map_err(err("server endpoint"))?;
    let srv = server.clone();
    tokio::spawn(async move {
        while let Ok(conn) = srv.accept().await {
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; WRITE_CHUNK];
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
    Ok((server, vk))
}

fn client_options(session: SessionConfig) -> ClientOptions {
    ClientOptions {
        session,
        ..ClientOptions::default()
    }
}

/// One bulk round: a fresh server and client, handshake (not timed), then `bytes` of
/// `payload` (repeated) on one stream; timed from the first write to the server's count.
///
/// # Errors
/// Any transport error, or a count that differs from `bytes`.
pub async fn bulk(
    bytes: u64,
    max_datagram_size: usize,
    opts: RunOpts,
    payload: &[u8],
) -> Result<BulkSample, String> {
    let (server, vk) = bulk_server(max_datagram_size, opts).await?;
    let s = bulk_client(
        server.local_addr(),
        &vk,
        bytes,
        max_datagram_size,
        opts,
        payload,
    )
    .await;
    drop(server);
    s
}

/// The client half of [`bulk`]: connects to a [`counting_server`] at `addr` (not timed),
/// sends `bytes` on one stream and waits for the count.
///
/// # Errors
/// Any transport error, or a count that differs from `bytes`.
pub async fn bulk_client(
    addr: SocketAddr,
    vk: &HybridVerifyingKey,
    bytes: u64,
    max_datagram_size: usize,
    opts: RunOpts,
    payload: &[u8],
) -> Result<BulkSample, String> {
    let session = bulk_session_config(max_datagram_size, opts);
    let client = Endpoint::client(localhost()).map_err(err("client endpoint"))?;
    sockets::apply_to_own(client.local_addr(), opts.buffers).await?;
    let conn = client
        .connect_with(addr, vk, client_options(session))
        .await
        .map_err(err("connect"))?;
    let before = conn.stats();
    let watch = Stopwatch::start()?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(err("open_bi"))?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left.min(payload.len() as u64)).unwrap_or(payload.len());
        let chunk = payload.get(..n).ok_or("payload chunk")?;
        send.write_all(chunk).await.map_err(io_err("write"))?;
        left -= n as u64;
    }
    send.shutdown().await.map_err(io_err("finish"))?;
    let mut answer = [0u8; 8];
    recv.read_exact(&mut answer)
        .await
        .map_err(io_err("read answer"))?;
    let (wall, cpu) = watch.stop()?;
    let sender_thread_cpu = watch.thread()?;
    let after = conn.stats();
    let datagrams = after.packets_sent.saturating_sub(before.packets_sent);
    let socket_drops = sockets::socket_drops(&[addr, client.local_addr()]);
    let rcvbuf = sockets::rcvbuf(addr);
    let got = u64::from_be_bytes(answer);
    conn.close(0, b"bench done");
    let _ = tokio::time::timeout(Duration::from_secs(1), client.wait_idle()).await;
    if got != bytes {
        return Err(format!("phantom: server counted {got} of {bytes} bytes"));
    }
    Ok(BulkSample {
        bytes,
        wall,
        cpu,
        datagrams: Some(datagrams),
        sender_thread_cpu,
        lost_packets: Some(after.packets_lost.saturating_sub(before.packets_lost)),
        retransmitted_bytes: Some(
            after
                .stream_bytes_retransmitted
                .saturating_sub(before.stream_bytes_retransmitted),
        ),
        socket_drops,
        rcvbuf,
    })
}

/// `n` handshakes one after another from one client endpoint to one server endpoint; each
/// connection is closed once established.
///
/// # Errors
/// Any failed connect.
pub async fn handshakes_sequential(n: usize) -> Result<HandshakeSample, String> {
    let session = session_config(1452);
    let (server, vk) = counting_server(session.clone())?;
    let addr = server.local_addr();
    let client = Endpoint::client(localhost()).map_err(err("client endpoint"))?;
    let mut latencies = Vec::with_capacity(n);
    let watch = Stopwatch::start()?;
    for _ in 0..n {
        let t = Instant::now();
        let conn = client
            .connect_with(addr, &vk, client_options(session.clone()))
            .await
            .map_err(err("connect"))?;
        latencies.push(t.elapsed());
        conn.close(0, b"");
    }
    let (wall, cpu) = watch.stop()?;
    drop(server);
    Ok(HandshakeSample {
        latencies,
        wall,
        cpu,
    })
}

/// `n` handshakes started at once, each from its own client endpoint (socket), to one
/// server endpoint.
///
/// # Errors
/// Any failed connect.
pub async fn handshakes_concurrent(n: usize) -> Result<HandshakeSample, String> {
    let session = session_config(1452);
    let (server, vk) = counting_server(session.clone())?;
    let addr = server.local_addr();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Endpoint::client(localhost()).map_err(err("client endpoint"))?);
    }
    let watch = Stopwatch::start()?;
    let mut tasks = Vec::with_capacity(n);
    for client in clients {
        let vk = vk.clone();
        let opts = client_options(session.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let conn = client.connect_with(addr, &vk, opts).await?;
            let lat = t.elapsed();
            Ok::<_, phantom::Error>((lat, client, conn))
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    let mut keep = Vec::with_capacity(n);
    for t in tasks {
        let (lat, client, conn) = t
            .await
            .map_err(|e| format!("task: {e}"))?
            .map_err(err("concurrent connect"))?;
        latencies.push(lat);
        keep.push((client, conn));
    }
    let (wall, cpu) = watch.stop()?;
    for (_, conn) in &keep {
        conn.close(0, b"");
    }
    drop(keep);
    drop(server);
    Ok(HandshakeSample {
        latencies,
        wall,
        cpu,
    })
}

/// Opens `n` sessions to `addr` from `endpoints` client endpoints (each endpoint connects
/// its share one after another; the endpoints run concurrently).
///
/// # Errors
/// Any failed connect.
pub async fn open_idle_sessions(
    addr: SocketAddr,
    vk: &HybridVerifyingKey,
    n: usize,
    endpoints: usize,
) -> Result<Vec<(Endpoint, Vec<Connection>)>, String> {
    let endpoints = endpoints.clamp(1, n.max(1));
    let mut tasks = Vec::with_capacity(endpoints);
    for e in 0..endpoints {
        let share = n / endpoints + usize::from(e < n % endpoints);
        let vk = vk.clone();
        tasks.push(tokio::spawn(async move {
            let client = Endpoint::client(localhost()).map_err(err("client endpoint"))?;
            let mut conns = Vec::with_capacity(share);
            for _ in 0..share {
                let opts = client_options(session_config(1452));
                conns.push(
                    client
                        .connect_with(addr, &vk, opts)
                        .await
                        .map_err(err("connect"))?,
                );
            }
            Ok::<_, String>((client, conns))
        }));
    }
    let mut out = Vec::with_capacity(endpoints);
    for t in tasks {
        out.push(t.await.map_err(|e| format!("task: {e}"))??);
    }
    Ok(out)
}

/// Resident memory per idle session, as measured by [`idle_memory_both_ends`] or
/// [`idle_memory_server_only`].
#[derive(Debug, Clone, Copy)]
pub struct MemorySample {
    /// Sessions open while measuring.
    pub sessions: usize,
    /// RSS before the sessions were opened (bytes).
    pub before: u64,
    /// RSS with them open, after settling (bytes).
    pub after: u64,
}

impl MemorySample {
    /// RSS growth divided by the session count.
    #[must_use]
    pub fn per_session(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.sessions.max(1) as f64
    }
}

async fn wait_sessions(server: &Endpoint, n: usize, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    while server.session_count() < n {
        if t.elapsed() > limit {
            return Err(format!(
                "only {} of {n} sessions reached the server",
                server.session_count()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Opens `n` idle sessions to one server endpoint with every client in this process too:
/// the RSS growth per session counts **both ends** (client session + server session, and
/// the client endpoints' sockets and driver tasks amortised over their sessions).
///
/// # Errors
/// Any failed connect or unreadable `/proc`.
pub async fn idle_memory_both_ends(
    n: usize,
    endpoints: usize,
    settle: Duration,
) -> Result<MemorySample, String> {
    let (server, vk) = counting_server(session_config(1452))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes()?;
    let open = open_idle_sessions(server.local_addr(), &vk, n, endpoints).await?;
    wait_sessions(&server, n, Duration::from_secs(60)).await?;
    tokio::time::sleep(settle).await;
    let after = rss_bytes()?;
    for (_, conns) in &open {
        for c in conns {
            c.close(0, b"");
        }
    }
    drop(open);
    drop(server);
    Ok(MemorySample {
        sessions: n,
        before,
        after,
    })
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex.
///
/// # Errors
/// On an odd length or a non-hex digit.
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("bad hex at {i}"))
        })
        .collect()
}

/// Child side of [`idle_memory_server_only`]: opens `n` sessions to `addr` (pinning the
/// hex-encoded key), prints `ready` and keeps them open until its stdin closes.
///
/// # Errors
/// A bad key or a failed connect.
pub async fn idle_clients_child(
    addr: SocketAddr,
    key_hex: &str,
    n: usize,
    endpoints: usize,
) -> Result<(), String> {
    let vk = HybridVerifyingKey::from_bytes(&from_hex(key_hex)?)
        .map_err(|e| format!("server key: {e}"))?;
    let open = open_idle_sessions(addr, &vk, n, endpoints).await?;
    println!("ready");
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(open);
    Ok(())
}

/// Opens `n` idle sessions to a server endpoint in this process from clients in a child
/// process (`child` is the command that runs [`idle_clients_child`]; the server address,
/// key and count are appended): the RSS growth per session is the **server side only**.
///
/// # Errors
/// A child that fails, sessions that do not arrive, or unreadable `/proc`.
pub async fn idle_memory_server_only(
    n: usize,
    endpoints: usize,
    settle: Duration,
    mut child: tokio::process::Command,
) -> Result<MemorySample, String> {
    let (server, vk) = counting_server(session_config(1452))?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes()?;
    let mut proc = child
        .arg(server.local_addr().to_string())
        .arg(to_hex(&vk.to_bytes()))
        .arg(n.to_string())
        .arg(endpoints.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
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
    .map_err(|_| "the client process did not open its sessions in 120 s".to_string())?
    .map_err(|e| format!("child stdout: {e}"))?;
    if line.trim() != "ready" {
        return Err(format!("client process failed (said {line:?})"));
    }
    wait_sessions(&server, n, Duration::from_secs(60)).await?;
    tokio::time::sleep(settle).await;
    let after = rss_bytes()?;
    drop(proc.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), proc.wait()).await;
    drop(server);
    Ok(MemorySample {
        sessions: n,
        before,
        after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&b)).unwrap(), b);
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_bulk_round_counts_every_byte() {
        let payload = vec![0x5au8; WRITE_CHUNK];
        let s = bulk(1 << 20, 1452, RunOpts::default(), &payload)
            .await
            .unwrap();
        assert_eq!(s.bytes, 1 << 20);
        assert!(s.datagrams.unwrap() >= (1 << 20) / 1452);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kernel_default_buffers_reach_the_runtime_socket() {
        let payload = vec![0x5au8; WRITE_CHUNK];
        let opts = RunOpts {
            congestion: CongestionAlgorithm::Cubic,
            buffers: Buffers::KernelDefault,
        };
        let s = bulk(1 << 20, 1452, opts, &payload).await.unwrap();
        let dflt: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_default")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(s.rcvbuf, Some(dflt));
        assert_eq!(s.bytes, 1 << 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn handshakes_complete_sequentially_and_concurrently() {
        assert_eq!(handshakes_sequential(3).await.unwrap().latencies.len(), 3);
        assert_eq!(handshakes_concurrent(3).await.unwrap().latencies.len(), 3);
    }
}
