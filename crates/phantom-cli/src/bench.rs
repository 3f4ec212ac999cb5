//! `phantom bench`: a server and a client in one process over loopback UDP.

use std::time::Duration;

use phantom::{Connection, Endpoint, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{CliError, keys};

/// A server endpoint on 127.0.0.1 that answers every stream with the number of
/// bytes it read; returns the endpoint and the connection it accepted first.
pub(crate) async fn loopback_pair(
    session: phantom::SessionConfig,
) -> Result<
    (
        Endpoint,
        Endpoint,
        Connection,
        tokio::sync::oneshot::Receiver<Connection>,
    ),
    CliError,
> {
    let (identity, vk) = keys::generate()?;
    let mut cfg = ServerConfig::new(identity);
    cfg.session = session.clone();
    // One session lives on one worker: the bench measures that worker alone.
    cfg.workers = 1;
    let server = Endpoint::server(cfg, ([127, 0, 0, 1], 0).into())?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let srv = server.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(conn) = srv.accept().await {
            if let Some(tx) = tx.take() {
                let _ = tx.send(conn.clone());
            }
            tokio::spawn(count_streams(conn));
        }
    });
    let client = Endpoint::client(([127, 0, 0, 1], 0).into())?;
    let opts = phantom::ClientOptions {
        session,
        ..phantom::ClientOptions::default()
    };
    let conn = client.connect_with(server.local_addr(), &vk, opts).await?;
    Ok((server, client, conn, rx))
}

async fn count_streams(conn: Connection) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            while let Ok(k) = recv.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let _ = send.write_all(&n.to_be_bytes()).await;
            let _ = send.shutdown().await;
        });
    }
}

/// Sends `len` bytes on a new stream; returns what the server says it counted.
pub(crate) async fn push(conn: &Connection, len: u64) -> Result<u64, CliError> {
    let err = |e: std::io::Error| CliError::Transfer(format!("bench stream: {e}"));
    let (mut send, mut recv) = conn.open_bi().await?;
    let chunk = vec![0x5au8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        send.write_all(chunk.get(..n).unwrap_or_default())
            .await
            .map_err(err)?;
        left -= n as u64;
    }
    send.shutdown().await.map_err(err)?;
    let mut answer = [0u8; 8];
    recv.read_exact(&mut answer).await.map_err(err)?;
    Ok(u64::from_be_bytes(answer))
}

/// `phantom bench`.
/// Adds `extra` loopback paths to `conn` and waits (up to 5 s) until every path is
/// validated. Returns the new local addresses.
pub(crate) async fn add_paths(
    conn: &Connection,
    extra: u32,
) -> Result<Vec<std::net::SocketAddr>, CliError> {
    let mut added = Vec::new();
    for _ in 0..extra {
        added.push(conn.add_path(([127, 0, 0, 1], 0).into())?);
    }
    let validated = |conn: &Connection| {
        let paths = conn.paths();
        added
            .iter()
            .filter(|a| paths.iter().any(|p| p.local == **a && p.validated))
            .count()
    };
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while validated(conn) < added.len() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if waited.is_err() {
        return Err(CliError::Transfer(format!(
            "only {} of {} added paths validated within 5 s",
            validated(conn),
            added.len()
        )));
    }
    Ok(added)
}

/// One line per path: addresses, validation, bytes sent, RTT.
pub(crate) fn path_lines(conn: &Connection) -> Vec<String> {
    conn.paths()
        .iter()
        .map(|p| {
            format!(
                "path {} {} -> {}{}{}: {} bytes sent, rtt {:?}",
                p.id.0,
                p.local,
                p.remote,
                if p.validated { "" } else { " (unvalidated)" },
                if p.primary { " (primary)" } else { "" },
                p.bytes_sent,
                p.rtt
            )
        })
        .collect()
}

pub(crate) async fn bench(
    bytes: u64,
    streams: u32,
    paths: u32,
    scheduler: phantom::SchedulerMode,
) -> Result<(), CliError> {
    if streams == 0 || streams > 1000 {
        return Err(CliError::Usage(
            "--streams must be between 1 and 1000".into(),
        ));
    }
    let mut session = phantom::default_session_config();
    session.scheduler = scheduler;
    let (server, client, conn, _first) = loopback_pair(session).await?;
    add_paths(&conn, paths.saturating_sub(1)).await?;
    let per = bytes / u64::from(streams);
    let extra = bytes % u64::from(streams);
    let start = phantom::now();
    let mut tasks = Vec::new();
    for i in 0..streams {
        let len = per + u64::from(i == 0) * extra;
        let c = conn.clone();
        tasks.push(tokio::spawn(async move {
            let got = push(&c, len).await?;
            if got == len {
                Ok(len)
            } else {
                Err(CliError::Transfer(format!(
                    "server counted {got} of {len} bytes"
                )))
            }
        }));
    }
    let mut total = 0u64;
    for t in tasks {
        total += t
            .await
            .map_err(|e| CliError::Transfer(format!("task failed: {e}")))??;
    }
    let secs = phantom::now()
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-9);
    let s = conn.stats();
    say!(
        "phantom bench: {total} bytes over {streams} stream(s) and {paths} path(s) on loopback UDP, scheduler {scheduler:?}"
    );
    say!(
        "goodput      {:.1} MB/s ({:.2} Gbit/s) in {secs:.3} s",
        total as f64 / secs / 1e6,
        total as f64 * 8.0 / secs / 1e9
    );
    say!("rtt          {:?} (smoothed)", s.rtt);
    say!(
        "packets      {} sent, {} received, {} lost, {} PTOs",
        s.packets_sent,
        s.packets_received,
        s.packets_lost,
        s.ptos
    );
    say!("retransmits  {} stream bytes", s.stream_bytes_retransmitted);
    say!(
        "rekeys       {} local, {} peer",
        s.rekeys_local,
        s.rekeys_peer
    );
    say!(
        "cwnd         {} bytes, bandwidth estimate {:.1} MB/s",
        s.cwnd,
        s.bandwidth as f64 / 1e6
    );
    if paths > 1 {
        for line in path_lines(&conn) {
            say!("{line}");
        }
    }
    conn.close(0, b"bench done");
    let _ = tokio::time::timeout(Duration::from_secs(1), client.wait_idle()).await;
    drop(server);
    Ok(())
}
