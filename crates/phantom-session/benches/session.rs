//! A connected session pair over an in-memory, lossless, zero-delay pipe: bulk
//! goodput on one stream, and the CPU cost per 1200-byte packet beside a raw
//! `Sealer::seal_packet` + `Opener::open_packet` of the same size in the same run.
//!
//! Run: `cargo bench -p phantom-session --bench session -- --warm-up-time 1 --measurement-time 5`
//!
//! On a shared, loaded machine criterion's medians drift with the neighbours' load;
//! `SESSION_RATIO=session|raw|setup|idle|idle-setup` runs a fixed amount of work of
//! one side for a CPU-time comparison instead (see [`ratio`]).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    clippy::panic
)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use phantom_crypto::{Opener, Sealer, Suite, TAG_LEN, TrafficSecret};
use phantom_session::{Config, Dir, RxMeta, Session, SessionKeys, Side};
use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, SessionId, StreamId};

const BULK: usize = 4 << 20;
/// Streams left open beside the bulk one in the `idle` modes.
const IDLE_STREAMS: usize = 1000;
const SUITE: Suite = Suite::Aes256Gcm;
/// The header of the raw packets: byte 0, an 8-byte id, meta, stream 4 (1 byte), the full
/// 6-byte sequence.
const HEADER_LEN: usize = 17;

fn addr(last: u8) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), 4433))
}

fn pair(now: Instant) -> (Session, Session) {
    let sid = SessionId([3; 32]);
    let (a, b) = ([1u8; 32], [2u8; 32]);
    let (cid, sid_conn) = (
        ConnId::from_slice(&[4; 8]).unwrap(),
        ConnId::from_slice(&[5; 8]).unwrap(),
    );
    let ck = SessionKeys {
        suite: SUITE,
        session_id: sid,
        local_conn_id: cid,
        peer_conn_id: sid_conn,
        peer_reset_token: [6; 16],
        send: TrafficSecret::from_bytes(a),
        recv: TrafficSecret::from_bytes(b),
    };
    let sk = SessionKeys {
        suite: SUITE,
        session_id: sid,
        local_conn_id: sid_conn,
        peer_conn_id: cid,
        peer_reset_token: [7; 16],
        send: TrafficSecret::from_bytes(b),
        recv: TrafficSecret::from_bytes(a),
    };
    let cfg = Config {
        max_concurrent_streams: 4096,
        stream_receive_window: 8 << 20,
        session_receive_window: 16 << 20,
        stream_send_buffer: 8 << 20,
        ..Config::default()
    };
    let c = Session::from_secrets(
        Side::Client,
        cfg.clone(),
        ck,
        now,
        addr(1),
        addr(2),
        [1; 32],
    )
    .unwrap();
    let s = Session::from_secrets(Side::Server, cfg, sk, now, addr(2), addr(1), [2; 32]).unwrap();
    (c, s)
}

/// Moves `BULK` bytes client -> server over a fresh session pair; returns the
/// packets the client sent.
fn transfer(data: &[u8]) -> u64 {
    Pipe::new().stream(data)
}

/// [`transfer`] with `idle` more streams open on both sides (each carried one byte
/// and stays open), to show what the bulk stream's packets cost beside them.
fn transfer_beside_idle_streams(data: &[u8], idle: usize) -> u64 {
    let mut pipe = Pipe::new();
    pipe.open_idle(idle);
    pipe.stream(data)
}

/// A connected client/server pair joined by a lossless, zero-delay pipe.
struct Pipe {
    c: Session,
    s: Session,
    now: Instant,
    buf: Vec<u8>,
    rbuf: Vec<u8>,
}

impl Pipe {
    fn new() -> Self {
        let now = Instant::now();
        let (c, s) = pair(now);
        Self {
            c,
            s,
            now,
            buf: vec![0u8; 1500],
            rbuf: vec![0u8; 64 * 1024],
        }
    }

    /// Moves every datagram both ways until both ends are quiet; true if any moved.
    fn exchange(&mut self) -> bool {
        let to_s = RxMeta::udp(addr(2), addr(1));
        let to_c = RxMeta::udp(addr(1), addr(2));
        let mut moved = false;
        while let Some(t) = self.c.poll_transmit(self.now, &mut self.buf) {
            self.s
                .handle_datagram(self.now, to_s, &mut self.buf[..t.len]);
            moved = true;
        }
        while let Some(t) = self.s.poll_transmit(self.now, &mut self.buf) {
            self.c
                .handle_datagram(self.now, to_c, &mut self.buf[..t.len]);
            moved = true;
        }
        moved
    }

    /// Opens `idle` client streams that carry one byte each and stay open.
    fn open_idle(&mut self, idle: usize) {
        let mut opened = 0;
        for _ in 0..100_000 {
            if opened >= idle {
                break;
            }
            while opened < idle {
                let Ok(id) = self.c.open_stream(Dir::Uni) else {
                    break;
                };
                self.c.write(id, &[1]).unwrap();
                opened += 1;
            }
            self.now += Duration::from_millis(1);
            self.c.handle_timeout(self.now);
            self.s.handle_timeout(self.now);
            self.exchange();
        }
    }

    /// Sends `data` on a new stream and reads it all at the server; returns the
    /// packets the client sent meanwhile.
    fn stream(&mut self, data: &[u8]) -> u64 {
        self.stream_by(data, None)
    }

    /// [`Pipe::stream`] with the zero-copy calls at both ends: the sender hands
    /// over `Bytes` with `write_chunk`, the reader looks at the receive buffer in
    /// place with `read_with`.
    fn stream_zero_copy(&mut self, data: &bytes::Bytes) -> u64 {
        self.stream_by(data, Some(data.clone()))
    }

    /// [`Pipe::stream`]: copying `write` and `read`, or with `zero_copy` the data as
    /// `Bytes` for `write_chunk` and `read_with` at the reader.
    fn stream_by(&mut self, data: &[u8], mut zero_copy: Option<bytes::Bytes>) -> u64 {
        let packets_before = self.c.stats().packets_sent;
        let id = self.c.open_stream(Dir::Uni).unwrap();
        if data.is_empty() {
            self.c.finish(id).unwrap();
        }
        let reader_zero_copy = zero_copy.is_some();
        let mut written = 0;
        let mut read = 0;
        for _ in 0..10_000_000 {
            if written < data.len() {
                written += match zero_copy.as_mut() {
                    Some(rest) => self.c.write_chunk(id, rest).unwrap_or(0),
                    None => self.c.write(id, &data[written..]).unwrap_or(0),
                };
                if written == data.len() {
                    self.c.finish(id).unwrap();
                }
            }
            let moved = self.exchange();
            loop {
                let r = if reader_zero_copy {
                    self.s.read_with(id, |c| {
                        black_box(c);
                        c.len()
                    })
                } else {
                    self.s.read(id, &mut self.rbuf)
                };
                match r {
                    Ok(Some(0)) | Err(_) => break,
                    Ok(Some(n)) => read += n,
                    Ok(None) => return self.c.stats().packets_sent - packets_before,
                }
            }
            if !moved {
                // Let pacing and delayed-ACK timers fire.
                let next = [self.c.poll_timeout(), self.s.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let now = next.map_or(self.now + Duration::from_millis(1), |t| t.max(self.now));
                self.now = now;
                if self.c.poll_timeout().is_some_and(|t| t <= now) {
                    self.c.handle_timeout(now);
                }
                if self.s.poll_timeout().is_some_and(|t| t <= now) {
                    self.s.handle_timeout(now);
                }
            }
        }
        unreachable!("transfer did not finish: {read} of {} bytes", data.len());
    }
}

fn bench(c: &mut Criterion) {
    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let packets = transfer(&data);
    let mut g = c.benchmark_group("transfer_simulated");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(BULK as u64));
    g.bench_function("bulk_4MiB_goodput", |b| {
        b.iter(|| black_box(transfer(&data)))
    });
    g.finish();

    let mut g = c.benchmark_group("per_packet_1200");
    g.sample_size(10);
    g.throughput(Throughput::Elements(packets));
    g.bench_function("session_pair", |b| b.iter(|| black_box(transfer(&data))));
    g.throughput(Throughput::Elements(1));
    let payload = 1200 - HEADER_LEN - TAG_LEN;
    let mut raw = RawSealOpen::new();
    g.bench_function("raw_seal_open", |b| b.iter(|| black_box(raw.one(payload))));
    g.finish();
}

/// A raw `seal_packet` + `open_packet` of one 1200-byte packet, the baseline.
struct RawSealOpen {
    sealer: Sealer,
    opener: Opener,
    seq: u64,
    pkt: Vec<u8>,
}

impl RawSealOpen {
    fn new() -> Self {
        Self {
            sealer: Sealer::new(SUITE, TrafficSecret::from_bytes([9; 32])).unwrap(),
            opener: Opener::new(SUITE, TrafficSecret::from_bytes([9; 32])).unwrap(),
            seq: 0,
            pkt: vec![0u8; 1200],
        }
    }

    fn one(&mut self, payload: usize) -> usize {
        self.seq += 1;
        let h = Header {
            flags: Flags::ACK_ELICITING,
            epoch: Epoch(0),
            conn_id: ConnId::from_slice(&[3; 8]).unwrap(),
            stream_id: StreamId(4),
            sequence: self.seq,
            seq_len: SeqLen::FULL,
        };
        let n = self.sealer.seal_packet(&h, &mut self.pkt, payload).unwrap();
        self.opener
            .open_packet(&mut self.pkt[..n], 8, |_| None)
            .unwrap()
            .payload()
            .len()
    }
}

/// `SESSION_RATIO=session|session-zero-copy|raw|setup|idle|idle-setup`: a fixed amount of work for an
/// outside CPU-time measurement (`perf stat -e task-clock`, which does not count time
/// spent waiting for a core, unlike criterion's wall clock on a loaded machine). Every
/// mode builds the data and runs one transfer to learn the packet count `n` ("setup");
/// `session` then runs `REPEATS` more transfers, `raw` `REPEATS * n` raw seal+opens.
/// Per packet: `(cpu(mode) - cpu(setup)) / (REPEATS * n)`. `idle` runs the transfers
/// beside 1,000 idle streams, against `idle-setup` (the same pairs and idle streams,
/// no bulk data). `session-zero-copy` is `session` with the reader using `read_with`
/// instead of copying out with `read`, and the sender `write_chunk` with `Bytes`
/// instead of copying in with `write`. The recipe is in docs/PERFORMANCE.md.
fn ratio(mode: &str) {
    const REPEATS: u64 = 40;
    let data: Vec<u8> = (0..BULK).map(|i| (i % 251) as u8).collect();
    let payload = 1200 - HEADER_LEN - TAG_LEN;
    let mut raw = RawSealOpen::new();
    let idle = if mode.starts_with("idle") {
        IDLE_STREAMS
    } else {
        0
    };
    let packets = transfer_beside_idle_streams(&data, idle);
    match mode {
        "session" => {
            for _ in 0..REPEATS {
                black_box(transfer(&data));
            }
        }
        "session-zero-copy" => {
            let shared = bytes::Bytes::from(data.clone());
            for _ in 0..REPEATS {
                black_box(Pipe::new().stream_zero_copy(&shared));
            }
        }
        "idle-setup" => {
            for _ in 0..REPEATS {
                black_box(transfer_beside_idle_streams(&[], IDLE_STREAMS));
            }
        }
        "idle" => {
            for _ in 0..REPEATS {
                black_box(transfer_beside_idle_streams(&data, IDLE_STREAMS));
            }
        }
        "raw" => {
            for _ in 0..REPEATS * packets {
                black_box(raw.one(payload));
            }
        }
        _ => {}
    }
    println!("{} packets", REPEATS * packets);
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(mode) = std::env::var("SESSION_RATIO") {
        ratio(&mode);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
