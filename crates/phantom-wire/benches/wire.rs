//! Wire benches: `header_decode` (parse the 52-byte header of a datagram) and
//! `frame_decode` (parse a typical ACK + STREAM payload), each next to a baseline
//! measured in the same run (copying the same bytes into a buffer, the least work
//! a non-zero-copy decoder would do), so results are reported as ratios.

#![allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench setup on fixed, known-good inputs"
)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phantom_wire::frame::{Ack, Stream, encode_frames, frames_encoded_len};
use phantom_wire::{
    Epoch, Flags, Frame, HEADER_LEN, Header, PathId, SessionId, StreamId, Writer, parse_frames,
};

/// The baseline: copy `bytes` into `out` and return one byte so nothing is elided.
fn copy_into(bytes: &[u8], out: &mut [u8]) -> u8 {
    let out = &mut out[..bytes.len()];
    out.copy_from_slice(bytes);
    out[bytes.len() / 2]
}

fn datagram() -> Vec<u8> {
    let header = Header {
        flags: Flags::ACK_ELICITING,
        path_id: PathId(1),
        epoch: Epoch(3),
        session_id: SessionId([0x42; 32]),
        stream_id: StreamId(7),
        sequence: 123_456,
    };
    let mut d = header.to_bytes().expect("header").to_vec();
    d.extend_from_slice(&[0u8; 1200]);
    d
}

/// An ACK with four ranges followed by a 1100-byte STREAM frame.
fn payload() -> Vec<u8> {
    let ranges = [9_990..=10_000, 9_900..=9_980, 9_000..=9_890, 1..=8_000];
    let data = vec![0xab; 1100];
    let frames = [
        Frame::Ack(Ack::new(StreamId(7), 250, &ranges).expect("ranges")),
        Frame::Stream(Stream {
            stream_id: StreamId(7),
            offset: 1 << 20,
            fin: false,
            data: &data,
        }),
    ];
    let mut buf = vec![0u8; frames_encoded_len(&frames)];
    encode_frames(&frames, &mut Writer::new(&mut buf)).expect("encode");
    buf
}

fn benches(c: &mut Criterion) {
    let d = datagram();
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    let mut scratch = vec![0u8; 2048];
    g.bench_function("baseline_copy_52", |b| {
        b.iter(|| copy_into(black_box(&d[..HEADER_LEN]), black_box(&mut scratch)));
    });
    g.bench_function("header_decode", |b| {
        b.iter(|| Header::parse(black_box(&d)).map(|(h, _, rest)| (h.sequence, rest.len())));
    });
    g.finish();

    let p = payload();
    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Bytes(p.len() as u64));
    g.bench_function("baseline_copy_payload", |b| {
        b.iter(|| copy_into(black_box(&p), black_box(&mut scratch)));
    });
    g.bench_function("frame_decode", |b| {
        b.iter(|| {
            let mut acked = 0u64;
            let mut bytes = 0usize;
            for f in parse_frames(black_box(&p)) {
                match f {
                    Ok(Frame::Ack(a)) => {
                        acked += a.ranges().map(|r| r.end() - r.start() + 1).sum::<u64>()
                    }
                    Ok(Frame::Stream(s)) => bytes += s.data.len(),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((acked, bytes))
        });
    });
    g.finish();
}

criterion_group!(wire, benches);
criterion_main!(wire);
