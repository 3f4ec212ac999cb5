//! `phantom demo`: a narrated tour over loopback.

use std::net::SocketAddr;
use std::time::Duration;

use phantom::{CloseReason, Connection, Endpoint};

use crate::bench::{add_paths, loopback_pair, path_lines, push};
use crate::{CliError, keys};

fn step(n: u32, text: &str) {
    say!("\n[{n}] {text}");
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}

/// `phantom demo`.
pub(crate) async fn demo() -> Result<(), CliError> {
    say!("Phantom demo: both ends run in this process over loopback UDP.");
    let (server, client, conn, server_conn) = connect().await?;
    refuse_wrong_key(&server).await?;
    bulk(&conn).await?;
    rekeys(&conn, &server_conn).await?;
    let new = migrate(&client, &conn, &server_conn).await?;
    second_path(&conn, new).await?;
    close(&client, &conn, &server_conn).await?;
    say!("\nDemo complete.");
    Ok(())
}

/// Step 1: a server identity and a client that pins its key.
async fn connect() -> Result<(Endpoint, Endpoint, Connection, Connection), CliError> {
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
    say!(
        "    keygen + hybrid handshake done in {:?}; server {} ; session id {}…",
        phantom::now().saturating_duration_since(t0),
        server.local_addr(),
        keys::to_hex(sid.get(..8).unwrap_or_default())
    );

    Ok((server, client, conn, server_conn))
}

/// Step 2: a client pinning another key is refused.
async fn refuse_wrong_key(server: &Endpoint) -> Result<(), CliError> {
    step(2, "A client that pins a different key must be refused.");
    let (_other, other_key) = keys::generate()?;
    let rogue = Endpoint::client(([127, 0, 0, 1], 0).into())?;
    match rogue.connect(server.local_addr(), &other_key).await {
        Err(e) => say!("    refused as expected: {e}"),
        Ok(_) => {
            return Err(CliError::Transfer(
                "a client with the wrong pinned key connected".into(),
            ));
        }
    }
    drop(rogue);

    Ok(())
}

/// Step 3: 8 MiB on one stream.
async fn bulk(conn: &Connection) -> Result<(), CliError> {
    step(
        3,
        "Transferring 8 MiB on one stream; the server counts every byte.",
    );
    let len = 8u64 << 20;
    let t = phantom::now();
    let got = push(conn, len).await?;
    let d = phantom::now().saturating_duration_since(t);
    if got != len {
        return Err(CliError::Transfer(format!(
            "server counted {got} of {len} bytes"
        )));
    }
    let s = conn.stats();
    say!(
        "    {got} bytes confirmed in {d:?} ({:.1} MB/s); rtt {:?}, {} packets lost, {} bytes retransmitted",
        mbps(got, d),
        s.rtt,
        s.packets_lost,
        s.stream_bytes_retransmitted
    );

    Ok(())
}

/// Step 4: forced rekeys in both directions.
async fn rekeys(conn: &Connection, server_conn: &Connection) -> Result<(), CliError> {
    step(
        4,
        "Forcing rekeys: the client now rekeys its sending direction every 200 packets, the server its own (acknowledgements) every 100.",
    );
    let (c0, s0) = (conn.stats(), server_conn.stats());
    conn.set_rekey_threshold(200);
    server_conn.set_rekey_threshold(100);
    let got = push(conn, 4 << 20).await?;
    let (c1, s1) = (conn.stats(), server_conn.stats());
    let (send_epoch, recv_epoch) = conn.epochs().unwrap_or_default();
    let client_rekeys = c1.rekeys_local.saturating_sub(c0.rekeys_local);
    let server_followed = s1.rekeys_peer.saturating_sub(s0.rekeys_peer);
    let server_rekeys = s1.rekeys_local.saturating_sub(s0.rekeys_local);
    let client_followed = c1.rekeys_peer.saturating_sub(c0.rekeys_peer);
    say!(
        "    {got} more bytes confirmed; client rekeyed {client_rekeys} time(s) (now at epoch {send_epoch}), the server followed {server_followed} by authenticated trial decryption; the server rekeyed {server_rekeys} time(s) (client receives at epoch {recv_epoch}), the client followed {client_followed}"
    );
    say!(
        "    figures: bytes={got} client_rekeys={client_rekeys} server_followed={server_followed} server_rekeys={server_rekeys} client_followed={client_followed}"
    );

    Ok(())
}

/// Step 5: the client moves to a new UDP socket; returns its new address.
async fn migrate(
    client: &Endpoint,
    conn: &Connection,
    server_conn: &Connection,
) -> Result<SocketAddr, CliError> {
    step(
        5,
        "Changing the client's address (as after NAT rebinding): moving to a new UDP socket.",
    );
    let old = client.local_addr();
    let new = client.rebind(([127, 0, 0, 1], 0).into())?;
    say!("    client socket {old} -> {new}");
    let migrations_before = server_conn.stats().migrations;
    let migrated = tokio::time::timeout(Duration::from_secs(10), push(conn, 1 << 20)).await;
    let ss = server_conn.stats();
    let paths = server_conn.paths();
    let validated_new = paths
        .iter()
        .any(|p| p.remote.port() == new.port() && p.validated);
    let confirmed = match &migrated {
        Ok(Ok(n)) => *n,
        _ => 0,
    };
    say!(
        "    figures: old_port={} new_port={} bytes_after={confirmed} server_validated_new={} migrations={}",
        old.port(),
        new.port(),
        u8::from(validated_new),
        ss.migrations.saturating_sub(migrations_before)
    );
    match migrated {
        Ok(Ok(n)) if n == 1 << 20 => {
            if validated_new {
                say!(
                    "    the session survived: the server validated the new address (path challenge) and moved to it ({} migration(s)); 1 MiB confirmed over it",
                    ss.migrations
                );
            } else {
                say!(
                    "    1 MiB confirmed after the change, but the server has not validated a path to {new} (paths: {}); address change is only partly supported",
                    paths.len()
                );
            }
        }
        Ok(Ok(n)) => say!(
            "    after the change the server counted {n} bytes: address change is not fully supported"
        ),
        Ok(Err(e)) => say!(
            "    the transfer after the change failed ({e}): address change is not supported by this build"
        ),
        Err(_) => say!(
            "    no progress within 10 s after the change: address change is not supported by this build"
        ),
    }

    Ok(new)
}

/// Step 6: a second path and data over both.
async fn second_path(conn: &Connection, new: SocketAddr) -> Result<(), CliError> {
    step(
        6,
        "Adding a second path: a new client UDP socket on loopback, validated by a path challenge, then data over both (aggregate scheduler).",
    );
    let before: Vec<(std::net::SocketAddr, u64)> = conn
        .paths()
        .iter()
        .map(|p| (p.local, p.bytes_sent))
        .collect();
    let added = add_paths(conn, 1).await?;
    let second = added.first().copied();
    say!(
        "    second path from {} validated (the server answered its path challenge)",
        second.map_or_else(|| "?".to_string(), |a| a.to_string()),
    );
    conn.set_scheduler(phantom::SchedulerMode::Aggregate);
    let got = push(conn, 8 << 20).await?;
    say!("    {got} bytes confirmed over both paths; bytes sent per path during this step:");
    let mut used = 0;
    let (mut on_moved, mut on_second) = (0, 0);
    for p in conn.paths().iter().filter(|p| p.validated) {
        let earlier = before
            .iter()
            .find(|(l, _)| *l == p.local)
            .map_or(0, |(_, b)| *b);
        let delta = p.bytes_sent.saturating_sub(earlier);
        used += usize::from(delta > 0);
        if p.local == new {
            on_moved = delta;
        }
        if Some(p.local) == second {
            on_second = delta;
        }
        say!("      {} -> {}: {delta} bytes", p.local, p.remote);
    }
    if used < 2 {
        say!("    (the scheduler kept to one path this time)");
    }
    say!(
        "    figures: bytes={got} paths_used={used} moved_path_bytes={on_moved} second_path_bytes={on_second}"
    );
    conn.set_scheduler(phantom::SchedulerMode::LowLatency);
    for line in path_lines(conn) {
        say!("    {line}");
    }

    Ok(())
}

/// Step 7: a clean close with a reason.
async fn close(
    client: &Endpoint,
    conn: &Connection,
    server_conn: &Connection,
) -> Result<(), CliError> {
    step(7, "Closing the session cleanly with a reason.");
    conn.close(0, b"demo finished");
    let reason = tokio::time::timeout(Duration::from_secs(5), server_conn.closed())
        .await
        .map_err(|_| CliError::Transfer("the server did not see the close".into()))?;
    match &reason {
        CloseReason::Peer { code, reason, .. } => {
            say!(
                "    the server saw the client close: {code}, reason {:?}",
                String::from_utf8_lossy(reason)
            );
            let (wire, _) = code.to_wire();
            say!("    figures: peer_close_code={wire}");
        }
        other => say!("    the server's session ended: {other:?}"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), client.wait_idle()).await;
    Ok(())
}
