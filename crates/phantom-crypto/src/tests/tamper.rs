//! I1/I2: any change to header, ciphertext or tag is rejected; failures change nothing.

use phantom_wire::HEADER_LEN;

use super::{header, pair, seal};
use crate::{Error, Suite, TAG_LEN};

#[test]
fn i2_flipping_any_bit_of_header_ciphertext_or_tag_fails_open() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let packet = seal(&mut sealer, &header(1, 9, 42), b"tamper");
        assert_eq!(packet.len(), HEADER_LEN + 6 + TAG_LEN);
        for bit in 0..packet.len() * 8 {
            let mut p = packet.clone();
            p[bit / 8] ^= 1 << (bit % 8);
            let tampered = p.clone();
            let res = opener.open_packet(&mut p);
            assert!(res.is_err(), "{suite:?}: bit {bit} flipped still opened");
            assert_eq!(
                p, tampered,
                "{suite:?}: bit {bit}: failed open changed the buffer"
            );
            assert_eq!(opener.epoch().0, 0);
        }
        // The untouched packet still opens afterwards.
        let mut p = packet.clone();
        assert_eq!(opener.open_packet(&mut p).unwrap().payload(), b"tamper");
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
            opener.open_packet(&mut p).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(p, snapshot);
        // Trial open with a future key on the same bytes also leaves them unchanged.
        let mut q = packet.clone();
        q[4..8].copy_from_slice(&5u32.to_be_bytes());
        let snapshot = q.clone();
        assert_eq!(
            opener.open_packet(&mut q).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(q, snapshot);
    }
}

#[test]
fn i1_short_and_malformed_datagrams_are_typed_errors() {
    let (_, mut opener) = pair(Suite::Aes256Gcm);
    for len in 0..HEADER_LEN + TAG_LEN {
        let mut d = vec![0u8; len];
        if len > 0 {
            d[0] = phantom_wire::VERSION;
        }
        let err = opener.open_packet(&mut d).unwrap_err();
        assert!(
            matches!(err, Error::Wire(_) | Error::PacketTooShort),
            "len {len}: {err:?}"
        );
    }
    // A HANDSHAKE-flagged packet is cleartext: refused, not counted.
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    let mut p = seal(&mut sealer, &header(0, 1, 0), b"x");
    p[1] |= phantom_wire::Flags::HANDSHAKE.bits();
    assert_eq!(opener.open_packet(&mut p).unwrap_err(), Error::Unprotected);
    assert_eq!(opener.failed_opens(), 0);
}

#[test]
fn i2_sealer_refuses_handshake_flag_and_small_buffers() {
    let (mut sealer, _) = pair(Suite::Aes256Gcm);
    let mut h = header(0, 1, 0);
    h.flags = h.flags | phantom_wire::Flags::HANDSHAKE;
    let mut buf = [0u8; 100];
    assert_eq!(
        sealer.seal_packet(&h, &mut buf, 10),
        Err(Error::Unprotected)
    );
    let h = header(0, 1, 0);
    let mut small = [0u8; HEADER_LEN + 10 + TAG_LEN - 1];
    assert_eq!(
        sealer.seal_packet(&h, &mut small, 10),
        Err(Error::BufferTooSmall {
            needed: HEADER_LEN + 10 + TAG_LEN,
            available: small.len()
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
    let mut ok = [0u8; HEADER_LEN + 10 + TAG_LEN];
    assert_eq!(sealer.seal_packet(&h, &mut ok, 10), Ok(ok.len()));
}

#[test]
fn i2_larger_buffer_leaves_trailing_bytes_alone() {
    let (mut sealer, mut opener) = pair(Suite::ChaCha20Poly1305);
    let mut buf = vec![0xabu8; 2000];
    buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(b"data");
    let n = sealer.seal_packet(&header(0, 1, 0), &mut buf, 4).unwrap();
    assert_eq!(n, HEADER_LEN + 4 + TAG_LEN);
    assert!(buf[n..].iter().all(|b| *b == 0xab));
    let opened = opener.open_packet(&mut buf[..n]).unwrap();
    assert_eq!(opened.payload(), b"data");
}

#[test]
fn i6_open_session_packet_refuses_another_session_before_any_key_and_counts_nothing() {
    for suite in Suite::ALL {
        let (mut sealer, mut opener) = pair(suite);
        let ours = phantom_wire::SessionId([0x11; 32]);
        let other = phantom_wire::SessionId([0x22; 32]);
        let genuine = seal(&mut sealer, &header(0, 4, 1), b"session");
        // Another session's id: refused as such, the opener counts no failure and
        // the bytes stay as they were.
        let mut p = genuine.clone();
        assert_eq!(
            opener.open_session_packet(&other, &mut p).unwrap_err(),
            Error::UnknownSession
        );
        assert_eq!(p, genuine);
        assert_eq!(opener.failed_opens(), 0);
        // A malformed header and a cleartext handshake packet keep their errors.
        let mut short = genuine[..HEADER_LEN - 1].to_vec();
        assert!(matches!(
            opener.open_session_packet(&ours, &mut short).unwrap_err(),
            Error::Wire(_)
        ));
        let mut hs = genuine.clone();
        hs[1] |= phantom_wire::Flags::HANDSHAKE.bits();
        assert_eq!(
            opener.open_session_packet(&ours, &mut hs).unwrap_err(),
            Error::Unprotected
        );
        // A forged tag is counted as a failed open, as with `open_packet`.
        let mut forged = genuine.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(
            opener.open_session_packet(&ours, &mut forged).unwrap_err(),
            Error::DecryptFailed
        );
        assert_eq!(opener.failed_opens(), 1);
        // The genuine packet opens with the same header and payload as `open_packet`.
        let mut p = genuine.clone();
        let opened = opener.open_session_packet(&ours, &mut p).unwrap();
        assert_eq!(*opened.header(), header(0, 4, 1));
        assert_eq!(opened.payload(), b"session");
    }
}
