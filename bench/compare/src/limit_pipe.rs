//! The limit pipe: what any transport on this host can at most reach over loopback with
//! Phantom's AEAD, measured with no protocol at all.
//!
//! A sender thread copies payload into 1452-byte datagrams, seals each with AES-256-GCM
//! (the same crate as phantom-crypto: RustCrypto `aes-gcm` 0.11, or aws-lc-rs with the
//! `aws-lc` feature) under a per-datagram nonce (IV XOR sequence) with its 16-byte header as
//! associated data, and sends them in GSO batches of at most 63,000 bytes (the runtime's
//! batch limit) through `quinn-udp` (the runtime's socket layer). A receiver thread reads
//! GRO batches, splits them, opens every datagram in place and counts the payload. Nothing
//! else: no acknowledgements, no congestion control, no streams, no retransmission. The
//! only coupling is an in-process credit (an atomic counter, no datagram on the wire): the
//! sender keeps at most [`window`] datagrams beyond those opened (at most [`WINDOW`], and
//! no more than half the receive buffer holds), so the receive buffer does not overflow.
//! Each thread's CPU comes from its own `CLOCK_THREAD_CPUTIME_ID`.

use std::io::{ErrorKind, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::measure::thread_cpu;
use crate::sockets::{Buffers, bind_udp, socket_drops};

/// Datagram size on the wire (UDP payload), as Phantom and quinn are set to.
pub const DATAGRAM: usize = 1452;
/// Header (associated data): 8-byte sequence number and 8 bytes of padding.
pub const HEADER: usize = 16;
/// AEAD tag.
pub const TAG: usize = 16;
/// Payload bytes per datagram.
pub const PAYLOAD: usize = DATAGRAM - HEADER - TAG;
/// Largest GSO batch, as the runtime's (`MAX_BATCH_BYTES`).
const MAX_BATCH_BYTES: usize = 63_000;
/// Most datagrams the sender may have sent beyond those the receiver opened.
pub const WINDOW: u64 = 2048;
/// A pipe that moves nothing for this long has failed.
const STALL: Duration = Duration::from_secs(10);
/// After the last send, the receiver waits this long for stragglers.
const LINGER: Duration = Duration::from_secs(1);

/// The credit for a receive buffer of `rcvbuf` bytes (`SO_RCVBUF` as read back): half of
/// it counted in datagrams (the kernel charges more than the payload per datagram), at
/// least 64, at most [`WINDOW`].
#[must_use]
pub fn window(rcvbuf: usize) -> u64 {
    (rcvbuf as u64 / 2 / DATAGRAM as u64).clamp(64, WINDOW)
}

/// One limit-pipe round.
#[derive(Debug, Clone, Copy)]
pub struct LimitSample {
    /// Payload bytes opened by the receiver.
    pub bytes: u64,
    /// Datagrams opened.
    pub datagrams: u64,
    /// From the first send to the last datagram opened.
    pub wall: Duration,
    /// Sender thread CPU.
    pub sender_cpu: Duration,
    /// Receiver thread CPU.
    pub receiver_cpu: Duration,
    /// Kernel drops on the two sockets.
    pub socket_drops: u64,
    /// Datagrams sent that never arrived.
    pub lost: u64,
    /// The sender's credit in datagrams ([`window`]).
    pub window: u64,
    /// Segments per GSO send.
    pub gso_segments: usize,
}

impl LimitSample {
    /// Payload bytes per second of wall time.
    #[must_use]
    pub fn goodput(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// AES-256-GCM keyed once, with the IV nonces are made from.
struct Cipher {
    #[cfg(not(feature = "aws-lc"))]
    key: aes_gcm::Aes256Gcm,
    #[cfg(feature = "aws-lc")]
    key: aws_lc_rs::aead::LessSafeKey,
    iv: [u8; 12],
}

impl Cipher {
    fn new(key: &[u8; 32], iv: [u8; 12]) -> Result<Self, String> {
        #[cfg(not(feature = "aws-lc"))]
        let key = {
            use aes_gcm::aead::KeyInit;
            aes_gcm::Aes256Gcm::new(key.into())
        };
        #[cfg(feature = "aws-lc")]
        let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
            .map(aws_lc_rs::aead::LessSafeKey::new)
            .map_err(|_| "aws-lc key".to_string())?;
        Ok(Self { key, iv })
    }

    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n.iter_mut().skip(4).zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// Seals `dgram` (header ‖ plaintext ‖ room for the tag) in place.
    fn seal(&self, seq: u64, dgram: &mut [u8]) -> Result<(), String> {
        let nonce = self.nonce(seq);
        let (aad, rest) = dgram.split_at_mut(HEADER);
        let (body, tag_out) = rest.split_at_mut(rest.len() - TAG);
        #[cfg(not(feature = "aws-lc"))]
        let tag = {
            use aes_gcm::aead::AeadInOut;
            self.key
                .encrypt_inout_detached((&nonce).into(), aad, body.into())
                .map_err(|_| "seal".to_string())?
        };
        #[cfg(feature = "aws-lc")]
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(&*aad),
                body,
            )
            .map_err(|_| "seal".to_string())?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `dgram` in place; returns the payload length.
    fn open(&self, dgram: &mut [u8]) -> Result<usize, String> {
        let seq = dgram
            .get(..8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_be_bytes)
            .ok_or("short datagram")?;
        if dgram.len() < HEADER + TAG {
            return Err("short datagram".into());
        }
        let nonce = self.nonce(seq);
        let (aad, rest) = dgram.split_at_mut(HEADER);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG);
        #[cfg(not(feature = "aws-lc"))]
        {
            use aes_gcm::aead::AeadInOut;
            let tag: &[u8; TAG] = (&*tag).try_into().map_err(|_| "tag")?;
            self.key
                .decrypt_inout_detached((&nonce).into(), aad, body.into(), tag.into())
                .map_err(|_| "open failed".to_string())?;
        }
        #[cfg(feature = "aws-lc")]
        self.key
            .open_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(&*aad),
                &*tag,
                body,
            )
            .map_err(|_| "open failed".to_string())?;
        Ok(body.len())
    }
}

/// Which AEAD backend the pipe seals with.
#[must_use]
pub fn backend() -> &'static str {
    if cfg!(feature = "aws-lc") {
        "aws-lc-rs AES-256-GCM"
    } else {
        "RustCrypto aes-gcm 0.11 AES-256-GCM"
    }
}

fn wait(socket: &UdpSocket, flags: PollFlags) {
    let mut fds = [PollFd::new(socket, flags)];
    let timeout = Timespec {
        tv_sec: 0,
        tv_nsec: 50_000_000,
    };
    let _ = poll(&mut fds, Some(&timeout));
}

struct Shared {
    opened: AtomicU64,
    failed: AtomicBool,
    done: AtomicBool,
}

/// One round: `bytes` of payload (rounded up to whole datagrams) through the pipe.
///
/// # Errors
/// Socket errors, a datagram that fails to open, or a stall.
pub fn run(bytes: u64, buffers: Buffers) -> Result<LimitSample, String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let rx = bind_udp(any, buffers)?;
    let tx = bind_udp(any, buffers)?;
    let rx_addr = rx.local_addr().map_err(|e| e.to_string())?;
    let tx_addr = tx.local_addr().map_err(|e| e.to_string())?;
    let rx_state = UdpSocketState::new((&rx).into()).map_err(|e| format!("rx state: {e}"))?;
    let tx_state = UdpSocketState::new((&tx).into()).map_err(|e| format!("tx state: {e}"))?;
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    rand::fill(&mut key);
    rand::fill(&mut iv);
    let total = bytes.div_ceil(PAYLOAD as u64).max(1);
    let shared = Arc::new(Shared {
        opened: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        done: AtomicBool::new(false),
    });
    let gso = tx_state
        .max_gso_segments()
        .clamp(1, MAX_BATCH_BYTES / DATAGRAM);
    let credit = window(
        rustix::net::sockopt::socket_recv_buffer_size(&rx)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?,
    );
    let start = Instant::now();
    let receiver = {
        let shared = Arc::clone(&shared);
        let cipher = Cipher::new(&key, iv)?;
        std::thread::Builder::new()
            .name("limit-rx".into())
            .spawn(move || receive(&rx, &rx_state, &cipher, total, &shared))
            .map_err(|e| format!("thread: {e}"))?
    };
    let cipher = Cipher::new(&key, iv)?;
    let sent = send(
        &tx,
        &tx_state,
        &cipher,
        rx_addr,
        total,
        (gso, credit),
        &shared,
    );
    shared.done.store(true, Ordering::Release);
    let (opened, last, receiver_cpu) = receiver
        .join()
        .map_err(|_| "receiver panicked".to_string())??;
    let sender_cpu = sent?;
    let socket_drops = socket_drops(&[rx_addr, tx_addr]).unwrap_or(0);
    Ok(LimitSample {
        bytes: opened * PAYLOAD as u64,
        datagrams: opened,
        wall: last.saturating_duration_since(start),
        sender_cpu,
        receiver_cpu,
        socket_drops,
        lost: total - opened.min(total),
        window: credit,
        gso_segments: gso,
    })
}

fn send(
    socket: &UdpSocket,
    state: &UdpSocketState,
    cipher: &Cipher,
    to: SocketAddr,
    total: u64,
    (gso, credit): (usize, u64),
    shared: &Shared,
) -> Result<Duration, String> {
    let c0 = thread_cpu()?;
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i as u8).wrapping_mul(31)).collect();
    let mut batch = vec![0u8; gso * DATAGRAM];
    let mut seq = 0u64;
    let mut idle = Instant::now();
    while seq < total {
        if shared.failed.load(Ordering::Relaxed) {
            return Err("receiver failed".into());
        }
        let opened = shared.opened.load(Ordering::Acquire);
        let room = (opened + credit).saturating_sub(seq).min(total - seq);
        let n = usize::try_from(room).unwrap_or(gso).min(gso);
        if n == 0 {
            if idle.elapsed() > STALL {
                return Err("limit pipe stalled".into());
            }
            // The receiver opens a window's worth in a few milliseconds.
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        idle = Instant::now();
        let used = n * DATAGRAM;
        let out = batch.get_mut(..used).ok_or("batch")?;
        for dgram in out.chunks_exact_mut(DATAGRAM) {
            let (hdr, rest) = dgram.split_at_mut(HEADER);
            hdr.fill(0);
            hdr.get_mut(..8)
                .ok_or("header")?
                .copy_from_slice(&seq.to_be_bytes());
            rest.get_mut(..PAYLOAD)
                .ok_or("payload")?
                .copy_from_slice(&payload);
            cipher.seal(seq, dgram)?;
            seq += 1;
        }
        let t = Transmit {
            destination: to,
            ecn: None,
            contents: out,
            segment_size: (n > 1).then_some(DATAGRAM),
            src_ip: None,
        };
        loop {
            match state.try_send(socket.into(), &t) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => wait(socket, PollFlags::OUT),
                Err(e) => return Err(format!("send: {e}")),
            }
        }
    }
    Ok(thread_cpu()?.saturating_sub(c0))
}

fn receive(
    socket: &UdpSocket,
    state: &UdpSocketState,
    cipher: &Cipher,
    total: u64,
    shared: &Shared,
) -> Result<(u64, Instant, Duration), String> {
    let c0 = thread_cpu()?;
    let slots = 4;
    let mut arena = vec![0u8; slots * 65_536];
    let mut meta = vec![RecvMeta::default(); slots];
    let mut opened = 0u64;
    let mut last = Instant::now();
    while opened < total {
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> =
                arena.chunks_mut(65_536).map(IoSliceMut::new).collect();
            match state.recv(socket.into(), &mut bufs, &mut meta) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Lost datagrams (a full buffer) are counted, not waited for.
                    if shared.done.load(Ordering::Acquire) && last.elapsed() > LINGER {
                        break;
                    }
                    if last.elapsed() > STALL {
                        break;
                    }
                    wait(socket, PollFlags::IN);
                    continue;
                }
                Err(e) => {
                    shared.failed.store(true, Ordering::Relaxed);
                    return Err(format!("recv: {e}"));
                }
            }
        };
        for (m, slot) in meta.iter().zip(arena.chunks_mut(65_536)).take(n) {
            let data = slot.get_mut(..m.len).ok_or("recv length")?;
            for dgram in data.chunks_mut(m.stride.max(1)) {
                if cipher.open(dgram).is_err() {
                    shared.failed.store(true, Ordering::Relaxed);
                    return Err("a datagram failed to open".into());
                }
                opened += 1;
            }
        }
        last = Instant::now();
        shared.opened.store(opened, Ordering::Release);
    }
    Ok((opened, last, thread_cpu()?.saturating_sub(c0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_datagram_arrives_and_opens() {
        let s = run(4 << 20, Buffers::Equal).unwrap();
        assert_eq!(s.datagrams, (4u64 << 20).div_ceil(PAYLOAD as u64));
        assert_eq!(s.bytes, s.datagrams * PAYLOAD as u64);
        assert_eq!((s.socket_drops, s.lost), (0, 0));
        assert!(s.window >= 64);
    }

    #[test]
    fn the_credit_is_half_the_receive_buffer_within_bounds() {
        assert_eq!(window(212_992), 212_992 / 2 / 1452);
        assert_eq!(window(8 << 20), WINDOW);
        assert_eq!(window(0), 64);
    }

    #[test]
    fn a_sealed_datagram_opens_and_a_flipped_bit_does_not() {
        let c = Cipher::new(&[7; 32], [9; 12]).unwrap();
        let mut d = vec![0u8; DATAGRAM];
        d[..8].copy_from_slice(&5u64.to_be_bytes());
        d[HEADER..HEADER + 4].copy_from_slice(b"data");
        c.seal(5, &mut d).unwrap();
        let mut bad = d.clone();
        bad[HEADER] ^= 1;
        assert!(c.open(&mut bad).is_err());
        assert_eq!(c.open(&mut d).unwrap(), PAYLOAD);
        assert_eq!(&d[HEADER..HEADER + 4], b"data");
    }
}
