//! Runs the `phantom` binary: exit codes, one-line errors, files round-tripping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    reason = "tests: failing loudly is the point, and child processes need a wall-clock deadline"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_phantom");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("phantom-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("phantom {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `phantom serve --listen 127.0.0.1:0 --key KEY --echo EXTRA...` to its end: for
/// the invocations that must refuse to start.
fn run_serve(key: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--key",
        key.to_str().unwrap(),
        "--echo",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Asserts exit code 1 and exactly one line on stderr; returns that line.
fn one_line_failure(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "want one line, got: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn keygen(dir: &Path) {
    let out = run(&["keygen", "--out", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `phantom serve` and its address.
struct Server {
    child: Child,
    addr: String,
    /// The TCP fallback address (`--tcp`).
    tcp: Option<String>,
}

impl Server {
    fn start(keys: &Path, mode: &[&str]) -> Self {
        Self::start_at(keys, "127.0.0.1:0", mode)
    }

    fn start_at(keys: &Path, listen: &str, mode: &[&str]) -> Self {
        let key = keys.join("server.key");
        let mut args = vec!["serve", "--listen", listen, "--key", key.to_str().unwrap()];
        args.extend_from_slice(mode);
        let mut child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let tcp = mode.contains(&"--tcp").then(|| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("TCP fallback on ")
                .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
                .to_owned()
        });
        Self { child, addr, tcp }
    }

    /// SIGTERM, then expect a clean exit 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "serve exited with {st}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "serve ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn i8_keygen_writes_secret_key_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmp("keygen");
    keygen(&d);
    let mode = std::fs::metadata(d.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(d.join("server.pub")).unwrap();
    assert_eq!(
        public.trim().len(),
        2 * 1984,
        "hex of the 1984-byte verifying key"
    );
    // The secret never reaches the terminal.
    let out = run(&["keygen", "--out", d.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let secret = std::fs::read(d.join("server.key")).unwrap();
    let secret_hex: String = secret[..16].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!stdout.contains(&secret_hex));
}

/// The `figures:` lines the demo prints, in order, as key/value maps.
fn demo_figures(stdout: &str) -> Vec<std::collections::HashMap<String, u64>> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("figures:"))
        .map(|rest| {
            rest.split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("key=value");
                    (k.to_string(), v.parse().expect("a number"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn demo_rekeys_both_ways_survives_the_address_change_and_uses_both_paths() {
    let out = run(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figures = demo_figures(&stdout);
    assert_eq!(figures.len(), 4, "figures lines in:\n{stdout}");
    let (rekey, migration, paths, close) = (&figures[0], &figures[1], &figures[2], &figures[3]);
    // Rekeys: 4 MiB at 200 packets per epoch is about 17 client rekeys; the server
    // sends far fewer (acknowledgement) packets.
    assert_eq!(rekey["bytes"], 4 << 20, "{stdout}");
    assert!(rekey["client_rekeys"] >= 5, "{stdout}");
    assert!(rekey["server_followed"] >= 5, "{stdout}");
    assert!(rekey["server_rekeys"] >= 1, "{stdout}");
    assert!(rekey["client_followed"] >= 1, "{stdout}");
    // The address changed and the session went on over a validated path to it.
    assert_ne!(migration["old_port"], migration["new_port"], "{stdout}");
    assert_eq!(migration["bytes_after"], 1 << 20, "{stdout}");
    assert_eq!(migration["server_validated_new"], 1, "{stdout}");
    assert!(migration["migrations"] >= 1, "{stdout}");
    // Both paths (the one moved to and the one added) carried bytes.
    assert_eq!(paths["bytes"], 8 << 20, "{stdout}");
    assert!(paths["paths_used"] >= 2, "{stdout}");
    assert!(paths["moved_path_bytes"] >= 64 * 1024, "{stdout}");
    assert!(paths["second_path_bytes"] >= 64 * 1024, "{stdout}");
    // The session lasted to a clean close by the client.
    assert_eq!(close["peer_close_code"], 0, "{stdout}");
}

#[test]
fn send_to_served_directory_round_trips_byte_exact() {
    let d = tmp("send");
    keygen(&d);
    let out_dir = d.join("received");
    let server = Server::start(&d, &["--out-dir", out_dir.to_str().unwrap()]);
    let big = d.join("big.bin");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &data).unwrap();
    let small = d.join("note.txt");
    std::fs::write(&small, b"phantom\n").unwrap();
    let pubkey = d.join("server.pub");
    let out = run(&[
        "send",
        "--connect",
        &server.addr,
        "--server-pub",
        pubkey.to_str().unwrap(),
        "--rekey-after",
        "500",
        "--scheduler",
        "aggregate",
        big.to_str().unwrap(),
        small.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("confirmed every byte"), "{stdout}");
    assert_eq!(std::fs::read(out_dir.join("big.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(out_dir.join("note.txt")).unwrap(),
        b"phantom\n"
    );
    server.stop();
}

#[test]
fn pipe_through_echo_server_returns_stdin() {
    let d = tmp("pipe");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let pubkey = d.join("server.pub");
    let input: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    pipe_echoes(
        &[
            "--connect",
            &server.addr,
            "--server-pub",
            pubkey.to_str().unwrap(),
        ],
        &input,
    );
    server.stop();
}

#[test]
fn serve_with_three_workers_echoes_four_clients_byte_exact() {
    let d = tmp("workers");
    keygen(&d);
    let server = Server::start(&d, &["--echo", "--workers", "3"]);
    let pubkey = d.join("server.pub");
    for seed in 0..4u32 {
        let input: Vec<u8> = (0..100_000u32).map(|i| ((i + seed) % 253) as u8).collect();
        pipe_echoes(
            &[
                "--connect",
                &server.addr,
                "--server-pub",
                pubkey.to_str().unwrap(),
            ],
            &input,
        );
    }
    server.stop();
}

#[test]
fn serve_refuses_zero_workers() {
    let d = tmp("workers0");
    keygen(&d);
    let out = run_serve(&d.join("server.key"), &["--workers", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}

/// Runs `phantom pipe ARGS` with `input` on stdin; it must exit 0 and print `input`
/// back (the server echoes).
fn pipe_echoes(args: &[&str], input: &[u8]) {
    let mut child = Command::new(BIN)
        .arg("pipe")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.to_vec();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&feed).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == input,
        "echoed {} of {} bytes",
        out.stdout.len(),
        input.len()
    );
}

#[test]
fn missing_key_file_fails_with_one_line() {
    let d = tmp("missing");
    let missing = d.join("nope.key");
    let line = one_line_failure(&run_serve(&missing, &[]));
    assert!(line.contains("nope.key"), "{line}");
    let line = one_line_failure(&run(&[
        "send",
        "--connect",
        "127.0.0.1:9",
        "--server-pub",
        d.join("nope.pub").to_str().unwrap(),
        "Cargo.toml",
    ]));
    assert!(line.contains("nope.pub"), "{line}");
}

#[test]
fn bad_input_fails_with_one_line() {
    let d = tmp("bad");
    keygen(&d);
    let pubkey = d.join("server.pub");
    let pubkey = pubkey.to_str().unwrap();
    // Bad address.
    let line = one_line_failure(&run(&[
        "pipe",
        "--connect",
        "no-such-host.invalid:1",
        "--server-pub",
        pubkey,
    ]));
    assert!(line.contains("bad address"), "{line}");
    // Silent server.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let line = one_line_failure(&run(&[
        "send",
        "--connect",
        &addr,
        "--server-pub",
        pubkey,
        "--connect-timeout",
        "1",
        "Cargo.toml",
    ]));
    assert!(line.contains("timed out"), "{line}");
    // A key file that is not a key.
    let line = one_line_failure(&run(&[
        "send",
        "--connect",
        &addr,
        "--server-pub",
        "Cargo.toml",
        "Cargo.toml",
    ]));
    assert!(line.contains("invalid key"), "{line}");
    // Wrong server key.
    let other = tmp("bad-other");
    keygen(&other);
    let server = Server::start(&d, &["--echo"]);
    let line = one_line_failure(&run(&[
        "send",
        "--connect",
        &server.addr,
        "--server-pub",
        other.join("server.pub").to_str().unwrap(),
        "Cargo.toml",
    ]));
    assert!(line.contains("key"), "{line}");
    server.stop();
    // Usage errors come from clap with exit code 2.
    let out = run(&["send", "--scheduler", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["serve", "--listen", "127.0.0.1:0", "--key", "k"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--out-dir or --echo is required"
    );
}

#[test]
fn pipe_falls_back_to_tcp_when_udp_gets_no_answer() {
    let d = tmp("pipe-tcp");
    keygen(&d);
    let server = Server::start(&d, &["--echo", "--tcp", "127.0.0.1:0"]);
    let tcp = server.tcp.clone().unwrap();
    // A UDP address that never answers: the handshake must move to TCP.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = silent.local_addr().unwrap().to_string();
    let pubkey = d.join("server.pub");
    let input: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    pipe_echoes(
        &[
            "--connect",
            &udp,
            "--tcp",
            &tcp,
            "--server-pub",
            pubkey.to_str().unwrap(),
        ],
        &input,
    );
    drop(silent);
    server.stop();
}

/// Runs `phantom -v pipe ARGS` with `input` on stdin, expects exit 0 and `input`
/// echoed back; returns the fields of the `phantom: handshake` line.
fn pipe_handshake(args: &[&str], input: &[u8]) -> std::collections::HashMap<String, String> {
    let err = pipe_verbose(args, input);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("phantom: handshake "))
        .unwrap_or_else(|| panic!("no handshake line in {err:?}"));
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// Runs `phantom -v pipe ARGS` with `input` on stdin, expects exit 0 and `input`
/// echoed back; returns stderr.
fn pipe_verbose(args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(BIN)
        .args(["-v", "pipe"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&feed).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert_eq!(out.stdout, input, "the echo differs");
    err
}

#[test]
fn keygen_writes_a_certificate_that_makes_the_first_connection_pdk() {
    let d = tmp("pdk");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let input: Vec<u8> = (0..20_000u32).map(|i| (i % 249) as u8).collect();
    let with_cert = d.join("server.pub");
    let hs = pipe_handshake(
        &[
            "--connect",
            &server.addr,
            "--server-pub",
            with_cert.to_str().unwrap(),
        ],
        &input,
    );
    assert_eq!(hs["mode"], "pdk");
    assert!(hs["time_us"].parse::<u64>().unwrap() > 0);
    // The public key alone: a full handshake.
    let bare = tmp("pdk-bare");
    std::fs::copy(&with_cert, bare.join("server.pub")).unwrap();
    let pubkey = bare.join("server.pub");
    let hs = pipe_handshake(
        &[
            "--connect",
            &server.addr,
            "--server-pub",
            pubkey.to_str().unwrap(),
        ],
        &input,
    );
    assert_eq!(hs["mode"], "full");
    // Another server's certificate does not verify under this key: refused up front.
    let other = tmp("pdk-other");
    keygen(&other);
    let foreign = other.join("server.cert");
    let out = run(&[
        "pipe",
        "--connect",
        &server.addr,
        "--server-pub",
        pubkey.to_str().unwrap(),
        "--cert",
        foreign.to_str().unwrap(),
    ]);
    assert!(one_line_failure(&out).contains("server.cert"));
    server.stop();
}

#[test]
fn a_resumed_connection_sends_its_first_bytes_in_the_client_hello() {
    let d = tmp("resume");
    keygen(&d);
    // One worker: each `pipe` is a new process on a new client address, which a
    // server with several workers may hash to a worker other than the ticket's (each
    // worker has its own ticket keys; docs/DEPLOYMENT.md).
    let server = Server::start(&d, &["--echo", "--workers", "1"]);
    let pubkey = d.join("server.pub");
    let cache = d.join("tickets");
    let args = [
        "--connect",
        &server.addr,
        "--server-pub",
        pubkey.to_str().unwrap(),
        "--resume",
        cache.to_str().unwrap(),
    ];
    let input: Vec<u8> = (0..700u32).map(|i| (i % 241) as u8).collect();
    let first = pipe_handshake(&args, &input);
    assert_eq!(first["mode"], "pdk");
    assert_eq!(first["early_bytes"], "0");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(&cache).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 1);
    }
    let second = pipe_handshake(&args, &input);
    assert_eq!(second["mode"], "resumed");
    // All 700 bytes of stdin rode in the first flight and the server took them.
    assert_eq!(second["early_bytes"], "700");
    assert_eq!(second["early_accepted"], "true");
    // The ticket was replaced by a fresh one: still one line.
    assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 1);
    server.stop();
}

#[test]
fn bench_with_two_paths_carries_bytes_on_both() {
    let total = 8_000_000u64;
    let out = run(&[
        "bench",
        "--bytes",
        &total.to_string(),
        "--paths",
        "2",
        "--scheduler",
        "aggregate",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `path ID LOCAL -> REMOTE: N bytes sent, rtt ..`
    let sent: Vec<u64> = stdout
        .lines()
        .filter(|l| l.starts_with("path "))
        .map(|l| {
            let tail = l.split(": ").nth(1).unwrap();
            tail.split(' ').next().unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(sent.len(), 2, "{stdout}");
    for (i, bytes) in sent.iter().enumerate() {
        assert!(
            *bytes > total / 20,
            "path {i} carried only {bytes} bytes: {stdout}"
        );
    }
    assert!(sent.iter().sum::<u64>() >= total, "{stdout}");
}

/// `--suite` offers only the chosen suite; `-v` reports the suite the connection
/// negotiated, for each of the two.
#[test]
fn suite_flag_selects_the_suite_that_v_reports() {
    let d = tmp("suite");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let input: Vec<u8> = (0..5_000u32).map(|i| (i % 251) as u8).collect();
    let pubkey = d.join("server.pub");
    for suite in ["aes256gcm", "chacha20poly1305"] {
        let hs = pipe_handshake(
            &[
                "--connect",
                &server.addr,
                "--server-pub",
                pubkey.to_str().unwrap(),
                "--suite",
                suite,
            ],
            &input,
        );
        assert_eq!(hs["suite"], suite);
    }
}

/// Runs `phantom ARGS` with `RUST_LOG=warn` (so `-v` adds only its own lines) and a
/// 60 s deadline.
fn run_quiet_log(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("phantom {args:?} did not exit within 60 s");
        }
    }
}

/// The `phantom: path k=v ..` lines that `-v` prints, as maps.
fn path_lines(stderr: &str) -> Vec<std::collections::HashMap<String, String>> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("phantom: path "))
        .map(|rest| {
            rest.split(' ')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), v.to_owned())
                })
                .collect()
        })
        .collect()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// `send --path 127.0.0.2:0 --scheduler aggregate`: the file arrives byte-exact and
/// each of the two paths carried more than 10% of its bytes, by the per-path byte
/// counts `-v` prints.
#[test]
fn send_with_a_second_path_carries_over_a_tenth_of_the_file_on_each() {
    let d = tmp("send-path");
    keygen(&d);
    let out_dir = d.join("received");
    let server = Server::start(&d, &["--out-dir", out_dir.to_str().unwrap()]);
    let size = 8usize << 20;
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let file = d.join("two-paths.bin");
    std::fs::write(&file, &data).unwrap();
    let pubkey = d.join("server.pub");
    let out = run_quiet_log(&[
        "-v",
        "send",
        "--connect",
        &server.addr,
        "--server-pub",
        pubkey.to_str().unwrap(),
        "--path",
        "127.0.0.2:0",
        "--scheduler",
        "aggregate",
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stored = std::fs::read(out_dir.join("two-paths.bin")).unwrap();
    assert_eq!(stored.len(), size);
    assert_eq!(sha256(&stored), sha256(&data));
    let paths = path_lines(&stderr);
    assert_eq!(paths.len(), 2, "{stderr}");
    let added: Vec<_> = paths
        .iter()
        .filter(|p| p["local"].starts_with("127.0.0.2:"))
        .collect();
    assert_eq!(added.len(), 1, "one path from 127.0.0.2: {stderr}");
    let mut total = 0u64;
    for p in &paths {
        assert_eq!(p["validated"], "true", "{stderr}");
        let sent: u64 = p["bytes_sent"].parse().unwrap();
        assert!(
            sent > size as u64 / 10,
            "path {} carried {sent} of {size} bytes: {stderr}",
            p["local"]
        );
        total += sent;
    }
    assert!(total >= size as u64, "{total} < {size}: {stderr}");
    server.stop();
}

/// A `--path` that does not parse, is not an address of this host, or is of the
/// other family than the server's fails with exit code 1 and one line naming it.
#[test]
fn bad_path_flag_fails_with_one_line_naming_it() {
    let d = tmp("bad-path");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let pubkey = d.join("server.pub");
    // A documentation address (RFC 5737) that is not configured here.
    let foreign = ["203.0.113.254:0", "198.51.100.254:0", "192.0.2.254:0"]
        .into_iter()
        .find(|a| {
            std::net::UdpSocket::bind(a)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrNotAvailable)
        })
        .expect("one documentation address is not local");
    for bad in ["eth1", "127.0.0.2:99999", foreign, "[::1]:0", "0.0.0.0:0"] {
        for cmd in ["send", "pipe"] {
            let mut args = vec![
                cmd,
                "--connect",
                &server.addr,
                "--server-pub",
                pubkey.to_str().unwrap(),
                "--path",
                bad,
            ];
            if cmd == "send" {
                args.push("Cargo.toml");
            }
            let line = one_line_failure(&run(&args));
            assert!(line.contains(&format!("--path {bad}")), "{line}");
        }
    }
    server.stop();
}

/// `pipe --path 127.0.0.2:0`: the echo is exact and `-v` reports two validated paths,
/// one from 127.0.0.2, that sent at least as many bytes as the input together.
#[test]
fn pipe_with_a_second_path_echoes_and_reports_two_validated_paths() {
    let d = tmp("pipe-path");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let pubkey = d.join("server.pub");
    let input: Vec<u8> = (0..400_000u32).map(|i| (i % 239) as u8).collect();
    let err = pipe_verbose(
        &[
            "--connect",
            &server.addr,
            "--server-pub",
            pubkey.to_str().unwrap(),
            "--path",
            "127.0.0.2",
            "--scheduler",
            "aggregate",
        ],
        &input,
    );
    let paths = path_lines(&err);
    assert_eq!(paths.len(), 2, "{err}");
    assert!(paths.iter().all(|p| p["validated"] == "true"), "{err}");
    assert_eq!(
        paths
            .iter()
            .filter(|p| p["local"].starts_with("127.0.0.2:"))
            .count(),
        1,
        "{err}"
    );
    let sent: u64 = paths
        .iter()
        .map(|p| p["bytes_sent"].parse::<u64>().unwrap())
        .sum();
    assert!(sent >= input.len() as u64, "{sent}: {err}");
    server.stop();
}

/// A `phantom pipe` client whose server is killed and restarted from the same key files
/// on the same address: the client's next bytes reach a server that never issued the
/// id they carry, it answers with a stateless reset, and the client exits with code 3
/// (reset) within one second instead of waiting out its idle timeout.
#[test]
fn pipe_exits_with_the_reset_code_within_a_second_of_its_server_restarting() {
    let d = tmp("restart");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let addr = server.addr.clone();
    let pubkey = d.join("server.pub");
    let mut child = Command::new(BIN)
        .args(["pipe", "--connect", &addr, "--server-pub"])
        .arg(&pubkey)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"before\n").unwrap();
    stdin.flush().unwrap();
    let mut echoed = [0u8; 7];
    stdout.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"before\n");

    drop(server); // SIGKILL: the session's state is gone
    let _restarted = Server::start_at(&d, &addr, &["--echo"]);
    let start = Instant::now();
    stdin.write_all(b"after\n").unwrap();
    stdin.flush().unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the client did not notice the restart"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = start.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn fleet_keygen_writes_64_hex_digits_with_mode_0600_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = tmp("fleet-keygen");
    let file = d.join("fleet.key");
    let out = run(&["keygen", "--fleet", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.len(), 65);
    assert_eq!(text.trim_end().len(), 64);
    assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    // A second keygen refuses, leaving the key as it was.
    let out = run(&["keygen", "--fleet", file.to_str().unwrap()]);
    assert!(one_line_failure(&out).contains("fleet.key"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    // Two fresh keys differ.
    let other = d.join("other.key");
    assert!(
        run(&["keygen", "--fleet", other.to_str().unwrap()])
            .status
            .success()
    );
    assert_ne!(std::fs::read_to_string(&other).unwrap(), text);
    // `serve` refuses a file that does not hold a fleet key, in one line.
    keygen(&d);
    let bad = d.join("bad.key");
    std::fs::write(&bad, "abcd\n").unwrap();
    let key = d.join("server.key");
    let out = run_serve(&key, &["--fleet-key", bad.to_str().unwrap()]);
    assert!(one_line_failure(&out).contains("bad.key"));
}

/// Moves the cached ticket of the server at `from` to the server at `to` (a client
/// that reaches another member of the fleet under another address).
fn move_ticket(cache: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(cache).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with(from), "{text}");
    std::fs::write(cache, text.replacen(from, to, 1)).unwrap();
}

/// Two `serve --fleet-key` processes with one identity and one fleet key: a ticket
/// saved from the first resumes on the second (its early bytes arrive as 1-RTT data:
/// 0-RTT stays with the server that issued the ticket); a server with the identity but
/// without the fleet key cannot open it.
#[test]
fn fleet_ticket_saved_from_one_serve_process_resumes_on_the_other() {
    let d = tmp("fleet-resume");
    keygen(&d);
    let fleet = d.join("fleet.key");
    assert!(
        run(&["keygen", "--fleet", fleet.to_str().unwrap()])
            .status
            .success()
    );
    let fleet_args = ["--echo", "--fleet-key", fleet.to_str().unwrap()];
    let a = Server::start(&d, &fleet_args);
    let b = Server::start(&d, &fleet_args);
    let lone = Server::start(&d, &["--echo"]);
    let pubkey = d.join("server.pub");
    let cache = d.join("tickets");
    let args = |addr: &str| {
        [
            "--connect".to_owned(),
            addr.to_owned(),
            "--server-pub".to_owned(),
            pubkey.to_str().unwrap().to_owned(),
            "--resume".to_owned(),
            cache.to_str().unwrap().to_owned(),
        ]
    };
    let input: Vec<u8> = (0..700u32).map(|i| (i % 239) as u8).collect();
    let on = |addr: &str| {
        let a = args(addr);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        pipe_handshake(&a, &input)
    };
    let first = on(&a.addr);
    assert_eq!(first["mode"], "pdk");
    move_ticket(&cache, &a.addr, &b.addr);
    let second = on(&b.addr);
    assert_eq!(second["mode"], "resumed");
    assert_eq!(second["early_bytes"], "700");
    assert_eq!(second["early_accepted"], "false");
    // B's ticket, back on A: resumed too.
    move_ticket(&cache, &b.addr, &a.addr);
    assert_eq!(on(&a.addr)["mode"], "resumed");
    // Without the fleet key the ticket does not open: a PDK handshake instead.
    move_ticket(&cache, &a.addr, &lone.addr);
    assert_eq!(on(&lone.addr)["mode"], "pdk");
    a.stop();
    b.stop();
    lone.stop();
}

/// A closed stdout (`phantom keygen | head -0`) does not make the command panic: the
/// keys are written and it exits 0.
#[test]
fn keygen_into_a_closed_stdout_exits_0_and_writes_its_keys() {
    let d = tmp("closed-stdout");
    let mut child = Command::new(BIN)
        .args(["keygen", "--out", d.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.join("server.key").exists() && d.join("server.pub").exists());
}

/// `send` to a server that echoes (`serve --echo`) fails with exit code 1 and says the
/// server echoed, not that it "stored" a length made of the echoed bytes.
#[test]
fn send_to_an_echo_server_fails_saying_it_echoed() {
    let d = tmp("send-echo");
    keygen(&d);
    let server = Server::start(&d, &["--echo"]);
    let file = d.join("f.bin");
    std::fs::write(&file, vec![7u8; 50_000]).unwrap();
    let pubkey = d.join("server.pub");
    let out = run(&[
        "send",
        "--connect",
        &server.addr,
        "--server-pub",
        pubkey.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_failure(&out);
    assert!(line.contains("echoed"), "{line}");
    assert!(!line.contains("stored"), "{line}");
    server.stop();
}

/// `serve --server-id` needs `--fleet-key` (clap refuses it alone, exit 2) and a
/// valid id (exit 1); with both, a file round-trips byte-exact.
#[test]
fn serve_with_a_server_id_needs_a_fleet_key_and_then_stores_files() {
    let d = tmp("server-id");
    keygen(&d);
    let key = d.join("server.key");
    let fleet = d.join("fleet.key");
    assert!(
        run(&["keygen", "--fleet", fleet.to_str().unwrap()])
            .status
            .success()
    );
    let alone = run_serve(&key, &["--server-id", "01"]);
    assert_eq!(alone.status.code(), Some(2));
    let too_long = run_serve(
        &key,
        &[
            "--fleet-key",
            fleet.to_str().unwrap(),
            "--server-id",
            "01020304050607",
        ],
    );
    assert_eq!(too_long.status.code(), Some(1));
    let out_dir = d.join("received");
    let server = Server::start(
        &d,
        &[
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--fleet-key",
            fleet.to_str().unwrap(),
            "--server-id",
            "0a0b",
        ],
    );
    let file = d.join("f.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let pubkey = d.join("server.pub");
    let out = run(&[
        "send",
        "--connect",
        &server.addr,
        "--server-pub",
        pubkey.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(out_dir.join("f.bin")).unwrap(), data);
    server.stop();
}

/// Bytes the client received on each of its paths from an echo server started with
/// `serve_args`, after echoing 8 MiB over two loopback paths (the client's own sending
/// on the lowest-RTT path).
fn echo_over_two_paths_received_per_path(serve_args: &[&str]) -> Vec<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = tmp(&format!("sched-{}", serve_args.join("-")));
    keygen(&d);
    let server = Server::start(&d, serve_args);
    let hex = std::fs::read_to_string(d.join("server.pub")).unwrap();
    let key = phantom::HybridVerifyingKey::from_bytes(
        &phantom::keyfiles::from_hex(hex.trim()).expect("hex key"),
    )
    .unwrap();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let per_path = rt.block_on(async move {
        let ep = phantom::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = ep.connect(addr, &key).await.unwrap();
        conn.add_path("127.0.0.2:0".parse().unwrap()).unwrap();
        for _ in 0..200 {
            if conn.paths().iter().filter(|p| p.validated).count() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conn.paths().iter().filter(|p| p.validated).count(), 2);
        let before: Vec<u64> = conn.paths().iter().map(|p| p.bytes_received).collect();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let writer = tokio::spawn(async move {
            send.write_all(&data).await.unwrap();
            send.shutdown().await.unwrap();
        });
        let mut got = Vec::with_capacity(expect.len());
        tokio::time::timeout(Duration::from_secs(60), recv.read_to_end(&mut got))
            .await
            .expect("echo within 60 s")
            .unwrap();
        writer.await.unwrap();
        assert!(got == expect, "echo differs");
        conn.paths()
            .iter()
            .zip(before)
            .map(|(p, b)| p.bytes_received - b)
            .collect::<Vec<u64>>()
    });
    server.stop();
    per_path
}

/// `serve --scheduler MODE`: in every mode the server echoes byte-exact to a client
/// with two validated paths, and what comes back arrives on them. (How a mode spreads
/// the data shows on rate-limited links, `cargo xtask netlab`; loopback has no rate to
/// aggregate.)
#[test]
fn serve_with_each_scheduler_echoes_over_two_paths_byte_exact() {
    for mode in ["low-latency", "aggregate", "redundant", "failover"] {
        let got = echo_over_two_paths_received_per_path(&["--echo", "--scheduler", mode]);
        assert_eq!(got.len(), 2, "{mode}: {got:?}");
        assert!(
            got.iter().sum::<u64>() >= 8 << 20,
            "{mode}: the 8 MiB echo arrives on the two paths: {got:?}"
        );
    }
}
