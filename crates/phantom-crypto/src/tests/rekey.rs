//! I5: epochs only move forward, by authenticated transitions; old secrets zeroized.

use phantom_wire::{Epoch, Flags};

/// The protected meta byte (epoch low bits and flags), after byte 0 and the 8-byte id.
const META: usize = 9;

use super::{SECRET, header, pair, seal, try_seal};
use crate::{Error, MAX_REKEY_CATCHUP, Opener, Sealer, Suite, TrafficSecret};

#[test]
fn i5_both_sides_derive_identical_chains() {
    for suite in Suite::ALL {
        let (mut sealer, _) = pair(suite);
        let mut chain = TrafficSecret::from_bytes(SECRET);
        for e in 1..=40u32 {
            assert_eq!(sealer.rekey().unwrap(), Epoch(e));
            chain = chain.next_epoch().unwrap();
            assert_eq!(
                sealer.secret().dangerously_expose(),
                chain.dangerously_expose()
            );
        }
        // A receiver that starts at the same epoch with the same secret opens.
        // (Header protection stays under the epoch-0 secret's key.)
        let mut opener = Opener::at_epoch(suite, chain.clone(), Epoch(40))
            .unwrap()
            .with_header_secret(&TrafficSecret::from_bytes(SECRET))
            .unwrap();
        let mut p = seal(&mut sealer, &header(0, 1, 0), b"hello");
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
            b"hello"
        );
    }
}

#[test]
fn i5_catch_up_of_1_to_max_epochs_follows_authenticated_rekey() {
    for suite in Suite::ALL {
        for steps in 1..=MAX_REKEY_CATCHUP {
            let (mut sealer, mut opener) = pair(suite);
            for _ in 0..steps {
                sealer.rekey().unwrap();
            }
            let mut h = header(2, 7, 3);
            h.flags = h.flags | Flags::REKEY;
            let mut p = seal(&mut sealer, &h, b"after rekey");
            let opened = opener.open_packet(&mut p, 8, |_| None).unwrap();
            assert_eq!(opened.payload(), b"after rekey");
            assert!(opened.advanced_epoch());
            assert_eq!(opener.epoch(), Epoch(steps));
            assert_eq!(opener.previous_epoch(), Some(Epoch(steps - 1)));
            // And the next packet in that epoch opens on the fast path.
            let mut p = seal(&mut sealer, &header(2, 7, 4), b"next");
            let opened = opener.open_packet(&mut p, 8, |_| None).unwrap();
            assert!(!opened.advanced_epoch());
        }
    }
}

#[test]
fn i5_catch_up_beyond_max_is_refused() {
    let (mut sealer, mut opener) = pair(Suite::Aes256Gcm);
    for _ in 0..=MAX_REKEY_CATCHUP {
        sealer.rekey().unwrap();
    }
    let mut p = seal(&mut sealer, &header(0, 1, 0), b"too far");
    let before = p.clone();
    assert_eq!(
        opener.open_packet(&mut p, 8, |_| None).unwrap_err(),
        Error::EpochTooFarAhead
    );
    assert_eq!(p, before);
    assert_eq!(opener.epoch(), Epoch(0));
    assert_eq!(opener.failed_opens(), 0, "no AEAD was attempted");
}

#[test]
fn i5_forged_epoch_does_not_advance_opener() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let genuine = seal(&mut sealer, &header(0, 1, 0), b"genuine");
        // Rewrite the epoch field of a genuine packet to every reachable future epoch.
        for claimed in 1..=MAX_REKEY_CATCHUP + 1 {
            let mut forged = genuine.clone();
            // The epoch's low bits are protected: XOR through the mask (meta byte).
            forged[META] ^= (claimed as u8 & 31) << 3;
            let before = forged.clone();
            let err = opener.open_packet(&mut forged, 8, |_| None).unwrap_err();
            assert!(
                matches!(err, Error::DecryptFailed | Error::EpochTooFarAhead),
                "{err:?}"
            );
            assert_eq!(forged, before, "forged packet buffer modified");
            assert_eq!(
                opener.epoch(),
                Epoch(0),
                "forged epoch {claimed} moved the opener"
            );
            assert_eq!(opener.previous_epoch(), None);
        }
        // A packet genuinely sealed at epoch 3 but under another secret: refused too.
        // (Under the same header-protection key, so that it reaches the AEAD.)
        let mut other = Sealer::new(suite, TrafficSecret::from_bytes([9; 32]))
            .unwrap()
            .with_header_secret(&TrafficSecret::from_bytes(SECRET))
            .unwrap();
        for _ in 0..3 {
            other.rekey().unwrap();
        }
        let mut forged = seal(&mut other, &header(0, 1, 1), b"impostor");
        assert_eq!(
            opener.open_packet(&mut forged, 8, |_| None).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(opener.epoch(), Epoch(0));
        // The genuine packet still opens: the session did not desync.
        let mut g = genuine.clone();
        assert_eq!(
            opener.open_packet(&mut g, 8, |_| None).unwrap().payload(),
            b"genuine"
        );
        // And a genuine rekey is still followed afterwards.
        sealer.rekey().unwrap();
        let mut p = seal(&mut sealer, &header(0, 1, 1), b"epoch one");
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
            b"epoch one"
        );
        assert_eq!(opener.epoch(), Epoch(1));
    }
}

#[test]
fn i5_previous_epoch_opens_until_retired_then_refused() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let late0 = seal(&mut sealer, &header(0, 1, 0), b"late epoch 0");
        sealer.rekey().unwrap();
        let mut first1 = seal(&mut sealer, &header(0, 1, 0), b"epoch 1");
        opener.open_packet(&mut first1, 8, |_| None).unwrap();
        assert_eq!(opener.epoch(), Epoch(1));
        // Reordered packet of the previous epoch: still opens, epoch stays at 1.
        let mut p = late0.clone();
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
            b"late epoch 0"
        );
        assert_eq!(opener.epoch(), Epoch(1));
        // After retirement it is refused without an AEAD attempt.
        assert!(opener.retire_previous());
        assert!(!opener.retire_previous());
        let mut p = late0.clone();
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap_err(),
            Error::EpochTooOld
        );
        assert_eq!(p, late0);
        assert_eq!(opener.failed_opens(), 0);
    }
}

#[test]
fn i5_epochs_older_than_previous_are_refused() {
    let (mut sealer, mut opener) = pair(Suite::ChaCha20Poly1305);
    let e0 = seal(&mut sealer, &header(0, 1, 0), b"zero");
    sealer.rekey().unwrap();
    let e1 = seal(&mut sealer, &header(0, 1, 0), b"one");
    sealer.rekey().unwrap();
    let mut e2 = seal(&mut sealer, &header(0, 1, 0), b"two");
    opener.open_packet(&mut e2, 8, |_| None).unwrap();
    assert_eq!(opener.epoch(), Epoch(2));
    assert_eq!(opener.previous_epoch(), Some(Epoch(1)));
    let mut p = e1.clone();
    assert_eq!(
        opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
        b"one"
    );
    // Two epochs back: the 5 epoch bits on the wire read it as 30 ahead (the window is
    // current - 1 ..= current + 30), beyond the catch-up limit: refused unopened.
    let mut p = e0.clone();
    assert_eq!(
        opener.open_packet(&mut p, 8, |_| None).unwrap_err(),
        Error::EpochTooFarAhead
    );
    assert_eq!(opener.failed_opens(), 0);
}

#[test]
fn i5_multi_step_catch_up_keeps_the_epoch_just_before() {
    let (mut sealer, mut opener) = pair(Suite::Aes256Gcm);
    for _ in 0..4 {
        sealer.rekey().unwrap();
    }
    let e4 = seal(&mut sealer, &header(0, 1, 0), b"four");
    sealer.rekey().unwrap();
    let mut e5 = seal(&mut sealer, &header(0, 1, 0), b"five");
    opener.open_packet(&mut e5, 8, |_| None).unwrap();
    assert_eq!(opener.epoch(), Epoch(5));
    let mut p = e4.clone();
    assert_eq!(
        opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
        b"four"
    );
}

#[test]
fn i5_epoch_saturates_with_error_not_wrap() {
    for suite in Suite::ALL {
        let near = Epoch(u32::MAX - 2);
        let mut sealer = Sealer::at_epoch(suite, TrafficSecret::from_bytes(SECRET), near).unwrap();
        let mut opener = Opener::at_epoch(suite, TrafficSecret::from_bytes(SECRET), near).unwrap();
        assert_eq!(sealer.rekey().unwrap(), Epoch(u32::MAX - 1));
        assert_eq!(sealer.rekey().unwrap(), Epoch::MAX);
        assert_eq!(sealer.rekey(), Err(Error::EpochSaturated));
        assert_eq!(sealer.epoch(), Epoch::MAX);
        // Still usable at MAX (the session closes or re-handshakes at its pace).
        let mut p = seal(&mut sealer, &header(0, 1, 0), b"last epoch");
        let sealed = p.clone();
        let opened = opener.open_packet(&mut p, 8, |_| None).unwrap();
        assert_eq!(opened.header().epoch, Epoch::MAX);
        assert_eq!(opened.payload(), b"last epoch");
        let p = sealed;
        assert_eq!(opener.epoch(), Epoch::MAX);
        // The sealer still reports that a rekey is due once limits say so, and the
        // rekey keeps failing: exhaustion is an error, never a wrap to epoch 0.
        sealer.set_rekey_threshold(1);
        assert!(sealer.needs_rekey());
        assert_eq!(sealer.rekey(), Err(Error::EpochSaturated));
        // A packet forged to claim epoch 0 is "too old", not a wrapped future.
        let mut forged = p.clone();
        forged[META] ^= 31 << 3; // epoch low bits 31 (MAX) -> 0
        assert_eq!(
            opener.open_packet(&mut forged, 8, |_| None).unwrap_err(),
            Error::EpochTooOld
        );
    }
}

#[test]
fn i5_sealer_stamps_its_own_epoch() {
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    sealer.rekey().unwrap();
    let mut h = header(0, 1, 0);
    h.epoch = Epoch(77);
    let mut p = seal(&mut sealer, &h, b"sealer stamps");
    assert!(p.len() == h.len() + 13 + 16);
    let (_, mut opener) = pair(Suite::Aes256Gcm);
    assert_eq!(
        opener
            .open_packet(&mut p, 8, |_| None)
            .unwrap()
            .header()
            .epoch,
        Epoch(1)
    );
}

#[test]
fn i5_sealer_rekey_resets_counters() {
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    for seq in 0..5 {
        try_seal(&mut sealer, &header(0, 1, seq), b"x").unwrap();
    }
    assert_eq!(sealer.invocations(), 5);
    sealer.rekey().unwrap();
    assert_eq!(sealer.invocations(), 0);
}

#[test]
fn i5_forged_future_epochs_derive_each_epoch_at_most_once() {
    let catchup = u64::from(MAX_REKEY_CATCHUP);
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let mut p = seal(&mut sealer, &header(0, 1, 0), b"genuine");
        opener.open_packet(&mut p, 8, |_| None).unwrap();
        let start = opener.hkdf_expansions();
        assert_eq!(start, 2, "the first key: key and IV");
        let template = seal(&mut sealer, &header(0, 1, 1), b"forged");
        let forge = |epoch: u8| {
            let mut f = template.clone();
            f[META] ^= epoch << 3;
            f
        };
        // The farthest epoch: the chain walked once, its key and the one before it.
        let mut f = forge(16);
        assert_eq!(
            opener.open_packet(&mut f, 8, |_| None).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(opener.hkdf_expansions(), start + catchup + 2 * 2);
        // The same packet again, a thousand times: no further derivation.
        for _ in 0..1000 {
            let mut f = forge(16);
            assert_eq!(
                opener.open_packet(&mut f, 8, |_| None).unwrap_err(),
                Error::DecryptFailed
            );
        }
        assert_eq!(opener.hkdf_expansions(), start + catchup + 2 * 2);
        // Every epoch ahead, many times over: each key derived once, 3 per epoch in all.
        for round in 0..50u8 {
            for epoch in 1..=16u8 {
                let mut f = forge(epoch.wrapping_add(round) % 16 + 1);
                assert_eq!(
                    opener.open_packet(&mut f, 8, |_| None).unwrap_err(),
                    Error::DecryptFailed
                );
            }
        }
        assert_eq!(opener.hkdf_expansions(), start + 3 * catchup);
        assert_eq!(opener.epoch(), Epoch(0), "forged epochs moved nothing");
        assert_eq!(opener.failed_opens(), 1 + 1000 + 50 * 16);
        // A genuine packet three epochs ahead opens from the cache (no derivation) ...
        for _ in 0..3 {
            sealer.rekey().unwrap();
        }
        let mut p = seal(&mut sealer, &header(0, 1, 2), b"rekeyed");
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
            b"rekeyed"
        );
        assert_eq!(opener.epoch(), Epoch(3));
        assert_eq!(opener.previous_epoch(), Some(Epoch(2)));
        assert_eq!(opener.hkdf_expansions(), start + 3 * catchup);
        // ... and the cache starts over from the new epoch, once again once per epoch.
        let template = seal(&mut sealer, &header(0, 1, 3), b"forged");
        for _ in 0..100 {
            let mut f = template.clone();
            f[META] ^= (3 ^ (3 + 16)) << 3;
            assert_eq!(
                opener.open_packet(&mut f, 8, |_| None).unwrap_err(),
                Error::DecryptFailed
            );
        }
        assert_eq!(
            opener.hkdf_expansions(),
            start + 3 * catchup + catchup + 2 * 2
        );
        // The previous epoch's packets still open after all this.
        let mut old = seal(
            &mut Sealer::at_epoch(suite, chain(2), Epoch(2))
                .unwrap()
                .with_header_secret(&TrafficSecret::from_bytes(SECRET))
                .unwrap(),
            &header(0, 9, 0),
            b"late",
        );
        assert_eq!(
            opener.open_packet(&mut old, 8, |_| None).unwrap().payload(),
            b"late"
        );
    }
}

/// The secret of `epoch` on the test chain.
fn chain(epoch: u32) -> TrafficSecret {
    let mut s = TrafficSecret::from_bytes(SECRET);
    for _ in 0..epoch {
        s = s.next_epoch().unwrap();
    }
    s
}
