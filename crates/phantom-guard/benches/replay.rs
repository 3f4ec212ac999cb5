//! `replay_window`: accept throughput of [`ReplayWindow`] for in-order and
//! reordered sequence numbers, against a naive baseline measured in the same run:
//! a 2048-bit bitmap that shifts every word when the window moves (the classic
//! pre-RFC 6479 design).
//!
//! Run: `cargo bench -p phantom-guard --bench replay`.

#![allow(missing_docs, clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phantom_guard::ReplayWindow;

const N: u64 = 100_000;

/// The baseline: a shift register of 32 words; O(width) per advancing packet.
struct ShiftWindow {
    bits: [u64; 32],
    top: Option<u64>,
}

impl ShiftWindow {
    const WIDTH: u64 = 2048;

    fn new() -> Self {
        Self {
            bits: [0; 32],
            top: None,
        }
    }

    /// Bit `d` (distance below top) lives in word `d / 64`, bit `d % 64`.
    fn accept(&mut self, seq: u64) -> bool {
        let Some(top) = self.top else {
            self.top = Some(seq);
            self.bits = [0; 32];
            self.bits[0] = 1;
            return true;
        };
        if seq > top {
            let shift = seq - top;
            if shift >= Self::WIDTH {
                self.bits = [0; 32];
            } else {
                let words = (shift / 64) as usize;
                let rem = (shift % 64) as u32;
                for i in (0..32).rev() {
                    let src = i as isize - words as isize;
                    let hi = if src >= 0 { self.bits[src as usize] } else { 0 };
                    let lo = if src >= 1 {
                        self.bits[src as usize - 1]
                    } else {
                        0
                    };
                    self.bits[i] = if rem == 0 {
                        hi
                    } else {
                        (hi << rem) | (lo >> (64 - rem))
                    };
                }
            }
            self.bits[0] |= 1;
            self.top = Some(seq);
            return true;
        }
        let d = top - seq;
        if d >= Self::WIDTH {
            return false;
        }
        let (w, b) = ((d / 64) as usize, d % 64);
        if self.bits[w] & (1 << b) != 0 {
            return false;
        }
        self.bits[w] |= 1 << b;
        true
    }
}

/// In order: 0, 1, 2, ...
fn in_order() -> Vec<u64> {
    (0..N).collect()
}

/// Reordered: blocks of 16 reversed (every packet but one per block arrives late)
/// plus every 7th packet duplicated, as a lossy multipath link would deliver them.
fn reordered() -> Vec<u64> {
    let mut v = Vec::with_capacity(N as usize * 8 / 7 + 1);
    for block in 0..N / 16 {
        for i in (0..16).rev() {
            let seq = block * 16 + i;
            v.push(seq);
            if seq % 7 == 0 {
                v.push(seq);
            }
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_window");
    for (name, seqs) in [("in_order", in_order()), ("reordered", reordered())] {
        // Both windows must agree, or the comparison means nothing.
        let mut ring = ReplayWindow::new();
        let mut shift = ShiftWindow::new();
        for &s in &seqs {
            assert_eq!(
                ring.accept_authenticated(s),
                shift.accept(s),
                "{name} seq {s}"
            );
        }
        g.throughput(Throughput::Elements(seqs.len() as u64));
        g.bench_function(format!("ring/{name}"), |b| {
            b.iter(|| {
                let mut w = ReplayWindow::new();
                let mut ok = 0u64;
                for &s in &seqs {
                    ok += u64::from(w.accept_authenticated(black_box(s)));
                }
                ok
            });
        });
        g.bench_function(format!("shift_baseline/{name}"), |b| {
            b.iter(|| {
                let mut w = ShiftWindow::new();
                let mut ok = 0u64;
                for &s in &seqs {
                    ok += u64::from(w.accept(black_box(s)));
                }
                ok
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
