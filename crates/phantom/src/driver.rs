//! The driver task: one per endpoint, owning its UDP sockets (the primary one and
//! those added for extra paths).
//!
//! Each loop (bounded by an I/O budget) receives datagrams, runs expired timers,
//! polls the dirty sessions for datagrams to send, then drains their events and
//! wakes the tasks waiting on them. Only the session work holds the endpoint's lock:
//! the receive system calls come before it, and the wake-ups and send system calls
//! after it is released. It sleeps until the socket is readable, a
//! handle notifies it (new data, a close, a connect), or the earliest session
//! deadline passes; the tokio sleep is re-armed only when that deadline changes.
//!
//! Socket I/O goes through `quinn-udp`: received GRO batches are split into their
//! datagrams, and consecutive outgoing datagrams to the same destination are
//! coalesced into one GSO send (equal-size segments, the last may be shorter) where
//! the kernel supports it, per socket. A transmit leaves from the socket whose
//! local address is the transmit's `src` (the primary socket otherwise), or through
//! the TCP connection whose `(local, remote)` is its `(src, dst)`.

use std::collections::{BTreeSet, VecDeque};
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

/// Receive buffer per `recvmmsg` slot with GRO: one coalesced batch (up to 64 KiB).
const RECV_SLOT_GRO: usize = 65_536;
/// Receive buffer per slot without GRO: one datagram (larger than any a session builds).
const RECV_SLOT: usize = 16_384;
/// Receive buffer space per driver loop (slots of the sizes above).
const RECV_ARENA: usize = 4 * RECV_SLOT_GRO;
/// Largest datagram a session may build here.
const MAX_DATAGRAM: usize = 9_216;
/// Socket send and receive buffer size requested (bytes).
const SOCKET_BUFFER: usize = 4 << 20;
/// Largest GSO batch (the kernel's limit for one UDP send is 64 KiB).
const MAX_BATCH_BYTES: usize = 63_000;
/// Size of a batch buffer: a full batch plus one datagram being built.
const BATCH_BUF: usize = MAX_BATCH_BYTES + MAX_DATAGRAM;
/// Spare batch buffers kept for reuse.
const POOL: usize = 8;
/// A busy driver (budget spent, more to do) yields to the other tasks every this many
/// loops: every 128 datagrams sent or 256 received, well within the 1 MiB stream
/// buffers the application tasks fill and drain meanwhile. Each yield costs an
/// I/O-driver poll (`epoll_wait`, ~5% of a bulk sender's CPU when yielding every
/// loop); docs/PERFORMANCE.md, runtime design choices, has the measurements.
const YIELD_EVERY: u32 = 4;

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

    /// One `recvmmsg`: datagrams (or GRO batches) into the slots `bufs`, their
    /// metadata into `meta`; returns how many slots were filled (at least one).
    fn try_recv(
        &self,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> std::io::Result<usize> {
        let n = self.socket.try_io(Interest::READABLE, || {
            self.state.recv((&self.socket).into(), bufs, meta)
        })?;
        if n == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
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

/// Datagrams received by one loop, outside the endpoint's lock: slots of `arena`.
struct Received {
    arena: Vec<u8>,
    /// Slot size: one GRO batch, or one datagram without GRO.
    slot: usize,
    /// Per filled slot: the socket index, its metadata.
    got: Vec<(usize, RecvMeta)>,
}

impl Received {
    fn new() -> Self {
        Self {
            arena: vec![0u8; RECV_ARENA],
            slot: RECV_SLOT_GRO,
            got: Vec::new(),
        }
    }

    /// Receives from every socket in turn until `RECV_BUDGET` datagrams, the arena
    /// or the sockets run out; returns whether the budget or the arena ran out
    /// (more may be waiting).
    fn recv(&mut self, ios: &[Io]) -> bool {
        self.got.clear();
        // GRO batches need whole 64 KiB slots; without GRO smaller slots hold more
        // datagrams per system call.
        self.slot = if ios.iter().all(|io| io.state.gro_segments() > 1) {
            RECV_SLOT_GRO
        } else {
            RECV_SLOT
        };
        let slots = self.arena.len() / self.slot;
        let mut received = 0usize;
        for (i, io) in ios.iter().enumerate() {
            while received < RECV_BUDGET && self.got.len() < slots {
                let used = self.got.len();
                let mut bufs: Vec<IoSliceMut<'_>> = self
                    .arena
                    .chunks_mut(self.slot)
                    .skip(used)
                    .take(slots - used)
                    .map(IoSliceMut::new)
                    .collect();
                let mut meta = vec![RecvMeta::default(); bufs.len()];
                match io.try_recv(&mut bufs, &mut meta) {
                    Ok(n) => {
                        for m in meta.into_iter().take(n) {
                            let len = m.len.min(self.slot);
                            let stride = if m.stride == 0 { len } else { m.stride };
                            received += len.div_ceil(stride.max(1)).max(1);
                            self.got.push((i, m));
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
        received >= RECV_BUDGET || self.got.len() >= slots
    }

    /// Hands every received datagram to the sessions (under the lock).
    fn deliver(&mut self, g: &mut Inner, ios: &[Io], now: phantom_handshake::Time) {
        for (k, (i, m)) in self.got.iter().enumerate() {
            let Some(local) = ios.get(*i).map(|io| io.local) else {
                continue;
            };
            let len = m.len.min(self.slot);
            let stride = if m.stride == 0 { len } else { m.stride };
            let start = k * self.slot;
            if let Some(data) = self.arena.get_mut(start..start + len) {
                for d in data.chunks_mut(stride.max(1)) {
                    g.on_datagram(now, RxMeta::udp(local, m.addr), d);
                }
            }
        }
        self.got.clear();
    }
}

/// A datagram or GSO batch built under the lock, sent after it is released.
struct Ready {
    sock: usize,
    dst: SocketAddr,
    buf: Vec<u8>,
    len: usize,
    segment: Option<usize>,
}

/// Outgoing datagrams being coalesced for one GSO send from one socket.
///
/// Sessions build their datagrams straight into the batch's buffer (`slot`), so a
/// datagram is written once by the AEAD and read once by the kernel: no copy. A
/// finished batch moves (with its buffer) to the send queue.
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
            buf: vec![0u8; BATCH_BUF],
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
    /// batch is queued first and the datagram starts the next one.
    fn take_built(&mut self, out: &mut Outbox, sock: usize, dst: SocketAddr, n: usize, gso: usize) {
        if self.fits(sock, dst, n, gso) {
            self.append(sock, dst, n);
            return;
        }
        let start = self.len;
        let next = out.buffer();
        let old = std::mem::replace(&mut self.buf, next);
        if let (Some(to), Some(from)) = (self.buf.get_mut(..n), old.get(start..start + n)) {
            to.copy_from_slice(from);
        }
        self.queue_buf(out, old);
        self.append(sock, dst, n);
    }

    /// Queues the batch (if any) for sending.
    fn finish(&mut self, out: &mut Outbox) {
        if self.count == 0 {
            return;
        }
        let next = out.buffer();
        let old = std::mem::replace(&mut self.buf, next);
        self.queue_buf(out, old);
    }

    /// Queues `buf` holding this batch's datagrams and empties the batch.
    fn queue_buf(&mut self, out: &mut Outbox, buf: Vec<u8>) {
        if let Some(dst) = self.dst {
            out.queue.push_back(Ready {
                sock: self.sock,
                dst,
                buf,
                len: self.len,
                segment: (self.count > 1).then_some(self.segment),
            });
        }
        self.len = 0;
        self.dst = None;
        self.count = 0;
        self.sealed = false;
    }
}

/// Datagrams built under the lock waiting to be sent (the front one, if any, was
/// refused with `WouldBlock` and is retried once its socket is writable), and spare
/// batch buffers.
struct Outbox {
    queue: VecDeque<Ready>,
    pool: Vec<Vec<u8>>,
}

impl Outbox {
    fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            pool: Vec::new(),
        }
    }

    /// A batch buffer, reused if one is spare.
    fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| vec![0u8; BATCH_BUF])
    }

    /// Sends the queue in order, outside the lock. `Some(socket index)`: that socket
    /// is full and the rest of the queue waits for it.
    fn send(&mut self, ios: &[Io]) -> Option<usize> {
        while let Some(r) = self.queue.pop_front() {
            let data = r.buf.get(..r.len).unwrap_or_default();
            let sent = match ios.get(r.sock) {
                Some(io) => io.try_send(r.dst, data, r.segment),
                // The socket went away (rebind): the datagrams are lost, loss recovery repairs.
                None => Ok(()),
            };
            if sent.is_err() {
                let sock = r.sock;
                self.queue.push_front(r);
                return Some(sock);
            }
            if r.buf.len() == BATCH_BUF && self.pool.len() < POOL {
                self.pool.push(r.buf);
            }
        }
        None
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
///
/// Each loop takes the endpoint's lock once, and only for the sessions' work: the
/// receive system calls happen before it (into `Received`), the send system calls
/// after it (from the `Outbox`), so application tasks copying stream data in and out
/// of sessions wait only for session processing and sealing, never for the kernel.
pub(crate) async fn run(shared: Arc<Shared>, socket: UdpSocket) {
    let primary = match Io::new(socket) {
        Ok(io) => io,
        Err(e) => {
            tracing::error!(target: "phantom::runtime", error = %e, "cannot set up the socket");
            let mut g = shared.lock();
            g.closing = true;
            g.close_all(0, b"socket error");
            drop(g);
            let _ = shared.shutdown.send(true);
            return;
        }
    };
    let mut ios: Vec<Io> = vec![primary];
    let mut rx = Received::new();
    let mut batch = Batch::new();
    let mut out = Outbox::new();
    let sleep = tokio::time::sleep(std::time::Duration::from_secs(3600));
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    let mut shutdown_started = false;
    // Sockets to prune that could not be (datagrams were still queued on them).
    let mut prune_later = false;
    let mut wakers: Vec<std::task::Waker> = Vec::new();
    let mut busy = 0u32;
    loop {
        // 1. Outside the lock: what an earlier loop could not send, then receive.
        let mut blocked = out.send(&ios);
        let recv_exhausted = rx.recv(&ios);
        // 2. Under the lock: the sessions' work.
        let (budget_left, deadline, prune, stop) = {
            let mut g = shared.lock();
            if let Some(s) = g.rebind.take() {
                match adopt_socket(s) {
                    Ok(new) => {
                        tracing::info!(target: "phantom::runtime", old = %g.local, new = %new.local, "rebound socket");
                        g.local = new.local;
                        // Datagrams queued on the old socket are lost: loss recovery repairs.
                        out.queue.retain(|r| r.sock != 0);
                        if blocked == Some(0) {
                            blocked = None;
                        }
                        // What the old socket received still counts.
                        let now = g.now();
                        rx.deliver(&mut g, &ios, now);
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
            // Received datagrams.
            rx.deliver(&mut g, &ios, now);
            // Timers.
            g.on_timeouts(now);
            // Transmit (bounded), coalescing datagrams into GSO batches; nothing new
            // while a socket is full.
            let touched: BTreeSet<u64> = g.dirty.clone();
            let mut sent = 0usize;
            let mut budget_left = true;
            if blocked.is_none() {
                while let Some(o) = g.hs_out.pop_front() {
                    sent += 1;
                    let Route::Udp(i) = route(&mut g, &ios, o.src, o.dst, &o.data) else {
                        continue;
                    };
                    let len = o.data.len();
                    out.queue.push_back(Ready {
                        sock: i,
                        dst: o.dst,
                        buf: o.data,
                        len,
                        segment: None,
                    });
                }
                'conns: for h in &touched {
                    loop {
                        if sent >= SEND_BUDGET {
                            budget_left = false;
                            break 'conns;
                        }
                        let Some(c) = g.conns.get_mut(h) else {
                            break;
                        };
                        let Some(t) = c.session.poll_transmit(now.instant, batch.slot()) else {
                            break;
                        };
                        sent += 1;
                        let Route::Udp(i) =
                            route(&mut g, &ios, Some(t.src), t.dst, batch.built(t.len))
                        else {
                            continue;
                        };
                        let gso = ios.get(i).map_or(1, |io| io.gso);
                        batch.take_built(&mut out, i, t.dst, t.len, gso);
                    }
                    g.dirty.remove(h);
                }
                batch.finish(&mut out);
            }
            // Events (and the carrier actions they call for), deadlines, cleanup.
            let actions = g.process_events(&touched);
            tcp::apply(&shared, &mut g, actions);
            g.reap();
            if prune_later {
                prune_later = false;
                g.prune_sockets = true;
            }
            // Close the extra sockets no path uses any more (failed or abandoned
            // paths, closed sessions) once nothing is queued on them; the primary
            // socket stays.
            let prune = if g.prune_sockets && ios.len() > 1 {
                g.prune_sockets = false;
                Some(g.locals_in_use())
            } else {
                g.prune_sockets = false;
                None
            };
            let stop =
                g.closing && g.conns.values().all(|c| c.unregistered) && g.pending.is_empty();
            if stop {
                tracing::debug!(target: "phantom::runtime", local = %g.local, "driver stopped");
                g.tcp.clear();
                for w in g.idle_wakers.drain(..) {
                    w.wake();
                }
            }
            g.take_wakers(&mut wakers);
            // A deadline already past (a timer the session keeps) must not spin.
            let floor = now.instant + std::time::Duration::from_millis(1);
            (
                budget_left,
                g.next_deadline().map(|d| d.max(floor)),
                prune,
                stop,
            )
        };
        // 3. Outside the lock: wake the tasks waiting on sessions (they may take the
        // lock at once), then send what was built.
        for w in wakers.drain(..) {
            w.wake();
        }
        // 3. Outside the lock: send what was built.
        if blocked.is_none() {
            blocked = out.send(&ios);
        }
        if let Some(in_use) = prune {
            if out.queue.is_empty() {
                let mut first = true;
                ios.retain(|io| {
                    let keep = first || in_use.contains(&io.local);
                    first = false;
                    if !keep {
                        tracing::debug!(target: "phantom::runtime", local = %io.local, "path socket closed");
                    }
                    keep
                });
            } else {
                prune_later = true;
            }
        }
        if stop {
            let _ = shared.shutdown.send(true);
            return;
        }
        if recv_exhausted || (blocked.is_none() && !budget_left) {
            // More work is waiting: go on, letting other tasks run every few loops.
            busy = busy.wrapping_add(1);
            if busy.is_multiple_of(YIELD_EVERY) {
                tokio::task::yield_now().await;
            }
            continue;
        }
        if deadline != armed {
            armed = deadline;
            if let Some(d) = deadline {
                sleep.as_mut().reset(tokio::time::Instant::from_std(d));
            }
        }
        let blocked = blocked.and_then(|i| ios.get(i));
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
