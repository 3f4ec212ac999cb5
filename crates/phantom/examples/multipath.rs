//! A client on two local addresses (127.0.0.1 and 127.0.0.2) whose scheduler spreads
//! one stream over both paths; it checks the echo and that both paths carried data.
//!
//! `cargo run -p phantom --example multipath -- 127.0.0.1:4433 server.pub`

use std::time::Duration;

use phantom::{Endpoint, HybridVerifyingKey, SchedulerMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, pub_file] = args.as_slice() else {
        return Err("usage: multipath SERVER_ADDR SERVER_PUB".into());
    };
    let key = HybridVerifyingKey::from_bytes(&std::fs::read(pub_file)?)?;
    let endpoint = Endpoint::client(([127, 0, 0, 1], 0).into())?;
    let conn = endpoint.connect(phantom::resolve(server)?, &key).await?;

    // A second path from another loopback address, validated before it carries data.
    let second = conn.add_path(([127, 0, 0, 2], 0).into())?;
    conn.set_scheduler(SchedulerMode::Aggregate);
    for _ in 0..500 {
        if conn
            .paths()
            .iter()
            .any(|p| p.local == second && p.validated)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let (mut send, mut recv) = conn.open_bi().await?;
    let upload = async {
        send.write_all(&data).await?;
        send.shutdown().await
    };
    let mut echoed = Vec::new();
    let (up, down) = tokio::join!(upload, recv.read_to_end(&mut echoed));
    up?;
    down?;
    if echoed != data {
        return Err("the echo differs from what was sent".into());
    }
    for p in conn.paths() {
        println!(
            "path {} -> {}: {} bytes sent",
            p.local, p.remote, p.bytes_sent
        );
    }
    // Both paths carried a share of the 8 MiB (well beyond probes and ACKs).
    let busy = conn
        .paths()
        .iter()
        .filter(|p| p.bytes_sent > 64 * 1024)
        .count();
    if busy < 2 {
        return Err(format!("only {busy} path(s) carried data").into());
    }
    conn.close(0, b"done");
    endpoint.wait_idle().await;
    Ok(())
}
