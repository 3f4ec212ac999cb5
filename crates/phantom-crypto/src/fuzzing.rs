//! Fixed-key fixtures for the `crypto_open` fuzz target and tests. The keys are public
//! constants: never use these outside fuzzing and tests.

use phantom_wire::{Epoch, Flags, HEADER_LEN, Header, PathId, SessionId, StreamId};

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

/// A valid sealed datagram carrying `payload` on stream 1, sequence `sequence`.
///
/// # Errors
/// From [`Sealer::seal_packet`].
pub fn sealed_seed(suite: Suite, payload: &[u8], sequence: u64) -> Result<Vec<u8>, Error> {
    let mut sealer = sealer(suite)?;
    let header = Header {
        flags: Flags::ACK_ELICITING,
        path_id: PathId(0),
        epoch: Epoch(0),
        session_id: SessionId([7; 32]),
        stream_id: StreamId(1),
        sequence,
    };
    let mut buf = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    if let Some(dst) = buf.get_mut(HEADER_LEN..HEADER_LEN + payload.len()) {
        dst.copy_from_slice(payload);
    }
    let n = sealer.seal_packet(&header, &mut buf, payload.len())?;
    buf.truncate(n);
    Ok(buf)
}

/// The fuzz body: opens `data` under both suites' fixed keys and checks the properties that must hold
/// for any input: no panic; a failed open leaves the bytes unchanged and the epoch
/// where it was; a successful open yields a payload exactly 68 bytes shorter than
/// the datagram.
pub fn open_arbitrary(data: &[u8]) {
    for suite in Suite::ALL {
        let Ok(mut opener) = opener(suite) else {
            return;
        };
        let mut buf = data.to_vec();
        let before = opener.epoch();
        match opener.open_packet(&mut buf) {
            Ok(opened) => {
                assert_eq!(
                    opened.payload().len() + HEADER_LEN + TAG_LEN,
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

/// The structured half of the fuzz body: `data` chooses the header fields, how many
/// epochs the sealer advances (0..20) and the payload; the packet is sealed, must
/// open under a fresh opener exactly when the epoch is within `MAX_REKEY_CATCHUP`,
/// and with one bit (also chosen by `data`) flipped must fail without moving the epoch.
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
    let header = Header {
        flags: Flags::ACK_ELICITING,
        path_id: PathId(path),
        epoch: Epoch(0),
        session_id: SessionId([3; 32]),
        stream_id: StreamId(stream),
        sequence,
    };
    let mut buf = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    if let Some(dst) = buf.get_mut(HEADER_LEN..HEADER_LEN + payload.len()) {
        dst.copy_from_slice(payload);
    }
    let Ok(n) = sealer.seal_packet(&header, &mut buf, payload.len()) else {
        return;
    };
    assert_eq!(n, buf.len());
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
        opener.open_packet(&mut tampered).is_err(),
        "tampered packet opened"
    );
    assert_eq!(tampered, snapshot, "failed open modified the datagram");
    assert_eq!(opener.epoch(), Epoch(0), "failed open moved the epoch");
    match opener.open_packet(&mut buf) {
        Ok(opened) => {
            assert!(rekeys <= crate::MAX_REKEY_CATCHUP);
            assert_eq!(opened.payload(), payload);
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
