//! I6: per-suite AEAD usage limits, rekey before the first, close at the second.

use super::{header, pair, seal, try_seal};
use crate::{
    AES_GCM_CONFIDENTIALITY_LIMIT, AES_GCM_INTEGRITY_LIMIT, CHACHA20_CONFIDENTIALITY_LIMIT,
    CHACHA20_INTEGRITY_LIMIT, Error, Limits, RekeyReason, Suite,
};

#[test]
fn i6_suite_limits_follow_rfc_9001() {
    assert_eq!(AES_GCM_CONFIDENTIALITY_LIMIT, 1 << 23);
    assert_eq!(AES_GCM_INTEGRITY_LIMIT, 1 << 52);
    assert_eq!(CHACHA20_CONFIDENTIALITY_LIMIT, 1 << 62);
    assert_eq!(CHACHA20_INTEGRITY_LIMIT, 1 << 36);
    let (sealer, opener) = pair(Suite::Aes256Gcm);
    assert_eq!(sealer.limits(), Limits::for_suite(Suite::Aes256Gcm));
    assert_eq!(opener.limits().integrity, 1 << 52);
    // Soft threshold: three quarters of the confidentiality limit.
    assert_eq!(sealer.soft_threshold(), 6_291_456);
    let (sealer, opener) = pair(Suite::ChaCha20Poly1305);
    assert_eq!(sealer.soft_threshold(), 3 << 60);
    assert_eq!(opener.limits().integrity, 1 << 36);
}

#[test]
fn i6_soft_threshold_requests_rekey_hard_limit_refuses_seal() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        sealer.set_limits(Limits {
            confidentiality: 8,
            integrity: 100,
        });
        // 3/4 of 8 = 6.
        for seq in 0..6 {
            assert!(!sealer.needs_rekey(), "seq {seq}");
            let mut p = seal(&mut sealer, &header(0, 1, seq), b"x");
            opener.open_packet(&mut p, 8, |_| None).unwrap();
        }
        assert_eq!(sealer.rekey_reason(), Some(RekeyReason::Invocations));
        seal(&mut sealer, &header(0, 1, 6), b"x");
        seal(&mut sealer, &header(0, 1, 7), b"x");
        assert_eq!(sealer.invocations(), 8);
        // Hard limit: refused, counter unchanged, nothing written.
        let mut buf = vec![0xee; 17 + 20 + 16];
        assert_eq!(
            sealer.seal_packet(&header(0, 1, 8), &mut buf, 20),
            Err(Error::LimitReached)
        );
        assert!(buf.iter().all(|b| *b == 0xee));
        assert_eq!(sealer.invocations(), 8);
        // Rekey restores service; the peer follows.
        sealer.rekey().unwrap();
        assert!(!sealer.needs_rekey());
        let mut p = seal(&mut sealer, &header(0, 1, 8), b"y after the rekey");
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
            b"y after the rekey"
        );
    }
}

#[test]
fn i6_configured_rekey_threshold_caps_soft_limit() {
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    sealer.set_rekey_threshold(3);
    assert_eq!(sealer.soft_threshold(), 3);
    for seq in 0..3 {
        assert!(!sealer.needs_rekey());
        try_seal(&mut sealer, &header(0, 1, seq), b"x").unwrap();
    }
    assert!(sealer.needs_rekey());
    // A threshold above the suite's soft limit does not raise it.
    sealer.set_rekey_threshold(u64::MAX);
    assert_eq!(sealer.soft_threshold(), 6_291_456);
    sealer.set_rekey_threshold(0);
    assert_eq!(sealer.soft_threshold(), 1, "clamped to at least 1");
}

#[test]
fn i6_failed_opens_past_integrity_limit_close_the_session() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        opener.set_limits(Limits {
            confidentiality: 1 << 20,
            integrity: 3,
        });
        // (Long enough that the tag lies beyond the header-protection sample.)
        let genuine = seal(&mut sealer, &header(0, 1, 0), b"ok, a genuine packet");
        let mut forged = genuine.clone();
        *forged.last_mut().unwrap() ^= 1;
        for n in 1..=2 {
            let mut f = forged.clone();
            assert_eq!(
                opener.open_packet(&mut f, 8, |_| None).unwrap_err(),
                Error::DecryptFailed
            );
            assert_eq!(opener.failed_opens(), n);
        }
        // The failure that reaches the limit says the session must close ...
        let mut f = forged.clone();
        assert_eq!(
            opener.open_packet(&mut f, 8, |_| None).unwrap_err(),
            Error::IntegrityLimitExceeded
        );
        assert!(opener.integrity_exhausted());
        // ... and so does every later open, genuine or not.
        let mut g = genuine.clone();
        assert_eq!(
            opener.open_packet(&mut g, 8, |_| None).unwrap_err(),
            Error::IntegrityLimitExceeded
        );
        assert_eq!(g, genuine, "nothing decrypted after the limit");
        assert_eq!(opener.failed_opens(), 3);
    }
}

#[test]
fn i6_failed_opens_count_across_epochs_and_trial_keys() {
    let (mut sealer, mut opener) = pair(Suite::ChaCha20Poly1305);
    // A failure under the current key.
    let mut bad = seal(&mut sealer, &header(0, 1, 0), b"a");
    bad[CIPHERTEXT_BYTE] ^= 0x80;
    opener.open_packet(&mut bad, 8, |_| None).unwrap_err();
    // A failure under a trial (future) key.
    let mut forged = seal(&mut sealer, &header(0, 1, 1), b"b");
    forged[9] ^= 2 << 3; // protected epoch bits: epoch 0 -> 2
    opener.open_packet(&mut forged, 8, |_| None).unwrap_err();
    assert_eq!(opener.failed_opens(), 2);
    // The count survives an authenticated epoch advance (counted per opener lifetime).
    sealer.rekey().unwrap();
    let mut p = seal(&mut sealer, &header(0, 1, 0), b"c");
    opener.open_packet(&mut p, 8, |_| None).unwrap();
    assert_eq!(opener.failed_opens(), 2);
    // Refusals without an AEAD attempt are not integrity failures.
    let mut short = vec![0u8; 10];
    opener.open_packet(&mut short, 8, |_| None).unwrap_err();
    assert_eq!(opener.failed_opens(), 2);
}

/// A byte of the ciphertext (after the 17-byte header of stream 1).
const CIPHERTEXT_BYTE: usize = 18;

#[test]
fn i6_set_limits_lowers_but_never_raises_the_suite_limits() {
    for suite in Suite::ALL {
        let rfc = Limits::for_suite(suite);
        let (mut sealer, mut opener) = pair(suite);
        let huge = Limits {
            confidentiality: u64::MAX,
            integrity: u64::MAX,
        };
        sealer.set_limits(huge);
        opener.set_limits(huge);
        assert_eq!(
            sealer.limits(),
            rfc,
            "{suite:?}: sealer raised above RFC 9001"
        );
        assert_eq!(
            opener.limits(),
            rfc,
            "{suite:?}: opener raised above RFC 9001"
        );
        // One field above, one below: each clamped on its own.
        let mixed = Limits {
            confidentiality: rfc.confidentiality + 1,
            integrity: 5,
        };
        sealer.set_limits(mixed);
        opener.set_limits(mixed);
        for limits in [sealer.limits(), opener.limits()] {
            assert_eq!(limits.confidentiality, rfc.confidentiality);
            assert_eq!(limits.integrity, 5);
        }
        // Lowering stays allowed and takes effect.
        let low = Limits {
            confidentiality: 4,
            integrity: 2,
        };
        sealer.set_limits(low);
        opener.set_limits(low);
        assert_eq!(sealer.limits(), low);
        assert_eq!(opener.limits(), low);
        for seq in 0..4 {
            seal(&mut sealer, &header(0, 1, seq), b"x");
        }
        assert_eq!(
            try_seal(&mut sealer, &header(0, 1, 4), b"x"),
            Err(Error::LimitReached)
        );
    }
}
