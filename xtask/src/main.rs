//! Project automation for Phantom: `cargo xtask ci`, `cargo xtask fuzz`,
//! `cargo xtask bench [--compare]`, `cargo xtask tidy`, `cargo xtask header`,
//! `cargo xtask ffi`, `cargo xtask examples`, `cargo xtask netlab` (namespaces, real
//! kernel links; see the `netlab` module).
//!
//! `ci` is the one test command (README.md, `.ci/run`). It prints one line per step
//! with pass/fail and the time it took, installs the cargo tools it lacks
//! (`cargo-deny`, `cargo-fuzz`, pinned with `--locked`), and stops at the first failure.

#![expect(
    clippy::disallowed_methods,
    reason = "xtask times its steps with the wall clock"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod netlab;
mod tidy;

/// Pinned tool versions installed on a fresh machine.
const CARGO_DENY_VERSION: &str = "0.20.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Default seconds each fuzz target runs during `ci`'s smoke step.
const SMOKE_SECS: u64 = 30;

/// Wall-clock bound of `ci`'s seed-sweep step (build included).
const SEED_SWEEP_LIMIT: Duration = Duration::from_secs(20 * 60);

#[derive(Parser)]
#[command(name = "xtask", about = "Phantom project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Everything CI checks: fmt, clippy, tests, docs, deny, tidy, fuzz smoke.
    Ci {
        /// Skip the fuzz smoke step (for quick local runs).
        #[arg(long)]
        no_fuzz: bool,
    },
    /// Run one fuzz target (or all with `--smoke`).
    Fuzz {
        /// Target name (see fuzz/fuzz_targets). Omit with `--smoke` for all.
        target: Option<String>,
        /// Seconds to run each target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Run every target briefly.
        #[arg(long)]
        smoke: bool,
    },
    /// Run the criterion benchmarks (bench profile, optimised), or with `--compare` the
    /// comparison with quinn and phantom-protocol (bench/compare, outside the workspace).
    Bench {
        /// Only the benches of this crate (e.g. `phantom-crypto`).
        #[arg(long, short = 'p', conflicts_with = "compare")]
        package: Option<String>,
        /// Phantom beside quinn 0.11, phantom-protocol 0.4 and the limit pipe on loopback,
        /// handshakes per second and memory per idle session; run with the default backend
        /// (portable, then built for this CPU) and with the aws-lc backend (quinn on
        /// aws-lc-rs there too).
        #[arg(long)]
        compare: bool,
        /// `--compare`: payload bytes per bulk round.
        #[arg(long, requires = "compare")]
        bytes: Option<u64>,
        /// `--compare`: rounds of each implementation and condition (default 10).
        #[arg(long, requires = "compare")]
        rounds: Option<usize>,
        /// `--compare`: a quick run (16 MiB per bulk run, fewer handshakes and sessions).
        #[arg(long, requires = "compare")]
        quick: bool,
        /// Extra arguments passed to criterion after `--` (e.g. a filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Repository hygiene checks.
    Tidy,
    /// Regenerate the C header crates/phantom-ffi/include/phantom.h with cbindgen.
    Header,
    /// ci's `ffi` step alone: header current, C echo program compiled and run.
    Ffi,
    /// ci's `examples` step alone: the runtime's examples run against each other.
    Examples,
    /// Phantom over real kernel links: network namespaces, veth pairs, tbf rate
    /// limits, nftables loss, a delay relay (needs root; see xtask/src/netlab.rs).
    Netlab {
        /// Small transfers with short time limits (the `ci` step).
        #[arg(long)]
        short: bool,
        /// Also run the one-path bulk scenarios with quinn 0.11 (builds bench/compare).
        #[arg(long)]
        quinn: bool,
        /// Only these scenarios (numbers 1 to 6, comma-separated).
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=6))]
        only: Vec<u8>,
        /// Worker sockets of each `phantom serve` (default: its own, one per core).
        #[arg(long)]
        workers: Option<u16>,
    },
    /// The lab's UDP delay relay (run by `netlab` inside its router namespace).
    #[command(hide = true)]
    NetlabRelay {
        /// `LISTEN=TARGET` socket address pairs.
        #[arg(long)]
        map: Vec<String>,
        /// One-way delay in each direction.
        #[arg(long)]
        delay_ms: u64,
    },
    /// Congestion-control simulation table (controller x loss rate), release build.
    Sim {
        /// Simulated seconds per run.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Seed for the link's random loss.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Ci { no_fuzz } => ci(no_fuzz),
        Cmd::Fuzz {
            target,
            secs,
            smoke,
        } => fuzz(target.as_deref(), secs, smoke),
        Cmd::Bench {
            compare: true,
            bytes,
            rounds,
            quick,
            args,
            ..
        } => compare(bytes, rounds, quick, &args),
        Cmd::Bench { package, args, .. } => bench(package.as_deref(), &args),
        Cmd::Tidy => tidy(),
        Cmd::Header => write_header(),
        Cmd::Ffi => ffi(),
        Cmd::Examples => examples(),
        Cmd::Netlab {
            short,
            quinn,
            only,
            workers,
        } => {
            let mut plan = if short {
                netlab::Plan::SHORT
            } else {
                netlab::Plan::FULL
            };
            plan.workers = workers;
            if !only.is_empty() {
                plan.scenarios = only.iter().fold(0, |m, n| m | (1 << n));
            }
            netlab::run(plan, quinn)
        }
        Cmd::NetlabRelay { map, delay_ms } => netlab::relay(&map, Duration::from_millis(delay_ms)),
        Cmd::Sim { secs, seed } => {
            let mut c = cargo();
            c.args([
                "run",
                "--release",
                "-p",
                "phantom-congestion",
                "--features",
                "sim",
                "--example",
                "sim",
                "--",
            ])
            .arg(secs.to_string())
            .arg(seed.to_string());
            run(c)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut cmd: Command) -> Result {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Runs a named step, printing `[ci] <name> ... ok|FAILED (<secs>s)`.
fn step(name: &str, f: impl FnOnce() -> Result) -> Result {
    println!("[ci] {name} ...");
    let start = Instant::now();
    let res = f();
    let took = start.elapsed();
    let verdict = if res.is_ok() { "ok" } else { "FAILED" };
    println!("[ci] {name:<28} {verdict:<6} {}", fmt_dur(took));
    res.map_err(|e| format!("step `{name}`: {e}"))
}

fn fmt_dur(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn have_subcommand(sub: &str) -> bool {
    cargo()
        .args([sub, "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_tool(sub: &str, krate: &str, version: &str) -> Result {
    if have_subcommand(sub) {
        return Ok(());
    }
    println!("[ci] `cargo {sub}` is missing: installing {krate} {version} (--locked)");
    let mut c = cargo();
    c.args(["install", krate, "--locked", "--version", version]);
    run(c)
}

fn ci(no_fuzz: bool) -> Result {
    let start = Instant::now();
    step("fmt", || {
        let mut c = cargo();
        c.args(["fmt", "--all", "--", "--check"]);
        run(c)
    })?;
    step("tidy", tidy)?;
    step("clippy", || {
        let mut c = cargo();
        c.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]);
        run(c)
    })?;
    step("test", || {
        let mut c = cargo();
        c.args(["test", "--workspace", "--locked"]);
        run(c)
    })?;
    step("test (aws-lc backend)", || {
        let mut c = cargo();
        // Both backends pass the same vectors and interoperate (AEAD in phantom-crypto,
        // X25519/ML-KEM in phantom-handshake).
        c.args([
            "test",
            "--locked",
            "-p",
            "phantom-crypto",
            "-p",
            "phantom-handshake",
            "--features",
            "phantom-crypto/aws-lc,phantom-handshake/aws-lc",
        ]);
        if crate_has_feature("phantom-crypto", "aws-lc") {
            run(c)
        } else {
            println!("[ci] phantom-crypto has no `aws-lc` feature yet: skipped");
            Ok(())
        }
    })?;
    step("test (full-size, release)", || {
        // The full-size runs that are too slow for the dev profile: 64 MiB over a
        // lossy simulated link (1 and 16 streams), 256 MiB over loopback sockets and
        // 1,000 concurrent sessions on one endpoint.
        let mut c = cargo();
        c.args([
            "test",
            "--release",
            "--locked",
            "-p",
            "phantom-session",
            "-p",
            "phantom",
            "--",
            "--ignored",
            "--skip",
            "seed_sweep",
        ]);
        run(c)
    })?;
    step("seed sweep (release)", || {
        // Every simulator scenario (congestion link simulator, session lossy-link
        // transfers) at 32 seeds each; a failure lists the scenario's failing seeds.
        // Bounded in time: a sweep that hangs is a failure too.
        let mut c = cargo();
        c.args([
            "test",
            "--release",
            "--locked",
            "-p",
            "phantom-congestion",
            "-p",
            "phantom-session",
            "--no-fail-fast",
            "--",
            "--ignored",
            "seed_sweep",
        ]);
        run_bounded(c, SEED_SWEEP_LIMIT)
    })?;
    step("model", || {
        // Exhaustive stateright runs of the handshake, epoch-ratchet and path models to
        // their stated depths, over the real sans-IO types (release: the handshake model
        // replays ML-KEM and X25519); each prints its states explored.
        let mut c = cargo();
        c.args([
            "test",
            "--release",
            "--locked",
            "-p",
            "phantom-model",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ]);
        run(c)
    })?;
    step("ffi", ffi)?;
    step("examples", examples)?;
    step("doc", || {
        let mut c = cargo();
        c.args(["doc", "--workspace", "--no-deps", "--locked"]);
        c.env("RUSTDOCFLAGS", "-D warnings");
        run(c)
    })?;
    step("netlab", || match netlab::unavailable() {
        // Lab setup problems are no verdict on Phantom: skip with the reason.
        Some(why) => {
            println!("[ci] netlab skipped: {why}");
            Ok(())
        }
        None => netlab::run(netlab::Plan::SHORT, false),
    })?;
    step("deny", || {
        ensure_tool("deny", "cargo-deny", CARGO_DENY_VERSION)?;
        let mut c = cargo();
        // Advisories need the network (the RustSec database); see deny.toml.
        c.args(["deny", "check", "bans", "licenses", "sources"]);
        run(c)
    })?;
    if no_fuzz {
        println!("[ci] fuzz smoke                   skipped (--no-fuzz)");
    } else {
        step("fuzz smoke", || fuzz(None, SMOKE_SECS, true))?;
    }
    println!("[ci] all steps passed in {}", fmt_dur(start.elapsed()));
    Ok(())
}

fn crate_has_feature(krate: &str, feature: &str) -> bool {
    let manifest = root().join("crates").join(krate).join("Cargo.toml");
    std::fs::read_to_string(manifest).is_ok_and(|s| {
        s.lines()
            .any(|l| l.trim_start().starts_with(&format!("{feature} =")))
    })
}

fn fuzz_targets() -> Result<Vec<String>> {
    let dir = root().join("fuzz").join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    Ok(names)
}

fn fuzz(target: Option<&str>, secs: u64, smoke: bool) -> Result {
    ensure_tool("fuzz", "cargo-fuzz", CARGO_FUZZ_VERSION)?;
    let targets = match (target, smoke) {
        (Some(t), _) => vec![t.to_owned()],
        (None, true) => fuzz_targets()?,
        (None, false) => return Err("name a fuzz target, or pass --smoke".into()),
    };
    let fuzz_dir = root().join("fuzz");
    // Build every target first so a compile error is reported as such. Debug
    // assertions (and overflow checks) stay on: several fuzz bodies check their
    // invariants with `debug_assert!`, which a plain release build would compile out.
    let mut build = cargo();
    build
        .current_dir(&fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build", "--release", "--debug-assertions"]);
    run(build)?;
    for t in &targets {
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        let start = Instant::now();
        let mut c = cargo();
        c.current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--release", "--debug-assertions", t])
            .arg(&corpus)
            .args([
                "--",
                &format!("-max_total_time={secs}"),
                "-rss_limit_mb=2048",
                "-max_len=4096",
                "-print_final_stats=0",
            ]);
        let res = run(c);
        println!(
            "[fuzz] {t:<24} {:<6} {}",
            if res.is_ok() { "ok" } else { "FAILED" },
            fmt_dur(start.elapsed())
        );
        res?;
    }
    Ok(())
}

fn bench(package: Option<&str>, args: &[String]) -> Result {
    let mut c = cargo();
    c.arg("bench");
    match package {
        Some(p) => c.args(["--package", p]),
        None => c.arg("--workspace"),
    };
    if !args.is_empty() {
        c.arg("--").args(args);
    }
    run(c)
}

/// `bench --compare`: the bench-only crate bench/compare (its own workspace and lockfile,
/// so `ci` never builds it), once with Phantom's default AEAD backend, once more with the
/// default backend built for this CPU (`-C target-cpu=native`, both Phantom and quinn,
/// in a target directory of its own), and once with `--features aws-lc` (Phantom's AEAD
/// and key exchange, quinn's rustls provider and the limit pipe on aws-lc-rs); the
/// native-CPU run measures the bulk transfer and the limit pipe only.
fn compare(bytes: Option<u64>, rounds: Option<usize>, quick: bool, extra: &[String]) -> Result {
    let manifest = root().join("bench").join("compare").join("Cargo.toml");
    let mut tail: Vec<String> = Vec::new();
    if let Some(b) = bytes {
        tail.extend(["--bytes".into(), b.to_string()]);
    }
    if let Some(r) = rounds {
        tail.extend(["--rounds".into(), r.to_string()]);
    }
    if quick {
        tail.push("--quick".into());
    }
    tail.extend(extra.iter().cloned());
    // The bench crate is a workspace of its own: its target directory is beside it.
    let native_target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || root().join("bench").join("compare").join("target"),
            PathBuf::from,
        )
        .join("native-cpu");
    for (label, features, only, native) in [
        ("default backend", None, None, false),
        (
            "default backend, built for this CPU",
            None,
            Some("bulk,limit"),
            true,
        ),
        ("aws-lc backend", Some("aws-lc"), None, false),
    ] {
        step(&format!("compare ({label})"), || {
            let mut c = cargo();
            if native {
                let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
                flags.push_str(" -C target-cpu=native");
                c.env("RUSTFLAGS", flags.trim_start());
                c.env("CARGO_TARGET_DIR", &native_target);
            }
            c.arg("bench")
                .arg("--locked")
                .arg("--manifest-path")
                .arg(&manifest);
            c.args(["--bench", "compare"]);
            if let Some(f) = features {
                c.args(["--features", f]);
            }
            c.arg("--").args(&tail);
            if let Some(o) = only.filter(|_| !tail.iter().any(|a| a.starts_with("--only"))) {
                c.args(["--only", o]);
            }
            run(c)
        })?;
    }
    Ok(())
}

/// Hygiene checks (see the `tidy` module).
fn tidy() -> Result {
    tidy::run(&root())
}

/// The committed C header.
fn header_path() -> PathBuf {
    root()
        .join("crates")
        .join("phantom-ffi")
        .join("include")
        .join("phantom.h")
}

/// cbindgen settings for phantom.h (C99, C++-compatible, enum constants prefixed
/// with their type: `PHANTOM_STATUS_OK`).
fn header_config() -> cbindgen::Config {
    let mut c = cbindgen::Config {
        language: cbindgen::Language::C,
        header: Some(
            [
                "/*",
                " * The Phantom C API. Generated from crates/phantom-ffi by `cargo xtask header`",
                " * (cbindgen); do not edit by hand.",
                " *",
                " * Ownership: every handle (PhantomEndpoint, PhantomConnection, PhantomStream)",
                " * is created by the library and freed once with its phantom_*_free function;",
                " * buffers the library returns are freed with phantom_bytes_free; pointers",
                " * passed in are borrowed for the call only. Every fallible call returns a",
                " * PhantomStatus (0 = PHANTOM_STATUS_OK) and leaves a message for",
                " * phantom_last_error_message() on the calling thread. The library runs its",
                " * own I/O threads; blocking calls park the calling thread.",
                " */",
            ]
            .join("\n"),
        ),
        include_guard: Some("PHANTOM_H".into()),
        cpp_compat: true,
        style: cbindgen::Style::Both,
        usize_is_size_t: true,
        documentation_style: cbindgen::DocumentationStyle::Doxy,
        ..cbindgen::Config::default()
    };
    c.enumeration.prefix_with_name = true;
    c.enumeration.rename_variants = cbindgen::RenameRule::ScreamingSnakeCase;
    c
}

/// Generates a header from the Rust source file `src` (its `mod` files included).
fn generate_header_from(src: &Path) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(header_config())
        .with_src(src)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"))?
        .write(&mut out);
    Ok(out)
}

fn generate_header() -> Result<Vec<u8>> {
    generate_header_from(
        &root()
            .join("crates")
            .join("phantom-ffi")
            .join("src")
            .join("lib.rs"),
    )
}

/// `cargo xtask header`.
fn write_header() -> Result {
    let path = header_path();
    std::fs::write(&path, generate_header()?).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Byte-for-byte comparison of the committed header with a freshly generated one;
/// the error names the first line that differs.
fn compare_header(committed: &[u8], generated: &[u8]) -> Result {
    if committed == generated {
        return Ok(());
    }
    let c = String::from_utf8_lossy(committed);
    let g = String::from_utf8_lossy(generated);
    let mut cl = c.lines();
    let mut gl = g.lines();
    let mut line = 1;
    loop {
        match (cl.next(), gl.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (a, b) => {
                return Err(format!(
                    "crates/phantom-ffi/include/phantom.h is stale at line {line}: committed {:?}, generated {:?}; run `cargo xtask header`",
                    a.unwrap_or("<end>"),
                    b.unwrap_or("<end>")
                ));
            }
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Runs `cmd` to completion, killing it after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{shown} failed with {status}")),
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
    }
}

/// The `ffi` step: the committed header is current, and the C echo program, compiled
/// with the system C compiler against it and the library, passes.
fn ffi() -> Result {
    let committed =
        std::fs::read(header_path()).map_err(|e| format!("{}: {e}", header_path().display()))?;
    compare_header(&committed, &generate_header()?)?;
    let mut build = cargo();
    build.args(["build", "--locked", "-p", "phantom-ffi"]);
    run(build)?;
    let lib_dir = target_dir().join("debug");
    let out_dir = target_dir().join("ffi");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let exe = out_dir.join("echo");
    let ffi_dir = root().join("crates").join("phantom-ffi");
    let mut cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(ffi_dir.join("include"))
        .arg(ffi_dir.join("tests").join("c").join("echo.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lphantom_ffi", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()));
    run(cc)?;
    run_bounded(Command::new(&exe), Duration::from_secs(120))
}

/// The `examples` step: the echo server example runs, and each client example runs
/// against it within a time bound and exits 0.
fn examples() -> Result {
    let mut build = cargo();
    build.args(["build", "--locked", "-p", "phantom", "--examples"]);
    run(build)?;
    let bin = target_dir().join("debug").join("examples");
    let work = target_dir().join("examples-run");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let key = work.join("server.pub");
    let _ = std::fs::remove_file(&key);
    let mut server = Command::new(bin.join("echo_server"))
        .arg("127.0.0.1:0")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start echo_server: {e}"))?;
    let result = (|| {
        let mut line = String::new();
        let stdout = server.stdout.take().ok_or("echo_server has no stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .map_err(|e| format!("reading echo_server's address: {e}"))?;
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .ok_or("echo_server printed no address")?
            .to_owned();
        let file = work.join("payload.bin");
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&file, payload).map_err(|e| format!("{}: {e}", file.display()))?;
        for (name, extra) in [
            ("send_file", Some(&file)),
            ("multipath", None),
            ("resume", None),
        ] {
            let mut c = Command::new(bin.join(name));
            c.arg(&addr).arg(&key);
            if let Some(f) = extra {
                c.arg(f);
            }
            run_bounded(c, Duration::from_secs(60)).map_err(|e| format!("example {name}: {e}"))?;
        }
        Ok::<(), String>(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(src: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("xtask-header-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{}.rs", src.len()));
        std::fs::write(&file, src).unwrap();
        let h = generate_header_from(&file).unwrap();
        let _ = std::fs::remove_file(&file);
        h
    }

    #[test]
    fn a_changed_signature_makes_the_header_stale() {
        let before =
            header_of("#[unsafe(no_mangle)]\npub extern \"C\" fn phantom_f(x: u32) -> u32 { x }\n");
        let after =
            header_of("#[unsafe(no_mangle)]\npub extern \"C\" fn phantom_f(x: u64) -> u32 { 0 }\n");
        assert!(String::from_utf8_lossy(&before).contains("uint32_t phantom_f(uint32_t x);"));
        assert!(compare_header(&before, &before).is_ok());
        let err = compare_header(&before, &after).unwrap_err();
        assert!(err.contains("uint64_t x"), "{err}");
        // A trailing difference (a line added or removed) is caught too.
        let mut longer = before.clone();
        longer.extend_from_slice(b"/* extra */\n");
        assert!(compare_header(&before, &longer).is_err());
    }

    #[test]
    fn the_committed_header_is_current() {
        let committed = std::fs::read(header_path()).unwrap();
        compare_header(&committed, &generate_header().unwrap()).unwrap();
    }
}
