//! An echo server: every stream is sent back, every datagram too.
//!
//! `cargo run -p phantom --example echo_server -- 127.0.0.1:4433 server.pub`
//! generates a fresh identity, writes its public key (raw bytes) to `server.pub` for
//! the clients to pin, prints `listening on ADDR` and serves until killed.

use phantom::{Connection, Endpoint, HybridSigningKey, ServerConfig, ServerIdentity};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result {
    let mut args = std::env::args().skip(1);
    let listen = phantom::resolve(&args.next().unwrap_or_else(|| "127.0.0.1:4433".into()))?;
    let pub_file = args.next().unwrap_or_else(|| "server.pub".into());

    let mut rng = rand::rng();
    let signing_key = HybridSigningKey::generate(&mut rng);
    let a_year = phantom::unix_time() + 365 * 86_400;
    let identity = ServerIdentity::generate(&signing_key, &mut rng, a_year)?;
    std::fs::write(&pub_file, signing_key.verifying_key().to_bytes())?;
    // Clients that ship the certificate with the key connect in one round trip (PDK).
    std::fs::write(
        format!("{pub_file}.cert"),
        identity.certificate().to_bytes(),
    )?;

    let endpoint = Endpoint::server(ServerConfig::new(identity), listen)?;
    println!("listening on {}", endpoint.local_addr());
    while let Ok(conn) = endpoint.accept().await {
        tokio::spawn(serve(conn));
    }
    Ok(())
}

async fn serve(conn: Connection) {
    let datagrams = conn.clone();
    tokio::spawn(async move {
        while let Ok(d) = datagrams.read_datagram().await {
            let _ = datagrams.send_datagram(&d);
        }
    });
    // The 0-RTT stream of a resumed client arrives like any other.
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        tokio::spawn(async move {
            if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut send).await;
            }
        });
    }
}
