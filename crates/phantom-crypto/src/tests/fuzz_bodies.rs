//! The `crypto_open` fuzz bodies, run on the committed seeds and on random inputs so
//! they are exercised by `cargo test` too (I1).

use proptest::prelude::*;

use crate::fuzzing::{open_arbitrary, opener, seal_open_roundtrip, sealed_seed};
use crate::{Error, Suite};

const SEEDS: [(&[u8], Option<Suite>); 3] = [
    (
        include_bytes!("../../../../fuzz/corpus/crypto_open/seed-aes-epoch0"),
        Some(Suite::Aes256Gcm),
    ),
    (
        include_bytes!("../../../../fuzz/corpus/crypto_open/seed-chacha-epoch0"),
        Some(Suite::ChaCha20Poly1305),
    ),
    (
        include_bytes!("../../../../fuzz/corpus/crypto_open/seed-aes-epoch3"),
        Some(Suite::Aes256Gcm),
    ),
];

#[test]
fn i1_fuzz_seeds_are_valid_sealed_packets() {
    for (seed, suite) in SEEDS {
        let suite = suite.unwrap();
        let mut o = opener(suite).unwrap();
        let mut p = seed.to_vec();
        let opened = o.open_packet(&mut p, 8, |_| None).unwrap();
        assert!(!opened.payload().is_empty());
        open_arbitrary(seed);
        seal_open_roundtrip(seed);
    }
    // Seeds built in Rust open too (and under the other suite they do not).
    let s = sealed_seed(Suite::ChaCha20Poly1305, b"abc", 9).unwrap();
    let mut p = s.clone();
    assert_eq!(
        opener(Suite::ChaCha20Poly1305)
            .unwrap()
            .open_packet(&mut p, 8, |_| None)
            .unwrap()
            .payload(),
        b"abc"
    );
    let mut p = s.clone();
    assert_eq!(
        opener(Suite::Aes256Gcm)
            .unwrap()
            .open_packet(&mut p, 8, |_| None)
            .unwrap_err(),
        Error::DecryptFailed
    );
    seal_open_roundtrip(include_bytes!(
        "../../../../fuzz/corpus/crypto_open/seed-roundtrip"
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn i1_arbitrary_bytes_never_panic_or_change_state(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        open_arbitrary(&data);
        seal_open_roundtrip(&data);
    }

    #[test]
    fn i1_mutated_seeds_never_panic(idx in 0usize..3, pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut data = SEEDS[idx].0.to_vec();
        let l = data.len();
        data[pos % l] ^= byte;
        data.truncate(l - cut % 8);
        open_arbitrary(&data);
    }
}
