//! Early (0-RTT) data handed to a server application when the ClientHello carrying it
//! is accepted, a round trip before the handshake completes ([`EarlyRequest`]).

use std::net::SocketAddr;
use std::sync::Arc;

use phantom_session::early::{EarlyStream, ReleasedEarlyData};
use tokio::sync::oneshot;

use crate::connection::Connection;
use crate::error::EndpointError;
use crate::state::Shared;

/// A resuming client's early data, taken with [`crate::Endpoint::accept_early`] when its
/// ClientHello was accepted — before the client's second flight (its ClientFinished)
/// has arrived — and the way to the connection it opens
/// ([`EarlyRequest::connection`]).
///
/// # Replay
/// The handshake checked the data's AEAD, the ticket's age and this server's
/// anti-replay store (I10) before releasing it, but it is **replayable**
/// ([`EarlyRequest::is_replayable`]): only the server instance that issued the ticket
/// releases it, once, but the handshake may still fail, after which
/// the client may send the request again. Act on it only if doing so twice is harmless
/// (an idempotent read), as with TLS 1.3 0-RTT data.
///
/// # What it speeds up
/// The application reads the request one round trip before the connection exists and
/// can prepare the answer meanwhile; the answer leaves once the handshake completes
/// (the server's traffic keys depend on the ClientFinished: there is no 0.5-RTT data).
///
/// Dropping the request before its handshake completes leaves the connection to
/// [`crate::Endpoint::accept`] (whose streams then continue after the early bytes);
/// dropping it afterwards without taking the connection closes the connection.
#[derive(Debug)]
pub struct EarlyRequest {
    shared: Arc<Shared>,
    released: ReleasedEarlyData,
    connection: Option<oneshot::Receiver<u64>>,
}

impl EarlyRequest {
    pub(crate) fn new(
        shared: Arc<Shared>,
        released: ReleasedEarlyData,
        connection: oneshot::Receiver<u64>,
    ) -> Self {
        Self {
            shared,
            released,
            connection: Some(connection),
        }
    }

    /// Always true: early data may be a replay (see the type's doc).
    #[must_use]
    pub const fn is_replayable(&self) -> bool {
        true
    }

    /// The client's address (not validated yet).
    #[must_use]
    pub fn remote_address(&self) -> SocketAddr {
        self.released.remote
    }

    /// The session id the connection gets if the handshake completes
    /// ([`Connection::session_id`]).
    #[must_use]
    pub fn session_id(&self) -> [u8; 32] {
        self.released.session_id.0
    }

    /// The replay-safe streams the client opened with it, in opening order: each
    /// one's id ([`crate::RecvStream::id`] of the stream `Connection::accept_bi` or
    /// `accept_uni` later yields), direction, opening bytes and whether they end it.
    #[must_use]
    pub fn streams(&self) -> &[EarlyStream] {
        self.released.streams()
    }

    /// Waits for the handshake to complete and returns its connection. Its
    /// `accept_bi`/`accept_uni` yield the early streams first, positioned after the
    /// early bytes (already read here): write the answer there.
    ///
    /// # Errors
    /// [`EndpointError::HandshakeIncomplete`] if the handshake failed or expired,
    /// [`EndpointError::Closed`] if the endpoint closed first.
    pub async fn connection(mut self) -> Result<Connection, EndpointError> {
        let rx = self.connection.take().ok_or(EndpointError::Closed)?;
        match rx.await {
            Ok(h) => Ok(Connection::adopt(Arc::clone(&self.shared), h)),
            Err(_) if self.shared.lock().wants_shutdown() => Err(EndpointError::Closed),
            Err(_) => Err(EndpointError::HandshakeIncomplete),
        }
    }
}

impl Drop for EarlyRequest {
    fn drop(&mut self) {
        // A connection delivered but never taken: adopt its handle, and drop it.
        if let Some(mut rx) = self.connection.take()
            && let Ok(h) = rx.try_recv()
        {
            drop(Connection::adopt(Arc::clone(&self.shared), h));
        }
    }
}
