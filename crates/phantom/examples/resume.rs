//! Resumption with 0-RTT: a first connection takes the server's ticket; the second
//! resumes with it and sends its request in the first flight.
//!
//! `cargo run -p phantom --example resume -- 127.0.0.1:4433 server.pub`

use phantom::{ClientOptions, Endpoint, HybridVerifyingKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, pub_file] = args.as_slice() else {
        return Err("usage: resume SERVER_ADDR SERVER_PUB".into());
    };
    let server = phantom::resolve(server)?;
    let key = HybridVerifyingKey::from_bytes(&std::fs::read(pub_file)?)?;
    let endpoint = Endpoint::client(([127, 0, 0, 1], 0).into())?;

    // First connection: a full handshake; the server sends a ticket after it.
    let first = endpoint.connect(server, &key).await?;
    let mut ticket = None;
    for _ in 0..200 {
        ticket = first.resumption_ticket();
        if ticket.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    first.close(0, b"bye");
    let ticket = ticket.ok_or("the server issued no ticket")?;

    // Second connection: the request rides in the ClientHello as 0-RTT data.
    let request = b"GET /replay-safe".to_vec();
    let options = ClientOptions {
        resumption: Some(ticket),
        early_data: Some(request.clone()),
        ..ClientOptions::default()
    };
    let conn = endpoint.connect_with(server, &key, options).await?;
    let (mut send, mut recv) = conn.take_early_stream().ok_or("no early stream")?;
    send.shutdown().await?;
    let mut answer = Vec::new();
    recv.read_to_end(&mut answer).await?;
    println!(
        "resumed: {}, 0-RTT accepted: {}, echo {} bytes",
        conn.is_resumed(),
        conn.early_data_accepted(),
        answer.len()
    );
    if !conn.is_resumed() || !conn.early_data_accepted() || answer != request {
        return Err("resumption or 0-RTT did not happen".into());
    }
    conn.close(0, b"done");
    endpoint.wait_idle().await;
    Ok(())
}
