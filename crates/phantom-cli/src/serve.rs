//! `phantom serve`: accept sessions, store or echo every stream, stop on a signal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use phantom::{Connection, Endpoint, RecvStream, SendStream, ServerConfig};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{CliError, ServeArgs, keys, proto};

/// What the server does with a stream.
#[derive(Debug, Clone)]
pub(crate) enum Mode {
    /// Store files under this directory.
    Store(Arc<PathBuf>),
    /// Echo the bytes back.
    Echo,
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| CliError::File {
        path: "SIGTERM handler".into(),
        source: e,
    })?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| CliError::File { path: "SIGINT handler".into(), source: e }),
        _ = term.recv() => Ok(()),
    }
}

/// `phantom serve`.
pub(crate) async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let identity = keys::load_identity(&args.key)?;
    let listen = phantom::resolve(&args.listen)?;
    let mode = match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| CliError::File {
                path: dir.display().to_string(),
                source: e,
            })?;
            Mode::Store(Arc::new(dir.clone()))
        }
        None => Mode::Echo,
    };
    let mut cfg = ServerConfig::new(identity);
    if let Some(path) = &args.fleet_key {
        cfg = cfg.with_fleet_key(keys::load_fleet_key(path)?);
    }
    if let Some(hex) = &args.server_id {
        let id = phantom::keyfiles::from_hex(hex)
            .ok_or_else(|| CliError::Usage(format!("--server-id {hex}: not hex")))?;
        cfg = cfg
            .with_server_id(&id, 0)
            .map_err(|e| CliError::Usage(format!("--server-id {hex}: {e}")))?;
    }
    cfg.session.idle_timeout = Duration::from_secs(args.idle_timeout);
    cfg.session.scheduler = args.scheduler.into();
    if let Some(n) = args.workers {
        cfg.workers = usize::from(n);
    }
    let ep = match &args.tcp {
        Some(tcp) => Endpoint::server_with_tcp(cfg, listen, phantom::resolve(tcp)?)?,
        None => Endpoint::server(cfg, listen)?,
    };
    say!("listening on {}", ep.local_addr());
    if let Some(tcp) = ep.tcp_local_addr() {
        say!("TCP fallback on {tcp}");
    }
    eprintln!("{} worker(s)", ep.workers());
    let accept = accept_loop(ep.clone(), mode);
    tokio::select! {
        r = shutdown_signal() => r?,
        () = accept => {}
    }
    eprintln!("shutting down: closing sessions");
    ep.close(0, b"server shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
    Ok(())
}

/// Accepts connections forever, serving each on its own task.
pub(crate) async fn accept_loop(ep: Endpoint, mode: Mode) {
    while let Ok(conn) = ep.accept().await {
        tracing::info!(peer = ?conn.remote_address(), "session accepted");
        tokio::spawn(serve_connection(conn, mode.clone()));
    }
}

async fn serve_connection(conn: Connection, mode: Mode) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let mode = mode.clone();
        tokio::spawn(async move {
            let r = match mode {
                Mode::Echo => echo(send, recv).await,
                Mode::Store(dir) => store(&dir, send, recv).await,
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "stream failed");
            }
        });
    }
    let reason = conn.closed().await;
    tracing::info!(reason = ?reason, "session closed");
}

async fn echo(mut send: SendStream, mut recv: RecvStream) -> std::io::Result<()> {
    tokio::io::copy(&mut recv, &mut send).await?;
    send.shutdown().await
}

async fn store(dir: &Path, mut send: SendStream, mut recv: RecvStream) -> std::io::Result<()> {
    let mut len = [0u8; 2];
    recv.read_exact(&mut len).await?;
    let n = usize::from(u16::from_be_bytes(len));
    if n > proto::MAX_NAME * 4 {
        send.reset(1);
        return Err(std::io::Error::other("file name too long"));
    }
    let mut name = vec![0u8; n];
    recv.read_exact(&mut name).await?;
    let name = proto::sanitise(&String::from_utf8_lossy(&name));
    let final_path = dir.join(&name);
    // A unique temporary name per stream: concurrent uploads of the same name do
    // not mix, and a partial file never appears under the final name.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let part = dir.join(format!(".{name}.{serial}.part"));
    let mut file = tokio::fs::File::create(&part).await?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let result: std::io::Result<()> = async {
        loop {
            let k = recv.read(&mut buf).await?;
            if k == 0 {
                break;
            }
            let chunk = buf.get(..k).unwrap_or_default();
            hasher.update(chunk);
            file.write_all(chunk).await?;
            total += k as u64;
        }
        file.sync_all().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&part).await;
        send.reset(1);
        return Err(e);
    }
    tokio::fs::rename(&part, &final_path).await?;
    let digest: [u8; 32] = hasher.finalize().into();
    tracing::info!(file = %final_path.display(), bytes = total, "stored");
    send.write_all(&proto::answer(total, &digest)).await?;
    send.shutdown().await
}
