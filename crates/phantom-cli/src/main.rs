//! The `phantom` command: key generation, a file/echo server, a client that sends
//! files or pipes stdin, a self-contained loopback benchmark and a narrated demo.
//!
//! **What it owns.** The command-line contract (subcommands and flags, parsed with
//! clap), the key-file formats (`server.key`: the server identity's secret encoding,
//! mode 0600; `server.pub`: the hybrid verifying key in hex; `server.cert`: the
//! certificate that key signed, which lets a client's first handshake take one round
//! trip (PDK); the fleet key file of `keygen --fleet` and `serve --fleet-key`, 64 hex
//! digits, mode 0600, never overwritten; the `--resume` ticket cache, mode 0600, from
//! which a client resumes with its first stream bytes in the first flight), the small
//! stream protocol between `send` and `serve --out-dir` (a 2-byte name length, the
//! file name, the file bytes, FIN; the server answers with the byte count and the
//! SHA-256 of what it stored), the client's extra paths (`--path ADDR`, checked to be an
//! address of this host before the handshake, added once the connection stands and
//! awaited up to 3 s for validation before data flows; see `multipath`), and the
//! error reporting: every failure is one line on stderr
//! and exit code 1, or 3 when the server reset the session (it restarted and lost its
//! state; clap usage errors exit 2); nothing panics on bad input.
//!
//! **Invariants relied on and upheld.** The CLI relies on the `phantom` runtime and
//! the crates below it for I1–I10; it upholds I8 for the key file (written with mode
//! 0600 from a zeroizing buffer, never printed; the ticket cache likewise) and never
//! trusts a file name from the network: names are reduced to one sanitised path
//! component inside `--out-dir`.

/// `println!` that ignores a closed stdout (`phantom keygen | head -1`) instead of
/// panicking: the command's work is done either way, and nothing panics on the
/// environment the user gives it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod demo;
mod keys;
mod multipath;
mod proto;
mod serve;
mod tickets;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Everything that can make a command fail; printed as one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CliError {
    /// A runtime error (bad address, wrong server key, timeout, closed, ...).
    #[error("{0}")]
    Phantom(#[from] phantom::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key file exists but does not hold a valid key.
    #[error("{path}: invalid key file ({reason})")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A stream failed during a transfer.
    #[error("{0}")]
    Transfer(String),
    /// Reading or writing a stream failed.
    #[error("{what}: {source}")]
    Stream {
        /// What the command was doing.
        what: &'static str,
        /// The stream's error (a runtime stream error inside an `io::Error`).
        source: std::io::Error,
    },
    /// Bad flag values clap cannot check.
    #[error("{0}")]
    Usage(String),
    /// A `--path` address that cannot carry a path.
    #[error("--path {addr}: {reason}")]
    Path {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl CliError {
    /// The exit code: [`EXIT_RESET`] when the server reset the session (it lost the
    /// session's state: it restarted, or the client's packets reached another server),
    /// else 1.
    fn exit_code(&self) -> u8 {
        let reset =
            |e: &phantom::ConnectionError| matches!(e, phantom::ConnectionError::StatelessReset);
        let lost = match self {
            Self::Phantom(phantom::Error::Connection(e)) => reset(e),
            Self::Phantom(phantom::Error::Read(phantom::ReadError::ConnectionLost(e)))
            | Self::Phantom(phantom::Error::Write(phantom::WriteError::ConnectionLost(e))) => {
                reset(e)
            }
            Self::Stream { source, .. } => match source.get_ref() {
                Some(inner) => match inner.downcast_ref::<phantom::ReadError>() {
                    Some(phantom::ReadError::ConnectionLost(e)) => reset(e),
                    _ => matches!(
                        inner.downcast_ref::<phantom::WriteError>(),
                        Some(phantom::WriteError::ConnectionLost(e)) if reset(e)
                    ),
                },
                None => false,
            },
            _ => false,
        };
        if lost { EXIT_RESET } else { 1 }
    }
}

/// Exit code of a command whose session the server reset (PROTOCOL.md §5.10).
const EXIT_RESET: u8 = 3;

/// Each operation's runtime error converts into [`CliError::Phantom`].
macro_rules! from_phantom {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                Self::Phantom(e.into())
            }
        }
    )*};
}
from_phantom!(
    phantom::EndpointError,
    phantom::ConnectError,
    phantom::ConnectionError,
    phantom::OpenStreamError,
    phantom::WriteError,
    phantom::ReadError,
    phantom::SendDatagramError,
    phantom::AddPathError
);

/// Encrypted, multipath, migration-resilient transport.
#[derive(Debug, Parser)]
#[command(name = "phantom", version, about)]
struct Cli {
    /// More logging on stderr (-v info, -vv debug, -vvv trace). With -v, `send` and
    /// `pipe` also print one line about the handshake: `phantom: handshake
    /// mode=full|pdk|resumed suite=aes256gcm|chacha20poly1305 time_us=.. early_bytes=.. early_accepted=..`,
    /// and at the end one line per path: `phantom: path id=.. local=.. remote=..
    /// validated=.. primary=.. bytes_sent=.. rtt_us=..`.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a server identity: DIR/server.key (secret, 0600), DIR/server.pub and
    /// DIR/server.cert (give both to clients); and/or a fleet key shared by servers.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["out", "fleet"])))]
    Keygen {
        /// Directory to write the key files into (created if missing).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write a new fleet key into FILE (secret, mode 0600; an existing file is not
        /// overwritten). Servers with the same identity and fleet key resume each
        /// other's tickets (see `serve --fleet-key`).
        #[arg(long, value_name = "FILE")]
        fleet: Option<PathBuf>,
    },
    /// Run a server until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Send files, one stream each; the server confirms every byte by SHA-256.
    Send {
        #[command(flatten)]
        client: ClientArgs,
        /// Files to send.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Copy stdin to a stream and the bytes coming back to stdout (use an --echo server).
    Pipe {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Server and client in one process over loopback UDP: goodput, RTT, losses.
    Bench {
        /// Bytes to transfer in total.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        bytes: u64,
        /// Streams to spread them over.
        #[arg(long, default_value_t = 1)]
        streams: u32,
        /// Client paths (each an extra loopback UDP socket beyond the first).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
        paths: u32,
        /// Multipath scheduler.
        #[arg(long, value_enum, default_value_t = Scheduler::LowLatency)]
        scheduler: Scheduler,
    },
    /// A narrated loopback tour: handshake, transfer, rekeys, address change, a
    /// second path, close.
    Demo,
}

/// `serve` flags.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["out_dir", "echo"])))]
pub(crate) struct ServeArgs {
    /// Address to listen on (e.g. 0.0.0.0:4433).
    #[arg(long)]
    pub(crate) listen: String,
    /// The server key file written by `phantom keygen`.
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// Store each incoming stream as a file in this directory.
    #[arg(long)]
    pub(crate) out_dir: Option<PathBuf>,
    /// Echo every stream back.
    #[arg(long)]
    pub(crate) echo: bool,
    /// Close sessions silent for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) idle_timeout: u64,
    /// Multipath scheduler of what the server sends (an echo): how it spreads its data
    /// over the paths a client opened. Each end schedules its own sending; a client
    /// that aggregates its upload gets an aggregated download only from a server that
    /// aggregates too.
    #[arg(long, value_enum, default_value_t = Scheduler::LowLatency)]
    pub(crate) scheduler: Scheduler,
    /// Also accept the TCP fallback carrier on this address (for clients whose UDP
    /// is blocked), e.g. 0.0.0.0:4433.
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp: Option<String>,
    /// The fleet key file written by `phantom keygen --fleet`: servers sharing it (and
    /// the server key) accept each other's retry tokens and resumption tickets and
    /// reset each other's sessions (docs/DEPLOYMENT.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) fleet_key: Option<PathBuf>,

    /// This server's id in the fleet, 1 to 6 bytes in hex (e.g. `01`): every connection
    /// id it issues carries it encrypted under the fleet's routing key, for a load
    /// balancer that routes by connection id (docs/DEPLOYMENT.md). Needs --fleet-key.
    #[arg(long, value_name = "HEX", requires = "fleet_key")]
    pub(crate) server_id: Option<String>,

    /// Worker sockets on the listen address, each with its own driver and handshake
    /// server; the kernel steers every session's packets to its worker by connection
    /// id. Default: one per core. With --tcp: one.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) workers: Option<u16>,
}

/// Scheduler modes on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Scheduler {
    /// Lowest-RTT path.
    LowLatency,
    /// Bandwidth aggregation over all paths.
    Aggregate,
    /// Duplicate on every path.
    Redundant,
    /// Primary path, switch on failure.
    Failover,
}

impl From<Scheduler> for phantom::SchedulerMode {
    fn from(s: Scheduler) -> Self {
        match s {
            Scheduler::LowLatency => phantom::SchedulerMode::LowLatency,
            Scheduler::Aggregate => phantom::SchedulerMode::Aggregate,
            Scheduler::Redundant => phantom::SchedulerMode::Redundant,
            Scheduler::Failover => phantom::SchedulerMode::Failover,
        }
    }
}

/// Flags common to the client commands.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// Server address (host:port).
    #[arg(long)]
    pub(crate) connect: String,
    /// The server's public key file (`server.pub` from `phantom keygen`).
    #[arg(long)]
    pub(crate) server_pub: PathBuf,
    /// Rekey our sending direction every N packets.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) rekey_after: Option<u64>,
    /// Also send over a path from this local address (repeatable), e.g. 127.0.0.2:0
    /// on loopback or 192.168.1.5:0 for a second interface (port 0: any free port).
    /// Each is validated by a path challenge before data uses it.
    #[arg(long = "path", value_name = "ADDR")]
    pub(crate) local_paths: Vec<String>,
    /// Multipath scheduler: how data is spread over the paths. Without --path there
    /// is one path and the scheduler has nothing to choose from.
    #[arg(long, value_enum, default_value_t = Scheduler::LowLatency)]
    pub(crate) scheduler: Scheduler,
    /// Close the session after this many silent seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) idle_timeout: u64,
    /// Give up connecting after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) connect_timeout: u64,
    /// The server's TCP fallback address (`serve --tcp`): used when UDP is blocked
    /// or failing, and left again once UDP works.
    #[arg(long, value_name = "ADDR")]
    pub(crate) tcp: Option<String>,
    /// The server's certificate (`server.cert` from `phantom keygen`), checked against
    /// the server key: the first handshake then takes one round trip (PDK). Default:
    /// `server.cert` beside `--server-pub`, if there is one.
    #[arg(long, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// Keep resumption tickets in FILE (mode 0600): the next connection to the same
    /// server resumes and sends its first bytes in the first flight (0-RTT).
    #[arg(long, value_name = "FILE")]
    pub(crate) resume: Option<PathBuf>,
    /// The AEAD suite to offer (the only one: the handshake fails if the server does
    /// not accept it). Default: the runtime's adaptive order.
    #[arg(long, value_enum)]
    pub(crate) suite: Option<SuiteArg>,
}

/// AEAD suites on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SuiteArg {
    /// AES-256-GCM.
    #[value(name = "aes256gcm")]
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    #[value(name = "chacha20poly1305")]
    ChaCha20Poly1305,
}

impl From<SuiteArg> for phantom::Suite {
    fn from(s: SuiteArg) -> Self {
        match s {
            SuiteArg::Aes256Gcm => Self::Aes256Gcm,
            SuiteArg::ChaCha20Poly1305 => Self::ChaCha20Poly1305,
        }
    }
}

impl ClientArgs {
    /// The runtime options these flags select.
    pub(crate) fn options(&self) -> Result<phantom::ClientOptions, CliError> {
        let mut o = phantom::ClientOptions {
            tcp_fallback: self.tcp.as_deref().map(phantom::resolve).transpose()?,
            ..phantom::ClientOptions::default()
        };
        o.session.idle_timeout = Duration::from_secs(self.idle_timeout);
        o.session.rekey_threshold = self.rekey_after;
        o.session.scheduler = self.scheduler.into();
        o.connect_timeout = Duration::from_secs(self.connect_timeout);
        o.suites = self.suite.map(phantom::Suite::from).into_iter().collect();
        Ok(o)
    }

    /// The certificate file to use: `--cert`, else `server.cert` beside the key file.
    pub(crate) fn certificate_path(&self) -> Option<PathBuf> {
        if let Some(c) = &self.cert {
            return Some(c.clone());
        }
        let beside = self.server_pub.with_file_name(keys::CERT_FILE);
        beside.is_file().then_some(beside)
    }

    /// Resolves the server address.
    pub(crate) fn addr(&self) -> Result<SocketAddr, CliError> {
        Ok(phantom::resolve(&self.connect)?)
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Keygen { out, fleet } => {
            if let Some(out) = out {
                keys::keygen(&out)?;
            }
            match fleet {
                Some(path) => keys::keygen_fleet(&path),
                None => Ok(()),
            }
        }
        Command::Serve(args) => serve::serve(args).await,
        Command::Send { client, paths } => transfer::send(&client, &paths, cli.verbose > 0).await,
        Command::Pipe { client } => transfer::pipe(&client, cli.verbose > 0).await,
        Command::Bench {
            bytes,
            streams,
            paths,
            scheduler,
        } => bench::bench(bytes, streams, paths, scheduler.into()).await,
        Command::Demo => demo::demo().await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phantom: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli));
    // Do not wait for stray tasks (a blocked stdin read, say).
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            eprintln!("phantom: error: {msg}");
            ExitCode::from(e.exit_code())
        }
    }
}
