//! `phantom send` and `phantom pipe`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use phantom::{Connection, Endpoint, HybridVerifyingKey, RecvStream, SendStream};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::tickets::TicketCache;
use crate::{CliError, ClientArgs, keys, multipath, proto};

/// Most opening bytes of the first stream sent as early (0-RTT) data.
const EARLY_MAX: usize = 1024;

/// An established client connection and what is needed to finish it.
pub(crate) struct Client {
    /// The endpoint (kept until the close has left).
    pub(crate) ep: Endpoint,
    /// The connection.
    pub(crate) conn: Connection,
    /// The ticket cache (`--resume`) and the key under which to store the next ticket.
    resume: Option<(TicketCache, String, HybridVerifyingKey)>,
}

/// Connects with the common client flags. `early` are the opening bytes of the first
/// stream ([`Connection::take_early_stream`]); with a cached ticket they travel in
/// the first flight (0-RTT). With `verbose`, prints the handshake line on stderr.
pub(crate) async fn connect(
    args: &ClientArgs,
    early: Option<Vec<u8>>,
    verbose: bool,
) -> Result<Client, CliError> {
    let key = keys::load_public(&args.server_pub)?;
    let addr = args.addr()?;
    let locals = multipath::check_all(&args.local_paths, addr)?;
    let bind: std::net::SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut options = args.options()?;
    options.certificate = match args.certificate_path() {
        Some(path) => Some(keys::load_certificate(&path, &key)?),
        None => None,
    };
    let mut resume = match &args.resume {
        Some(path) => Some(TicketCache::load(path)?),
        None => None,
    };
    let cache_key = addr.to_string();
    options.resumption = resume.as_mut().and_then(|c| c.take(&cache_key, &key));
    let early_len = early.as_ref().map_or(0, Vec::len);
    options.early_data = early;
    let ep = Endpoint::client(bind)?;
    let start = phantom::now();
    let conn = ep.connect_with(addr, &key, options).await?;
    let took = phantom::now().saturating_duration_since(start);
    tracing::info!(%addr, "connected");
    if verbose {
        let facts = handshake_facts(&conn);
        eprintln!(
            "phantom: handshake mode={} suite={} time_us={} early_bytes={} early_accepted={}",
            facts.mode,
            facts.suite,
            took.as_micros(),
            early_len,
            conn.early_data_accepted()
        );
    }
    if let Err(e) = multipath::add_all(&conn, &locals).await {
        close(&ep, &conn, b"bad path").await;
        return Err(e);
    }
    Ok(Client {
        ep,
        conn,
        resume: resume.map(|c| (c, cache_key, key)),
    })
}

/// What `-v` reports about a handshake.
struct HandshakeFacts {
    mode: phantom::HandshakeMode,
    suite: &'static str,
}

/// The handshake's mode and suite, as the connection reports them.
fn handshake_facts(conn: &Connection) -> HandshakeFacts {
    let suite = match conn.suite() {
        phantom::Suite::Aes256Gcm => "aes256gcm",
        phantom::Suite::ChaCha20Poly1305 => "chacha20poly1305",
        _ => "other",
    };
    HandshakeFacts {
        mode: conn.handshake_mode(),
        suite,
    }
}

impl Client {
    /// Stores the ticket the server issued (`--resume`), waiting up to 500 ms for it.
    async fn keep_ticket(&mut self) -> Result<(), CliError> {
        let Some((cache, addr, key)) = &mut self.resume else {
            return Ok(());
        };
        let mut ticket = self.conn.resumption_ticket();
        for _ in 0..50 {
            if ticket.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            ticket = self.conn.resumption_ticket();
        }
        match ticket {
            Some(t) => cache.put(addr, key, &t),
            None => tracing::warn!("the server issued no resumption ticket"),
        }
        cache.save()
    }

    /// Keeps the ticket, closes gracefully and gives the CLOSE frame a moment to leave.
    pub(crate) async fn finish(mut self, reason: &[u8]) -> Result<(), CliError> {
        let kept = self.keep_ticket().await;
        close(&self.ep, &self.conn, reason).await;
        kept
    }
}

/// Closes gracefully and gives the CLOSE frame a moment to leave.
pub(crate) async fn close(ep: &Endpoint, conn: &Connection, reason: &[u8]) {
    conn.close(0, reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
}

/// The first file's opening bytes: its header and up to [`EARLY_MAX`] bytes in all.
fn opening_bytes(path: &Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read as _;
    let mut head = proto::header(&display_name(path));
    let room = EARLY_MAX.saturating_sub(head.len());
    let mut f = std::fs::File::open(path).map_err(|e| CliError::File {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut first = Vec::with_capacity(room);
    f.by_ref()
        .take(room as u64)
        .read_to_end(&mut first)
        .map_err(|e| CliError::File {
            path: path.display().to_string(),
            source: e,
        })?;
    head.extend_from_slice(&first);
    Ok(head)
}

/// Sends one file on its own stream and checks the server's digest. `early` is the
/// stream whose opening bytes (the header and the first `sent` file bytes) already
/// left as early data.
async fn send_file(
    conn: Connection,
    path: PathBuf,
    size: u64,
    bar: ProgressBar,
    early: Option<(SendStream, RecvStream, Vec<u8>)>,
) -> Result<u64, CliError> {
    let file_err = |e: std::io::Error| CliError::File {
        path: path.display().to_string(),
        source: e,
    };
    let stream_err = |e: std::io::Error| CliError::Transfer(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::open(&path).await.map_err(file_err)?;
    let header = proto::header(&display_name(&path));
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let (mut send, mut recv) = match early {
        Some((send, recv, opening)) => {
            // The header and the file's first bytes are on the stream already.
            let first = opening.get(header.len()..).unwrap_or_default();
            hasher.update(first);
            total = first.len() as u64;
            let mut skip = vec![0u8; first.len()];
            file.read_exact(&mut skip).await.map_err(file_err)?;
            (send, recv)
        }
        None => {
            let (mut send, recv) = conn.open_bi().await?;
            send.write_all(&header).await.map_err(stream_err)?;
            (send, recv)
        }
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).await.map_err(file_err)?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        send.write_all(chunk).await.map_err(stream_err)?;
        total += n as u64;
        bar.set_position(total);
    }
    send.shutdown().await.map_err(stream_err)?;
    let mut answer = [0u8; proto::ANSWER_LEN];
    recv.read_exact(&mut answer).await.map_err(|e| {
        CliError::Transfer(format!(
            "{}: the server did not confirm the file ({e}); is it running with --out-dir?",
            path.display()
        ))
    })?;
    let (len, digest) = proto::parse_answer(&answer);
    let ours: [u8; 32] = hasher.finalize().into();
    if len != total || digest != ours {
        // A store server finishes its half after the confirmation; an echo server
        // (`serve --echo`) sends the file back, so more bytes follow.
        let mut more = [0u8; 1];
        let echoed = matches!(
            tokio::time::timeout(std::time::Duration::from_secs(1), recv.read(&mut more)).await,
            Ok(Ok(n)) if n > 0
        );
        if echoed {
            return Err(CliError::Transfer(format!(
                "{}: the server echoed the file back instead of storing it (it runs with --echo; `send` needs --out-dir)",
                path.display()
            )));
        }
        return Err(CliError::Transfer(format!(
            "{}: the server stored {len} bytes with another SHA-256 than the {total} bytes sent",
            path.display()
        )));
    }
    if total != size {
        tracing::warn!(file = %path.display(), "file changed size while sending");
    }
    bar.finish();
    Ok(total)
}

/// `phantom send`.
pub(crate) async fn send(
    args: &ClientArgs,
    paths: &[PathBuf],
    verbose: bool,
) -> Result<(), CliError> {
    // Check every file before connecting.
    let mut files = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| CliError::File {
            path: p.display().to_string(),
            source: e,
        })?;
        if !meta.is_file() {
            return Err(CliError::Usage(format!(
                "{}: not a regular file",
                p.display()
            )));
        }
        files.push((p.clone(), meta.len()));
    }
    // The first file opens the connection's first stream: its header and first bytes
    // go as early data (0-RTT when resuming with --resume).
    let opening = match files.first() {
        Some((p, _)) => Some(opening_bytes(p)?),
        None => None,
    };
    let client = connect(args, opening.clone(), verbose).await?;
    let conn = client.conn.clone();
    let mut early = match (client.conn.take_early_stream(), opening) {
        (Some((s, r)), Some(o)) => Some((s, r, o)),
        _ => None,
    };
    let multi = MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(
        "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let start = phantom::now();
    let mut tasks = Vec::new();
    for (path, size) in files {
        let bar = multi.add(ProgressBar::new(size).with_style(style.clone()));
        bar.set_message(display_name(&path));
        tasks.push(tokio::spawn(send_file(
            conn.clone(),
            path,
            size,
            bar,
            early.take(),
        )));
    }
    let mut total = 0u64;
    let mut first_err = None;
    let count = tasks.len();
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => total += n,
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(CliError::Transfer(format!("task failed: {e}")));
            }
        }
    }
    let elapsed = phantom::now().saturating_duration_since(start);
    let stats = conn.stats();
    let path_lines = verbose.then(|| multipath::verbose_lines(&conn));
    drop(conn);
    let finished = client.finish(b"send complete").await;
    if let Some(e) = first_err {
        return Err(e);
    }
    finished?;
    let secs = elapsed.as_secs_f64().max(1e-9);
    say!(
        "sent {count} file(s), {total} bytes in {:.2} s ({:.1} MB/s); the server confirmed every byte (SHA-256)",
        secs,
        total as f64 / secs / 1e6
    );
    say!(
        "rtt {:?}, packets sent {}, lost {}, retransmitted {} bytes, rekeys {}",
        stats.rtt,
        stats.packets_sent,
        stats.packets_lost,
        stats.stream_bytes_retransmitted,
        stats.rekeys_local
    );
    path_lines.iter().flatten().for_each(|l| eprintln!("{l}"));
    Ok(())
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `phantom pipe`.
pub(crate) async fn pipe(args: &ClientArgs, verbose: bool) -> Result<(), CliError> {
    let mut stdin = tokio::io::stdin();
    // With a cached ticket, the first bytes of stdin go in the first flight (0-RTT).
    let resuming = match &args.resume {
        Some(path) => TicketCache::load(path)?.has(&args.addr()?.to_string()),
        None => false,
    };
    let early = if resuming {
        let mut first = vec![0u8; EARLY_MAX];
        let n = stdin
            .read(&mut first)
            .await
            .map_err(|e| CliError::Transfer(format!("reading stdin: {e}")))?;
        first.truncate(n);
        (n > 0).then_some(first)
    } else {
        None
    };
    let client = connect(args, early, verbose).await?;
    let (mut send, mut recv) = match client.conn.take_early_stream() {
        Some(s) => s,
        None => client.conn.open_bi().await?,
    };
    let upload = async move {
        tokio::io::copy(&mut stdin, &mut send).await?;
        send.shutdown().await
    };
    let download = async move {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut recv, &mut stdout).await?;
        stdout.flush().await
    };
    // A download that fails (the session closed, or was reset) ends the pipe at once:
    // waiting for the upload would wait on stdin, which may stay open and idle.
    tokio::pin!(upload, download);
    let (up, down) = tokio::select! {
        down = &mut download => match down {
            Ok(()) => (upload.await, Ok(())),
            Err(e) => (Ok(()), Err(e)),
        },
        up = &mut upload => (up, download.await),
    };
    if verbose {
        for line in multipath::verbose_lines(&client.conn) {
            eprintln!("{line}");
        }
    }
    let finished = client.finish(b"pipe complete").await;
    up.map_err(|source| CliError::Stream {
        what: "sending stdin",
        source,
    })?;
    down.map_err(|source| CliError::Stream {
        what: "receiving",
        source,
    })?;
    finished
}
