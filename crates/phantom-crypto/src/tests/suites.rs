//! Suite choice, codes and round trips.

use super::{header, pair, seal};
use crate::Suite;

#[test]
fn both_suites_round_trip_various_sizes() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        for (seq, len) in [0usize, 1, 15, 16, 17, 1200, 16 * 1024]
            .into_iter()
            .enumerate()
        {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let h = header(0, 4, seq as u64);
            let mut p = seal(&mut sealer, &h, &payload);
            if len > 0 {
                assert_ne!(
                    &p[h.len()..h.len() + len],
                    &payload[..],
                    "payload not encrypted"
                );
            }
            let opened = opener.open_packet(&mut p, 8, |_| None).unwrap();
            // Payloads too short for the header-protection sample were padded with zeros.
            assert_eq!(&opened.payload()[..len], &payload[..]);
            assert!(opened.payload()[len..].iter().all(|b| *b == 0));
            assert_eq!(opened.payload().len(), len.max(36 - h.len() - 16));
            assert_eq!(opened.header().sequence, seq as u64);
        }
    }
}

#[test]
fn suites_are_not_interchangeable() {
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    let (_, mut opener) = pair(Suite::ChaCha20Poly1305);
    let mut p = seal(&mut sealer, &header(0, 1, 0), b"x");
    assert!(opener.open_packet(&mut p, 8, |_| None).is_err());
}

#[test]
fn adaptive_choice_follows_hardware_and_override_is_honoured() {
    let preferred = Suite::preferred();
    assert_eq!(preferred == Suite::Aes256Gcm, Suite::hardware_aes());
    assert_eq!(Suite::preference_order(None)[0], preferred);
    assert_eq!(
        Suite::preference_order(Some(Suite::ChaCha20Poly1305)),
        [Suite::ChaCha20Poly1305, Suite::Aes256Gcm]
    );
    assert_eq!(
        Suite::preference_order(Some(Suite::Aes256Gcm)),
        [Suite::Aes256Gcm, Suite::ChaCha20Poly1305]
    );
    for order in [None, Some(Suite::Aes256Gcm), Some(Suite::ChaCha20Poly1305)] {
        let o = Suite::preference_order(order);
        assert_ne!(o[0], o[1], "each suite offered once");
    }
}

#[test]
fn suite_codes_round_trip() {
    for suite in Suite::ALL {
        assert_eq!(Suite::from_code(suite.code()), Some(suite));
    }
    assert_eq!(Suite::from_code(0), None);
    assert_eq!(Suite::from_code(3), None);
}
