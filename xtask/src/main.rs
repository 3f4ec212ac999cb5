//! Project automation for Phantom: `cargo xtask ci`, `cargo xtask fuzz`,
//! `cargo xtask bench [--compare]`, `cargo xtask tidy`.
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

/// Pinned tool versions installed on a fresh machine.
const CARGO_DENY_VERSION: &str = "0.20.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Default seconds each fuzz target runs during `ci`'s smoke step.
const SMOKE_SECS: u64 = 30;

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
        /// Phantom beside quinn 0.11 and phantom-protocol 0.4 on loopback, handshakes per
        /// second and memory per idle session; run with the default backend (portable, then
        /// built for this CPU) and with the aws-lc backend.
        #[arg(long)]
        compare: bool,
        /// `--compare`: payload bytes per bulk round.
        #[arg(long, requires = "compare")]
        bytes: Option<u64>,
        /// `--compare`: rounds of each implementation.
        #[arg(long, requires = "compare")]
        rounds: Option<usize>,
        /// `--compare`: a quick run (16 MiB, 2 rounds, fewer handshakes and sessions).
        #[arg(long, requires = "compare")]
        quick: bool,
        /// Extra arguments passed to criterion after `--` (e.g. a filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Repository hygiene checks.
    Tidy,
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
        // The issue-sized runs that are too slow for the dev profile: 64 MiB over a
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
        ]);
        run(c)
    })?;
    step("doc", || {
        let mut c = cargo();
        c.args(["doc", "--workspace", "--no-deps", "--locked"]);
        c.env("RUSTDOCFLAGS", "-D warnings");
        run(c)
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
/// in a target directory of its own), and once with `--features aws-lc`; the last two
/// runs measure the bulk transfer only.
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
            Some("bulk"),
            true,
        ),
        ("aws-lc backend", Some("aws-lc"), Some("bulk"), false),
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

/// Hygiene: crate docs present, no tokio or clock reads below the runtime,
/// no `todo!`/`unimplemented!`, and every invariant in SECURITY.md has a test.
fn tidy() -> Result {
    let root = root();
    let mut problems = Vec::new();
    let crates_dir = root.join("crates");
    let entries = std::fs::read_dir(&crates_dir).map_err(|e| format!("crates/: {e}"))?;
    let mut all_test_names = String::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let lib = dir.join("src").join("lib.rs");
        let main = dir.join("src").join("main.rs");
        let top = if lib.exists() { lib } else { main };
        match std::fs::read_to_string(&top) {
            Ok(s) if s.trim_start().starts_with("//!") => {}
            _ => problems.push(format!("{name}: no `//!` crate doc in {}", top.display())),
        }
        let below_runtime = !matches!(name.as_str(), "phantom" | "phantom-cli" | "phantom-ffi");
        if below_runtime {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
            let deps = manifest.split("[dev-dependencies]").next().unwrap_or("");
            if deps.lines().any(|l| l.trim_start().starts_with("tokio")) {
                problems.push(format!("{name}: depends on tokio below the runtime"));
            }
        }
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            // Tests, benches and examples may read the clock and use todo-free helpers;
            // the rules below apply to library code.
            let in_tests = file.components().any(|c| {
                let c = c.as_os_str();
                c == "tests" || c == "benches" || c == "examples"
            }) || file.file_name().is_some_and(|f| f == "tests.rs");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if !in_tests && (code.contains("todo!(") || code.contains("unimplemented!(")) {
                    problems.push(format!(
                        "{}:{}: todo!/unimplemented!",
                        file.display(),
                        i + 1
                    ));
                }
                if below_runtime
                    && !in_tests
                    && (code.contains("Instant::now(") || code.contains("SystemTime::now("))
                {
                    problems.push(format!("{}:{}: reads the clock", file.display(), i + 1));
                }
            }
            all_test_names.push_str(&text);
        }
    }
    // Every invariant named in SECURITY.md must have at least one test named after it.
    let security = std::fs::read_to_string(root.join("docs").join("SECURITY.md"))
        .map_err(|e| format!("docs/SECURITY.md: {e}"))?;
    for n in 1..=10 {
        let tag = format!("I{n}");
        if security.contains(&format!("**{tag}**"))
            && !all_test_names.contains(&format!("fn i{n}_"))
        {
            problems.push(format!("SECURITY.md: {tag} has no test named `i{n}_*`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        Err(format!("{} tidy problem(s)", problems.len()))
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}
