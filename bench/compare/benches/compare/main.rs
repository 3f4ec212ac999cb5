//! `cargo xtask bench --compare`: Phantom beside quinn 0.11 and phantom-protocol 0.4 on one
//! loopback bulk transfer (same payload, one stream, rounds interleaved), then Phantom's
//! handshakes per second over real sockets and resident memory per idle session.
//!
//! Direct use: `cargo bench --manifest-path bench/compare/Cargo.toml --bench compare
//! [--features aws-lc] -- [--bytes N] [--rounds R] [--quick] [--only bulk|handshakes|memory]`.
//! Both ends of every connection run in this process, except in the server-side-only memory
//! cases, whose clients run in a child process.

#![forbid(unsafe_code)]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the wall clock"
)]

mod pp_run;
mod quinn_run;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use phantom_compare::measure::{BulkSample, HandshakeSample, median, thread_cpu};
use phantom_compare::phantom_runs::{self, MemorySample, WRITE_CHUNK};

/// The maximum UDP payload every implementation that allows it is set to.
const DATAGRAM: u16 = 1452;

#[derive(Parser, Debug)]
#[command(
    name = "compare",
    about = "Phantom vs quinn vs phantom-protocol on loopback"
)]
struct Args {
    /// Payload bytes per bulk round (one stream) [default: 256 MiB; 16 MiB with --quick].
    #[arg(long)]
    bytes: Option<u64>,
    /// Rounds of each implementation, interleaved [default: 3; 2 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// A quick run: 16 MiB, 2 rounds, 50 handshakes, 200 sessions (explicit flags win).
    #[arg(long)]
    quick: bool,
    /// Run only this part.
    #[arg(long, value_enum, default_value_t = Part::All)]
    only: Part,
    /// Handshakes per handshake measurement [default: 200; 50 with --quick].
    #[arg(long)]
    handshakes: Option<usize>,
    /// Idle sessions held open for the memory measurement [default: 1000; 200 with --quick].
    #[arg(long)]
    sessions: Option<usize>,
    /// Bulk modes (comma-separated): `shared` (both ends on one multi-thread runtime) and
    /// `split` (sender and receiver each on a current-thread runtime of its own thread).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "shared,split"
    )]
    modes: Vec<Mode>,
    /// Implementations in the bulk rounds (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "phantom,quinn,phantom-protocol"
    )]
    impls: Vec<Impl>,
    /// Internal: run as the client process of the server-only memory measurement
    /// (ADDR KEY_HEX SESSIONS ENDPOINTS).
    #[arg(long, num_args = 4, hide = true)]
    idle_clients: Option<Vec<String>>,
    /// Internal: run one idle-memory measurement in this (fresh) process.
    #[arg(long, value_enum, hide = true)]
    memory_case: Option<MemCase>,
    /// Internal: the same for quinn (ADDR CERT_HEX SESSIONS ENDPOINTS).
    #[arg(long, num_args = 4, hide = true)]
    idle_quinn_clients: Option<Vec<String>>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn pick<T>(&self, given: Option<T>, full: T, quick: T) -> T {
        given.unwrap_or(if self.quick { quick } else { full })
    }
    fn bytes(&self) -> u64 {
        self.pick(self.bytes, 256 << 20, 16 << 20)
    }
    fn rounds(&self) -> usize {
        self.pick(self.rounds, 3, 2)
    }
    fn handshakes(&self) -> usize {
        self.pick(self.handshakes, 200, 50)
    }
    fn sessions(&self) -> usize {
        self.pick(self.sessions, 1000, 200)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MemCase {
    PhantomServer,
    PhantomBoth,
    QuinnServer,
    QuinnBoth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Shared,
    Split,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    All,
    Bulk,
    Handshakes,
    Memory,
}

/// Client endpoints (sockets) the idle sessions are spread over.
const IDLE_ENDPOINTS: usize = 8;
/// Time the idle sessions get to settle before RSS is read.
const SETTLE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let mut args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("compare: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = match (args.idle_clients.take(), args.idle_quinn_clients.take()) {
        (Some(child), _) => rt.block_on(idle_child(&child, false)),
        (None, Some(child)) => rt.block_on(idle_child(&child, true)),
        (None, None) => match args.memory_case {
            Some(case) => rt.block_on(memory_case(case, args.sessions())),
            None => rt.block_on(run(&args)),
        },
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn idle_child(a: &[String], quinn: bool) -> Result<(), String> {
    let [addr, key, n, e] = a else {
        return Err("--idle-clients needs ADDR KEY SESSIONS ENDPOINTS".into());
    };
    let addr = addr.parse().map_err(|e| format!("address: {e}"))?;
    let n = n.parse().map_err(|e| format!("sessions: {e}"))?;
    let e = e.parse().map_err(|e| format!("endpoints: {e}"))?;
    if quinn {
        quinn_run::idle_clients_child(addr, key, n, e).await
    } else {
        phantom_runs::idle_clients_child(addr, key, n, e).await
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let v: Vec<&str> = s.split_whitespace().take(3).collect();
            (v.len() == 3).then(|| v.join(" "))
        })
        .unwrap_or_else(|| "?".into())
}

fn backend() -> String {
    let aead = if cfg!(feature = "aws-lc") {
        "aws-lc-rs (--features aws-lc)"
    } else {
        "RustCrypto aes-gcm (default)"
    };
    format!("{aead}, {}", build_cpu())
}

/// What the binary was compiled to assume of the CPU. RustCrypto's AES-GCM depends on
/// it: POLYVAL's and AES's run-time feature dispatch keeps their intrinsics out of line
/// in a portable build; compiled in (`-C target-cpu=native`, what `cargo xtask bench
/// --compare` also runs) they inline. quinn's ring dispatches its assembly at run time
/// either way.
fn build_cpu() -> &'static str {
    if cfg!(all(
        target_feature = "aes",
        target_feature = "pclmulqdq",
        target_feature = "avx2"
    )) {
        "built for this CPU (AES-NI, PCLMULQDQ, AVX2 compiled in)"
    } else {
        "portable build (CPU features detected at run time)"
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "compare: phantom AEAD backend {}; {cpus} CPUs; load average {} (1/5/15 min)",
        backend(),
        loadavg()
    );
    println!(
        "compare: both ends of every connection run in this process; CPU is user+sys from \
         /proc in 10 ms ticks (small runs, e.g. --quick, give coarse CPU figures)"
    );
    if matches!(args.only, Part::All | Part::Bulk) {
        bulk(args).await?;
    }
    if matches!(args.only, Part::All | Part::Handshakes) {
        handshakes(args.handshakes()).await?;
    }
    if matches!(args.only, Part::All | Part::Memory) {
        memory(args.sessions()).await?;
    }
    println!("compare: load average at the end {}", loadavg());
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Impl {
    Phantom,
    Quinn,
    PhantomProtocol,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Phantom => "phantom",
            Impl::Quinn => "quinn 0.11",
            Impl::PhantomProtocol => "phantom-protocol 0.4",
        }
    }

    fn datagram(self) -> &'static str {
        match self {
            Impl::Phantom | Impl::Quinn => "1452",
            Impl::PhantomProtocol => "1200*",
        }
    }
}

/// One bulk round: the shared-runtime sample, or a split one with the receiver's CPU.
#[derive(Clone, Copy)]
struct Round {
    imp: Impl,
    split: bool,
    s: BulkSample,
    /// Split mode: CPU of the server (receiver) thread, from its ready signal to the end.
    receiver_cpu: Duration,
}

/// A bulk round with the server and the client each on a current-thread tokio runtime of
/// its own OS thread, so the sender's CPU is its thread's CPU (`/proc/thread-self/stat`).
async fn split_round<K, H, FS, FC>(
    serve: impl FnOnce() -> FS + Send + 'static,
    client: impl FnOnce(SocketAddr, K) -> FC + Send + 'static,
) -> Result<(BulkSample, Duration), String>
where
    K: Send + 'static,
    H: 'static,
    FS: Future<Output = Result<(H, SocketAddr, K), String>>,
    FC: Future<Output = Result<BulkSample, String>>,
{
    fn runtime() -> Result<tokio::runtime::Runtime, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))
    }
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(SocketAddr, K), String>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let spawn_err = |e: std::io::Error| format!("thread: {e}");
    let server = std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || -> Result<Duration, String> {
            runtime()?.block_on(async move {
                let (handle, addr, key) = match serve().await {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.clone()));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok((addr, key)));
                let c0 = thread_cpu()?;
                let _ = stop_rx.await;
                let cpu = thread_cpu()?.saturating_sub(c0);
                drop(handle);
                Ok(cpu)
            })
        })
        .map_err(spawn_err)?;
    let ready = ready_rx
        .await
        .map_err(|_| "server thread ended".to_string());
    let (addr, key) = match ready.and_then(|r| r) {
        Ok(v) => v,
        Err(e) => {
            let _ = server.join();
            return Err(e);
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sender".into())
        .spawn(move || {
            let r = runtime().and_then(|rt| rt.block_on(client(addr, key)));
            let _ = done_tx.send(r);
        })
        .map_err(spawn_err)?;
    let sample = done_rx.await.map_err(|_| "client thread ended".to_string());
    let _ = stop_tx.send(());
    let receiver = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    Ok((sample??, receiver?))
}

/// A round that takes longer than this is reported as a failure (a stalled transfer).
const ROUND_LIMIT: Duration = Duration::from_secs(600);

async fn one_round(
    imp: Impl,
    split: bool,
    bytes: u64,
    payload: &Arc<Vec<u8>>,
) -> Result<Round, String> {
    tokio::time::timeout(ROUND_LIMIT, round_inner(imp, split, bytes, payload))
        .await
        .map_err(|_| format!("{} stalled: no result in {ROUND_LIMIT:?}", imp.name()))?
}

async fn round_inner(
    imp: Impl,
    split: bool,
    bytes: u64,
    payload: &Arc<Vec<u8>>,
) -> Result<Round, String> {
    let p = Arc::clone(payload);
    let mds = usize::from(DATAGRAM);
    let (s, receiver_cpu) =
        match (imp, split) {
            (Impl::Phantom, false) => (
                phantom_runs::bulk(bytes, mds, payload).await?,
                Duration::ZERO,
            ),
            (Impl::Quinn, false) => (
                quinn_run::bulk(bytes, DATAGRAM, payload).await?,
                Duration::ZERO,
            ),
            (Impl::PhantomProtocol, false) => (pp_run::bulk(bytes, payload).await?, Duration::ZERO),
            (Impl::Phantom, true) => {
                split_round(
                    move || async move {
                        let (ep, vk) =
                            phantom_runs::counting_server(phantom_runs::session_config(mds))?;
                        let addr = ep.local_addr();
                        Ok((ep, addr, vk))
                    },
                    move |addr, vk| async move {
                        phantom_runs::bulk_client(addr, &vk, bytes, mds, &p).await
                    },
                )
                .await?
            }
            (Impl::Quinn, true) => split_round(
                move || async move { quinn_run::serve(DATAGRAM) },
                move |addr, cfg| async move { quinn_run::bulk_client(addr, cfg, bytes, &p).await },
            )
            .await?,
            (Impl::PhantomProtocol, true) => {
                split_round(
                    move || pp_run::serve(bytes),
                    move |addr, key: Vec<u8>| async move {
                        pp_run::bulk_client(addr, &key, bytes, &p).await
                    },
                )
                .await?
            }
        };
    Ok(Round {
        imp,
        split,
        s,
        receiver_cpu,
    })
}

fn us(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e6))
}

fn per_dgram(cpu: Duration, s: &BulkSample) -> Option<Duration> {
    s.datagrams
        .filter(|d| *d > 0)
        .map(|d| cpu.div_f64(d as f64))
}

fn print_round(round: usize, r: &Round) {
    let s = &r.s;
    if r.split {
        println!(
            "{:<22} {round:>5} {:>9} {:>10.1} {:>8.2} {:>10.2} {:>10.2} {:>12.1} {:>12}",
            r.imp.name(),
            "split",
            s.goodput() / 1e6,
            s.cpu.as_secs_f64(),
            s.sender_thread_cpu.as_secs_f64(),
            r.receiver_cpu.as_secs_f64(),
            s.bytes as f64 / s.sender_thread_cpu.as_secs_f64().max(1e-3) / 1e6,
            us(per_dgram(s.sender_thread_cpu, s)),
        );
    } else {
        println!(
            "{:<22} {round:>5} {:>9} {:>10.1} {:>8.2} {:>10} {:>10} {:>12.1} {:>12}",
            r.imp.name(),
            "shared",
            s.goodput() / 1e6,
            s.cpu.as_secs_f64(),
            "-",
            "-",
            s.bytes_per_cpu_sec() / 1e6,
            us(s.cpu_per_datagram()),
        );
    }
}

async fn bulk(args: &Args) -> Result<(), String> {
    let payload: Arc<Vec<u8>> = Arc::new(
        (0..WRITE_CHUNK)
            .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8))
            .collect(),
    );
    let impls = &args.impls;
    println!(
        "\nbulk: {} bytes ({:.0} MiB) on one stream per round, {} rounds interleaved, writes of {} KiB",
        args.bytes(),
        args.bytes() as f64 / f64::from(1u32 << 20),
        args.rounds(),
        WRITE_CHUNK / 1024
    );
    println!(
        "datagram size: phantom and quinn {DATAGRAM} B (quinn: initial = min MTU, no discovery); \
         phantom-protocol 0.4 1200 B (PATH_MTU constant, not configurable)"
    );
    println!(
        "shared: both ends on one multi-thread runtime, CPU = process, per-datagram = both ends\n\
         split:  server and client each on a current-thread runtime of its own thread; \
         MB/CPU-s and us/dgram are the SENDER thread's"
    );
    println!(
        "{:<22} {:>5} {:>9} {:>10} {:>8} {:>10} {:>10} {:>12} {:>12}",
        "implementation",
        "round",
        "mode",
        "MB/s",
        "CPU s",
        "sender s",
        "recv s",
        "MB/CPU-s",
        "CPU us/dgram"
    );
    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=args.rounds() {
        for &imp in impls {
            for split in args.modes.iter().map(|m| *m == Mode::Split) {
                let r = one_round(imp, split, args.bytes(), &payload).await?;
                print_round(round, &r);
                rounds.push(r);
                // Let the previous run's sockets and tasks wind down.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let med = |imp: Impl, split: bool, f: &dyn Fn(&Round) -> f64| {
        let v: Vec<f64> = rounds
            .iter()
            .filter(|r| r.imp == imp && r.split == split)
            .map(f)
            .collect();
        median(&v)
    };
    let fmt_us = |x: f64| {
        if x.is_nan() {
            "-".to_string()
        } else {
            format!("{x:.2}")
        }
    };
    println!(
        "\nbulk medians ({} rounds), phantom backend {}:",
        args.rounds(),
        backend()
    );
    println!(
        "{:<22} {:>9} {:>10} {:>12} {:>14} {:>10} {:>14} {:>14}",
        "implementation",
        "datagram",
        "MB/s",
        "MB/CPU-s",
        "CPU us/dgram",
        "split MB/s",
        "sender MB/CPU-s",
        "sender us/dgram"
    );
    let goodput = |r: &Round| r.s.goodput();
    let per_cpu = |r: &Round| r.s.bytes_per_cpu_sec();
    let sender_per_cpu =
        |r: &Round| r.s.bytes as f64 / r.s.sender_thread_cpu.as_secs_f64().max(1e-3);
    let mb = |x: f64| {
        if x.is_nan() {
            "-".to_string()
        } else {
            format!("{:.1}", x / 1e6)
        }
    };
    for &imp in impls {
        println!(
            "{:<22} {:>9} {:>10} {:>12} {:>14} {:>10} {:>14} {:>14}",
            imp.name(),
            imp.datagram(),
            mb(med(imp, false, &goodput)),
            mb(med(imp, false, &per_cpu)),
            fmt_us(med(imp, false, &|r| {
                r.s.cpu_per_datagram()
                    .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
            })),
            mb(med(imp, true, &goodput)),
            mb(med(imp, true, &sender_per_cpu)),
            fmt_us(med(imp, true, &|r| {
                per_dgram(r.s.sender_thread_cpu, &r.s).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
            })),
        );
    }
    let ratio = |a: Impl, b: Impl| {
        println!(
            "ratio {} / {}: goodput {:.3}x (split {:.3}x), bytes per CPU-second {:.3}x \
             (sender only, split {:.3}x)",
            a.name(),
            b.name(),
            med(a, false, &goodput) / med(b, false, &goodput),
            med(a, true, &goodput) / med(b, true, &goodput),
            med(a, false, &per_cpu) / med(b, false, &per_cpu),
            med(a, true, &sender_per_cpu) / med(b, true, &sender_per_cpu),
        );
    };
    if impls.contains(&Impl::Phantom) && impls.contains(&Impl::Quinn) {
        ratio(Impl::Phantom, Impl::Quinn);
    }
    if impls.contains(&Impl::PhantomProtocol) && impls.contains(&Impl::Phantom) {
        ratio(Impl::Phantom, Impl::PhantomProtocol);
    }
    Ok(())
}

/// The kernel's UDP receive-buffer drop counter (`RcvbufErrors` of /proc/net/snmp; machine-wide).
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

fn print_handshakes(what: &str, s: &HandshakeSample) {
    let mut l: Vec<Duration> = s.latencies.clone();
    l.sort();
    let p90 = l
        .get((l.len() * 9 / 10).min(l.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    println!(
        "{what:<34} {:>6} {:>10.1} {:>11.2} {:>10.2} {:>12.2}",
        s.latencies.len(),
        s.per_sec(),
        s.median_latency().as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        s.cpu_per_handshake().as_secs_f64() * 1e3,
    );
}

async fn handshakes(n: usize) -> Result<(), String> {
    println!(
        "\nhandshakes over 127.0.0.1 UDP to one server endpoint (CPU is both ends; quinn for reference)"
    );
    println!(
        "{:<34} {:>6} {:>10} {:>11} {:>10} {:>12}",
        "measurement", "n", "per sec", "median ms", "p90 ms", "CPU ms/each"
    );
    // Warm up (first use of the runtime, key generation paths).
    phantom_runs::handshakes_sequential(3).await?;
    let s = phantom_runs::handshakes_sequential(n).await?;
    print_handshakes("phantom sequential, one client", &s);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drops = udp_rcvbuf_errors();
    let s = phantom_runs::handshakes_concurrent(n).await?;
    print_handshakes("phantom concurrent, n clients", &s);
    if let (Some(a), Some(b)) = (drops, udp_rcvbuf_errors()) {
        println!(
            "  (kernel UDP receive-buffer drops during the concurrent run, machine-wide: {})",
            b.saturating_sub(a)
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = quinn_run::handshakes_sequential(n).await?;
    print_handshakes("quinn 0.11 sequential, one client", &s);
    Ok(())
}

fn print_memory(what: &str, m: &MemorySample) {
    println!(
        "{what:<44} {:>8} {:>10.1} {:>10.1} {:>12.0} {:>8.1}",
        m.sessions,
        m.before as f64 / f64::from(1u32 << 20),
        m.after as f64 / f64::from(1u32 << 20),
        m.per_session(),
        m.per_session() / 1024.0,
    );
}

async fn memory(n: usize) -> Result<(), String> {
    println!(
        "\nidle sessions: RSS (VmRSS) growth with {n} sessions open to one server endpoint, \
         {IDLE_ENDPOINTS} client endpoints, after {} s settling (goal <= 16 KiB per session); \
         each line in a fresh process, so no heap freed by earlier runs hides the growth",
        SETTLE.as_secs()
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>12} {:>8}",
        "measurement", "sessions", "before MiB", "after MiB", "B/session", "KiB"
    );
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    for case in [
        MemCase::PhantomServer,
        MemCase::PhantomBoth,
        MemCase::QuinnServer,
        MemCase::QuinnBoth,
    ] {
        let name = case
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        let out = tokio::process::Command::new(&exe)
            .args(["--memory-case", &name, "--sessions", &n.to_string()])
            .output()
            .await
            .map_err(|e| format!("memory case {name}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "memory case {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(())
}

/// One idle-memory measurement, run in a process of its own (`--memory-case`).
async fn memory_case(case: MemCase, n: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = tokio::process::Command::new(exe);
    match case {
        MemCase::PhantomServer => {
            child.arg("--idle-clients");
            let m = phantom_runs::idle_memory_server_only(n, IDLE_ENDPOINTS, SETTLE, child).await?;
            print_memory("phantom, server side only (clients in a child)", &m);
        }
        MemCase::PhantomBoth => {
            let m = phantom_runs::idle_memory_both_ends(n, IDLE_ENDPOINTS, SETTLE).await?;
            print_memory("phantom, both ends in one process", &m);
        }
        MemCase::QuinnServer => {
            child.arg("--idle-quinn-clients");
            let m = quinn_run::idle_memory_server_only(n, IDLE_ENDPOINTS, SETTLE, child).await?;
            print_memory("quinn 0.11 (reference), server side only", &m);
        }
        MemCase::QuinnBoth => {
            let m = quinn_run::idle_memory_both_ends(n, IDLE_ENDPOINTS, SETTLE).await?;
            print_memory("quinn 0.11 (reference), both ends", &m);
        }
    }
    Ok(())
}
