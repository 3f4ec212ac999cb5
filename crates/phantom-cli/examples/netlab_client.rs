//! The client side of `cargo xtask netlab` for what `phantom send` cannot express:
//! events (shell commands that break or change the network) run mid-transfer, here
//! with extra paths from other local addresses and a scheduler as `phantom send
//! --path ADDR --scheduler MODE` has them.
//!
//! It sends `--bytes` of a deterministic pseudo-random stream to a `phantom serve
//! --echo` server and compares every byte that comes back with the same stream, so
//! the transfer is byte-exact or the run fails. While reading it records the longest
//! silence (no echoed byte) after each event: the gap the event caused.
//!
//! Its last stdout line is machine-read by xtask:
//! `netlab-result bytes=N secs=S exact=yes|no gaps_ms=G1,G2 carriers=udp,tcp seen=udp,tcp
//! paths=K rtt_ms=R` (carriers: of each path at the end; seen: sampled during the transfer).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use phantom::{Carrier, ClientOptions, Connection, Endpoint, HybridVerifyingKey, SchedulerMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Client of the network lab.
#[derive(Debug, Parser)]
struct Args {
    /// Server UDP address.
    #[arg(long)]
    connect: SocketAddr,
    /// The server's `server.pub`.
    #[arg(long)]
    server_pub: PathBuf,
    /// Local address of the first path.
    #[arg(long, default_value = "0.0.0.0:0")]
    bind: SocketAddr,
    /// Local addresses of further paths.
    #[arg(long)]
    extra_path: Vec<SocketAddr>,
    /// Scheduler: low-latency, aggregate, redundant or failover.
    #[arg(long, default_value = "low-latency")]
    scheduler: String,
    /// The server's TCP fallback address.
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Payload bytes.
    #[arg(long)]
    bytes: u64,
    /// `BYTES:COMMAND`: once BYTES have come back, run COMMAND with `sh -c`.
    #[arg(long)]
    event: Vec<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// xorshift64*, byte by byte: the payload, reproducible on both sides of the
/// comparison whatever sizes the reads and writes have.
struct Payload {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Payload {
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

    fn new() -> Self {
        Self {
            state: Self::SEED,
            word: [0; 8],
            used: 8,
        }
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
                self.used = 0;
            }
            *b = self.word.get(self.used).copied().unwrap_or(0);
            self.used += 1;
        }
    }
}

fn scheduler(s: &str) -> Result<SchedulerMode, String> {
    Ok(match s {
        "low-latency" => SchedulerMode::LowLatency,
        "aggregate" => SchedulerMode::Aggregate,
        "redundant" => SchedulerMode::Redundant,
        "failover" => SchedulerMode::Failover,
        other => return Err(format!("unknown scheduler {other}")),
    })
}

fn load_key(path: &PathBuf) -> Result<HybridVerifyingKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t = text.trim();
    let bytes: Option<Vec<u8>> = (t.len() % 2 == 0)
        .then(|| {
            (0..t.len())
                .step_by(2)
                .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect()
        })
        .flatten();
    let bytes = bytes.ok_or_else(|| format!("{}: not hex", path.display()))?;
    HybridVerifyingKey::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

async fn wait_validated(conn: &Connection, want: usize) -> Result<(), String> {
    let deadline = phantom::now() + Duration::from_secs(5);
    loop {
        let n = conn.paths().iter().filter(|p| p.validated).count();
        if n >= want {
            return Ok(());
        }
        if phantom::now() > deadline {
            return Err(format!("only {n} of {want} paths validated within 5 s"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Outcome {
    received: u64,
    exact: bool,
    gaps: Vec<Duration>,
    /// Carriers that carried a path at some sample during the transfer.
    seen: std::collections::BTreeSet<&'static str>,
}

fn carrier_names(conn: &Connection) -> Vec<&'static str> {
    conn.paths_with_carrier()
        .iter()
        .map(|(_, c)| match c {
            Carrier::Udp => "udp",
            Carrier::Tcp => "tcp",
        })
        .collect()
}

async fn transfer(conn: &Connection, args: &Args) -> Result<Outcome, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let total = args.bytes;
    let writer = tokio::spawn(async move {
        let mut payload = Payload::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = total;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let chunk = buf.get_mut(..n).unwrap_or_default();
            payload.fill(chunk);
            send.write_all(chunk).await?;
            left -= n as u64;
        }
        send.shutdown().await
    });
    let mut events: Vec<(u64, String)> = Vec::new();
    for e in &args.event {
        let (at, cmd) = e
            .split_once(':')
            .ok_or_else(|| format!("event {e:?} is not BYTES:COMMAND"))?;
        let at = at
            .parse()
            .map_err(|_| format!("event {e:?}: bad byte count"))?;
        events.push((at, cmd.to_owned()));
    }
    events.sort_by_key(|(at, _)| *at);
    let mut expect = Payload::new();
    let mut want = vec![0u8; 64 * 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    let mut exact = true;
    let mut gaps: Vec<Duration> = Vec::new();
    let mut last = phantom::now();
    let mut next_event = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    let mut sampled = phantom::now();
    loop {
        let k = recv.read(&mut buf).await.map_err(|e| e.to_string())?;
        let now = phantom::now();
        if now.saturating_duration_since(sampled) > Duration::from_millis(50) {
            seen.extend(carrier_names(conn));
            sampled = now;
        }
        if next_event > 0
            && let Some(g) = gaps.last_mut()
        {
            *g = (*g).max(now.saturating_duration_since(last));
        }
        last = now;
        if k == 0 {
            break;
        }
        let got = buf.get(..k).unwrap_or_default();
        let w = want.get_mut(..k).unwrap_or_default();
        expect.fill(w);
        exact &= got == w;
        received += k as u64;
        while let Some((at, cmd)) = events.get(next_event) {
            if received < *at {
                break;
            }
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .status()
                .map_err(|e| format!("event {cmd:?}: {e}"))?;
            if !status.success() {
                return Err(format!("event {cmd:?} failed with {status}"));
            }
            println!("event at {received} bytes: {cmd}");
            next_event += 1;
            gaps.push(Duration::ZERO);
            last = phantom::now();
        }
    }
    writer
        .await
        .map_err(|e| format!("writer task: {e}"))?
        .map_err(|e| format!("writing: {e}"))?;
    Ok(Outcome {
        received,
        exact: exact && received == total,
        gaps,
        seen,
    })
}

async fn run(args: Args) -> Result<(), String> {
    let key = load_key(&args.server_pub)?;
    let mut opts = ClientOptions {
        tcp_fallback: args.tcp,
        ..ClientOptions::default()
    };
    opts.session.scheduler = scheduler(&args.scheduler)?;
    let ep = Endpoint::client(args.bind).map_err(|e| e.to_string())?;
    let conn = ep
        .connect_with(args.connect, &key, opts)
        .await
        .map_err(|e| e.to_string())?;
    for local in &args.extra_path {
        conn.add_path(*local)
            .map_err(|e| format!("add_path {local}: {e}"))?;
    }
    wait_validated(&conn, 1 + args.extra_path.len()).await?;
    let start = phantom::now();
    let out = tokio::time::timeout(Duration::from_secs(args.timeout), transfer(&conn, &args))
        .await
        .map_err(|_| format!("transfer not complete within {} s", args.timeout))??;
    let secs = start.elapsed().as_secs_f64();
    let carriers = carrier_names(&conn);
    let s = conn.stats();
    let paths = conn.paths();
    for p in &paths {
        println!(
            "path {} {} -> {} validated={} primary={} bytes_sent={} bytes_received={} rtt={:?}",
            p.id.0,
            p.local,
            p.remote,
            p.validated,
            p.primary,
            p.bytes_sent,
            p.bytes_received,
            p.rtt
        );
    }
    // MiB sent and received on each path still open at the end, in path order.
    let mib = |b: u64| format!("{:.1}", b as f64 / f64::from(1u32 << 20));
    let split = |f: fn(&phantom::PathSnapshot) -> u64| {
        paths
            .iter()
            .map(|p| mib(f(p)))
            .collect::<Vec<_>>()
            .join("/")
    };
    let (sent_mib, recv_mib) = (split(|p| p.bytes_sent), split(|p| p.bytes_received));
    println!(
        "stats packets_sent={} lost={} ptos={} retransmitted={} migrations={}",
        s.packets_sent, s.packets_lost, s.ptos, s.stream_bytes_retransmitted, s.migrations
    );
    let gaps: Vec<String> = out.gaps.iter().map(|g| g.as_millis().to_string()).collect();
    println!(
        "netlab-result bytes={} secs={secs:.3} exact={} gaps_ms={} carriers={} seen={} paths={} rtt_ms={} sent_mib={sent_mib} recv_mib={recv_mib}",
        out.received,
        if out.exact { "yes" } else { "no" },
        if gaps.is_empty() {
            "-".into()
        } else {
            gaps.join(",")
        },
        carriers.join(","),
        out.seen.iter().copied().collect::<Vec<_>>().join(","),
        carriers.len(),
        s.rtt.as_millis()
    );
    conn.close(0, b"netlab done");
    let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
    if out.exact {
        Ok(())
    } else {
        Err(format!(
            "echo differs from what was sent ({} bytes back)",
            out.received
        ))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netlab_client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(run(args));
    rt.shutdown_timeout(Duration::from_millis(200));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netlab_client: {e}");
            ExitCode::FAILURE
        }
    }
}
