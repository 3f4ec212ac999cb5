//! Wire benches: `header_decode` (parse the unprotected short header of a datagram) and
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
    ConnId, Epoch, Flags, Frame, Header, SeqLen, StreamId, WireHeader, Writer, parse_frames,
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
        epoch: Epoch(3),
        conn_id: ConnId::from_slice(&[0x42; 8]).expect("id"),
        stream_id: StreamId(7),
        sequence: 123_456,
        seq_len: SeqLen::TWO,
    };
    let mut d = vec![0u8; header.len() + 1200];
    header.write_image(&mut d).expect("header");
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
    g.bench_function("baseline_copy_header", |b| {
        b.iter(|| copy_into(black_box(&d[..13]), black_box(&mut scratch)));
    });
    g.bench_function("header_decode", |b| {
        b.iter(|| WireHeader::parse(black_box(&d), 8).map(|h| (h.truncated, h.len)));
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
