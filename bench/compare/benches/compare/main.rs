//! `cargo xtask bench --compare`: Phantom beside quinn 0.11 and phantom-protocol 0.4 on one
//! loopback bulk transfer (same payload, one stream, rounds interleaved), then Phantom's
//! handshakes per second over real sockets and resident memory per idle session.
//!
//! Direct use: `cargo bench --manifest-path bench/compare/Cargo.toml --bench compare
//! [--features aws-lc] -- [--bytes N] [--rounds R] [--quick] [--only bulk|handshakes|memory]`.
//! Every figure is for one process holding both ends of every connection.

#![forbid(unsafe_code)]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the wall clock"
)]

mod pp_run;
mod quinn_run;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use phantom_compare::measure::{BulkSample, HandshakeSample, median};
use phantom_compare::phantom_runs::{self, MemorySample, WRITE_CHUNK};

/// The maximum UDP payload every implementation that allows it is set to.
const DATAGRAM: u16 = 1452;

#[derive(Parser, Debug)]
#[command(
    name = "compare",
    about = "Phantom vs quinn vs phantom-protocol on loopback"
)]
struct Args {
    /// Payload bytes per bulk round (one stream).
    #[arg(long, default_value_t = 256 << 20)]
    bytes: u64,
    /// Rounds of each implementation (interleaved: phantom, quinn, phantom-protocol, ...).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A quick run: 16 MiB, 2 rounds, 50 handshakes, 200 sessions.
    #[arg(long)]
    quick: bool,
    /// Run only this part.
    #[arg(long, value_enum, default_value_t = Part::All)]
    only: Part,
    /// Handshakes per handshake measurement.
    #[arg(long, default_value_t = 200)]
    handshakes: usize,
    /// Idle sessions held open for the memory measurement.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
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
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
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
    if args.quick {
        args.bytes = 16 << 20;
        args.rounds = 2;
        args.handshakes = 50;
        args.sessions = 200;
    }
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
    let res = match args.idle_clients.take() {
        Some(child) => rt.block_on(idle_child(&child)),
        None => rt.block_on(run(&args)),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn idle_child(a: &[String]) -> Result<(), String> {
    let [addr, key, n, e] = a else {
        return Err("--idle-clients needs ADDR KEY SESSIONS ENDPOINTS".into());
    };
    let addr = addr.parse().map_err(|e| format!("address: {e}"))?;
    let n = n.parse().map_err(|e| format!("sessions: {e}"))?;
    let e = e.parse().map_err(|e| format!("endpoints: {e}"))?;
    phantom_runs::idle_clients_child(addr, key, n, e).await
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

fn backend() -> &'static str {
    if cfg!(feature = "aws-lc") {
        "aws-lc-rs (--features aws-lc)"
    } else {
        "RustCrypto aes-gcm (default)"
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
        "compare: both ends run in this process on one tokio runtime; CPU = process user+sys \
         (/proc/self/stat), so bytes per CPU-second count sender + receiver"
    );
    if matches!(args.only, Part::All | Part::Bulk) {
        bulk(args).await?;
    }
    if matches!(args.only, Part::All | Part::Handshakes) {
        handshakes(args.handshakes).await?;
    }
    if matches!(args.only, Part::All | Part::Memory) {
        memory(args.sessions).await?;
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

async fn bulk(args: &Args) -> Result<(), String> {
    let payload: Vec<u8> = (0..WRITE_CHUNK)
        .map(|i| (i as u8).wrapping_mul(31) ^ ((i >> 8) as u8))
        .collect();
    let impls = &args.impls;
    println!(
        "\nbulk: {} bytes ({:.0} MiB) on one stream per round, {} rounds interleaved, writes of {} KiB",
        args.bytes,
        args.bytes as f64 / f64::from(1u32 << 20),
        args.rounds,
        WRITE_CHUNK / 1024
    );
    println!(
        "{:<22} {:>5} {:>9} {:>10} {:>8} {:>12} {:>14}",
        "implementation", "round", "datagram", "MB/s", "CPU s", "MB/CPU-s", "CPU us/dgram"
    );
    let mut samples: Vec<(Impl, BulkSample)> = Vec::new();
    for round in 1..=args.rounds {
        for &imp in impls {
            let s = match imp {
                Impl::Phantom => {
                    phantom_runs::bulk(args.bytes, usize::from(DATAGRAM), &payload).await?
                }
                Impl::Quinn => quinn_run::bulk(args.bytes, DATAGRAM, &payload).await?,
                Impl::PhantomProtocol => pp_run::bulk(args.bytes, &payload).await?,
            };
            println!(
                "{:<22} {round:>5} {:>9} {:>10.1} {:>8.2} {:>12.1} {:>14}",
                imp.name(),
                imp.datagram(),
                s.goodput() / 1e6,
                s.cpu.as_secs_f64(),
                s.bytes_per_cpu_sec() / 1e6,
                s.cpu_per_datagram()
                    .map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e6)),
            );
            samples.push((imp, s));
            // Let the previous run's sockets and tasks wind down.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let med = |imp: Impl, f: &dyn Fn(&BulkSample) -> f64| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|(i, _)| *i == imp)
            .map(|(_, s)| f(s))
            .collect();
        median(&v)
    };
    println!("\nbulk medians ({} rounds), {}:", args.rounds, backend());
    println!(
        "{:<22} {:>9} {:>10} {:>12} {:>14}",
        "implementation", "datagram", "MB/s", "MB/CPU-s", "CPU us/dgram"
    );
    for &imp in impls {
        let us = med(imp, &|s| {
            s.cpu_per_datagram()
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
        });
        println!(
            "{:<22} {:>9} {:>10.1} {:>12.1} {:>14}",
            imp.name(),
            imp.datagram(),
            med(imp, &|s| s.goodput()) / 1e6,
            med(imp, &|s| s.bytes_per_cpu_sec()) / 1e6,
            if us.is_nan() {
                "-".into()
            } else {
                format!("{us:.2}")
            }
        );
    }
    let ratio = |a: Impl, b: Impl| {
        println!(
            "ratio {} / {}: goodput {:.3}x, bytes per CPU-second {:.3}x",
            a.name(),
            b.name(),
            med(a, &|s| s.goodput()) / med(b, &|s| s.goodput()),
            med(a, &|s| s.bytes_per_cpu_sec()) / med(b, &|s| s.bytes_per_cpu_sec()),
        );
    };
    if impls.contains(&Impl::Phantom) && impls.contains(&Impl::Quinn) {
        ratio(Impl::Phantom, Impl::Quinn);
    }
    if impls.contains(&Impl::PhantomProtocol) {
        if impls.contains(&Impl::Phantom) {
            ratio(Impl::Phantom, Impl::PhantomProtocol);
        }
        println!(
            "* phantom-protocol 0.4 has no datagram-size setting (PATH_MTU is a 1200-byte \
             constant) and reports no datagram count"
        );
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
         {IDLE_ENDPOINTS} client endpoints, after {} s settling (goal <= 16 KiB per session)",
        SETTLE.as_secs()
    );
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>12} {:>8}",
        "measurement", "sessions", "before MiB", "after MiB", "B/session", "KiB"
    );
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = tokio::process::Command::new(exe);
    child.arg("--idle-clients");
    let m = phantom_runs::idle_memory_server_only(n, IDLE_ENDPOINTS, SETTLE, child).await?;
    print_memory("server side only (clients in a child process)", &m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = phantom_runs::idle_memory_both_ends(n, IDLE_ENDPOINTS, SETTLE).await?;
    print_memory("both ends in this process", &m);
    Ok(())
}
