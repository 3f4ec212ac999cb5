//! `cargo xtask netlab`: Phantom over real kernel links in network namespaces.
//!
//! Topology (names prefixed `phlab-<pid>-`, addresses in 10.71.0.0/16):
//!
//! ```text
//!  client ns                 router ns                          server ns
//!  c1 10.71.1.2 ==veth== r1 10.71.1.1 \                       /
//!  c2 10.71.2.2 ==veth== r2 10.71.2.1 -- delay relay 10.71.9.1 -- r3 10.71.3.1 == s3 10.71.3.2
//! ```
//!
//! Each client link is rate-limited by `tc tbf` in both directions (on c1/c2 and
//! r1/r2) and loses a share of its packets to nftables `numgen random` rules in the
//! router. The kernel here has no netem, so delay comes from a UDP relay of our own
//! (`xtask netlab-relay`, run in the router namespace): it listens on 10.71.9.1,
//! keeps one upstream socket towards the server per client address, and forwards
//! each datagram after a fixed one-way delay. The client reaches 10.71.9.1 over c1
//! by default and over c2 for packets from 10.71.2.2 (a policy rule). TCP (the
//! fallback carrier) is forwarded by the router's kernel: rate-limited and lossy as
//! UDP, but without the relay's delay.
//!
//! Servers run in the server namespace: `phantom serve --out-dir` on port 4433 and
//! `phantom serve --echo --tcp --scheduler S` on 4434, S being the scenario's scheduler
//! (each end schedules its own sending). Scenario 1 runs `phantom send`; the others
//! run the `netlab_client` example of phantom-cli (extra paths, schedulers, events
//! mid-transfer) against the echo server, comparing every byte that comes back.
//! With `--quinn`, scenario 1 also runs quinn 0.11 (bench/compare's `netlab_quinn`
//! example, built in that separate workspace) over the same links.
//!
//! Everything is torn down when the lab is dropped; a watchdog shell deletes the
//! namespaces if xtask dies (Ctrl-C), and stale `phlab-*` namespaces of dead
//! processes are removed at start. Every wait has a bound.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::{Result, cargo, root};

/// Rate of every lab link (Mbit/s).
const RATE_MBIT: u64 = 50;
/// One-way delay the relay adds in each direction (RTT = twice this).
const ONE_WAY_MS: u64 = 10;
const RELAY: &str = "10.71.9.1";
const SERVER: &str = "10.71.3.2";
const CLIENT1: &str = "10.71.1.2";
const CLIENT1_NEW: &str = "10.71.1.3";
const CLIENT2: &str = "10.71.2.2";

/// The scenarios, in the order they run.
pub(crate) const SCENARIOS: &str = "bulk at 0/1/3% loss (phantom send), one path against \
two aggregated, failover when a path dies, redundant beside a 20%-loss path, migration \
to a new client address, UDP blocked then unblocked with TCP fallback";

/// What a lab run does: the size of each transfer, which scenarios, the servers' workers.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    /// Bytes per bulk transfer.
    pub(crate) bytes: u64,
    /// Seconds before a transfer counts as never completing.
    pub(crate) timeout: u64,
    /// `phantom serve --workers` for both servers (`None`: its default).
    pub(crate) workers: Option<u16>,
    /// Bit `n` set: run scenario `n` (1 to 6).
    pub(crate) scenarios: u8,
}

impl Plan {
    /// Every scenario.
    pub(crate) const ALL: u8 = 0b111_1110;
    pub(crate) const FULL: Self = Self {
        bytes: 32 << 20,
        timeout: 120,
        workers: None,
        scenarios: Self::ALL,
    };
    pub(crate) const SHORT: Self = Self {
        bytes: 4 << 20,
        timeout: 30,
        workers: None,
        scenarios: Self::ALL,
    };

    /// True if scenario `n` runs.
    fn runs(&self, n: u8) -> bool {
        self.scenarios & (1 << n) != 0
    }
}

/// The scenario number of an echo scenario, from its name ("3 failover, ..." is 3).
fn scenario_number(name: &str) -> u8 {
    name.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn run_quiet(cmd: &mut Command) -> Result {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result {
    run_quiet(Command::new("ip").args(args))
}

fn in_ns(ns: &str, prog: &str, args: &[&str]) -> Result {
    run_quiet(
        Command::new("ip")
            .args(["netns", "exec", ns, prog])
            .args(args),
    )
}

fn ns_list() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what still runs in `ns` (our servers, relay, client) and deletes it.
fn delete_ns(ns: &str) {
    if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Deletes `phlab-<pid>-*` namespaces whose process is gone.
fn clean_stale() {
    for ns in ns_list() {
        let Some(pid) = ns.strip_prefix("phlab-").and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            println!("[netlab] removing stale namespace {ns}");
            delete_ns(&ns);
        }
    }
}

/// Why the lab cannot run here, if it cannot: not root, a missing tool (after trying
/// to install it), or a kernel without namespaces, veth, tbf or nftables.
pub(crate) fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output();
    if uid.map_or(true, |u| String::from_utf8_lossy(&u.stdout).trim() != "0") {
        return Some("needs root (network namespaces)".into());
    }
    for (tool, pkg) in [("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")] {
        let have = |t: &str| {
            Command::new(t)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if !have(tool) {
            println!("[netlab] `{tool}` is missing: installing Debian's {pkg} (apt-get)");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", pkg])
                .stdout(Stdio::null())
                .status();
            if !have(tool) {
                return Some(format!(
                    "`{tool}` is missing and {pkg} could not be installed"
                ));
            }
        }
    }
    let probe = format!("phlab-{}-probe", std::process::id());
    let r = (|| {
        ip(&["netns", "add", &probe]).map_err(|_| "cannot create a network namespace")?;
        in_ns(
            &probe,
            "ip",
            &["link", "add", "p0", "type", "veth", "peer", "name", "p1"],
        )
        .map_err(|_| "cannot create a veth pair")?;
        in_ns(
            &probe,
            "tc",
            &[
                "qdisc", "add", "dev", "p0", "root", "tbf", "rate", "50mbit", "burst", "32kb",
                "latency", "25ms",
            ],
        )
        .map_err(|_| "no tbf qdisc")?;
        in_ns(
            &probe,
            "nft",
            &[
                "add table inet t; add chain inet t c { type filter hook input priority 0; }; \
                 add rule inet t c iifname p0 numgen random mod 100 < 3 drop",
            ],
        )
        .map_err(|_| "no nftables numgen")?;
        Ok::<(), &str>(())
    })();
    delete_ns(&probe);
    r.err().map(|e| format!("kernel lacks a prerequisite: {e}"))
}

/// The two lab binaries.
struct Bins {
    phantom: PathBuf,
    client: PathBuf,
    /// bench/compare's `netlab_quinn`, with `--quinn`.
    quinn: Option<PathBuf>,
}

fn build(quinn: bool) -> Result<Bins> {
    println!("[netlab] building phantom and the netlab_client example (release)");
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "--locked",
        "-p",
        "phantom-cli",
        "--bin",
        "phantom",
        "--example",
        "netlab_client",
    ]);
    crate::run(c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root().join("target"), PathBuf::from)
        .join("release");
    let quinn = if quinn {
        println!("[netlab] building bench/compare's netlab_quinn example (release)");
        let compare = root().join("bench").join("compare");
        let mut c = cargo();
        c.arg("build")
            .arg("--release")
            .arg("--locked")
            .arg("--manifest-path")
            .arg(compare.join("Cargo.toml"))
            .args(["--example", "netlab_quinn"]);
        crate::run(c)?;
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| compare.join("target"), PathBuf::from);
        Some(dir.join("release").join("examples").join("netlab_quinn"))
    } else {
        None
    };
    Ok(Bins {
        phantom: target.join("phantom"),
        client: target.join("examples").join("netlab_client"),
        quinn,
    })
}

/// One client link.
#[derive(Clone, Copy)]
struct Link {
    loss_pct: u32,
}

/// A running lab; dropping it kills its processes and deletes its namespaces.
struct Lab {
    prefix: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["c", "r", "s"] {
            delete_ns(&format!("{}{n}", self.prefix));
        }
    }
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("{}{n}", self.prefix)
    }

    /// Builds the namespaces, links, rate limits, loss rules, relay and servers.
    /// `scheduler`: the echo server's multipath scheduler (the scenario's, so that
    /// both directions of an echo spread the same way).
    fn up(
        run: usize,
        links: [Link; 2],
        bins: &Bins,
        dir: &Path,
        scheduler: &str,
        workers: Option<u16>,
    ) -> Result<Self> {
        let prefix = format!("phlab-{}-{run}", std::process::id());
        let mut lab = Self {
            prefix,
            children: Vec::new(),
            dir: dir.to_path_buf(),
        };
        let (c, r, s) = (lab.ns("c"), lab.ns("r"), lab.ns("s"));
        for n in [&c, &r, &s] {
            ip(&["netns", "add", n])?;
            in_ns(n, "ip", &["link", "set", "lo", "up"])?;
        }
        for (a, an, b, bn) in [
            ("c1", &c, "r1", &r),
            ("c2", &c, "r2", &r),
            ("r3", &r, "s3", &s),
        ] {
            ip(&[
                "link", "add", a, "netns", an, "type", "veth", "peer", "name", b, "netns", bn,
            ])?;
        }
        for (n, dev, addr) in [
            (&c, "c1", "10.71.1.2/24"),
            (&c, "c2", "10.71.2.2/24"),
            (&r, "r1", "10.71.1.1/24"),
            (&r, "r2", "10.71.2.1/24"),
            (&r, "r3", "10.71.3.1/24"),
            (&s, "s3", "10.71.3.2/24"),
            (&r, "lo", "10.71.9.1/32"),
        ] {
            in_ns(n, "ip", &["addr", "add", addr, "dev", dev])?;
            in_ns(n, "ip", &["link", "set", dev, "up"])?;
        }
        // Keep 10.71.1.3 when 10.71.1.2 is deleted (scenario 5); route TCP.
        in_ns(
            &c,
            "sh",
            &[
                "-c",
                "echo 1 > /proc/sys/net/ipv4/conf/c1/promote_secondaries",
            ],
        )?;
        in_ns(&r, "sh", &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        in_ns(&c, "ip", &["route", "add", "default", "via", "10.71.1.1"])?;
        in_ns(&c, "ip", &["rule", "add", "from", CLIENT2, "table", "102"])?;
        in_ns(
            &c,
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                "10.71.2.1",
                "dev",
                "c2",
                "table",
                "102",
            ],
        )?;
        in_ns(&s, "ip", &["route", "add", "default", "via", "10.71.3.1"])?;
        let rate = format!("{RATE_MBIT}mbit");
        for (n, dev) in [(&c, "c1"), (&c, "c2"), (&r, "r1"), (&r, "r2")] {
            in_ns(
                n,
                "tc",
                &[
                    "qdisc", "add", "dev", dev, "root", "tbf", "rate", &rate, "burst", "32kb",
                    "latency", "25ms",
                ],
            )?;
        }
        // Loss on each client link, both directions; the `block` chain takes the
        // rules that events add (a dead link, blocked UDP).
        let mut rules = String::from(
            "add table inet phlab; \
             add chain inet phlab block; \
             add chain inet phlab lab_in { type filter hook input priority 0; }; \
             add chain inet phlab lab_out { type filter hook output priority 0; }; \
             add chain inet phlab lab_fwd { type filter hook forward priority 0; }; \
             add rule inet phlab lab_in jump block; add rule inet phlab lab_out jump block; \
             add rule inet phlab lab_fwd jump block; ",
        );
        for (dev, link) in ["r1", "r2"].iter().zip(links) {
            if link.loss_pct > 0 {
                let p = link.loss_pct;
                for (chain, dir) in [("lab_in", "iifname"), ("lab_out", "oifname")] {
                    rules.push_str(&format!(
                        "add rule inet phlab {chain} {dir} {dev} numgen random mod 100 < {p} drop; \
                         add rule inet phlab lab_fwd {dir} {dev} numgen random mod 100 < {p} drop; "
                    ));
                }
            }
        }
        in_ns(&r, "nft", &[&rules])?;
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let exe = exe.to_string_lossy().into_owned();
        let relay = lab.spawn(
            &r,
            &exe,
            &[
                "netlab-relay",
                "--delay-ms",
                &ONE_WAY_MS.to_string(),
                "--map",
                &format!("{RELAY}:4433={SERVER}:4433"),
                "--map",
                &format!("{RELAY}:4434={SERVER}:4434"),
                "--map",
                &format!("{RELAY}:4435={SERVER}:4435"),
            ],
        )?;
        wait_line(relay, "relaying", Duration::from_secs(5))?;
        let key = dir.join("server.key").to_string_lossy().into_owned();
        let out_dir = dir.join(format!("received-{run}"));
        let out_dir = out_dir.to_string_lossy();
        let phantom = bins.phantom.to_string_lossy().into_owned();
        let workers = workers.map(|w| w.to_string());
        let workers: Vec<&str> = workers
            .as_deref()
            .map(|w| vec!["--workers", w])
            .unwrap_or_default();
        let store_args = [
            "serve",
            "--listen",
            "0.0.0.0:4433",
            "--key",
            &key,
            "--out-dir",
            &out_dir,
        ];
        let store = lab.spawn(&s, &phantom, &[&store_args[..], &workers].concat())?;
        wait_line(store, "listening on", Duration::from_secs(5))?;
        let echo_args = [
            "serve",
            "--listen",
            "0.0.0.0:4434",
            "--key",
            &key,
            "--echo",
            "--scheduler",
            scheduler,
            "--tcp",
            "0.0.0.0:4434",
        ];
        let echo = lab.spawn(&s, &phantom, &[&echo_args[..], &workers].concat())?;
        wait_line(echo, "listening on", Duration::from_secs(5))?;
        Ok(lab)
    }

    /// Starts `prog` in `ns`; returns a receiver of its stdout lines.
    fn spawn(&mut self, ns: &str, prog: &str, args: &[&str]) -> Result<mpsc::Receiver<String>> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, prog])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {prog} in {ns}: {e}"))?;
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        self.children.push(child);
        Ok(rx)
    }

    /// Runs `prog` in the client namespace to completion (bounded by `limit`);
    /// returns its stdout.
    fn client(&mut self, prog: &Path, args: &[String], limit: Duration) -> Result<String> {
        let ns = self.ns("c");
        let prog_s = prog.to_string_lossy().into_owned();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let rx = self.spawn(&ns, &prog_s, &argv)?;
        let idx = self.children.len() - 1;
        let start = Instant::now();
        let status = loop {
            let child = self
                .children
                .get_mut(idx)
                .ok_or("client process vanished")?;
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() > limit => {
                    return Err(format!(
                        "{} did not finish within {} s",
                        prog.display(),
                        limit.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for {}: {e}", prog.display())),
            }
        };
        let mut out = String::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
            out.push_str(&l);
            out.push('\n');
        }
        if status.success() {
            Ok(out)
        } else {
            Err(format!(
                "{} failed ({status}): {}",
                prog.display(),
                out.trim()
            ))
        }
    }
}

fn wait_line(rx: mpsc::Receiver<String>, want: &str, limit: Duration) -> Result {
    let start = Instant::now();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(want) => {
                // Keep draining so the child never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return Ok(());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Err(format!("no `{want}` within {} s", limit.as_secs()))
}

/// One row of the table.
struct Row {
    name: String,
    mbit: f64,
    link_mbit: f64,
    gap: String,
    exact: bool,
    note: String,
}

/// Deterministic payload file for `phantom send`.
fn payload(path: &Path, len: u64) -> Result {
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut v = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    while (v.len() as u64) < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(usize::try_from(len).unwrap_or(0));
    std::fs::write(path, v).map_err(|e| format!("{}: {e}", path.display()))
}

fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    let line = out.lines().rev().find(|l| l.starts_with("netlab-result"))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Scenario 1: `phantom send` of one file over link 1.
fn bulk(run: usize, loss: u32, bins: &Bins, dir: &Path, plan: Plan) -> Result<Row> {
    let links = [Link { loss_pct: loss }, Link { loss_pct: 0 }];
    let mut lab = Lab::up(run, links, bins, dir, "low-latency", plan.workers)?;
    let file = dir.join(format!("payload-{run}.bin"));
    payload(&file, plan.bytes)?;
    let args: Vec<String> = vec![
        "send".into(),
        "--connect".into(),
        format!("{RELAY}:4433"),
        "--server-pub".into(),
        dir.join("server.pub").to_string_lossy().into_owned(),
        file.to_string_lossy().into_owned(),
    ];
    let start = Instant::now();
    let out = lab.client(
        &bins.phantom.clone(),
        &args,
        Duration::from_secs(plan.timeout),
    )?;
    let secs = out
        .split(" bytes in ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| start.elapsed().as_secs_f64());
    let stored = lab
        .dir
        .join(format!("received-{run}"))
        .join(file.file_name().ok_or("payload has no name")?);
    let sent = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let got = std::fs::read(&stored).map_err(|e| format!("{}: {e}", stored.display()))?;
    let _ = std::fs::remove_file(&stored);
    let _ = std::fs::remove_file(&file);
    Ok(Row {
        name: format!("1 bulk, 1 path, {loss}% loss (send)"),
        mbit: plan.bytes as f64 * 8.0 / secs.max(1e-9) / 1e6,
        link_mbit: RATE_MBIT as f64,
        gap: "-".into(),
        exact: sent == got,
        note: String::new(),
    })
}

/// Scenario 1 for quinn 0.11 (bench/compare's `netlab_quinn`): one stream over link 1.
fn bulk_quinn(
    run: usize,
    loss: u32,
    quinn: &Path,
    bins: &Bins,
    dir: &Path,
    plan: Plan,
) -> Result<Row> {
    let links = [Link { loss_pct: loss }, Link { loss_pct: 0 }];
    let mut lab = Lab::up(run, links, bins, dir, "low-latency", plan.workers)?;
    let cert = dir.join(format!("quinn-{run}.der"));
    let cert_s = cert.to_string_lossy().into_owned();
    // Stored and synced before the answer, as `phantom serve --out-dir` does.
    let store = lab.dir.join(format!("received-{run}"));
    std::fs::create_dir_all(&store).map_err(|e| format!("{}: {e}", store.display()))?;
    let srv = lab.spawn(
        &lab.ns("s"),
        &quinn.to_string_lossy(),
        &[
            "server",
            "--listen",
            &format!("{SERVER}:4435"),
            "--cert-out",
            &cert_s,
            "--out-dir",
            &store.to_string_lossy(),
        ],
    )?;
    wait_line(srv, "listening on", Duration::from_secs(5))?;
    let args: Vec<String> = vec![
        "client".into(),
        "--connect".into(),
        format!("{RELAY}:4435"),
        "--cert".into(),
        cert_s,
        "--bytes".into(),
        plan.bytes.to_string(),
    ];
    let out = lab.client(quinn, &args, Duration::from_secs(plan.timeout))?;
    let secs: f64 = field(&out, "secs")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no result line in: {out}"))?;
    Ok(Row {
        name: format!("1 bulk, 1 path, {loss}% loss (quinn)"),
        mbit: plan.bytes as f64 * 8.0 / secs.max(1e-9) / 1e6,
        link_mbit: RATE_MBIT as f64,
        gap: "-".into(),
        exact: field(&out, "exact") == Some("yes"),
        note: "quinn 0.11, bench/compare".into(),
    })
}

/// A scenario run by `netlab_client` against the echo server.
struct Echo<'a> {
    name: &'a str,
    links: [Link; 2],
    scheduler: &'a str,
    bind: &'a str,
    extra_path: bool,
    tcp: bool,
    /// (fraction of the transfer, shell line) pairs.
    events: Vec<(f64, String)>,
    link_mbit: f64,
}

fn echo(run: usize, spec: &Echo<'_>, bins: &Bins, dir: &Path, plan: Plan) -> Result<Row> {
    let mut lab = Lab::up(run, spec.links, bins, dir, spec.scheduler, plan.workers)?;
    let mut args: Vec<String> = vec![
        "--connect".into(),
        format!("{RELAY}:4434"),
        "--server-pub".into(),
        dir.join("server.pub").to_string_lossy().into_owned(),
        "--bind".into(),
        spec.bind.into(),
        "--scheduler".into(),
        spec.scheduler.into(),
        "--bytes".into(),
        plan.bytes.to_string(),
        "--timeout".into(),
        plan.timeout.to_string(),
    ];
    if spec.extra_path {
        args.extend(["--extra-path".into(), format!("{CLIENT2}:0")]);
    }
    if spec.tcp {
        args.extend(["--tcp".into(), format!("{SERVER}:4434")]);
    }
    for (frac, cmd) in &spec.events {
        let at = (plan.bytes as f64 * frac) as u64;
        let cmd = cmd.replace("{r}", &lab.ns("r"));
        args.extend(["--event".into(), format!("{at}:{cmd}")]);
    }
    let out = lab.client(
        &bins.client.clone(),
        &args,
        Duration::from_secs(plan.timeout + 15),
    )?;
    let secs: f64 = field(&out, "secs")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no result line in: {out}"))?;
    let bytes: u64 = field(&out, "bytes")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let gap = field(&out, "gaps_ms")
        .filter(|g| *g != "-")
        .map_or_else(|| "-".into(), |g| format!("{g} ms"));
    let carriers = field(&out, "carriers").unwrap_or("?");
    let seen = field(&out, "seen").unwrap_or("?");
    let rtt = field(&out, "rtt_ms").unwrap_or("?");
    let sent = field(&out, "sent_mib").unwrap_or("?");
    let recv = field(&out, "recv_mib").unwrap_or("?");
    // The relay keeps one upstream socket per client address it saw: two after an
    // address change or with two paths.
    let flows = relay_flows(&lab.ns("r"));
    Ok(Row {
        name: spec.name.into(),
        mbit: bytes as f64 * 8.0 / secs.max(1e-9) / 1e6,
        link_mbit: spec.link_mbit,
        gap,
        exact: field(&out, "exact") == Some("yes") && bytes == plan.bytes,
        note: format!(
            "rtt {rtt} ms, relay flows {flows}, carriers seen {seen}, at end {carriers}, \
             MiB per path sent {sent} received {recv}"
        ),
    })
}

/// Upstream sockets of the relay towards the echo server.
fn relay_flows(router: &str) -> usize {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            router,
            "ss",
            "-Huan",
            "dst",
            &format!("{SERVER}:4434"),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

fn block(lab_rule: &str) -> String {
    format!("ip netns exec {{r}} nft '{lab_rule}'")
}

/// Runs every scenario; fails on a byte mismatch or a transfer that never completes.
/// With `quinn`, scenario 1 also runs quinn 0.11 (bench/compare) over the same links.
pub(crate) fn run(plan: Plan, quinn: bool) -> Result {
    clean_stale();
    if let Some(why) = unavailable() {
        return Err(format!("the network lab cannot run here: {why}"));
    }
    let bins = build(quinn)?;
    let dir = std::env::temp_dir().join(format!("phlab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _watchdog = watchdog();
    let res = (|| {
        crate::run({
            let mut c = Command::new(&bins.phantom);
            c.args(["keygen", "--out"]).arg(&dir).stdout(Stdio::null());
            c
        })?;
        println!(
            "[netlab] links {RATE_MBIT} Mbit/s (tbf), RTT {} ms (relay), {} MiB per transfer",
            2 * ONE_WAY_MS,
            plan.bytes >> 20
        );
        println!("[netlab] scenarios: {SCENARIOS}");
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        let mut record = |r: Result<Row>, name: &str| match r {
            Ok(row) => {
                println!(
                    "[netlab] {:<44} {:>6.1} Mbit/s  exact {}",
                    row.name,
                    row.mbit,
                    if row.exact { "yes" } else { "NO" }
                );
                if !row.exact {
                    failures.push(format!("{}: bytes differ", row.name));
                }
                rows.push(row);
            }
            Err(e) => {
                println!("[netlab] {name:<44} FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        };
        let mut n = 0;
        for loss in [0, 1, 3].into_iter().filter(|_| plan.runs(1)) {
            n += 1;
            record(
                bulk(n, loss, &bins, &dir, plan),
                &format!("1 bulk, {loss}% loss"),
            );
            if let Some(q) = &bins.quinn {
                n += 1;
                record(
                    bulk_quinn(n, loss, q, &bins, &dir, plan),
                    &format!("1 bulk, {loss}% loss (quinn)"),
                );
            }
        }
        let specs = echo_specs();
        for spec in specs.iter().filter(|s| plan.runs(scenario_number(s.name))) {
            n += 1;
            record(echo(n, spec, &bins, &dir, plan), spec.name);
        }
        print_table(&rows);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!("network lab: {}", failures.join("; ")))
        }
    })();
    let _ = std::fs::remove_dir_all(&dir);
    res
}

/// Scenarios 2 to 6, run by `netlab_client` against the echo server.
fn echo_specs() -> Vec<Echo<'static>> {
    let clean = [Link { loss_pct: 0 }, Link { loss_pct: 0 }];
    vec![
        Echo {
            name: "2 echo, 1 path",
            links: clean,
            scheduler: "low-latency",
            bind: "0.0.0.0:0",
            extra_path: false,
            tcp: false,
            events: vec![],
            link_mbit: RATE_MBIT as f64,
        },
        Echo {
            name: "2 echo, 2 paths aggregate",
            links: clean,
            scheduler: "aggregate",
            bind: "10.71.1.2:0",
            extra_path: true,
            tcp: false,
            events: vec![],
            link_mbit: 2.0 * RATE_MBIT as f64,
        },
        Echo {
            name: "3 failover, path 1 dies at 30%",
            links: clean,
            scheduler: "failover",
            bind: "10.71.1.2:0",
            extra_path: true,
            tcp: false,
            events: vec![(
                0.3,
                block(
                    "add rule inet phlab block iifname r1 drop; add rule inet phlab block oifname r1 drop",
                ),
            )],
            link_mbit: RATE_MBIT as f64,
        },
        Echo {
            name: "4 redundant, path 2 at 20% loss",
            links: [Link { loss_pct: 0 }, Link { loss_pct: 20 }],
            scheduler: "redundant",
            bind: "10.71.1.2:0",
            extra_path: true,
            tcp: false,
            events: vec![],
            link_mbit: RATE_MBIT as f64,
        },
        Echo {
            name: "5 migration, new client address at 30%",
            links: clean,
            scheduler: "low-latency",
            bind: "0.0.0.0:0",
            extra_path: false,
            tcp: false,
            events: vec![(
                0.3,
                format!(
                    "ip addr add {CLIENT1_NEW}/24 dev c1 && ip addr del {CLIENT1}/24 dev c1 \
                     && ip route replace default via 10.71.1.1 dev c1"
                ),
            )],
            link_mbit: RATE_MBIT as f64,
        },
        Echo {
            name: "6 UDP blocked 30%-60%, TCP fallback",
            links: clean,
            scheduler: "low-latency",
            bind: "0.0.0.0:0",
            extra_path: false,
            tcp: true,
            events: vec![
                (
                    0.3,
                    block("add rule inet phlab block meta l4proto udp drop"),
                ),
                (0.6, block("flush chain inet phlab block")),
            ],
            link_mbit: RATE_MBIT as f64,
        },
    ]
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| {:<40} | {:>8} | {:>8} | {:>14} | {:>5} | note",
        "scenario", "Mbit/s", "of link", "gap", "exact"
    );
    println!(
        "|{:-<42}|{:->10}|{:->10}|{:->16}|{:->7}|------",
        "", "", "", "", ""
    );
    for r in rows {
        println!(
            "| {:<40} | {:>8.1} | {:>7.0}% | {:>14} | {:>5} | {}",
            r.name,
            r.mbit,
            100.0 * r.mbit / r.link_mbit,
            r.gap,
            if r.exact { "yes" } else { "NO" },
            r.note
        );
    }
}

/// A shell that outlives a killed xtask and deletes its namespaces then.
struct Watchdog(Option<Child>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn watchdog() -> Watchdog {
    let pid = std::process::id();
    let script = format!(
        "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         for n in $(ip netns list | awk '{{print $1}}' | grep '^phlab-{pid}-'); do \
         for p in $(ip netns pids $n); do kill -9 $p; done; ip netns del $n; done"
    );
    Watchdog(
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok(),
    )
}

/// `xtask netlab-relay`: forwards UDP from each `LISTEN=TARGET` pair after `delay`,
/// one upstream socket per client address (the server sees each client address as
/// a distinct peer). Runs until killed.
pub(crate) fn relay(maps: &[String], delay: Duration) -> Result {
    let mut handles = Vec::new();
    for m in maps {
        let (l, t) = m
            .split_once('=')
            .ok_or_else(|| format!("--map {m}: want LISTEN=TARGET"))?;
        let listen: SocketAddr = l.parse().map_err(|e| format!("{l}: {e}"))?;
        let target: SocketAddr = t.parse().map_err(|e| format!("{t}: {e}"))?;
        let sock = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        handles.push(std::thread::spawn(move || relay_one(sock, target, delay)));
    }
    println!("relaying");
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

type Queue = mpsc::Sender<(Instant, Arc<UdpSocket>, Option<SocketAddr>, Vec<u8>)>;

/// A FIFO delay line: every item leaves `delay` after it entered.
fn delay_line() -> Queue {
    let (tx, rx) = mpsc::channel::<(Instant, Arc<UdpSocket>, Option<SocketAddr>, Vec<u8>)>();
    std::thread::spawn(move || {
        for (at, sock, to, data) in rx {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let _ = match to {
                Some(to) => sock.send_to(&data, to),
                None => sock.send(&data),
            };
        }
    });
    tx
}

fn relay_one(sock: UdpSocket, target: SocketAddr, delay: Duration) {
    let down_sock = Arc::new(sock);
    let up = delay_line();
    let down = delay_line();
    let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = down_sock.recv_from(&mut buf) else {
            continue;
        };
        let upstream = match flows.get(&from) {
            Some(u) => Arc::clone(u),
            None => {
                let Ok(u) = UdpSocket::bind(("0.0.0.0", 0)) else {
                    continue;
                };
                if u.connect(target).is_err() {
                    continue;
                }
                let u = Arc::new(u);
                let (reader, back, down) = (Arc::clone(&u), Arc::clone(&down_sock), down.clone());
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    loop {
                        // A refused send shows up as an error here: keep reading.
                        if let Ok(k) = reader.recv(&mut b) {
                            let data = b.get(..k).unwrap_or_default().to_vec();
                            let item =
                                (Instant::now() + delay, Arc::clone(&back), Some(from), data);
                            if down.send(item).is_err() {
                                break;
                            }
                        }
                    }
                });
                flows.insert(from, Arc::clone(&u));
                u
            }
        };
        let data = buf.get(..n).unwrap_or_default().to_vec();
        if up
            .send((Instant::now() + delay, upstream, None, data))
            .is_err()
        {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_forwards_both_ways_in_order_with_one_flow_per_client() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let target = server.local_addr().unwrap();
        let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_addr = listen.local_addr().unwrap();
        std::thread::spawn(move || relay_one(listen, target, Duration::from_millis(2)));
        let mut clients = Vec::new();
        for _ in 0..2 {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            clients.push(c);
        }
        let mut sources = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            for k in 0u8..50 {
                c.send_to(&[i as u8, k], relay_addr).unwrap();
            }
            let mut buf = [0u8; 16];
            for k in 0u8..50 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[i as u8, k]);
                sources.push(from);
                server.send_to(&[k, i as u8], from).unwrap();
            }
            for k in 0u8..50 {
                let (n, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(from, relay_addr);
                assert_eq!(&buf[..n], &[k, i as u8]);
            }
        }
        sources.sort();
        sources.dedup();
        assert_eq!(sources.len(), 2, "one upstream socket per client address");
    }

    #[test]
    fn result_fields_are_read_from_the_last_result_line() {
        let out = "path 0 ...\nnetlab-result bytes=7 secs=1.5 exact=no\n\
                   netlab-result bytes=42 secs=0.250 exact=yes gaps_ms=12,3 seen=tcp,udp\n";
        assert_eq!(field(out, "bytes"), Some("42"));
        assert_eq!(field(out, "exact"), Some("yes"));
        assert_eq!(field(out, "gaps_ms"), Some("12,3"));
        assert_eq!(field(out, "rtt_ms"), None);
        assert_eq!(field("no result", "bytes"), None);
    }
}
