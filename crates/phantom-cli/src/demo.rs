//! `phantom demo`: a narrated tour over loopback.

use std::time::Duration;

use phantom::{CloseReason, Endpoint};

use crate::bench::{add_paths, loopback_pair, path_lines, push};
use crate::{CliError, keys};

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// `phantom demo`.
pub(crate) async fn demo() -> Result<(), CliError> {
    println!("Phantom demo: both ends run in this process over loopback UDP.");

    step(
        1,
        "Generating a server identity (Ed25519 + ML-DSA-65 long-term key, certified X25519 + ML-KEM-768 static key) and connecting a client that pins the public key.",
    );
    let t0 = phantom::now();
    let (server, client, conn, first) = loopback_pair(phantom::default_session_config()).await?;
    let server_conn = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .map_err(|_| CliError::Transfer("the server did not report the session".into()))?
        .map_err(|_| CliError::Transfer("the server did not report the session".into()))?;
    let sid = conn.session_id().unwrap_or_default();
    println!(
        "    keygen + hybrid handshake done in {:?}; server {} ; session id {}…",
        phantom::now().saturating_duration_since(t0),
        server.local_addr(),
        keys::to_hex(sid.get(..8).unwrap_or_default())
    );

    step(2, "A client that pins a different key must be refused.");
    let (_other, other_key) = keys::generate()?;
    let rogue = Endpoint::client(([127, 0, 0, 1], 0).into())?;
    match rogue.connect(server.local_addr(), &other_key).await {
        Err(e) => println!("    refused as expected: {e}"),
        Ok(_) => {
            return Err(CliError::Transfer(
                "a client with the wrong pinned key connected".into(),
            ));
        }
    }
    drop(rogue);

    step(
        3,
        "Transferring 8 MiB on one stream; the server counts every byte.",
    );
    let len = 8u64 << 20;
    let t = phantom::now();
    let got = push(&conn, len).await?;
    let d = phantom::now().saturating_duration_since(t);
    if got != len {
        return Err(CliError::Transfer(format!(
            "server counted {got} of {len} bytes"
        )));
    }
    let s = conn.stats();
    println!(
        "    {got} bytes confirmed in {d:?} ({:.1} MB/s); rtt {:?}, {} packets lost, {} bytes retransmitted",
        mbps(got, d),
        s.rtt,
        s.packets_lost,
        s.stream_bytes_retransmitted
    );

    step(
        4,
        "Forcing rekeys: the client now rekeys its sending direction every 200 packets.",
    );
    let before = conn.stats().rekeys_local;
    conn.set_rekey_threshold(200);
    let got = push(&conn, 4 << 20).await?;
    let s = conn.stats();
    let ss = server_conn.stats();
    let (send_epoch, _) = conn.epochs().unwrap_or_default();
    println!(
        "    {got} more bytes confirmed; client rekeyed {} time(s) (now at epoch {send_epoch}), the server followed {} rekey(s) by authenticated trial decryption",
        s.rekeys_local.saturating_sub(before),
        ss.rekeys_peer
    );
    if s.rekeys_local == before {
        println!("    (no rekey happened: the transfer used fewer packets than the threshold)");
    }

    step(
        5,
        "Changing the client's address (as after NAT rebinding): moving to a new UDP socket.",
    );
    let old = client.local_addr();
    let new = client.rebind(([127, 0, 0, 1], 0).into())?;
    println!("    client socket {old} -> {new}");
    let migrated = tokio::time::timeout(Duration::from_secs(10), push(&conn, 1 << 20)).await;
    let ss = server_conn.stats();
    let paths = server_conn.paths();
    match migrated {
        Ok(Ok(n)) if n == 1 << 20 => {
            let on_new = paths
                .iter()
                .any(|p| p.remote.port() == new.port() && p.validated);
            if on_new {
                println!(
                    "    the session survived: the server validated the new address (path challenge) and moved to it ({} migration(s)); 1 MiB confirmed over it",
                    ss.migrations
                );
            } else {
                println!(
                    "    1 MiB confirmed after the change, but the server has not validated a path to {new} (paths: {}); address change is only partly supported",
                    paths.len()
                );
            }
        }
        Ok(Ok(n)) => println!(
            "    after the change the server counted {n} bytes: address change is not fully supported"
        ),
        Ok(Err(e)) => println!(
            "    the transfer after the change failed ({e}): address change is not supported by this build"
        ),
        Err(_) => println!(
            "    no progress within 10 s after the change: address change is not supported by this build"
        ),
    }

    step(
        6,
        "Adding a second path: a new client UDP socket on loopback, validated by a path challenge, then data over both (aggregate scheduler).",
    );
    let before: Vec<(std::net::SocketAddr, u64)> = conn
        .paths()
        .iter()
        .map(|p| (p.local, p.bytes_sent))
        .collect();
    let added = add_paths(&conn, 1).await?;
    let second = added.first().copied();
    println!(
        "    second path from {} validated (the server answered its path challenge)",
        second.map_or_else(|| "?".to_string(), |a| a.to_string()),
    );
    conn.set_scheduler(phantom::SchedulerMode::Aggregate);
    let got = push(&conn, 8 << 20).await?;
    println!("    {got} bytes confirmed over both paths; bytes sent per path during this step:");
    let mut used = 0;
    for p in conn.paths().iter().filter(|p| p.validated) {
        let earlier = before
            .iter()
            .find(|(l, _)| *l == p.local)
            .map_or(0, |(_, b)| *b);
        let delta = p.bytes_sent.saturating_sub(earlier);
        used += usize::from(delta > 0);
        println!("      {} -> {}: {delta} bytes", p.local, p.remote);
    }
    if used < 2 {
        println!("    (the scheduler kept to one path this time)");
    }
    conn.set_scheduler(phantom::SchedulerMode::LowLatency);
    for line in path_lines(&conn) {
        println!("    {line}");
    }

    step(7, "Closing the session cleanly with a reason.");
    conn.close(0, b"demo finished");
    let reason = tokio::time::timeout(Duration::from_secs(5), server_conn.closed())
        .await
        .map_err(|_| CliError::Transfer("the server did not see the close".into()))?;
    match &reason {
        CloseReason::Peer { code, reason, .. } => println!(
            "    the server saw the client close: {code}, reason {:?}",
            String::from_utf8_lossy(reason)
        ),
        other => println!("    the server's session ended: {other:?}"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.wait_idle()).await;
    println!("\nDemo complete.");
    Ok(())
}
