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

use phantom_wire::{Epoch, Flags, HEADER_LEN, Header, PathId, SessionId, StreamId};

use crate::{Opener, Sealer, Suite, TAG_LEN, TrafficSecret};

pub(crate) const SECRET: [u8; 32] = [0x42; 32];

pub(crate) fn header(path: u8, stream: u32, sequence: u64) -> Header {
    Header {
        flags: Flags::ACK_ELICITING,
        path_id: PathId(path),
        epoch: Epoch(0),
        session_id: SessionId([0x11; 32]),
        stream_id: StreamId(stream),
        sequence,
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
    let mut buf = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let n = sealer.seal_packet(header, &mut buf, payload.len())?;
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
