//! I1/I2: any change to header, ciphertext or tag is rejected; failures change nothing.

use phantom_wire::{ConnId, min_packet_len};

use super::{header, pair, seal};
use crate::{Error, Suite, TAG_LEN};

#[test]
fn i2_flipping_any_bit_of_header_ciphertext_or_tag_fails_open() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let h = header(1, 9, 42);
        let packet = seal(&mut sealer, &h, b"tamper payload");
        assert_eq!(h.len(), 1 + 8 + 1 + 1 + 6);
        assert_eq!(packet.len(), h.len() + 14 + TAG_LEN);
        for bit in 0..packet.len() * 8 {
            let mut p = packet.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            let tampered = p.clone();
            let res = opener.open_packet(&mut p, 8, |_| None);
            assert!(res.is_err(), "{suite:?}: bit {bit} flipped still opened");
            assert_eq!(
                p, tampered,
                "{suite:?}: bit {bit}: failed open changed the buffer"
            );
            assert_eq!(opener.epoch().0, 0);
        }
        // The untouched packet still opens afterwards.
        let mut p = packet.clone();
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap().payload(),
            b"tamper payload"
        );
    }
}

#[test]
fn i1_failed_open_leaves_datagram_unchanged() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let payload = [0x5cu8; 300];
        let packet = seal(&mut sealer, &header(0, 3, 1), &payload);
        // Corrupt the tag only: the ciphertext must not be decrypted in place.
        let mut p = packet.clone();
        *p.last_mut().unwrap() ^= 0x01;
        let snapshot = p.clone();
        assert_eq!(
            opener.open_packet(&mut p, 8, |_| None).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(p, snapshot);
        // Trial open with a future key on the same bytes also leaves them unchanged:
        // the protected epoch bits (meta byte, after the 8-byte id) flipped to name
        // epoch 5.
        let mut q = packet.clone();
        q[9] ^= 5 << 3;
        let snapshot = q.clone();
        assert_eq!(
            opener.open_packet(&mut q, 8, |_| None).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(q, snapshot);
    }
}

#[test]
fn i1_short_and_malformed_datagrams_are_typed_errors() {
    let (_, mut opener) = pair(Suite::Aes256Gcm);
    for len in 0..min_packet_len(8) {
        let mut d = vec![0u8; len];
        if len > 0 {
            d[0] = phantom_wire::SHORT_FORM;
        }
        let err = opener.open_packet(&mut d, 8, |_| None).unwrap_err();
        assert!(
            matches!(err, Error::Wire(_) | Error::PacketTooShort),
            "len {len}: {err:?}"
        );
    }
    // A handshake datagram (or any datagram not of the short form) is refused as
    // malformed, not counted.
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    let mut p = seal(&mut sealer, &header(0, 1, 0), b"x");
    p[0] = phantom_wire::HANDSHAKE_MARKER;
    assert!(matches!(
        opener.open_packet(&mut p, 8, |_| None).unwrap_err(),
        Error::Wire(_)
    ));
    assert_eq!(opener.failed_opens(), 0);
}

#[test]
fn i2_sealer_refuses_truncated_first_packets_and_small_buffers() {
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    // The first packet of a stream in an epoch carries the full sequence.
    let mut h = header(0, 1, 0);
    h.seq_len = phantom_wire::SeqLen::ONE;
    let mut buf = [0u8; 100];
    assert_eq!(
        sealer.seal_packet(&h, &mut buf, 20),
        Err(Error::TruncatedFirst)
    );
    let h = header(0, 1, 0);
    const HL: usize = 1 + 8 + 1 + 1 + 6;
    let mut small = [0u8; HL + 10 + TAG_LEN - 1];
    assert_eq!(
        sealer.seal_packet(&h, &mut small, 10),
        Err(Error::BufferTooSmall {
            needed: HL + 10 + TAG_LEN,
            available: small.len()
        })
    );
    // Too short for the header-protection sample: refused (the sender pads).
    let mut tiny = [0u8; 64];
    assert_eq!(
        sealer.seal_packet(&h, &mut tiny, 2),
        Err(Error::BufferTooSmall {
            needed: min_packet_len(8),
            available: HL + 2 + TAG_LEN
        })
    );
    assert_eq!(
        sealer.seal_packet(&h, &mut small, usize::MAX),
        Err(Error::BufferTooSmall {
            needed: usize::MAX,
            available: small.len()
        })
    );
    assert_eq!(sealer.invocations(), 0);
    // A refused seal does not burn the sequence.
    let mut ok = [0u8; HL + 10 + TAG_LEN];
    assert_eq!(sealer.seal_packet(&h, &mut ok, 10), Ok(ok.len()));
}

#[test]
fn i2_larger_buffer_leaves_trailing_bytes_alone() {
    let (mut sealer, mut opener) = pair(Suite::ChaCha20Poly1305);
    let mut buf = vec![0xabu8; 2000];
    let h = header(0, 1, 0);
    buf[h.len()..h.len() + 12].copy_from_slice(b"data in here");
    let n = sealer.seal_packet(&h, &mut buf, 12).unwrap();
    assert_eq!(n, h.len() + 12 + TAG_LEN);
    assert!(buf[n..].iter().all(|b| *b == 0xab));
    let opened = opener.open_packet(&mut buf[..n], 8, |_| None).unwrap();
    assert_eq!(opened.payload(), b"data in here");
}

#[test]
fn i6_open_session_packet_refuses_another_session_before_any_key_and_counts_nothing() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let ours = ConnId::from_slice(&super::CID).unwrap();
        let other = ConnId::from_slice(&[0x22; 8]).unwrap();
        let genuine = seal(&mut sealer, &header(0, 4, 1), b"session bytes");
        // Another session's id: refused as such, the opener counts no failure and
        // the bytes stay as they were.
        let mut p = genuine.clone();
        assert_eq!(
            opener
                .open_session_packet(&other, &mut p, |_| None)
                .unwrap_err(),
            Error::UnknownSession
        );
        assert_eq!(p, genuine);
        assert_eq!(opener.failed_opens(), 0);
        // A datagram too short for its id, a cleartext handshake datagram and one
        // too short for the sample keep their errors.
        let mut short = genuine[..8].to_vec();
        assert!(matches!(
            opener
                .open_session_packet(&ours, &mut short, |_| None)
                .unwrap_err(),
            Error::Wire(_)
        ));
        let mut hs = genuine.clone();
        hs[0] = phantom_wire::HANDSHAKE_MARKER;
        assert!(matches!(
            opener
                .open_session_packet(&ours, &mut hs, |_| None)
                .unwrap_err(),
            Error::Wire(_)
        ));
        let mut cut = genuine[..min_packet_len(8) - 1].to_vec();
        assert_eq!(
            opener
                .open_session_packet(&ours, &mut cut, |_| None)
                .unwrap_err(),
            Error::PacketTooShort
        );
        assert_eq!(opener.failed_opens(), 0);
        // A forged tag is counted as a failed open, as with `open_packet`.
        let mut forged = genuine.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(
            opener
                .open_session_packet(&ours, &mut forged, |_| None)
                .unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(opener.failed_opens(), 1);
        // The genuine packet opens with the same header and payload as `open_packet`.
        let mut p = genuine.clone();
        let opened = opener.open_session_packet(&ours, &mut p, |_| None).unwrap();
        assert_eq!(*opened.header(), header(0, 4, 1));
        assert_eq!(opened.payload(), b"session bytes");
    }
}

/// Truncated sequences: the receiver expands them against the largest sequence it
/// authenticated in the space; a wrong base fails the AEAD (counted), never opens
/// under another sequence.
#[test]
fn i3_truncated_sequences_expand_against_the_largest_authenticated() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let first = seal(&mut sealer, &header(0, 7, 1000), b"first packet");
        let mut p = first.clone();
        opener.open_packet(&mut p, 8, |_| None).unwrap();
        // Acknowledged 1000: 1003 needs one byte.
        let len = sealer.seq_len(phantom_wire::StreamId(7), 1003, Some(1000));
        assert_eq!(len, phantom_wire::SeqLen::ONE);
        let mut h = header(0, 7, 1003);
        h.seq_len = len;
        let packet = seal(&mut sealer, &h, b"second packet");
        assert_eq!(packet.len(), h.len() + 13 + TAG_LEN);
        assert_eq!(h.len(), 1 + 8 + 1 + 1 + 1);
        let mut p = packet.clone();
        let opened = opener.open_packet(&mut p, 8, |_| Some(1000)).unwrap();
        assert_eq!(opened.header().sequence, 1003);
        assert_eq!(opened.payload(), b"second packet");
        // A receiver 256 behind expands to another sequence: the AEAD fails.
        let mut p = packet.clone();
        assert_eq!(
            opener
                .open_packet(&mut p, 8, |_| Some(1000 - 256))
                .unwrap_err(),
            Error::DecryptFailed
        );
        // A new epoch: its first packet in the space is full length again.
        sealer.rekey().unwrap();
        assert_eq!(
            sealer.seq_len(phantom_wire::StreamId(7), 1004, Some(1003)),
            phantom_wire::SeqLen::FULL
        );
    }
}
