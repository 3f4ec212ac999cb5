//! `cargo xtask bench --compare`: Phantom beside quinn 0.11 and phantom-protocol 0.4 on one
//! loopback bulk transfer (same payload, one stream), beside the limit pipe (the same AEAD
//! over GSO/GRO sockets with no protocol), then handshakes per second (Phantom's hybrid
//! handshake beside quinn with classical and with X25519MLKEM768 key exchange) and resident
//! memory per idle session.
//!
//! Fairness: quinn runs on the same socket buffers as Phantom (`--buffers equal`) or both
//! on the kernel default (`kernel`); quinn's rustls provider is ring in the default build
//! and aws-lc-rs with `--features aws-lc` (Phantom's AEAD and handshake key exchange follow
//! the same feature); CPU comes from the kernel's nanosecond CPU clocks; every condition
//! runs `--rounds` times, each round's runs in a random order drawn from `--seed`
//! (printed), reported as min / median / max; the defaults (Phantom BBR, quinn CUBIC) run
//! beside both on CUBIC (`--cc`); kernel receive-buffer drops and each implementation's
//! losses are printed for every run.
//!
//! Direct use: `cargo bench --manifest-path bench/compare/Cargo.toml --bench compare
//! [--features aws-lc] -- [--bytes N] [--rounds R] [--quick] [--seed S]
//! [--only bulk,limit,handshakes,memory] [--cc default,cubic,bbr] [--buffers equal,kernel]`.
//! Both ends of every connection run in this process, except in the server-side-only memory
//! cases, whose clients run in a child process.

#![forbid(unsafe_code)]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the wall clock"
)]

mod pp_run;
mod quinn_run;
mod report;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use phantom::CongestionAlgorithm;
use phantom_compare::limit_pipe::{self, LimitSample};
use phantom_compare::measure::{BulkSample, HandshakeSample, host_cpu, thread_cpu};
use phantom_compare::phantom_runs::{self, MemorySample, RunOpts, WRITE_CHUNK};
use phantom_compare::sockets::{self, Buffers};
use quinn_run::{Cc, Kx, Provider, QuinnOpts};
use rand::SeedableRng;
use rand::seq::SliceRandom;

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
    /// Rounds of every implementation and condition; each round's runs in random order
    /// [default: 10].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seed of the run order [default: from the clock]; printed, so an order can be rerun.
    #[arg(long)]
    seed: Option<u64>,
    /// A quick run: 16 MiB per bulk run, 50 handshakes, 200 sessions (explicit flags win).
    #[arg(long)]
    quick: bool,
    /// Parts to run (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bulk,limit,handshakes,memory"
    )]
    only: Vec<Part>,
    /// Congestion-control conditions of the bulk runs (comma-separated): `default`
    /// (Phantom BBR, quinn CUBIC), `cubic` (both CUBIC), `bbr` (both BBR).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "default,cubic"
    )]
    cc: Vec<CcCond>,
    /// Socket-buffer conditions of the bulk and limit-pipe runs (comma-separated): `equal`
    /// (everyone requests Phantom's 4 MiB) and `kernel` (everyone on the kernel default).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "equal,kernel"
    )]
    buffers: Vec<BufCond>,
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
        self.rounds.unwrap_or(10)
    }
    fn runs(&self, part: Part) -> bool {
        self.only.contains(&part)
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
    Bulk,
    Limit,
    Handshakes,
    Memory,
}

/// A congestion-control condition of the bulk runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CcCond {
    /// Each implementation's default: Phantom BBR, quinn CUBIC.
    Default,
    /// Both CUBIC.
    Cubic,
    /// Both BBR (quinn's `BbrConfig`).
    Bbr,
}

/// A socket-buffer condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BufCond {
    /// quinn requests Phantom's 4 MiB too.
    Equal,
    /// Phantom's sockets set back to the kernel default, quinn's left there.
    Kernel,
}

impl BufCond {
    fn buffers(self) -> Buffers {
        match self {
            BufCond::Equal => Buffers::Equal,
            BufCond::Kernel => Buffers::KernelDefault,
        }
    }
}

/// The conditions one bulk run is made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    cc: CcCond,
    buffers: Buffers,
}

impl Cond {
    fn label(self) -> String {
        let cc = match self.cc {
            CcCond::Default => "dflt-cc",
            CcCond::Cubic => "cubic",
            CcCond::Bbr => "bbr",
        };
        format!("{cc}/{}", self.buffers.label())
    }

    fn phantom(self) -> RunOpts {
        RunOpts {
            congestion: match self.cc {
                CcCond::Default | CcCond::Bbr => CongestionAlgorithm::Bbr,
                CcCond::Cubic => CongestionAlgorithm::Cubic,
            },
            buffers: self.buffers,
        }
    }

    fn quinn(self) -> QuinnOpts {
        QuinnOpts {
            provider: bulk_provider(),
            kx: Kx::X25519,
            cc: match self.cc {
                CcCond::Default | CcCond::Cubic => Cc::Cubic,
                CcCond::Bbr => Cc::Bbr,
            },
            buffers: self.buffers,
            mtu: DATAGRAM,
        }
    }
}

/// quinn's provider in the bulk runs: ring beside Phantom's default backend, aws-lc-rs
/// beside Phantom's aws-lc backend.
fn bulk_provider() -> Provider {
    if cfg!(feature = "aws-lc") {
        Provider::AwsLc
    } else {
        Provider::Ring
    }
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
        "aws-lc-rs (--features aws-lc: AEAD, X25519, ML-KEM-768); quinn on rustls' aws-lc-rs \
         provider"
    } else {
        "RustCrypto (default: aes-gcm, x25519-dalek, ml-kem); quinn on rustls' ring provider"
    };
    format!("{aead}, {}", build_cpu())
}

/// What the binary was compiled to assume of the CPU. RustCrypto's AES-GCM depends on
/// it: POLYVAL's and AES's run-time feature dispatch keeps their intrinsics out of line
/// in a portable build; compiled in (`-C target-cpu=native`, what `cargo xtask bench
/// --compare` also runs) they inline. ring and aws-lc dispatch their assembly at run time
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

/// The line printed above every table: the host CPU and its AES / AVX-512 flags.
fn host_line() -> String {
    format!("host: {}", host_cpu())
}

async fn run(args: &Args) -> Result<(), String> {
    println!(
        "compare: phantom crypto backend {}; load average {} (1/5/15 min)",
        backend(),
        loadavg()
    );
    println!("{}", host_line());
    println!(
        "compare: both ends of every connection run in this process; CPU from the kernel's \
         nanosecond clocks (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID)"
    );
    println!("compare: {}", sockets::kernel_buffer_settings());
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() ^ u64::from(d.subsec_nanos()))
    });
    let mut bulk_rounds = Vec::new();
    if args.runs(Part::Bulk) || args.runs(Part::Limit) {
        bulk_rounds = bulk(args, seed).await?;
    }
    if args.runs(Part::Handshakes) {
        handshakes(args.handshakes()).await?;
    }
    if args.runs(Part::Memory) {
        memory(args.sessions()).await?;
    }
    if !bulk_rounds.is_empty() {
        report::summary(&bulk_rounds, args.rounds(), seed, &backend(), &host_line());
    }
    println!("compare: load average at the end {}", loadavg());
    Ok(())
}

/// What a bulk run runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Impl {
    Phantom,
    Quinn,
    PhantomProtocol,
    /// The limit pipe (not a transport; `--only limit`).
    #[value(skip)]
    Limit,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Phantom => "phantom",
            Impl::Quinn => "quinn 0.11",
            Impl::PhantomProtocol => "phantom-protocol 0.4",
            Impl::Limit => "limit pipe",
        }
    }

    fn datagram(self) -> &'static str {
        match self {
            Impl::Phantom | Impl::Quinn | Impl::Limit => "1452",
            Impl::PhantomProtocol => "1200*",
        }
    }
}

/// One bulk run: the shared-runtime sample, or a split one with the receiver's CPU.
#[derive(Clone, Copy)]
struct Round {
    imp: Impl,
    cond: Cond,
    split: bool,
    /// Which round (1-based) this run belongs to.
    round: usize,
    s: BulkSample,
    /// Split mode: CPU of the server (receiver) thread, from its ready signal to the end.
    receiver_cpu: Duration,
    /// Machine-wide UDP RcvbufErrors during the run (/proc/net/snmp).
    snmp_drops: Option<u64>,
}

/// A bulk round with the server and the client each on a current-thread tokio runtime of
/// its own OS thread, so the sender's CPU is its thread's CPU (`CLOCK_THREAD_CPUTIME_ID`).
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

/// One scheduled bulk run.
#[derive(Clone, Copy, Debug)]
struct Item {
    imp: Impl,
    cond: Cond,
    split: bool,
}

async fn one_round(item: Item, bytes: u64, payload: &Arc<Vec<u8>>) -> Result<Round, String> {
    let name = item.imp.name();
    let before = udp_rcvbuf_errors();
    let (s, receiver_cpu) = tokio::time::timeout(ROUND_LIMIT, round_inner(item, bytes, payload))
        .await
        .map_err(|_| format!("{name} stalled: no result in {ROUND_LIMIT:?}"))??;
    let snmp_drops = before
        .zip(udp_rcvbuf_errors())
        .map(|(a, b)| b.saturating_sub(a));
    Ok(Round {
        imp: item.imp,
        cond: item.cond,
        split: item.split,
        round: 0,
        s,
        receiver_cpu,
        snmp_drops,
    })
}

/// The limit pipe as a [`BulkSample`] (its sender and receiver are threads of their own,
/// like a split run; `cpu` is both threads).
fn limit_sample(l: &LimitSample) -> (BulkSample, Duration) {
    let s = BulkSample {
        bytes: l.bytes,
        wall: l.wall,
        cpu: l.sender_cpu + l.receiver_cpu,
        datagrams: Some(l.datagrams),
        sender_thread_cpu: l.sender_cpu,
        lost_packets: Some(l.lost),
        retransmitted_bytes: Some(0),
        socket_drops: Some(l.socket_drops),
        rcvbuf: None,
    };
    (s, l.receiver_cpu)
}

async fn round_inner(
    item: Item,
    bytes: u64,
    payload: &Arc<Vec<u8>>,
) -> Result<(BulkSample, Duration), String> {
    let p = Arc::clone(payload);
    let mds = usize::from(DATAGRAM);
    let (popts, qopts) = (item.cond.phantom(), item.cond.quinn());
    Ok(match (item.imp, item.split) {
        (Impl::Phantom, false) => (
            phantom_runs::bulk(bytes, mds, popts, payload).await?,
            Duration::ZERO,
        ),
        (Impl::Quinn, false) => (
            quinn_run::bulk(bytes, qopts, payload).await?,
            Duration::ZERO,
        ),
        (Impl::PhantomProtocol, false) => (pp_run::bulk(bytes, payload).await?, Duration::ZERO),
        (Impl::Phantom, true) => {
            split_round(
                move || async move {
                    let (ep, vk) = phantom_runs::bulk_server(mds, popts).await?;
                    let addr = ep.local_addr();
                    Ok((ep, addr, vk))
                },
                move |addr, vk| async move {
                    phantom_runs::bulk_client(addr, &vk, bytes, mds, popts, &p).await
                },
            )
            .await?
        }
        (Impl::Quinn, true) => {
            split_round(
                move || async move { quinn_run::serve(qopts) },
                move |addr, cfg| async move {
                    quinn_run::bulk_client(addr, cfg, qopts.buffers, bytes, &p).await
                },
            )
            .await?
        }
        (Impl::PhantomProtocol, true) => {
            split_round(
                move || pp_run::serve(bytes),
                move |addr, key: Vec<u8>| async move {
                    pp_run::bulk_client(addr, &key, bytes, &p).await
                },
            )
            .await?
        }
        (Impl::Limit, _) => {
            let buffers = item.cond.buffers;
            let l = tokio::task::spawn_blocking(move || limit_pipe::run(bytes, buffers))
                .await
                .map_err(|e| format!("limit pipe: {e}"))??;
            limit_sample(&l)
        }
    })
}

/// Every run of one round: each implementation under each condition and mode. The
/// limit pipe runs once per buffer condition (it has no congestion controller), and
/// phantom-protocol only under the first condition (its sockets and controller are its own).
fn round_items(args: &Args) -> Vec<Item> {
    let mut items = Vec::new();
    let conds: Vec<Cond> = args
        .cc
        .iter()
        .flat_map(|&cc| {
            args.buffers.iter().map(move |b| Cond {
                cc,
                buffers: b.buffers(),
            })
        })
        .collect();
    if args.runs(Part::Bulk) {
        for (i, &cond) in conds.iter().enumerate() {
            for &imp in &args.impls {
                if imp == Impl::PhantomProtocol && i > 0 {
                    continue;
                }
                for split in args.modes.iter().map(|m| *m == Mode::Split) {
                    items.push(Item { imp, cond, split });
                }
            }
        }
    }
    if args.runs(Part::Limit) {
        for b in &args.buffers {
            items.push(Item {
                imp: Impl::Limit,
                cond: Cond {
                    cc: CcCond::Default,
                    buffers: b.buffers(),
                },
                split: true,
            });
        }
    }
    items
}

async fn bulk(args: &Args, seed: u64) -> Result<Vec<Round>, String> {
    let payload: Arc<Vec<u8>> = Arc::new(
        (0..WRITE_CHUNK)
            .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8))
            .collect(),
    );
    let items = round_items(args);
    println!(
        "\nbulk: {} bytes ({:.0} MiB) on one stream per run, writes of {} KiB; {} runs per \
         round, {} rounds; each round in random order, seed {seed} (--seed {seed} repeats it)",
        args.bytes(),
        args.bytes() as f64 / f64::from(1u32 << 20),
        WRITE_CHUNK / 1024,
        items.len(),
        args.rounds(),
    );
    println!(
        "datagram size: phantom, quinn and the limit pipe {DATAGRAM} B (quinn: initial = min \
         MTU, no discovery); phantom-protocol 0.4 1200 B (PATH_MTU constant, not configurable)"
    );
    println!(
        "conditions: dflt-cc = each implementation's default controller (phantom BBR, quinn \
         CUBIC), cubic = both CUBIC, bbr = both BBR; 4MiB = every socket requests 4 MiB \
         (Phantom's runtime request), kdefault = every socket on the kernel default"
    );
    println!(
        "shared: both ends on one multi-thread runtime, CPU = process, per-datagram = both ends\n\
         split:  server and client each on a current-thread runtime of its own thread; \
         MB/CPU-s and us/dgram are the SENDER thread's\n\
         lost = packets the sender declared lost, retx = bytes sent again (phantom: stream \
         bytes retransmitted; quinn: bytes declared lost), drops = kernel drops on the run's \
         sockets (/proc/net/udp), snmp = machine-wide RcvbufErrors during the run, rcvbuf = \
         receiver's SO_RCVBUF (KiB)"
    );
    println!("{}", host_line());
    report::round_header();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=args.rounds() {
        let mut order = items.clone();
        order.shuffle(&mut rng);
        for item in order {
            let mut r = one_round(item, args.bytes(), &payload).await?;
            r.round = round;
            report::print_round(&r);
            rounds.push(r);
            // Let the previous run's sockets and tasks wind down.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(rounds)
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

fn print_handshakes(what: &str, s: &HandshakeSample, drops_before: Option<u64>) {
    let drops = drops_before
        .zip(udp_rcvbuf_errors())
        .map_or("-".into(), |(a, b)| b.saturating_sub(a).to_string());
    let mut l: Vec<Duration> = s.latencies.clone();
    l.sort();
    let p90 = l
        .get((l.len() * 9 / 10).min(l.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    println!(
        "{what:<44} {:>6} {:>10.1} {:>11.2} {:>10.2} {:>12.2} {drops:>6}",
        s.latencies.len(),
        s.per_sec(),
        s.median_latency().as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        s.cpu_per_handshake().as_secs_f64() * 1e3,
    );
}

async fn handshakes(n: usize) -> Result<(), String> {
    println!(
        "\nhandshakes over 127.0.0.1 UDP to one server endpoint (CPU is both ends, ns clock); \
         phantom's handshake is hybrid X25519 + ML-KEM-768, quinn's key exchange is the one \
         group its rustls provider is given; drops = machine-wide RcvbufErrors during the run"
    );
    println!("{}", host_line());
    println!(
        "{:<44} {:>6} {:>10} {:>11} {:>10} {:>12} {:>6}",
        "measurement", "n", "per sec", "median ms", "p90 ms", "CPU ms/each", "drops"
    );
    // Warm up (first use of the runtime, key generation paths).
    phantom_runs::handshakes_sequential(3).await?;
    let pause = || tokio::time::sleep(Duration::from_millis(300));
    let mut rates = Vec::new();
    let d = udp_rcvbuf_errors();
    let s = phantom_runs::handshakes_sequential(n).await?;
    print_handshakes("phantom sequential (hybrid PQ)", &s, d);
    rates.push(("phantom", false, s.per_sec()));
    pause().await;
    let d = udp_rcvbuf_errors();
    let s = phantom_runs::handshakes_concurrent(n).await?;
    print_handshakes(&format!("phantom {n} concurrent (hybrid PQ)"), &s, d);
    rates.push(("phantom", true, s.per_sec()));
    for (provider, kx) in [
        (Provider::Ring, Kx::X25519),
        (Provider::AwsLc, Kx::X25519),
        (Provider::AwsLc, Kx::X25519MlKem768),
    ] {
        let opts = QuinnOpts {
            provider,
            kx,
            ..QuinnOpts::DEFAULT
        };
        pause().await;
        quinn_run::handshakes_sequential(3, opts).await?;
        let d = udp_rcvbuf_errors();
        let s = quinn_run::handshakes_sequential(n, opts).await?;
        print_handshakes(&format!("quinn sequential ({})", opts.label()), &s, d);
        let pq = kx == Kx::X25519MlKem768;
        if pq {
            rates.push(("quinn-pq", false, s.per_sec()));
        }
        pause().await;
        let d = udp_rcvbuf_errors();
        let s = quinn_run::handshakes_concurrent(n, opts).await?;
        print_handshakes(&format!("quinn {n} concurrent ({})", opts.label()), &s, d);
        if pq {
            rates.push(("quinn-pq", true, s.per_sec()));
        }
    }
    for concurrent in [false, true] {
        let rate = |who: &str| {
            rates
                .iter()
                .find(|(w, c, _)| *w == who && *c == concurrent)
                .map_or(f64::NAN, |r| r.2)
        };
        println!(
            "ratio phantom / quinn (aws-lc-rs, X25519MLKEM768) handshakes per second, {}: {:.3}x",
            if concurrent {
                "concurrent"
            } else {
                "sequential"
            },
            rate("phantom") / rate("quinn-pq")
        );
    }
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
         {IDLE_ENDPOINTS} client endpoints, after {} s settling (goal <= 10 KiB per session); \
         each line in a fresh process, so no heap freed by earlier runs hides the growth",
        SETTLE.as_secs()
    );
    println!("{}", host_line());
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
