//! I3: no (key, nonce) pair is ever sealed twice.

use std::collections::{HashMap, HashSet};

use phantom_wire::{MAX_SEQUENCE, StreamId};
use proptest::prelude::*;

use super::{SECRET, header, try_seal};
use crate::{Error, Sealer, Suite, TrafficSecret};

#[derive(Debug, Clone)]
enum Op {
    Seal {
        dir: usize,
        path: u8,
        stream: u32,
        seq: u64,
    },
    Rekey {
        dir: usize,
    },
}

fn seq_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..24,
        1 => (MAX_SEQUENCE - 3)..=(MAX_SEQUENCE + 2),
        1 => any::<u64>(),
    ]
}

fn stream_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..4, 1 => Just(u32::MAX), 1 => Just(1 << 16), 1 => any::<u32>()]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0usize..2, 0u8..3, stream_strategy(), seq_strategy())
            .prop_map(|(dir, path, stream, seq)| Op::Seal { dir, path, stream, seq }),
        1 => (0usize..2).prop_map(|dir| Op::Rekey { dir }),
    ]
}

/// The nonce mask computed independently of `PacketKey::nonce`: two zero bytes, the
/// stream, the 48-bit sequence (no path, no epoch: the key changes with the epoch).
fn model_mask(stream: u32, seq: u64) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[2..6].copy_from_slice(&stream.to_be_bytes());
    m[6..12].copy_from_slice(&seq.to_be_bytes()[2..8]);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Two directions (different secrets), random seals across paths, streams,
    /// sequences (including exhausted and repeated ones) and rekeys. Every successful
    /// seal uses a (direction, epoch, nonce) never seen before; the sealer accepts
    /// exactly what a model of "strictly increasing per stream per epoch, whatever the
    /// path, at most MAX_SEQUENCE" accepts.
    #[test]
    fn i3_nonce_never_repeats_across_streams_paths_sequences_and_rekeys(
        ops in proptest::collection::vec(op_strategy(), 1..200),
        suite in prop_oneof![Just(Suite::Aes256Gcm), Just(Suite::ChaCha20Poly1305)],
    ) {
        let mut sealers = [
            Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap(),
            Sealer::new(suite, TrafficSecret::from_bytes([0x24; 32])).unwrap(),
        ];
        let mut used: HashSet<(usize, u32, [u8; 12])> = HashSet::new();
        let mut last: [HashMap<u32, u64>; 2] = [HashMap::new(), HashMap::new()];
        let mut secrets_seen: HashSet<[u8; 32]> = HashSet::new();
        for s in &sealers {
            secrets_seen.insert(*s.secret().dangerously_expose());
        }
        for op in ops {
            match op {
                Op::Rekey { dir } => {
                    let e = sealers[dir].rekey().unwrap();
                    prop_assert_eq!(e, sealers[dir].epoch());
                    last[dir].clear();
                    // Every epoch of every direction has a fresh secret (distinct keys).
                    prop_assert!(secrets_seen.insert(*sealers[dir].secret().dangerously_expose()));
                }
                Op::Seal { dir, path, stream, seq } => {
                    let s = &mut sealers[dir];
                    let epoch = s.epoch();
                    let expect_ok = seq <= MAX_SEQUENCE
                        && last[dir].get(&stream).is_none_or(|l| seq > *l);
                    let h = header(path, stream, seq);
                    let res = try_seal(s, &h, b"x");
                    prop_assert_eq!(res.is_ok(), expect_ok, "seq {} res {:?}", seq, res.as_ref().err());
                    match res {
                        Ok(_) => {
                            last[dir].insert(stream, seq);
                            let nonce = s.packet_key().nonce(StreamId(stream), seq);
                            // The nonce is iv XOR the independent model mask.
                            let mut expect = model_mask(stream, seq);
                            for (e, iv) in expect.iter_mut().zip(s.packet_key().iv()) {
                                *e ^= iv;
                            }
                            prop_assert_eq!(nonce, expect);
                            prop_assert!(used.insert((dir, epoch.0, nonce)), "nonce reused");
                        }
                        Err(e) => {
                            prop_assert!(matches!(e, Error::NonceReuse | Error::SequenceExhausted), "{e:?}");
                        }
                    }
                }
            }
        }
    }

    /// The nonce mask is injective: distinct (stream, sequence) pairs under one key
    /// give distinct nonces.
    #[test]
    fn i3_nonce_is_injective_in_stream_sequence(
        a in (any::<u32>(), 0..=MAX_SEQUENCE),
        b in (any::<u32>(), 0..=MAX_SEQUENCE),
    ) {
        let s = Sealer::new(Suite::ChaCha20Poly1305, TrafficSecret::from_bytes(SECRET)).unwrap();
        let k = s.packet_key();
        let na = k.nonce(StreamId(a.0), a.1);
        let nb = k.nonce(StreamId(b.0), b.1);
        prop_assert_eq!(na == nb, a == b);
    }
}

#[test]
fn i3_sequence_exhaustion_refuses_and_never_reuses() {
    for suite in Suite::ALL {
        let mut s = Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap();
        try_seal(&mut s, &header(0, 5, MAX_SEQUENCE - 1), b"a").unwrap();
        try_seal(&mut s, &header(0, 5, MAX_SEQUENCE), b"b").unwrap();
        // Past the 48-bit space: refused, not truncated into a repeated nonce.
        assert_eq!(
            try_seal(&mut s, &header(0, 5, MAX_SEQUENCE + 1), b"c"),
            Err(Error::SequenceExhausted)
        );
        assert_eq!(
            try_seal(&mut s, &header(0, 5, u64::MAX), b"c"),
            Err(Error::SequenceExhausted)
        );
        // The same sequence again, or a lower one: refused.
        assert_eq!(
            try_seal(&mut s, &header(0, 5, MAX_SEQUENCE), b"d"),
            Err(Error::NonceReuse)
        );
        assert_eq!(
            try_seal(&mut s, &header(0, 5, 0), b"d"),
            Err(Error::NonceReuse)
        );
        // The invocation counter did not move for refused seals.
        assert_eq!(s.invocations(), 2);
        // Another path shares the stream's nonce space (the path is not in the
        // nonce): refused; another stream is a different nonce space.
        assert_eq!(
            try_seal(&mut s, &header(1, 5, 0), b"e"),
            Err(Error::NonceReuse)
        );
        try_seal(&mut s, &header(0, 6, 0), b"f").unwrap();
        // After a rekey (new key) the stream may start again.
        s.rekey().unwrap();
        try_seal(&mut s, &header(0, 5, 0), b"g").unwrap();
    }
}

#[test]
fn i3_stream_span_near_wrap_forces_rekey() {
    let mut s = Sealer::new(Suite::Aes256Gcm, TrafficSecret::from_bytes(SECRET)).unwrap();
    s.set_seq_rekey_watermark(10);
    try_seal(&mut s, &header(0, 1, 5), b"a").unwrap();
    try_seal(&mut s, &header(0, 1, 14), b"a").unwrap();
    assert!(!s.needs_rekey());
    try_seal(&mut s, &header(0, 1, 15), b"a").unwrap();
    assert_eq!(s.rekey_reason(), Some(crate::RekeyReason::SequenceSpan));
    s.rekey().unwrap();
    assert!(!s.needs_rekey());
    // The span is measured from where the stream entered the new epoch.
    try_seal(&mut s, &header(0, 1, 16), b"a").unwrap();
    try_seal(&mut s, &header(0, 1, 25), b"a").unwrap();
    assert!(!s.needs_rekey());
    try_seal(&mut s, &header(0, 1, 26), b"a").unwrap();
    assert!(s.needs_rekey());
}

#[test]
fn i3_default_watermark_is_2_pow_31() {
    let mut s = Sealer::new(Suite::Aes256Gcm, TrafficSecret::from_bytes(SECRET)).unwrap();
    try_seal(&mut s, &header(0, 1, 0), b"a").unwrap();
    try_seal(&mut s, &header(0, 1, (1 << 31) - 1), b"a").unwrap();
    assert!(!s.needs_rekey());
    try_seal(&mut s, &header(0, 1, 1 << 31), b"a").unwrap();
    assert!(s.needs_rekey());
}

#[test]
fn i3_stream_table_is_bounded() {
    let mut s = Sealer::new(Suite::ChaCha20Poly1305, TrafficSecret::from_bytes(SECRET)).unwrap();
    let mut buf = [0u8; 80];
    for i in 0..crate::STREAM_TABLE_HARD_LIMIT as u32 {
        s.seal_packet(&header(0, i, 0), &mut buf, 20).unwrap();
        if i as usize + 1 == crate::STREAM_TABLE_SOFT_LIMIT {
            assert_eq!(s.rekey_reason(), Some(crate::RekeyReason::StreamTable));
        }
    }
    assert_eq!(
        s.seal_packet(&header(0, u32::MAX, 0), &mut buf, 20),
        Err(Error::StreamTableFull)
    );
    // Known streams keep working; a rekey empties the table.
    s.seal_packet(&header(0, 0, 1), &mut buf, 20).unwrap();
    s.rekey().unwrap();
    s.seal_packet(&header(0, u32::MAX, 0), &mut buf, 20)
        .unwrap();
}
