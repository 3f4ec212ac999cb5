//! Stateless reset over real loopback sockets: a client whose server lost the session's
//! state fails at once with a typed error instead of waiting out its idle timeout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "integration tests fail loudly"
)]

mod common;

use std::time::Duration;

use common::{Shim, identity, localhost, within};
use phantom::{ConnectionError, Endpoint, ServerConfig};
use tokio::io::AsyncWriteExt;

/// A connected client's server "restarts": a new server with the same identity (so the
/// same reset key, derived from it) takes the address the client talks to (a relay
/// retargeted from the old server, which is left running but unreachable, as a crashed
/// one). The client's next packet carries an id the new server never issued; it answers
/// with a stateless reset, and the client's session closes within one second with
/// `ConnectionError::StatelessReset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_server_resets_a_connected_client_within_one_second() {
    let (id, key) = identity();
    let cfg = ServerConfig::new(id);
    let old = Endpoint::server(cfg.clone(), localhost()).unwrap();
    let shim = Shim::start(old.local_addr()).await;
    let client = Endpoint::client(localhost()).unwrap();
    let conn = within(10, client.connect(shim.addr(), &key)).await.unwrap();
    let _old_conn = within(5, old.accept()).await.unwrap();

    let new = Endpoint::server(cfg, localhost()).unwrap();
    shim.retarget(new.local_addr());
    let start = phantom::now();
    let (mut send, _recv) = within(5, conn.open_bi()).await.unwrap();
    let _ = send.write_all(b"after the restart").await;
    let reason = within(5, conn.closed()).await;
    let took = start.elapsed();
    assert_eq!(reason, phantom::CloseReason::Reset, "{reason:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(matches!(
        conn.accept_bi().await,
        Err(ConnectionError::StatelessReset)
    ));
    assert_eq!(new.session_count(), 0);
}
