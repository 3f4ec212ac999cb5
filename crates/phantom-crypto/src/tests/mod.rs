//! Unit, vector and property tests. They live inside the crate so they can drive the
//! AEAD seam and the key schedule directly.

mod fuzz_bodies;
mod limits;
mod nonce;
mod rekey;
mod secrets;
mod suites;
mod tamper;
mod vectors;

use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId, min_packet_len};

use crate::{Opener, Sealer, Suite, TAG_LEN, TrafficSecret};

pub(crate) const SECRET: [u8; 32] = [0x42; 32];

/// The 8-byte connection id of the test packets.
pub(crate) const CID: [u8; 8] = [0x11; 8];

/// A header with the full sequence. The path is not on the wire (nor in the nonce):
/// `_path` only documents which path a test pretends the packet takes.
pub(crate) fn header(_path: u8, stream: u32, sequence: u64) -> Header {
    Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(0),
        conn_id: ConnId::from_slice(&CID).unwrap(),
        stream_id: StreamId(stream),
        sequence,
        seq_len: SeqLen::FULL,
    }
}

pub(crate) fn pair(suite: Suite) -> (Sealer, Opener) {
    (
        Sealer::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap(),
        Opener::new(suite, TrafficSecret::from_bytes(SECRET)).unwrap(),
    )
}

pub(crate) fn seal(sealer: &mut Sealer, header: &Header, payload: &[u8]) -> Vec<u8> {
    try_seal(sealer, header, payload).unwrap()
}

pub(crate) fn try_seal(
    sealer: &mut Sealer,
    header: &Header,
    payload: &[u8],
) -> Result<Vec<u8>, crate::Error> {
    // Payloads too short for the header-protection sample get zero bytes (PADDING).
    let hlen = header.len();
    let padded = payload
        .len()
        .max(min_packet_len(header.conn_id.len()).saturating_sub(hlen + TAG_LEN));
    let mut buf = vec![0u8; hlen + padded + TAG_LEN];
    buf[hlen..hlen + payload.len()].copy_from_slice(payload);
    let n = sealer.seal_packet(header, &mut buf, padded)?;
    assert_eq!(n, buf.len());
    Ok(buf)
}

pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2));
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
