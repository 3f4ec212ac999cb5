//! What the short header costs on the wire: bytes of real loopback datagrams against
//! the application bytes they carry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use common::{Shim, identity, localhost, pattern, within};
use phantom::{ClientOptions, Endpoint, ServerConfig, default_session_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bulk upload of 16 MiB through a counting relay, with 1452-byte datagrams (an
/// Ethernet path MTU less IPv6 and UDP headers): every byte the client sends, the
/// handshake and its acknowledgements included, is at most 1.03 times the application
/// bytes. Per full packet: header 12-13 bytes (8-byte id), tag 16, STREAM frame 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_upload_wire_bytes_are_within_1_03_of_application_bytes() {
    let mut session = default_session_config();
    session.max_datagram_size = 1452;
    let (id, key) = identity();
    let mut cfg = ServerConfig::new(id);
    cfg.session = session.clone();
    let srv = Endpoint::server(cfg, localhost()).unwrap();
    let shim = Shim::start(srv.local_addr()).await;
    let client = Endpoint::client(localhost()).unwrap();
    let options = ClientOptions {
        session,
        ..ClientOptions::default()
    };
    let conn = within(10, client.connect_with(shim.addr(), &key, options))
        .await
        .unwrap();
    let server_conn = within(5, srv.accept()).await.unwrap();
    let len = 16 << 20;
    let data = pattern(len, 3);
    let (mut send, _recv) = within(5, conn.open_bi()).await.unwrap();
    let writer = async move {
        send.write_all(&data).await.unwrap();
        send.shutdown().await.unwrap();
    };
    let reader = async move {
        let (_s, mut r) = server_conn.accept_bi().await.unwrap();
        let mut got = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    };
    let ((), got) = within(60, async { tokio::join!(writer, reader) }).await;
    assert_eq!(got, len);
    let wire = shim.upstream_bytes();
    let ratio = wire as f64 / len as f64;
    eprintln!("client->server: {wire} datagram bytes for {len} application bytes: {ratio:.4}x");
    assert!(ratio <= 1.03, "{ratio:.4}x");
    assert!(ratio > 1.0, "{ratio:.4}x");
}
