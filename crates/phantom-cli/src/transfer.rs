//! `phantom send` and `phantom pipe`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use phantom::{Connection, Endpoint};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{CliError, ClientArgs, keys, proto};

/// Connects with the common client flags.
pub(crate) async fn connect(args: &ClientArgs) -> Result<(Endpoint, Connection), CliError> {
    let key = keys::load_public(&args.server_pub)?;
    let addr = args.addr()?;
    let bind: std::net::SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let ep = Endpoint::client(bind)?;
    let conn = ep.connect_with(addr, &key, args.options()?).await?;
    tracing::info!(%addr, "connected");
    Ok((ep, conn))
}

/// Closes gracefully and gives the CLOSE frame a moment to leave.
pub(crate) async fn close(ep: &Endpoint, conn: &Connection, reason: &[u8]) {
    conn.close(0, reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
}

/// Sends one file on its own stream and checks the server's digest.
async fn send_file(
    conn: Connection,
    path: PathBuf,
    size: u64,
    bar: ProgressBar,
) -> Result<u64, CliError> {
    let file_err = |e: std::io::Error| CliError::File {
        path: path.display().to_string(),
        source: e,
    };
    let stream_err = |e: std::io::Error| CliError::Transfer(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::open(&path).await.map_err(file_err)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&proto::header(&name))
        .await
        .map_err(stream_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
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
pub(crate) async fn send(args: &ClientArgs, paths: &[PathBuf]) -> Result<(), CliError> {
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
    let (ep, conn) = connect(args).await?;
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
        tasks.push(tokio::spawn(send_file(conn.clone(), path, size, bar)));
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
    close(&ep, &conn, b"send complete").await;
    if let Some(e) = first_err {
        return Err(e);
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "sent {count} file(s), {total} bytes in {:.2} s ({:.1} MB/s); the server confirmed every byte (SHA-256)",
        secs,
        total as f64 / secs / 1e6
    );
    println!(
        "rtt {:?}, packets sent {}, lost {}, retransmitted {} bytes, rekeys {}",
        stats.rtt,
        stats.packets_sent,
        stats.packets_lost,
        stats.stream_bytes_retransmitted,
        stats.rekeys_local
    );
    Ok(())
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `phantom pipe`.
pub(crate) async fn pipe(args: &ClientArgs) -> Result<(), CliError> {
    let (ep, conn) = connect(args).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let upload = async move {
        let mut stdin = tokio::io::stdin();
        tokio::io::copy(&mut stdin, &mut send).await?;
        send.shutdown().await
    };
    let download = async move {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut recv, &mut stdout).await?;
        stdout.flush().await
    };
    let (up, down) = tokio::join!(upload, download);
    close(&ep, &conn, b"pipe complete").await;
    up.map_err(|e| CliError::Transfer(format!("sending stdin: {e}")))?;
    down.map_err(|e| CliError::Transfer(format!("receiving: {e}")))?;
    Ok(())
}
