//! The TCP carrier: sessions' datagrams over TCP when UDP is blocked or failing.
//!
//! Framing: each datagram is sent as a 2-byte big-endian length followed by that
//! many bytes (1..=65535; a zero length is a framing error that closes the
//! connection). One TCP connection carries the datagrams of any number of sessions,
//! routed by session id exactly like UDP datagrams; handshake datagrams travel the
//! same way. To a session a TCP connection is just another path, identified by the
//! connection's `(local, remote)` socket addresses and delivered with
//! `RxMeta { carrier: Carrier::Tcp, .. }`; the driver hands a transmit whose
//! `(src, dst)` is a live connection to that connection's writer task through a
//! bounded queue (a full queue drops the datagram: the session's loss recovery
//! repairs it, as it would for UDP).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use phantom_session::RxMeta;
use phantom_session::fallback::Carrier;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::state::{Delivery, Shared, TcpLink};

/// Largest datagram one frame carries (the 2-byte length's range).
pub(crate) const MAX_FRAME: usize = 65_535;
/// Datagrams queued per TCP connection before new ones are dropped.
const QUEUE: usize = 1024;
/// Bytes coalesced into one TCP write.
const WRITE_CHUNK: usize = 256 * 1024;
/// How long the client waits for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Appends one frame (length prefix + datagram) to `out`. False if `d` does not fit
/// a frame (it is not appended).
pub(crate) fn encode_frame(d: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(len) = u16::try_from(d.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(d);
    true
}

/// Why a TCP connection's reader stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadEnd {
    /// The peer closed (or the connection failed).
    Closed,
    /// A frame with an invalid length: the connection is closed.
    BadLength,
    /// An accepted connection delivered no complete frame within its idle timeout.
    Idle,
}

/// The next complete frame at the start of `buf`: `Some(total frame length)` (the
/// datagram is `buf[2..total]`), `None` if more bytes are needed. Untrusted input: a
/// zero length is a framing error; nothing here panics.
pub(crate) fn next_frame(buf: &[u8]) -> Result<Option<usize>, ReadEnd> {
    let (Some(&hi), Some(&lo)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if len == 0 {
        return Err(ReadEnd::BadLength);
    }
    Ok((buf.len() >= 2 + len).then_some(2 + len))
}

/// Largest receive buffer of a TCP reader: room for at least one whole frame, so the
/// incomplete tail kept after each batch never fills it.
const READ_BUF: usize = 256 * 1024;
const _: () = assert!(READ_BUF >= MAX_FRAME + 2);
/// A TCP reader's first receive buffer; it doubles (up to [`READ_BUF`]) whenever a
/// read fills it, so an idle or slow connection holds 16 KiB, a busy one 256 KiB.
const READ_BUF_START: usize = 16 * 1024;
/// Handshake datagrams (parsed and taken by a handshake, not yet authenticated) that
/// count as use of an accepted connection: enough for a handshake with retries, too
/// few for a client to hold a connection with ClientHellos alone.
const HANDSHAKE_USES: u32 = 16;

/// A TCP reader's buffer: `filled` bytes at the start of `buf`.
#[derive(Debug)]
struct FrameBuf {
    buf: Vec<u8>,
    filled: usize,
}

impl FrameBuf {
    fn new() -> Self {
        Self {
            buf: vec![0u8; READ_BUF_START],
            filled: 0,
        }
    }

    /// The free space to read into; grows the buffer first if it is full (a frame
    /// longer than the buffer, or a peer sending faster than one buffer per read).
    fn space(&mut self) -> &mut [u8] {
        if self.filled >= self.buf.len() && self.buf.len() < READ_BUF {
            let grown = (self.buf.len() * 2).min(READ_BUF);
            self.buf.resize(grown, 0);
        }
        self.buf.get_mut(self.filled..).unwrap_or_default()
    }

    /// Drops the first `used` bytes (whole frames delivered), keeping the tail.
    fn consume(&mut self, used: usize) {
        let used = used.min(self.filled);
        self.buf.copy_within(used..self.filled, 0);
        self.filled -= used;
    }
}

/// Limits on the TCP connections a server accepts (from untrusted clients).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AcceptLimits {
    /// Most accepted connections open at once; beyond it new ones are closed at once.
    pub(crate) max_connections: usize,
    /// Most accepted connections open at once from one IP address.
    pub(crate) max_per_ip: usize,
    /// An accepted connection that delivers nothing that authenticates for this long
    /// is closed (a silent, slowloris or garbage-sending client holds nothing for good).
    pub(crate) idle_timeout: Duration,
}

/// The accepted connections open: in all, and per IP address.
#[derive(Debug, Default)]
struct Open {
    total: AtomicUsize,
    per_ip: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

impl Open {
    /// Takes a slot for a connection from `ip` if both limits allow it.
    fn take(self: &Arc<Self>, ip: IpAddr, limits: &AcceptLimits) -> Option<Slot> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut per_ip = self.per_ip.lock();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= limits.max_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        *n += 1;
        Some(Slot {
            open: Arc::clone(self),
            ip,
        })
    }
}

/// Counts one open accepted connection; dropping it (the reader ends) frees the slot.
#[derive(Debug)]
pub(crate) struct Slot {
    open: Arc<Open>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut per_ip = self.open.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.open.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Registers `stream` as a datagram carrier and spawns its reader and writer tasks.
/// An accepted connection comes with its `slot` and the idle timeout it gets.
pub(crate) fn adopt(
    shared: &Arc<Shared>,
    stream: TcpStream,
    accepted: Option<(Slot, Duration)>,
) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr()?;
    let remote = stream.peer_addr()?;
    let (r, w) = stream.into_split();
    let (tx, rx) = mpsc::channel(QUEUE);
    let rt = {
        let mut g = shared.lock();
        g.add_tcp_link(local, remote, TcpLink { tx });
        g.runtime().clone()
    };
    tracing::debug!(target: "phantom::runtime", %local, %remote, "TCP carrier connected");
    let writer = rt.spawn(writer(w, rx)).abort_handle();
    rt.spawn(reader(
        Arc::clone(shared),
        r,
        local,
        remote,
        accepted,
        writer,
    ));
    Ok((local, remote))
}

async fn writer(mut w: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(WRITE_CHUNK + MAX_FRAME + 2);
    while let Some(d) = rx.recv().await {
        buf.clear();
        encode_frame(&d, &mut buf);
        while buf.len() < WRITE_CHUNK {
            match rx.try_recv() {
                Ok(d) => {
                    encode_frame(&d, &mut buf);
                }
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// What one batch of frames did: bytes consumed, datagrams that authenticated in a
/// session, datagrams a handshake took.
#[derive(Debug, Default)]
struct Batch {
    used: usize,
    authenticated: usize,
    handshake: usize,
}

/// Hands every complete frame at the start of `buf` to the sessions (one lock for
/// the whole batch).
fn deliver(shared: &Shared, meta: RxMeta, buf: &mut [u8]) -> Result<Batch, ReadEnd> {
    let mut off = 0;
    let mut batch = Batch::default();
    let mut guard = None;
    let result = loop {
        let Some(rest) = buf.get(off..) else {
            break Ok(());
        };
        match next_frame(rest) {
            Ok(Some(total)) => {
                let g = guard.get_or_insert_with(|| shared.lock());
                let now = g.now();
                if let Some(dg) = buf.get_mut(off + 2..off + total) {
                    match g.on_datagram(now, meta, dg) {
                        Delivery::Authenticated => batch.authenticated += 1,
                        Delivery::Handshake => batch.handshake += 1,
                        Delivery::Refused => {}
                    }
                }
                off += total;
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Some(g) = guard.take() {
        shared.unlock_and_wake(g);
    }
    batch.used = off;
    result.map(|()| batch)
}

async fn reader(
    shared: Arc<Shared>,
    mut r: OwnedReadHalf,
    local: SocketAddr,
    remote: SocketAddr,
    accepted: Option<(Slot, Duration)>,
    writer: tokio::task::AbortHandle,
) {
    let (_slot, idle) = match accepted {
        Some((slot, idle)) => (Some(slot), Some(idle)),
        None => (None, None),
    };
    let mut idle_timer = idle.map(|d| Box::pin(tokio::time::sleep(d)));
    let mut handshake_uses = HANDSHAKE_USES;
    let mut buf = FrameBuf::new();
    let mut shutdown = shared.shutdown.subscribe();
    let meta = RxMeta {
        local,
        remote,
        carrier: Carrier::Tcp,
    };
    let end = loop {
        if *shutdown.borrow() {
            break ReadEnd::Closed;
        }
        let space = buf.space();
        if space.is_empty() {
            // Cannot happen (the buffer holds a whole frame): end rather than spin.
            break ReadEnd::BadLength;
        }
        let idle_expired = async {
            match idle_timer.as_mut() {
                Some(t) => t.as_mut().await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            r = r.read(space) => r.unwrap_or(0),
            _ = shutdown.changed() => 0,
            () = idle_expired => break ReadEnd::Idle,
        };
        if n == 0 {
            break ReadEnd::Closed;
        }
        buf.filled += n;
        let batch = match buf
            .buf
            .get_mut(..buf.filled)
            .map(|b| deliver(&shared, meta, b))
        {
            Some(Ok(batch)) => batch,
            Some(Err(e)) => break e,
            None => break ReadEnd::Closed,
        };
        let handshake = u32::try_from(batch.handshake).unwrap_or(u32::MAX);
        let in_use = batch.authenticated > 0 || (handshake > 0 && handshake_uses > 0);
        handshake_uses = handshake_uses.saturating_sub(handshake);
        if in_use && let (Some(t), Some(d)) = (idle_timer.as_mut(), idle) {
            // Something authenticated (or a handshake advanced): the connection is in
            // use. Frames that authenticate nowhere do not count (I1).
            t.as_mut().reset(tokio::time::Instant::now() + d);
        }
        // Keep the incomplete tail (less than one frame) at the start.
        buf.consume(batch.used);
    };
    match end {
        ReadEnd::BadLength => {
            tracing::debug!(target: "phantom::runtime", %local, %remote, "bad TCP frame length: connection closed");
        }
        ReadEnd::Idle => {
            tracing::debug!(target: "phantom::runtime", %local, %remote, "no complete TCP frame within the idle timeout: connection closed");
        }
        ReadEnd::Closed => {
            tracing::debug!(target: "phantom::runtime", %local, %remote, "TCP carrier closed");
        }
    }
    let mut g = shared.lock();
    g.remove_tcp_link(local, remote);
    shared.unlock_and_wake(g);
    // The writer may be blocked for good on a peer that does not read: it goes with
    // the reader, and the socket is closed (else it outlived the connection's slot).
    writer.abort();
}

/// Accepts TCP connections until the endpoint shuts down, at most
/// `limits.max_connections` open at once.
pub(crate) async fn listen(shared: Arc<Shared>, listener: TcpListener, limits: AcceptLimits) {
    let open = Arc::new(Open::default());
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, peer)) => {
                    let Some(slot) = open.take(peer.ip(), &limits) else {
                        // Dropping the stream closes it: nothing is held for it.
                        tracing::debug!(target: "phantom::runtime", %peer, "too many TCP connections (in all or from this address): refused");
                        drop(s);
                        continue;
                    };
                    if let Err(e) = adopt(&shared, s, Some((slot, limits.idle_timeout))) {
                        tracing::debug!(target: "phantom::runtime", %peer, error = %e, "TCP accept failed");
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "phantom::runtime", error = %e, "TCP accept error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Opens a TCP connection to `addr` and registers it as a carrier.
pub(crate) async fn connect(
    shared: &Arc<Shared>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    adopt(shared, s, None)
}

/// The `tcp_framing` fuzz target's body (see [`crate::fuzzing::tcp_framing`]).
#[cfg(any(test, fuzzing))]
pub(crate) fn fuzz_framing(data: &[u8]) -> usize {
    /// Stop building a round-trip stream past this many bytes.
    const MAX_STREAM: usize = 1 << 20;
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    // Mode bit 0: raw bytes (any stream a peer could send), or datagrams described
    // by (length, fill byte) triples, encoded with `encode_frame`.
    let mut expected = None;
    let stream = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut wire = Vec::new();
        let mut datagrams = Vec::new();
        for t in rest.chunks_exact(3) {
            let [hi, lo, fill] = *t else {
                continue;
            };
            let d = vec![fill; usize::from(u16::from_be_bytes([hi, lo]))];
            let before = wire.len();
            let framed = encode_frame(&d, &mut wire);
            assert_eq!(framed, !d.is_empty(), "encode_frame refused a valid length");
            assert_eq!(wire.len() - before, if framed { d.len() + 2 } else { 0 });
            if framed {
                datagrams.push(d);
            }
            if wire.len() > MAX_STREAM {
                break;
            }
        }
        expected = Some(datagrams);
        wire
    };
    // The model: frames parsed one after another from the whole stream.
    let mut model = Vec::new();
    let mut model_end = Ok(());
    let mut off = 0;
    while let Some(rest) = stream.get(off..) {
        let [hi, lo, ..] = *rest else { break };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if len == 0 {
            model_end = Err(ReadEnd::BadLength);
            break;
        }
        let Some(d) = rest.get(2..2 + len) else { break };
        model.push(d.to_vec());
        off += 2 + len;
    }
    if let Some(expected) = &expected {
        assert_eq!(&model, expected, "round trip");
    }
    // The reader: reads of input-chosen sizes into a `FrameBuf`, frames taken as
    // `deliver` takes them, the tail kept with `consume`.
    let mut buf = FrameBuf::new();
    let mut frames = Vec::new();
    let mut end = Ok(());
    let mut sent = 0;
    let mut step = u32::from(mode) | 1;
    while sent < stream.len() {
        let space = buf.space();
        assert!(!space.is_empty(), "reader buffer full");
        step = step.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let want = 1 + (step >> 8) as usize % 70_000;
        let n = want.min(space.len()).min(stream.len() - sent);
        let (Some(dst), Some(src)) = (space.get_mut(..n), stream.get(sent..sent + n)) else {
            break;
        };
        dst.copy_from_slice(src);
        sent += n;
        buf.filled += n;
        let mut used = 0;
        loop {
            match buf.buf.get(used..buf.filled).map(next_frame) {
                Some(Ok(Some(total))) => {
                    frames.extend(buf.buf.get(used + 2..used + total).map(<[u8]>::to_vec));
                    used += total;
                }
                Some(Err(e)) => {
                    end = Err(e);
                    break;
                }
                Some(Ok(None)) | None => break,
            }
        }
        if end.is_err() {
            break;
        }
        buf.consume(used);
        assert!(buf.buf.len() <= READ_BUF, "reader buffer beyond its bound");
        assert!(buf.filled < 2 + MAX_FRAME, "a whole frame left unread");
    }
    assert_eq!(frames, model, "chunked reads framed differently");
    assert_eq!(end, model_end, "chunked reads ended differently");
    frames.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i1_frames_round_trip_and_a_zero_length_is_refused() {
        let mut wire = Vec::new();
        assert!(encode_frame(b"hello", &mut wire));
        assert!(encode_frame(&[7u8; MAX_FRAME], &mut wire));
        assert!(!encode_frame(&[], &mut wire));
        assert!(!encode_frame(&vec![0u8; MAX_FRAME + 1], &mut wire));
        wire.extend_from_slice(&[0, 0, 1, 2, 3]);
        assert_eq!(next_frame(&wire), Ok(Some(7)));
        assert_eq!(&wire[2..7], b"hello");
        let rest = &wire[7..];
        assert_eq!(next_frame(rest), Ok(Some(MAX_FRAME + 2)));
        assert_eq!(next_frame(&rest[MAX_FRAME + 2..]), Err(ReadEnd::BadLength));
        // Incomplete frames wait for more bytes; nothing panics on any prefix.
        assert_eq!(next_frame(&[]), Ok(None));
        assert_eq!(next_frame(&[0]), Ok(None));
        assert_eq!(next_frame(&[0, 9, 1, 2]), Ok(None));
        assert_eq!(next_frame(&wire[..MAX_FRAME]), Ok(Some(7)));
        assert_eq!(next_frame(&rest[..MAX_FRAME + 1]), Ok(None));
    }

    #[test]
    fn i1_framing_fuzz_body_matches_a_whole_stream_parse() {
        // Round trip: a maximal frame, an empty datagram (not framed), three bytes.
        let mut input = vec![1u8, 0xff, 0xff, 0xab, 0, 0, 1, 0, 3, 9];
        assert_eq!(fuzz_framing(&input), 2);
        for mode in [3u8, 5, 255] {
            input[0] = mode;
            assert_eq!(fuzz_framing(&input), 2, "mode {mode}");
        }
        // Raw: two frames, then a zero length that ends the connection.
        assert_eq!(fuzz_framing(&[0, 0, 1, 7, 0, 2, 8, 9, 0, 0, 5]), 2);
        // Raw, truncated: nothing complete.
        assert_eq!(fuzz_framing(&[2, 0, 9, 1, 2]), 0);
        assert_eq!(fuzz_framing(&[]), 0);
    }

    /// The reader's buffer starts small (an idle connection holds 16 KiB, not 256),
    /// grows when a read fills it — so a frame longer than the buffer still completes
    /// — and never beyond `READ_BUF`; consuming keeps the incomplete tail in order.
    #[test]
    fn i1_read_buffer_starts_small_and_grows_to_hold_a_whole_frame() {
        let mut b = FrameBuf::new();
        assert_eq!(b.space().len(), READ_BUF_START);
        // A maximal frame arrives in reads that fill whatever space there is.
        let mut wire = Vec::new();
        assert!(encode_frame(&[5u8; MAX_FRAME], &mut wire));
        assert!(encode_frame(b"tail", &mut wire));
        let mut sent = 0;
        let mut frames = Vec::new();
        for _ in 0..64 {
            if sent == wire.len() {
                break;
            }
            let space = b.space();
            let n = space.len().min(wire.len() - sent);
            space[..n].copy_from_slice(&wire[sent..sent + n]);
            sent += n;
            b.filled += n;
            let mut off = 0;
            while let Ok(Some(total)) = next_frame(&b.buf[off..b.filled]) {
                frames.push(b.buf[off + 2..off + total].to_vec());
                off += total;
            }
            b.consume(off);
            assert!(b.buf.len() <= READ_BUF);
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], vec![5u8; MAX_FRAME]);
        assert_eq!(frames[1], b"tail");
        assert_eq!(b.filled, 0);
        assert!(b.buf.len() >= MAX_FRAME + 2 && b.buf.len() <= READ_BUF);
        // Full at the largest size: no more growth.
        b.buf.resize(READ_BUF, 0);
        b.filled = READ_BUF;
        assert!(b.space().is_empty());
        assert_eq!(b.buf.len(), READ_BUF);
    }
}
