//! The driver task: one per endpoint, owning its UDP sockets (the primary one and
//! those added for extra paths).
//!
//! Each loop (bounded by an I/O budget) receives datagrams, runs expired timers,
//! polls the dirty sessions for datagrams to send, then drains their events and
//! wakes the tasks waiting on them. It sleeps until the socket is readable, a
//! handle notifies it (new data, a close, a connect), or the earliest session
//! deadline passes; the tokio sleep is re-armed only when that deadline changes.
//!
//! Socket I/O goes through `quinn-udp`: received GRO batches are split into their
//! datagrams, and consecutive outgoing datagrams to the same destination are
//! coalesced into one GSO send (equal-size segments, the last may be shorter) where
//! the kernel supports it, per socket. A transmit leaves from the socket whose
//! local address is the transmit's `src` (the primary socket otherwise), or through
//! the TCP connection whose `(local, remote)` is its `(src, dst)`.

use std::collections::BTreeSet;
use std::future::poll_fn;
use std::io::{ErrorKind, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use phantom_session::RxMeta;

use crate::state::{Inner, RECV_BUDGET, SEND_BUDGET, Shared};
use crate::tcp;

/// Receive buffer: one GRO batch (or one datagram of any size).
const RECV_BUF: usize = 65_536;
/// Largest datagram a session may build here.
const MAX_DATAGRAM: usize = 9_216;
/// Socket send and receive buffer size requested (bytes).
const SOCKET_BUFFER: usize = 4 << 20;
/// Largest GSO batch (the kernel's limit for one UDP send is 64 KiB).
const MAX_BATCH_BYTES: usize = 63_000;

/// The socket with its `quinn-udp` state.
struct Io {
    socket: UdpSocket,
    /// The socket's local address (what sessions know the path by).
    local: SocketAddr,
    state: UdpSocketState,
    /// Segments per GSO send (1: no GSO).
    gso: usize,
}

impl Io {
    fn new(socket: UdpSocket) -> std::io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        let gso = state.max_gso_segments().max(1);
        // Bursts (a GSO batch, a thousand ClientHellos at once) overflow the default
        // ~208 KiB receive buffer; ask for more (the kernel caps it at rmem_max/wmem_max,
        // and a refusal only leaves the default).
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
        let rcvbuf = state.recv_buffer_size((&socket).into()).unwrap_or(0);
        let local = socket.local_addr()?;
        tracing::debug!(target: "phantom::runtime", %local, gso, gro = state.gro_segments(), rcvbuf, "socket ready");
        Ok(Self {
            socket,
            local,
            state,
            gso,
        })
    }

    /// One receive: a datagram or a GRO batch into `buf`.
    fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<RecvMeta> {
        let mut meta = [RecvMeta::default()];
        let n = self.socket.try_io(Interest::READABLE, || {
            let mut bufs = [IoSliceMut::new(buf)];
            self.state.recv((&self.socket).into(), &mut bufs, &mut meta)
        })?;
        let [m] = meta;
        if n == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(m)
    }

    /// Sends `data` (a GSO batch of `segment`-byte datagrams if `segment` is set).
    /// `Err(())` means the socket is full: try again once writable.
    fn try_send(&self, dst: SocketAddr, data: &[u8], segment: Option<usize>) -> Result<(), ()> {
        let t = Transmit {
            destination: dst,
            ecn: None,
            contents: data,
            segment_size: segment,
            src_ip: None,
        };
        match self.socket.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.socket).into(), &t)
        }) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(()),
            Err(e) => {
                // Unreachable destinations and the like: the datagrams are lost, and
                // the sessions' loss recovery deals with it.
                tracing::trace!(target: "phantom::runtime", %dst, error = %e, "send failed");
                Ok(())
            }
        }
    }
}

/// Datagrams a socket refused with `WouldBlock`, sent first once writable.
struct Stalled {
    sock: usize,
    dst: SocketAddr,
    data: Vec<u8>,
    segment: Option<usize>,
}

/// Outcome of one transmit pass.
enum TxOutcome {
    /// Everything that could be sent was sent.
    Done,
    /// The budget ran out with more to send.
    Budget,
    /// A socket is full.
    Blocked,
}

/// Outgoing datagrams being coalesced for one GSO send from one socket.
///
/// Sessions build their datagrams straight into the batch's buffer (`slot`), so a
/// datagram is written once by the AEAD and read once by the kernel: no copy.
struct Batch {
    /// Fixed size: a full batch plus one datagram being built.
    buf: Vec<u8>,
    /// Bytes of `buf` holding the batch's datagrams.
    len: usize,
    sock: usize,
    dst: Option<SocketAddr>,
    segment: usize,
    count: usize,
    /// The last datagram was shorter than `segment`: nothing may follow it.
    sealed: bool,
}

impl Batch {
    fn new() -> Self {
        Self {
            buf: vec![0u8; MAX_BATCH_BYTES + MAX_DATAGRAM],
            len: 0,
            sock: 0,
            dst: None,
            segment: 0,
            count: 0,
            sealed: false,
        }
    }

    /// Where the next datagram is built (after the batch's datagrams).
    fn slot(&mut self) -> &mut [u8] {
        let end = (self.len + MAX_DATAGRAM).min(self.buf.len());
        self.buf.get_mut(self.len..end).unwrap_or_default()
    }

    /// The `n`-byte datagram last built in `slot`.
    fn built(&self, n: usize) -> &[u8] {
        self.buf.get(self.len..self.len + n).unwrap_or_default()
    }

    fn fits(&self, sock: usize, dst: SocketAddr, len: usize, gso: usize) -> bool {
        self.count == 0
            || (self.sock == sock
                && self.dst == Some(dst)
                && !self.sealed
                && len <= self.segment
                && self.count < gso
                && self.len + len <= MAX_BATCH_BYTES)
    }

    /// Appends the `n`-byte datagram built in `slot` (it fits).
    fn append(&mut self, sock: usize, dst: SocketAddr, n: usize) {
        if self.count == 0 {
            self.sock = sock;
            self.dst = Some(dst);
            self.segment = n;
        } else if n < self.segment {
            self.sealed = true;
        }
        self.len += n;
        self.count += 1;
    }

    /// Takes the `n`-byte datagram built in `slot`: appended if it fits, else the
    /// batch is sent first and the datagram starts the next one. `Err`: that send
    /// stalled (the datagram is still taken, as the first of the new batch).
    fn take_built(
        &mut self,
        ios: &[Io],
        sock: usize,
        dst: SocketAddr,
        n: usize,
        gso: usize,
    ) -> Result<(), Stalled> {
        if self.fits(sock, dst, n, gso) {
            self.append(sock, dst, n);
            return Ok(());
        }
        let start = self.len;
        let r = self.flush(ios);
        self.buf.copy_within(start..start + n, 0);
        self.append(sock, dst, n);
        r
    }

    /// Sends the batch; on `WouldBlock` it becomes the stalled send.
    fn flush(&mut self, ios: &[Io]) -> Result<(), Stalled> {
        let Some(dst) = self.dst else {
            return Ok(());
        };
        let segment = (self.count > 1).then_some(self.segment);
        let data = self.buf.get(..self.len).unwrap_or_default();
        let r = match ios.get(self.sock) {
            Some(io) => io.try_send(dst, data, segment),
            // The socket went away (rebind): the datagrams are lost, loss recovery repairs.
            None => Ok(()),
        };
        let out = match r {
            Ok(()) => Ok(()),
            Err(()) => Err(Stalled {
                sock: self.sock,
                dst,
                data: data.to_vec(),
                segment,
            }),
        };
        self.len = 0;
        self.dst = None;
        self.count = 0;
        self.sealed = false;
        out
    }
}

/// Where a datagram from `src` to `dst` leaves.
enum Route {
    /// A UDP socket (index into the driver's sockets).
    Udp(usize),
    /// Handed to a TCP connection's writer (or dropped): done.
    Tcp,
}

/// Picks the carrier for a datagram: the TCP connection `(src, dst)` if there is one
/// (with `src == None`: any TCP connection to `dst`), else the UDP socket bound to
/// `src`, else the primary socket. A datagram from the local address of a TCP
/// connection that is gone is dropped, never sent over UDP.
fn route(
    g: &mut Inner,
    ios: &[Io],
    src: Option<SocketAddr>,
    dst: SocketAddr,
    data: &[u8],
) -> Route {
    if !g.tcp.is_empty() {
        let link = match src {
            Some(s) => g.tcp.get(&(s, dst)),
            None => g.tcp.iter().find(|((_, r), _)| *r == dst).map(|(_, l)| l),
        };
        if let Some(link) = link {
            if link.tx.try_send(data.to_vec()).is_err() {
                g.tcp_dropped += 1;
            }
            return Route::Tcp;
        }
    }
    let Some(s) = src else {
        return Route::Udp(0);
    };
    if let Some(i) = ios.iter().position(|io| io.local == s) {
        return Route::Udp(i);
    }
    if g.tcp_locals.contains(&s) || g.tcp_listen == Some(s) {
        g.tcp_dropped += 1;
        return Route::Tcp;
    }
    Route::Udp(0)
}

/// Waits until any socket is readable.
async fn readable(ios: &[Io]) {
    poll_fn(|cx| {
        for io in ios {
            if let Poll::Ready(r) = io.socket.poll_recv_ready(cx) {
                if let Err(e) = r {
                    tracing::warn!(target: "phantom::runtime", local = %io.local, error = %e, "socket error");
                }
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await;
}

fn adopt_socket(s: std::net::UdpSocket) -> std::io::Result<Io> {
    s.set_nonblocking(true)?;
    Io::new(UdpSocket::from_std(s)?)
}

/// Runs the endpoint until it is closed and every session drained.
pub(crate) async fn run(shared: Arc<Shared>, socket: UdpSocket) {
    let primary = match Io::new(socket) {
        Ok(io) => io,
        Err(e) => {
            tracing::error!(target: "phantom::runtime", error = %e, "cannot set up the socket");
            let mut g = shared.inner.lock();
            g.closing = true;
            g.close_all(0, b"socket error");
            drop(g);
            let _ = shared.shutdown.send(true);
            return;
        }
    };
    let mut ios: Vec<Io> = vec![primary];
    let mut rx = vec![0u8; RECV_BUF];
    let mut batch = Batch::new();
    let mut stalled: Option<Stalled> = None;
    let sleep = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    let mut shutdown_started = false;
    loop {
        let (outcome, deadline, recv_exhausted) = {
            let mut g = shared.inner.lock();
            if let Some(s) = g.rebind.take() {
                match adopt_socket(s) {
                    Ok(new) => {
                        tracing::info!(target: "phantom::runtime", old = %g.local, new = %new.local, "rebound socket");
                        g.local = new.local;
                        if stalled.as_ref().is_some_and(|s| s.sock == 0) {
                            stalled = None;
                        }
                        if let Some(first) = ios.first_mut() {
                            *first = new;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "phantom::runtime", error = %e, "rebind failed");
                    }
                }
            }
            for s in std::mem::take(&mut g.new_sockets) {
                match adopt_socket(s) {
                    Ok(new) => {
                        tracing::debug!(target: "phantom::runtime", local = %new.local, "extra path socket");
                        ios.push(new);
                    }
                    Err(e) => {
                        tracing::warn!(target: "phantom::runtime", error = %e, "cannot adopt a path socket");
                    }
                }
            }
            if (g.user_handles == 0 || g.closing) && !shutdown_started {
                shutdown_started = true;
                g.closing = true;
                g.close_all(0, b"endpoint closed");
            }
            let now = g.now();
            // 1. Receive (bounded), every socket in turn.
            let mut received = 0;
            for io in &ios {
                while received < RECV_BUDGET {
                    match io.try_recv(&mut rx) {
                        Ok(meta) => {
                            let len = meta.len.min(rx.len());
                            let stride = if meta.stride == 0 { len } else { meta.stride };
                            if let Some(data) = rx.get_mut(..len) {
                                for d in data.chunks_mut(stride.max(1)) {
                                    received += 1;
                                    g.on_datagram(now, RxMeta::udp(io.local, meta.addr), d);
                                }
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // ICMP errors surface here on some platforms: ignore them.
                            received += 1;
                            tracing::trace!(target: "phantom::runtime", local = %io.local, error = %e, "recv error");
                        }
                    }
                }
            }
            let recv_exhausted = received >= RECV_BUDGET;
            // 2. Timers.
            g.on_timeouts(now);
            // 3. Transmit (bounded), coalescing datagrams into GSO batches.
            let touched: BTreeSet<u64> = g.dirty.clone();
            let mut sent = 0usize;
            let mut outcome = TxOutcome::Done;
            if let Some(s) = stalled.take() {
                let r = match ios.get(s.sock) {
                    Some(io) => io.try_send(s.dst, &s.data, s.segment),
                    None => Ok(()),
                };
                if r.is_err() {
                    stalled = Some(s);
                    outcome = TxOutcome::Blocked;
                }
            }
            while matches!(outcome, TxOutcome::Done) {
                let Some(o) = g.hs_out.pop_front() else {
                    break;
                };
                sent += 1;
                let Route::Udp(i) = route(&mut g, &ios, o.src, o.dst, &o.data) else {
                    continue;
                };
                let r = match ios.get(i) {
                    Some(io) => io.try_send(o.dst, &o.data, None),
                    None => Ok(()),
                };
                if r.is_err() {
                    stalled = Some(Stalled {
                        sock: i,
                        dst: o.dst,
                        data: o.data,
                        segment: None,
                    });
                    outcome = TxOutcome::Blocked;
                }
            }
            'conns: for h in &touched {
                if !matches!(outcome, TxOutcome::Done) {
                    break;
                }
                loop {
                    if sent >= SEND_BUDGET {
                        outcome = TxOutcome::Budget;
                        break 'conns;
                    }
                    let Some(c) = g.conns.get_mut(h) else {
                        break;
                    };
                    let Some(t) = c.session.poll_transmit(now.instant, batch.slot()) else {
                        break;
                    };
                    sent += 1;
                    let Route::Udp(i) = route(&mut g, &ios, Some(t.src), t.dst, batch.built(t.len))
                    else {
                        continue;
                    };
                    let gso = ios.get(i).map_or(1, |io| io.gso);
                    if let Err(st) = batch.take_built(&ios, i, t.dst, t.len, gso) {
                        // The datagram just built waits behind the stalled batch.
                        stalled = Some(st);
                        outcome = TxOutcome::Blocked;
                        break 'conns;
                    }
                }
                g.dirty.remove(h);
            }
            if stalled.is_none()
                && let Err(st) = batch.flush(&ios)
            {
                stalled = Some(st);
                outcome = TxOutcome::Blocked;
            }
            // 4. Events (and the carrier actions they call for), deadlines, cleanup.
            let actions = g.process_events(&touched);
            tcp::apply(&shared, &mut g, actions);
            g.reap();
            if g.prune_sockets && stalled.is_none() {
                // Close the extra sockets no path uses any more (failed or abandoned
                // paths, closed sessions); the primary socket stays.
                g.prune_sockets = false;
                if ios.len() > 1 {
                    let in_use = g.locals_in_use();
                    let mut first = true;
                    ios.retain(|io| {
                        let keep = first || in_use.contains(&io.local);
                        first = false;
                        if !keep {
                            tracing::debug!(target: "phantom::runtime", local = %io.local, "path socket closed");
                        }
                        keep
                    });
                }
            }
            if g.closing && g.conns.values().all(|c| c.unregistered) && g.pending.is_empty() {
                tracing::debug!(target: "phantom::runtime", local = %g.local, "driver stopped");
                g.tcp.clear();
                for w in g.idle_wakers.drain(..) {
                    w.wake();
                }
                drop(g);
                let _ = shared.shutdown.send(true);
                return;
            }
            // A deadline already past (a timer the session keeps) must not spin.
            let floor = now.instant + std::time::Duration::from_millis(1);
            (
                outcome,
                g.next_deadline().map(|d| d.max(floor)),
                recv_exhausted,
            )
        };
        if recv_exhausted || matches!(outcome, TxOutcome::Budget) {
            // More work is waiting: let other tasks run, then go on.
            tokio::task::yield_now().await;
            continue;
        }
        if deadline != armed {
            armed = deadline;
            if let Some(d) = deadline {
                sleep.as_mut().reset(tokio::time::Instant::from_std(d));
            }
        }
        let blocked = if matches!(outcome, TxOutcome::Blocked) {
            stalled.as_ref().and_then(|s| ios.get(s.sock))
        } else {
            None
        };
        tokio::select! {
            () = readable(&ios) => {}
            () = shared.notify.notified() => {}
            () = &mut sleep, if armed.is_some() => {
                // Fired: force a re-arm on the next loop even if the deadline is equal.
                armed = None;
            }
            r = async { blocked?.socket.writable().await.err() }, if blocked.is_some() => {
                if let Some(e) = r {
                    tracing::warn!(target: "phantom::runtime", error = %e, "socket error");
                }
            }
        }
    }
}
