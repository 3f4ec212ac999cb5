//! `Connection` and its streams.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use phantom_handshake::{ResumptionHint, ResumptionTicket};
use phantom_session::fallback::Carrier;
use phantom_session::{
    AppCode, CloseReason, Dir, Error as SessionError, PathSnapshot, SchedulerMode,
};
use phantom_wire::StreamId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{
    AddPathError, ConnectionError, OpenStreamError, ReadError, SendDatagramError, WriteError,
};

/// The write error a session error stands for (`lost`: why the connection ended).
fn write_error(
    e: SessionError,
    id: StreamId,
    lost: impl FnOnce() -> ConnectionError,
) -> WriteError {
    match e {
        SessionError::Stopped(code) => WriteError::Stopped(code),
        SessionError::Finished => WriteError::Finished,
        SessionError::UnknownStream(_) => WriteError::UnknownStream(id),
        SessionError::Closed => WriteError::ConnectionLost(lost()),
        other => WriteError::ConnectionLost(ConnectionError::TransportError(other)),
    }
}

/// The read error a session error stands for (`lost`: why the connection ended).
fn read_error(e: SessionError, id: StreamId, lost: impl FnOnce() -> ConnectionError) -> ReadError {
    match e {
        SessionError::Reset(code) => ReadError::Reset(code),
        SessionError::UnknownStream(_) => ReadError::UnknownStream(id),
        SessionError::Closed => ReadError::ConnectionLost(lost()),
        other => ReadError::ConnectionLost(ConnectionError::TransportError(other)),
    }
}
use crate::state::Shared;
use crate::stats::{ConnectionStats, HandshakeInfo, HandshakeMode};
use phantom_crypto::Suite;

/// An established session with a peer.
///
/// Clones share the session. When the last clone and the last stream of it are
/// dropped, the session is closed (code 0).
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    handle: u64,
    /// How the handshake went (fixed for the connection's life).
    handshake: HandshakeInfo,
}

impl Connection {
    /// Wraps a handle whose counts were already taken by the driver.
    pub(crate) fn adopt(shared: Arc<Shared>, handle: u64) -> Self {
        // The handle count taken keeps the entry until this handle drops.
        let handshake = shared.lock().conn(handle).map_or(
            HandshakeInfo {
                suite: Suite::Aes256Gcm,
                mode: HandshakeMode::Full,
            },
            |c| c.handshake(),
        );
        Self {
            shared,
            handle,
            handshake,
        }
    }

    fn closed_err() -> ConnectionError {
        ConnectionError::Reset
    }

    /// Opens a bidirectional stream, waiting while the peer's stream limit is reached.
    ///
    /// # Errors
    /// [`OpenStreamError::ConnectionLost`] if the connection is closed,
    /// [`OpenStreamError::IdsExhausted`] if stream ids are exhausted.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), OpenStreamError> {
        let id = self.open(Dir::Bi).await?;
        Ok(self.streams(id))
    }

    /// Waits for the peer to open a bidirectional stream.
    ///
    /// # Errors
    /// Why the connection ended, once it is closed.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        let id = self.accept(Dir::Bi).await?;
        Ok(self.streams(id))
    }

    /// Opens a unidirectional (send-only) stream, waiting while the peer's stream
    /// limit is reached.
    ///
    /// # Errors
    /// As [`Connection::open_bi`].
    pub async fn open_uni(&self) -> Result<SendStream, OpenStreamError> {
        let id = self.open(Dir::Uni).await?;
        Ok(self.streams(id).0)
    }

    /// Waits for the peer to open a unidirectional stream.
    ///
    /// # Errors
    /// Why the connection ended, once it is closed.
    pub async fn accept_uni(&self) -> Result<RecvStream, ConnectionError> {
        let id = self.accept(Dir::Uni).await?;
        Ok(self.streams(id).1)
    }

    /// Sends an unreliable datagram (delivered at most once, maybe not at all; sealed
    /// like everything else).
    ///
    /// # Errors
    /// [`SendDatagramError::TooLarge`] (it must fit one packet),
    /// [`SendDatagramError::Blocked`] (the send queue is full),
    /// [`SendDatagramError::ConnectionLost`].
    pub fn send_datagram(&self, data: &[u8]) -> Result<(), SendDatagramError> {
        self.shared
            .with_dirty(self.handle, |c| match c.session_mut().send_datagram(data) {
                Ok(()) => Ok(()),
                Err(SessionError::DatagramTooLarge) => Err(SendDatagramError::TooLarge),
                Err(SessionError::Blocked) => Err(SendDatagramError::Blocked),
                Err(SessionError::Closed) => Err(SendDatagramError::ConnectionLost(
                    c.closed_error().unwrap_or_else(Self::closed_err),
                )),
                Err(e) => Err(SendDatagramError::ConnectionLost(
                    ConnectionError::TransportError(e),
                )),
            })
            .unwrap_or_else(|| Err(SendDatagramError::ConnectionLost(Self::closed_err())))
    }

    /// Waits for the next unreliable datagram from the peer.
    ///
    /// # Errors
    /// Why the connection ended, once it is closed and no datagram is left.
    pub async fn read_datagram(&self) -> Result<Vec<u8>, ConnectionError> {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let Some(c) = g.conn_mut(self.handle) else {
                return Poll::Ready(Err(Self::closed_err()));
            };
            if let Some(d) = c.session_mut().recv_datagram() {
                return Poll::Ready(Ok(d));
            }
            if let Some(e) = c.closed_error() {
                return Poll::Ready(Err(e));
            }
            c.wait_datagram(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Client: the replay-safe stream whose opening bytes were given in
    /// `ClientOptions::early_data` (sent as 0-RTT data when resuming). `None` if there
    /// was none or it was taken already.
    #[must_use]
    pub fn take_early_stream(&self) -> Option<(SendStream, RecvStream)> {
        let id = self
            .shared
            .lock()
            .conn_mut(self.handle)
            .and_then(|c| c.take_early_stream())?;
        Some(self.streams(id))
    }

    /// True if the server accepted this connection's 0-RTT early data.
    #[must_use]
    pub fn early_data_accepted(&self) -> bool {
        self.with_session(|s| s.early_data_accepted())
            .unwrap_or(false)
    }

    /// True if this connection resumed an earlier one with a ticket.
    #[must_use]
    pub fn is_resumed(&self) -> bool {
        self.with_session(|s| s.is_resumed()).unwrap_or(false)
    }

    /// Client: what the resumption ticket the server issued offers (expiry, 0-RTT
    /// allowance), while it has not been taken.
    #[must_use]
    pub fn resumption_hint(&self) -> Option<ResumptionHint> {
        self.with_session(|s| s.resumption_hint()).flatten()
    }

    /// Client: takes the resumption ticket the server issued, for
    /// `ClientOptions::resumption` on a later connect (0-RTT). Secret: keep it like a
    /// key (`ResumptionTicket::to_bytes` for a cache file).
    #[must_use]
    pub fn resumption_ticket(&self) -> Option<ResumptionTicket> {
        self.shared
            .lock()
            .conn_mut(self.handle)
            .and_then(|c| c.session_mut().take_resumption_ticket())
    }

    fn with_session<R>(&self, f: impl FnOnce(&phantom_session::Session) -> R) -> Option<R> {
        self.shared.lock().conn(self.handle).map(|c| f(c.session()))
    }

    /// Opens a stream of our own, waiting while the peer's stream limit is reached.
    async fn open(&self, dir: Dir) -> Result<StreamId, OpenStreamError> {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let Some(c) = g.conn_mut(self.handle) else {
                return Poll::Ready(Err(OpenStreamError::ConnectionLost(Self::closed_err())));
            };
            match c.session_mut().open_stream(dir) {
                Ok(id) => Poll::Ready(Ok(id)),
                Err(SessionError::StreamLimit) => {
                    c.wait_other(cx.waker());
                    Poll::Pending
                }
                Err(SessionError::StreamIdsExhausted) => {
                    Poll::Ready(Err(OpenStreamError::IdsExhausted))
                }
                Err(SessionError::Closed) => Poll::Ready(Err(OpenStreamError::ConnectionLost(
                    c.closed_error().unwrap_or_else(Self::closed_err),
                ))),
                Err(e) => Poll::Ready(Err(OpenStreamError::ConnectionLost(
                    ConnectionError::TransportError(e),
                ))),
            }
        })
        .await
    }

    /// Waits for the peer to open a stream of `dir`.
    async fn accept(&self, dir: Dir) -> Result<StreamId, ConnectionError> {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let Some(c) = g.conn_mut(self.handle) else {
                return Poll::Ready(Err(Self::closed_err()));
            };
            if let Some(id) = c.pop_incoming(dir) {
                return Poll::Ready(Ok(id));
            }
            if let Some(e) = c.closed_error() {
                return Poll::Ready(Err(e));
            }
            c.wait_accept(cx.waker());
            Poll::Pending
        })
        .await
    }

    fn streams(&self, id: StreamId) -> (SendStream, RecvStream) {
        (
            SendStream {
                conn: self.clone(),
                id,
                finished: false,
            },
            RecvStream {
                conn: self.clone(),
                id,
                eof: false,
            },
        )
    }

    /// Counters of the session (bytes, packets, losses, retransmits, rekeys, RTT, ...;
    /// [`ConnectionStats`] dereferences to the session's [`Stats`](phantom_session::Stats)), with the
    /// handshake's mode and suite. Zero counters once the connection is gone.
    #[must_use]
    pub fn stats(&self) -> ConnectionStats {
        let g = self.shared.lock();
        let c = g.conn(self.handle);
        ConnectionStats {
            session: c.map(|c| c.session().stats()).unwrap_or_default(),
            handshake_mode: c.map_or(self.handshake.mode, |c| c.handshake().mode),
            suite: c.map_or(self.handshake.suite, |c| c.handshake().suite),
        }
    }

    /// The AEAD suite the handshake negotiated.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.handshake.suite
    }

    /// How the handshake went: [`HandshakeMode::Full`], [`HandshakeMode::Pdk`] (the
    /// client held the server's certificate) or [`HandshakeMode::Resumed`] (a ticket).
    #[must_use]
    pub fn handshake_mode(&self) -> HandshakeMode {
        self.handshake.mode
    }

    /// Snapshots of the session's paths.
    #[must_use]
    pub fn paths(&self) -> Vec<PathSnapshot> {
        self.shared
            .lock()
            .conn(self.handle)
            .map(|c| c.session().paths())
            .unwrap_or_default()
    }

    /// Snapshots of the session's paths, each with the carrier it travels on: UDP, or
    /// the TCP fallback connection ([`crate::ClientOptions::tcp_fallback`],
    /// [`crate::Endpoint::server_with_tcp`]) whose `(local, remote)` addresses are the
    /// path's.
    #[must_use]
    pub fn paths_with_carrier(&self) -> Vec<(PathSnapshot, Carrier)> {
        let g = self.shared.lock();
        g.conn(self.handle)
            .map(|c| {
                c.session()
                    .paths()
                    .into_iter()
                    .map(|p| {
                        let carrier = g.carrier_of(p.local, p.remote);
                        (p, carrier)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The peer's address as of the handshake.
    #[must_use]
    pub fn remote_address(&self) -> Option<SocketAddr> {
        self.shared.lock().conn(self.handle).map(|c| c.remote())
    }

    /// The 256-bit session id the handshake chose (it names the session; it is never
    /// on a 1-RTT packet).
    #[must_use]
    pub fn session_id(&self) -> Option<[u8; 32]> {
        self.shared
            .lock()
            .conn(self.handle)
            .map(|c| c.session().session_id().0)
    }

    /// The connection id our packets carry now (the peer issued it; 1-RTT packets
    /// carry no other identifier).
    #[must_use]
    pub fn peer_conn_id(&self) -> Option<Vec<u8>> {
        self.shared
            .lock()
            .conn(self.handle)
            .map(|c| c.session().peer_conn_id().as_bytes().to_vec())
    }

    /// Epochs of our sending direction and of the peer's.
    #[must_use]
    pub fn epochs(&self) -> Option<(u32, u32)> {
        self.shared.lock().conn(self.handle).map(|c| {
            let (a, b) = c.session().epochs();
            (a.0, b.0)
        })
    }

    /// Rekeys our sending direction every `packets` packets (tests and demos lower it).
    pub fn set_rekey_threshold(&self, packets: u64) {
        self.shared.with_dirty(self.handle, |c| {
            c.session_mut().set_rekey_threshold(packets)
        });
    }

    /// Adds a path: binds an extra UDP socket on `local_addr` (port 0 picks one) on
    /// this connection's endpoint and starts validating the path from it to the
    /// peer. Data uses it once validated (I7), as the scheduler
    /// ([`Connection::set_scheduler`]) decides. Returns the socket's local address.
    ///
    /// # Errors
    /// [`AddPathError::BadAddress`]/[`AddPathError::Io`] if the socket cannot be
    /// bound (or its address family differs from the peer's),
    /// [`AddPathError::Refused`] if the session refuses the path (too many paths),
    /// [`AddPathError::ConnectionLost`] if it is closed.
    pub fn add_path(&self, local_addr: SocketAddr) -> Result<SocketAddr, AddPathError> {
        let lost = || AddPathError::ConnectionLost(Self::closed_err());
        let remote = {
            let g = self.shared.lock();
            let c = g.conn(self.handle).ok_or_else(lost)?;
            c.udp_remote()
        };
        if remote.is_ipv4() != local_addr.is_ipv4() {
            return Err(AddPathError::BadAddress(format!(
                "{local_addr} cannot reach the peer at {remote}"
            )));
        }
        let socket = std::net::UdpSocket::bind(local_addr).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                AddPathError::BadAddress(format!("{local_addr}: {e}"))
            } else {
                AddPathError::Io(e)
            }
        })?;
        let local = socket.local_addr()?;
        let mut g = self.shared.lock();
        let now = g.now();
        let Some(c) = g.conn_mut(self.handle) else {
            return Err(lost());
        };
        match c.session_mut().probe_path(now.instant, local, remote) {
            Ok(p) => {
                tracing::info!(target: "phantom::runtime", path = p.0, %local, %remote, "validating added path");
            }
            Err(SessionError::Closed) => {
                return Err(AddPathError::ConnectionLost(
                    c.closed_error().unwrap_or_else(Self::closed_err),
                ));
            }
            // Right after the handshake the peer's NEW_CONN_IDs may still be on their
            // way: the path opens when one arrives (a path never reuses an id, I11).
            Err(SessionError::Path(phantom_session::NO_UNUSED_CONN_ID))
                if c.session().paths().len() < 2 =>
            {
                g.add_waiting_path(self.handle, local, remote);
            }
            Err(e) => return Err(AddPathError::Refused(e)),
        }
        g.add_path_socket(self.handle, socket);
        self.shared.unlock_and_wake(g);
        Ok(local)
    }

    /// Changes the multipath scheduler.
    pub fn set_scheduler(&self, mode: SchedulerMode) {
        self.shared
            .with_dirty(self.handle, |c| c.session_mut().set_scheduler(mode));
    }

    /// Closes the connection with an application `code` and `reason`: the peer gets
    /// a CLOSE frame, streams fail with [`WriteError::ConnectionLost`] /
    /// [`ReadError::ConnectionLost`]. A bare `u64` converts to the [`AppCode`].
    pub fn close(&self, code: impl Into<AppCode>, reason: &[u8]) {
        let mut g = self.shared.lock();
        g.close_conn(self.handle, code.into(), reason);
        self.shared.unlock_and_wake(g);
    }

    /// Waits until the connection is closed (by either side or the idle timeout)
    /// and returns why.
    pub async fn closed(&self) -> CloseReason {
        poll_fn(|cx| {
            let mut g = self.shared.lock();
            let Some(c) = g.conn_mut(self.handle) else {
                return Poll::Ready(CloseReason::Error(SessionError::Closed));
            };
            if let Some(r) = c.close_reason() {
                return Poll::Ready(r.clone());
            }
            c.wait_other(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Time until the session's next timer (diagnostics), `None` if no timer is set
    /// or the connection is gone.
    #[must_use]
    pub fn next_timeout(&self) -> Option<std::time::Duration> {
        let mut g = self.shared.lock();
        let now = g.now().instant;
        g.conn(self.handle)
            .and_then(|c| c.session().poll_timeout())
            .map(|d| d.saturating_duration_since(now))
    }

    /// True once the connection is closing or closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.shared
            .lock()
            .conn(self.handle)
            .is_none_or(|c| c.session().is_closed())
    }
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        self.shared.lock().add_conn_handle(self.handle);
        Self {
            shared: Arc::clone(&self.shared),
            handle: self.handle,
            handshake: self.handshake,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        g.drop_conn_handle(self.handle);
        self.shared.unlock_and_wake(g);
    }
}

/// The sending half of a stream; implements [`AsyncWrite`].
///
/// `poll_write` returns `Pending` while the stream's send buffer is full (flow
/// control backpressure) and is woken when acknowledgements free space.
/// `poll_shutdown` finishes the stream (FIN). Dropping it unfinished finishes it.
#[derive(Debug)]
pub struct SendStream {
    conn: Connection,
    id: StreamId,
    finished: bool,
}

impl SendStream {
    /// The stream id (the session's [`StreamId`]; its `.0` is the 32-bit wire value).
    #[must_use]
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Marks the end of the stream's data.
    ///
    /// # Errors
    /// [`WriteError::ConnectionLost`] if the connection is closed,
    /// [`WriteError::Stopped`] if the stream was stopped.
    pub fn finish(&mut self) -> Result<(), WriteError> {
        if self.finished {
            return Ok(());
        }
        let id = self.id;
        let r = self
            .conn
            .shared
            .with_dirty(self.conn.handle, |c| match c.session_mut().finish(id) {
                Ok(()) | Err(SessionError::Finished) => Ok(()),
                Err(e) => Err(write_error(e, id, || {
                    c.closed_error().unwrap_or_else(Connection::closed_err)
                })),
            })
            .unwrap_or_else(|| Err(WriteError::ConnectionLost(Connection::closed_err())));
        if r.is_ok() {
            self.finished = true;
        }
        r
    }

    /// Abandons the stream with an application `code` (a bare `u64` converts).
    pub fn reset(&mut self, code: impl Into<AppCode>) {
        let id = self.id;
        let code = code.into();
        self.conn.shared.with_dirty(self.conn.handle, |c| {
            let _ = c.session_mut().reset(id, code);
        });
        self.finished = true;
    }

    /// Sends `data` without copying it into the send buffer (the bytes are copied
    /// once, into the packets that carry them): waits while the buffer is full, as
    /// `write_all` does, and returns once all of `data` is queued.
    ///
    /// # Errors
    /// As [`AsyncWrite::poll_write`]: [`WriteError::ConnectionLost`] if the connection
    /// closed, [`WriteError::Finished`]/[`WriteError::Stopped`] if the stream was
    /// finished, reset or stopped.
    pub async fn write_chunk(&mut self, mut data: Bytes) -> Result<(), WriteError> {
        while !data.is_empty() {
            std::future::poll_fn(|cx| self.poll_write_chunk(cx, &mut data)).await?;
        }
        Ok(())
    }

    /// Queues as much of `data` as the send buffer has room for, without copying
    /// it; `data` keeps the rest. `Pending` (woken when acknowledgements free
    /// space) if there is no room.
    ///
    /// # Errors
    /// As [`SendStream::write_chunk`].
    pub fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<Result<usize, WriteError>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.push(cx, |session, id| session.write_chunk(id, data))
    }

    /// Runs one write-like session call under the endpoint lock: `Pending` with the
    /// waker registered if the buffer is full, else the bytes taken (the driver is
    /// told there is data to send).
    fn push(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(&mut phantom_session::Session, StreamId) -> Result<usize, SessionError>,
    ) -> Poll<Result<usize, WriteError>> {
        let mut g = self.conn.shared.lock();
        let Some(c) = g.conn_mut(self.conn.handle) else {
            return Poll::Ready(Err(WriteError::ConnectionLost(Connection::closed_err())));
        };
        match write(c.session_mut(), self.id) {
            Ok(0) | Err(SessionError::Blocked) => {
                c.wait_writable(self.id, cx.waker());
                Poll::Pending
            }
            Ok(n) => {
                g.mark_dirty(self.conn.handle);
                self.conn.shared.unlock_and_wake(g);
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(write_error(e, self.id, || {
                c.closed_error().unwrap_or_else(Connection::closed_err)
            }))),
        }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.push(cx, |session, id| session.write(id, buf))
            .map_err(io::Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is queued in the session; the driver sends it without delay.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().finish().map_err(io::Error::from))
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish();
        }
    }
}

/// The receiving half of a stream; implements [`AsyncRead`] (end of stream reads 0).
///
/// Dropping it before the end asks the peer to stop sending.
#[derive(Debug)]
pub struct RecvStream {
    conn: Connection,
    id: StreamId,
    eof: bool,
}

impl RecvStream {
    /// The stream id (the session's [`StreamId`]; its `.0` is the 32-bit wire value).
    #[must_use]
    pub fn id(&self) -> StreamId {
        self.id
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.eof || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut g = this.conn.shared.lock();
        let Some(c) = g.conn_mut(this.conn.handle) else {
            return Poll::Ready(Err(
                ReadError::ConnectionLost(Connection::closed_err()).into()
            ));
        };
        match c.session_mut().read(this.id, buf.initialize_unfilled()) {
            Ok(Some(0)) => {
                if let Some(e) = c.closed_error() {
                    return Poll::Ready(Err(ReadError::ConnectionLost(e).into()));
                }
                c.wait_readable(this.id, cx.waker());
                Poll::Pending
            }
            Ok(Some(n)) => {
                buf.advance(n);
                // Reading may have opened flow-control credit to announce.
                g.mark_dirty(this.conn.handle);
                this.conn.shared.unlock_and_wake(g);
                Poll::Ready(Ok(()))
            }
            Ok(None) => {
                this.eof = true;
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(read_error(e, this.id, || {
                c.closed_error().unwrap_or_else(Connection::closed_err)
            })
            .into())),
        }
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        if !self.eof {
            let id = self.id;
            self.conn.shared.with_dirty(self.conn.handle, |c| {
                if !c.session().is_closed() {
                    let _ = c.session_mut().stop_sending(id, AppCode(0));
                }
            });
        }
    }
}
