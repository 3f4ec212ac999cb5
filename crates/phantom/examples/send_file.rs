//! Sends a file over one stream to the echo server and checks that every byte comes
//! back.
//!
//! `cargo run -p phantom --example send_file -- 127.0.0.1:4433 server.pub FILE`

use phantom::{Endpoint, HybridVerifyingKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, pub_file, path] = args.as_slice() else {
        return Err("usage: send_file SERVER_ADDR SERVER_PUB FILE".into());
    };
    let server = phantom::resolve(server)?;
    let key = HybridVerifyingKey::from_bytes(&std::fs::read(pub_file)?)?;

    let endpoint = Endpoint::client(([127, 0, 0, 1], 0).into())?;
    let conn = endpoint.connect(server, &key).await?;
    let (mut send, mut recv) = conn.open_bi().await?;

    // Upload and download at once: the echo comes back while we are still sending.
    let mut file = tokio::fs::File::open(path).await?;
    let upload = async {
        let sent = tokio::io::copy(&mut file, &mut send).await?;
        send.shutdown().await?;
        Ok::<u64, std::io::Error>(sent)
    };
    let mut echoed = Vec::new();
    let (sent, received) = tokio::join!(upload, recv.read_to_end(&mut echoed));
    let (sent, received) = (sent?, received?);

    if echoed != std::fs::read(path)? {
        return Err(format!("sent {sent} bytes, {received} came back different").into());
    }
    let stats = conn.stats();
    println!(
        "sent {sent} bytes, echoed byte-exact; rtt {:?}, {} packets lost",
        stats.rtt, stats.packets_lost
    );
    conn.close(0, b"done");
    endpoint.wait_idle().await;
    Ok(())
}
