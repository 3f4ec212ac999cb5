//! Fixed-key fixtures for the `crypto_open` fuzz target and tests. The keys are public
//! constants: never use these outside fuzzing and tests.

use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId, min_packet_len};

use crate::{Error, Opener, Sealer, Suite, TAG_LEN, TrafficSecret};

/// The fixed, public secret the fuzzing opener and sealer use.
pub const FUZZ_SECRET: [u8; 32] = [0x5a; 32];

/// An opener under [`FUZZ_SECRET`] at epoch 0.
///
/// # Errors
/// Never in practice.
pub fn opener(suite: Suite) -> Result<Opener, Error> {
    Opener::new(suite, TrafficSecret::from_bytes(FUZZ_SECRET))
}

/// A sealer under [`FUZZ_SECRET`] at epoch 0 (builds valid seeds).
///
/// # Errors
/// Never in practice.
pub fn sealer(suite: Suite) -> Result<Sealer, Error> {
    Sealer::new(suite, TrafficSecret::from_bytes(FUZZ_SECRET))
}

/// The connection id of the fuzzing packets (8 bytes, the default length).
pub const FUZZ_CONN_ID: [u8; 8] = [7; 8];

/// Seals `payload` under `header` into a new datagram, appending zero bytes (PADDING
/// frames) to the payload when the packet would be shorter than the header-protection
/// sample needs.
///
/// # Errors
/// From [`Sealer::seal_packet`].
pub fn seal_padded(sealer: &mut Sealer, header: &Header, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let hlen = header.len();
    let padded = payload
        .len()
        .max(min_packet_len(header.conn_id.len()).saturating_sub(hlen + TAG_LEN));
    let mut buf = vec![0u8; hlen + padded + TAG_LEN];
    if let Some(dst) = buf.get_mut(hlen..hlen + payload.len()) {
        dst.copy_from_slice(payload);
    }
    let n = sealer.seal_packet(header, &mut buf, padded)?;
    buf.truncate(n);
    Ok(buf)
}

/// A valid sealed datagram carrying `payload` on stream 1, sequence `sequence` (full
/// length), to [`FUZZ_CONN_ID`].
///
/// # Errors
/// From [`Sealer::seal_packet`].
pub fn sealed_seed(suite: Suite, payload: &[u8], sequence: u64) -> Result<Vec<u8>, Error> {
    let mut sealer = sealer(suite)?;
    let header = Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(0),
        conn_id: ConnId::from_slice(&FUZZ_CONN_ID)?,
        stream_id: StreamId(1),
        sequence,
        seq_len: SeqLen::FULL,
    };
    seal_padded(&mut sealer, &header, payload)
}

/// The fuzz body: opens `data` (an 8-byte id; the receiver has authenticated nothing
/// yet) under both suites' fixed keys and checks the properties that must hold for any
/// input: no panic; a failed open leaves the bytes unchanged and the epoch where it
/// was; a successful open yields a payload exactly header + tag bytes shorter than the
/// datagram.
pub fn open_arbitrary(data: &[u8]) {
    for suite in Suite::ALL {
        let Ok(mut opener) = opener(suite) else {
            return;
        };
        let mut buf = data.to_vec();
        let before = opener.epoch();
        match opener.open_packet(&mut buf, FUZZ_CONN_ID.len(), |_| None) {
            Ok(opened) => {
                assert_eq!(
                    opened.payload().len() + opened.header().len() + TAG_LEN,
                    data.len(),
                    "payload length"
                );
            }
            Err(_) => {
                assert_eq!(buf.as_slice(), data, "failed open modified the datagram");
                assert_eq!(opener.epoch(), before, "failed open moved the epoch");
            }
        }
    }
}

/// The structured half of the fuzz body: `data` chooses the suite, the header fields,
/// how many epochs the sealer advances (0..20) and the payload; the packet is sealed
/// (the full sequence: the first of its space), must open under a fresh opener exactly
/// when the epoch is within `MAX_REKEY_CATCHUP`, and with one bit (also chosen by
/// `data`) flipped must fail without moving the epoch.
pub fn seal_open_roundtrip(data: &[u8]) {
    let Some((fields, payload)) = data.split_first_chunk::<12>() else {
        return;
    };
    let [path, s0, s1, s2, s3, q0, q1, q2, q3, q4, q5, rekeys] = *fields;
    let stream = u32::from_be_bytes([s0, s1, s2, s3]);
    let sequence = u64::from_be_bytes([0, 0, q0, q1, q2, q3, q4, q5]);
    let rekeys = u32::from(rekeys % 20);
    let suite = if path & 1 == 0 {
        Suite::Aes256Gcm
    } else {
        Suite::ChaCha20Poly1305
    };
    let (Ok(mut sealer), Ok(mut opener)) = (sealer(suite), opener(suite)) else {
        return;
    };
    for _ in 0..rekeys {
        if sealer.rekey().is_err() {
            return;
        }
    }
    let Ok(conn_id) = ConnId::from_slice(&[3; 8]) else {
        return;
    };
    let header = Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(0),
        conn_id,
        stream_id: StreamId(stream),
        sequence,
        seq_len: SeqLen::FULL,
    };
    let Ok(mut buf) = seal_padded(&mut sealer, &header, payload) else {
        return;
    };
    let n = buf.len();
    let padded = n - header.len() - TAG_LEN;
    // One flipped bit, anywhere in the datagram: must fail and change nothing.
    let bit = payload.iter().fold(usize::from(path), |acc, b| {
        acc.wrapping_mul(31).wrapping_add(usize::from(*b))
    }) % (n * 8);
    let mut tampered = buf.clone();
    if let Some(byte) = tampered.get_mut(bit / 8) {
        *byte ^= 1 << (bit % 8);
    }
    let snapshot = tampered.clone();
    assert!(
        opener.open_packet(&mut tampered, 8, |_| None).is_err(),
        "tampered packet opened"
    );
    assert_eq!(tampered, snapshot, "failed open modified the datagram");
    assert_eq!(opener.epoch(), Epoch(0), "failed open moved the epoch");
    match opener.open_packet(&mut buf, 8, |_| None) {
        Ok(opened) => {
            assert!(rekeys <= crate::MAX_REKEY_CATCHUP);
            assert_eq!(opened.payload().get(..payload.len()), Some(payload));
            assert_eq!(opened.payload().len(), padded);
            assert_eq!(opened.header().sequence, sequence);
            assert_eq!(opened.header().stream_id, StreamId(stream));
            assert_eq!(opened.header().epoch, Epoch(rekeys));
        }
        Err(e) => {
            assert!(
                rekeys > crate::MAX_REKEY_CATCHUP,
                "genuine packet refused: {e:?}"
            );
            assert_eq!(e, Error::EpochTooFarAhead);
        }
    }
}
