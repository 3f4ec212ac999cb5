//! The UDP carrier: the driver's sockets through `quinn-udp`.
//!
//! Received GRO batches are split into their datagrams ([`Received`]), and
//! consecutive outgoing datagrams to the same destination are coalesced into one GSO
//! send ([`Batch`]: equal-size segments, the last may be shorter) where the kernel
//! supports it, per socket. Sessions build their datagrams straight into the batch
//! buffer; finished batches wait in the [`Outbox`] and are sent outside the lock.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{ErrorKind, IoSliceMut};
use std::net::SocketAddr;
use std::task::Poll;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use phantom_session::RxMeta;

use crate::state::{Inner, RECV_BUDGET};

/// Receive buffer per `recvmmsg` slot with GRO: one coalesced batch (up to 64 KiB).
pub(crate) const RECV_SLOT_GRO: usize = 65_536;
/// Receive buffer per slot without GRO: one datagram (larger than any a session builds).
pub(crate) const RECV_SLOT: usize = 16_384;
/// Receive buffer space per driver loop (slots of the sizes above).
pub(crate) const RECV_ARENA: usize = 4 * RECV_SLOT_GRO;
/// Largest datagram a session may build here.
pub(crate) const MAX_DATAGRAM: usize = 9_216;
/// Socket send and receive buffer size requested (bytes).
pub(crate) const SOCKET_BUFFER: usize = 4 << 20;
/// Largest GSO batch (the kernel's limit for one UDP send is 64 KiB).
pub(crate) const MAX_BATCH_BYTES: usize = 63_000;
/// Size of a batch buffer: a full batch plus one datagram being built.
pub(crate) const BATCH_BUF: usize = MAX_BATCH_BYTES + MAX_DATAGRAM;
/// Spare batch buffers kept for reuse.
pub(crate) const POOL: usize = 8;

/// The socket with its `quinn-udp` state.
pub(crate) struct Io {
    pub(crate) socket: UdpSocket,
    /// The socket's local address (what sessions know the path by).
    pub(crate) local: SocketAddr,
    pub(crate) state: UdpSocketState,
    /// Segments per GSO send (1: no GSO).
    pub(crate) gso: usize,
}

impl Io {
    pub(crate) fn new(socket: UdpSocket) -> std::io::Result<Self> {
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
    pub(crate) fn try_recv(
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
    pub(crate) fn try_send(
        &self,
        dst: SocketAddr,
        data: &[u8],
        segment: Option<usize>,
    ) -> Result<(), ()> {
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
pub(crate) struct Received {
    pub(crate) arena: Vec<u8>,
    /// Slot size: one GRO batch, or one datagram without GRO.
    pub(crate) slot: usize,
    /// Per filled slot: the socket index, its metadata.
    pub(crate) got: Vec<(usize, RecvMeta)>,
}

impl Received {
    pub(crate) fn new() -> Self {
        Self {
            arena: vec![0u8; RECV_ARENA],
            slot: RECV_SLOT_GRO,
            got: Vec::new(),
        }
    }

    /// Receives from every socket in turn until `RECV_BUDGET` datagrams, the arena
    /// or the sockets run out; returns whether the budget or the arena ran out
    /// (more may be waiting).
    pub(crate) fn recv(&mut self, ios: &[Io]) -> bool {
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
    pub(crate) fn deliver(&mut self, g: &mut Inner, ios: &[Io], now: phantom_handshake::Time) {
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
pub(crate) struct Ready {
    pub(crate) sock: usize,
    pub(crate) dst: SocketAddr,
    pub(crate) buf: Vec<u8>,
    pub(crate) len: usize,
    pub(crate) segment: Option<usize>,
}

/// Outgoing datagrams being coalesced for one GSO send from one socket.
///
/// Sessions build their datagrams straight into the batch's buffer (`slot`), so a
/// datagram is written once by the AEAD and read once by the kernel: no copy. A
/// finished batch moves (with its buffer) to the send queue.
pub(crate) struct Batch {
    /// Fixed size: a full batch plus one datagram being built.
    pub(crate) buf: Vec<u8>,
    /// Bytes of `buf` holding the batch's datagrams.
    pub(crate) len: usize,
    pub(crate) sock: usize,
    pub(crate) dst: Option<SocketAddr>,
    pub(crate) segment: usize,
    pub(crate) count: usize,
    /// The last datagram was shorter than `segment`: nothing may follow it.
    pub(crate) sealed: bool,
}

impl Batch {
    pub(crate) fn new() -> Self {
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
    pub(crate) fn slot(&mut self) -> &mut [u8] {
        let end = (self.len + MAX_DATAGRAM).min(self.buf.len());
        self.buf.get_mut(self.len..end).unwrap_or_default()
    }

    /// The `n`-byte datagram last built in `slot`.
    pub(crate) fn built(&self, n: usize) -> &[u8] {
        self.buf.get(self.len..self.len + n).unwrap_or_default()
    }

    pub(crate) fn fits(&self, sock: usize, dst: SocketAddr, len: usize, gso: usize) -> bool {
        self.count == 0
            || (self.sock == sock
                && self.dst == Some(dst)
                && !self.sealed
                && len <= self.segment
                && self.count < gso
                && self.len + len <= MAX_BATCH_BYTES)
    }

    /// Appends the `n`-byte datagram built in `slot` (it fits).
    pub(crate) fn append(&mut self, sock: usize, dst: SocketAddr, n: usize) {
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
    pub(crate) fn take_built(
        &mut self,
        out: &mut Outbox,
        sock: usize,
        dst: SocketAddr,
        n: usize,
        gso: usize,
    ) {
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
    pub(crate) fn finish(&mut self, out: &mut Outbox) {
        if self.count == 0 {
            return;
        }
        let next = out.buffer();
        let old = std::mem::replace(&mut self.buf, next);
        self.queue_buf(out, old);
    }

    /// Queues `buf` holding this batch's datagrams and empties the batch.
    pub(crate) fn queue_buf(&mut self, out: &mut Outbox, buf: Vec<u8>) {
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
pub(crate) struct Outbox {
    pub(crate) queue: VecDeque<Ready>,
    pub(crate) pool: Vec<Vec<u8>>,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            pool: Vec::new(),
        }
    }

    /// A batch buffer, reused if one is spare.
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| vec![0u8; BATCH_BUF])
    }

    /// Sends the queue in order, outside the lock. `Some(socket index)`: that socket
    /// is full and the rest of the queue waits for it.
    pub(crate) fn send(&mut self, ios: &[Io]) -> Option<usize> {
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

/// Waits until any socket is readable.
pub(crate) async fn readable(ios: &[Io]) {
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

pub(crate) fn adopt_socket(s: std::net::UdpSocket) -> std::io::Result<Io> {
    s.set_nonblocking(true)?;
    Io::new(UdpSocket::from_std(s)?)
}
