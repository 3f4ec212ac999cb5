//! Per-packet protection cost: Phantom's `Sealer`/`Opener` (header encode + seal,
//! parse + open) beside the raw RustCrypto AEAD on the same sizes, in the same run.
//!
//! Also the cost of a forged packet (one that fails the AEAD) naming the receiver's
//! current epoch against one naming an epoch `MAX_REKEY_CATCHUP` ahead: the trial keys
//! of epochs ahead are cached, so the two should cost about the same.
//!
//! Run: `cargo bench -p phantom-crypto --bench protect -- --warm-up-time 1 --measurement-time 3`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use phantom_crypto::{MAX_REKEY_CATCHUP, Opener, Sealer, Suite, TAG_LEN, TrafficSecret};
use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId};

const SIZES: [usize; 2] = [1200, 16 * 1024];
const SECRET: [u8; 32] = [0x42; 32];

/// The header length of [`header`]: byte 0, an 8-byte id, meta, a 1-byte stream id and
/// the full 6-byte sequence.
const HEADER_LEN: usize = 17;

fn header(sequence: u64) -> Header {
    Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(0),
        conn_id: ConnId::from_slice(&[0x11; 8]).expect("id"),
        stream_id: StreamId(1),
        sequence,
        seq_len: SeqLen::FULL,
    }
}

/// The unprotected header image (the associated data a raw AEAD gets).
fn image(h: &Header) -> Vec<u8> {
    let mut v = vec![0u8; h.len()];
    h.write_image(&mut v).expect("image");
    v
}

/// AES-256-GCM on the encryption-only key schedule, the type the crate seals with.
type Aes256Gcm = aes_gcm::AesGcm<aes::Aes256Enc, aes_gcm::aead::consts::U12>;

/// The raw AEAD the suite maps to, keyed once.
enum Raw {
    Aes(Box<Aes256Gcm>),
    ChaCha(chacha20poly1305::ChaCha20Poly1305),
}

impl Raw {
    fn new(suite: Suite) -> Self {
        let key = [0x24u8; 32];
        match suite {
            Suite::Aes256Gcm => Raw::Aes(Box::new(Aes256Gcm::new((&key).into()))),
            _ => Raw::ChaCha(chacha20poly1305::ChaCha20Poly1305::new((&key).into())),
        }
    }

    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        match self {
            Raw::Aes(c) => c
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .unwrap()
                .into(),
            Raw::ChaCha(c) => c
                .encrypt_inout_detached(nonce.into(), aad, buf.into())
                .unwrap()
                .into(),
        }
    }

    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8; 16]) {
        match self {
            Raw::Aes(c) => c.decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into()),
            Raw::ChaCha(c) => c.decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into()),
        }
        .unwrap();
    }
}

fn suite_name(suite: Suite) -> &'static str {
    match suite {
        Suite::Aes256Gcm => "aes256gcm",
        _ => "chacha20poly1305",
    }
}

fn protect(c: &mut Criterion) {
    for suite in Suite::ALL {
        let mut group = c.benchmark_group(format!("protect/{}", suite_name(suite)));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let total = HEADER_LEN + size + TAG_LEN;

            let mut sealer = Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            let mut buf = vec![0x5au8; total];
            let mut seq = 0u64;
            group.bench_function(BenchmarkId::new("phantom_seal", size), |b| {
                b.iter(|| {
                    // What the session does per packet: rekey when asked, then seal.
                    if sealer.needs_rekey() {
                        sealer.rekey().unwrap();
                    }
                    seq += 1;
                    let n = sealer
                        .seal_packet(black_box(&header(seq)), black_box(&mut buf), size)
                        .unwrap();
                    black_box(n);
                });
            });

            let raw = Raw::new(suite);
            let aad = image(&header(1));
            let nonce = [7u8; 12];
            let mut payload = vec![0x5au8; size];
            group.bench_function(BenchmarkId::new("raw_seal", size), |b| {
                b.iter(|| {
                    let tag = raw.seal(black_box(&nonce), black_box(&aad), black_box(&mut payload));
                    black_box(tag);
                });
            });
        }
        group.finish();
    }
}

fn unprotect(c: &mut Criterion) {
    for suite in Suite::ALL {
        let mut group = c.benchmark_group(format!("unprotect/{}", suite_name(suite)));
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let total = HEADER_LEN + size + TAG_LEN;

            // One sealed packet, copied into the work buffer each iteration (opening
            // decrypts in place). The opener does no replay check, so the same packet
            // opens every time; `copy_only` measures the copy alone.
            let mut sealer = Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            let mut template = vec![0x5au8; total];
            sealer.seal_packet(&header(1), &mut template, size).unwrap();
            let mut opener = Opener::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            let mut work = vec![0u8; total];
            group.bench_function(BenchmarkId::new("phantom_open", size), |b| {
                b.iter(|| {
                    work.copy_from_slice(black_box(&template));
                    let opened = opener
                        .open_packet(black_box(&mut work), 8, |_| None)
                        .unwrap();
                    black_box(opened.payload().len());
                });
            });

            let raw = Raw::new(suite);
            let aad = image(&header(1));
            let nonce = [7u8; 12];
            let mut ct = vec![0x5au8; size];
            let tag = raw.seal(&nonce, &aad, &mut ct);
            let mut work = vec![0u8; size];
            group.bench_function(BenchmarkId::new("raw_open", size), |b| {
                b.iter(|| {
                    work.copy_from_slice(black_box(&ct));
                    raw.open(
                        black_box(&nonce),
                        black_box(&aad),
                        black_box(&mut work),
                        &tag,
                    );
                });
            });

            let mut work = vec![0u8; total];
            group.bench_function(BenchmarkId::new("copy_only", size), |b| {
                b.iter(|| {
                    work.copy_from_slice(black_box(&template));
                    black_box(&mut work);
                });
            });
        }
        group.finish();
    }
}

/// Offset of the protected meta byte (the epoch's low bits).
const META: usize = 9;

/// A 1200-byte packet sealed at epoch 0 whose tag is broken, naming `epoch_ahead`
/// epochs past the receiver's (the AEAD fails either way).
fn forged(suite: Suite, epoch_ahead: u8) -> Vec<u8> {
    let size = 1200;
    let mut sealer = Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
    let mut p = vec![0x5au8; HEADER_LEN + size + TAG_LEN];
    sealer.seal_packet(&header(1), &mut p, size).unwrap();
    *p.last_mut().unwrap() ^= 1;
    p[META] ^= epoch_ahead << 3; // the protected epoch bits, through the mask
    p
}

fn forged_open(c: &mut Criterion) {
    let ahead = u8::try_from(MAX_REKEY_CATCHUP).unwrap();
    for suite in Suite::ALL {
        let mut group = c.benchmark_group(format!("forged/{}", suite_name(suite)));
        for (name, epoch) in [("current_epoch", 0u8), ("epoch_plus_16", ahead)] {
            let template = forged(suite, epoch);
            let mut opener = Opener::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            let mut work = vec![0u8; template.len()];
            group.bench_function(BenchmarkId::new(name, 1200), |b| {
                b.iter(|| {
                    work.copy_from_slice(black_box(&template));
                    black_box(
                        opener
                            .open_packet(black_box(&mut work), 8, |_| None)
                            .is_err(),
                    );
                });
            });
        }
        group.finish();
    }
}

/// Interleaved A/B measurement, robust on a shared, loaded machine: alternate blocks of
/// `BLOCK` Phantom operations and `BLOCK` raw operations, and report the median of the
/// per-pair time ratios (a preempted block skews one pair, not the median).
fn paired_ratios() {
    const BLOCK: u32 = 500;
    const PAIRS: usize = 201;
    #[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
    fn now() -> std::time::Instant {
        std::time::Instant::now()
    }
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    println!("paired A/B (median of {PAIRS} interleaved blocks of {BLOCK} packets):");
    for suite in Suite::ALL {
        for size in SIZES {
            let total = HEADER_LEN + size + TAG_LEN;
            let raw = Raw::new(suite);
            let aad = image(&header(1));
            let nonce = [7u8; 12];
            let mut sealer = Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            let mut buf = vec![0x5au8; total];
            let mut payload = vec![0x5au8; size];
            let mut template = vec![0x5au8; total];
            let mut template_sealer =
                Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            template_sealer
                .seal_packet(&header(1), &mut template, size)
                .unwrap();
            let mut opener = Opener::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
            let mut work = vec![0u8; total];
            let mut ct = vec![0x5au8; size];
            let tag = raw.seal(&nonce, &aad, &mut ct);
            let mut raw_work = vec![0u8; size];
            let mut seq = 0u64;
            let (mut seal_r, mut open_r, mut seal_ns, mut open_ns) =
                (vec![], vec![], vec![], vec![]);
            for _ in 0..PAIRS {
                let t = now();
                for _ in 0..BLOCK {
                    if sealer.needs_rekey() {
                        sealer.rekey().unwrap();
                    }
                    seq += 1;
                    black_box(
                        sealer
                            .seal_packet(black_box(&header(seq)), black_box(&mut buf), size)
                            .unwrap(),
                    );
                }
                let a = t.elapsed().as_secs_f64();
                let t = now();
                for _ in 0..BLOCK {
                    black_box(raw.seal(
                        black_box(&nonce),
                        black_box(&aad),
                        black_box(&mut payload),
                    ));
                }
                let b = t.elapsed().as_secs_f64();
                seal_r.push(a / b);
                seal_ns.push(a * 1e9 / f64::from(BLOCK));
                let t = now();
                for _ in 0..BLOCK {
                    work.copy_from_slice(black_box(&template));
                    black_box(
                        opener
                            .open_packet(black_box(&mut work), 8, |_| None)
                            .unwrap()
                            .payload()
                            .len(),
                    );
                }
                let a = t.elapsed().as_secs_f64();
                let t = now();
                for _ in 0..BLOCK {
                    raw_work.copy_from_slice(black_box(&ct));
                    raw.open(
                        black_box(&nonce),
                        black_box(&aad),
                        black_box(&mut raw_work),
                        &tag,
                    );
                }
                let b = t.elapsed().as_secs_f64();
                open_r.push(a / b);
                open_ns.push(a * 1e9 / f64::from(BLOCK));
            }
            println!(
                "  {}/{size}: seal {:.0} ns, ratio vs raw {:.3}; open {:.0} ns, ratio vs raw {:.3}",
                suite_name(suite),
                median(seal_ns),
                median(seal_r),
                median(open_ns),
                median(open_r),
            );
        }
    }
}

/// Interleaved forged-packet cost: blocks of forged current-epoch packets alternate with
/// blocks of forged packets `MAX_REKEY_CATCHUP` epochs ahead, each on its own opener;
/// the median of the per-pair ratios (future / current) is reported.
fn paired_forged() {
    const BLOCK: u32 = 500;
    const PAIRS: usize = 201;
    #[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
    fn now() -> std::time::Instant {
        std::time::Instant::now()
    }
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let ahead = u8::try_from(MAX_REKEY_CATCHUP).unwrap();
    println!("forged packets (median of {PAIRS} interleaved blocks of {BLOCK}, 1200 bytes):");
    for suite in Suite::ALL {
        let current = forged(suite, 0);
        let future = forged(suite, ahead);
        let mut cur_opener = Opener::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
        let mut fut_opener = Opener::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
        let mut work = vec![0u8; current.len()];
        let (mut ratios, mut cur_ns, mut fut_ns) = (vec![], vec![], vec![]);
        for _ in 0..PAIRS {
            let t = now();
            for _ in 0..BLOCK {
                work.copy_from_slice(black_box(&current));
                black_box(
                    cur_opener
                        .open_packet(black_box(&mut work), 8, |_| None)
                        .is_err(),
                );
            }
            let a = t.elapsed().as_secs_f64();
            let t = now();
            for _ in 0..BLOCK {
                work.copy_from_slice(black_box(&future));
                black_box(
                    fut_opener
                        .open_packet(black_box(&mut work), 8, |_| None)
                        .is_err(),
                );
            }
            let b = t.elapsed().as_secs_f64();
            ratios.push(b / a);
            cur_ns.push(a * 1e9 / f64::from(BLOCK));
            fut_ns.push(b * 1e9 / f64::from(BLOCK));
        }
        println!(
            "  {}: current epoch {:.0} ns, epoch +{ahead} {:.0} ns, ratio {:.3}",
            suite_name(suite),
            median(cur_ns),
            median(fut_ns),
            median(ratios),
        );
    }
}

criterion_group!(benches, protect, unprotect, forged_open);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench` (criterion's test mode runs each bench once instead).
    if std::env::args().any(|a| a == "--bench") {
        paired_ratios();
        paired_forged();
    }
}
