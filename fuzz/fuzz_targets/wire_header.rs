//! Fuzz the short header: routing (`peek_conn_id`), parsing (`WireHeader::parse`) and
//! header protection (`HeaderKey::unprotect` / `protect`) never panic; a header that
//! parses is canonical — its re-encoding is exactly the image it was parsed from, which
//! is what the AEAD authenticates (I1, I2); removing then re-applying the mask restores
//! the datagram. The first input byte picks the connection-id length (4..=20).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_crypto::{HeaderKey, Suite, TrafficSecret};
use phantom_wire::{Epoch, Header, MAX_SEQUENCE, WireHeader, peek_conn_id};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let cid_len = 4 + usize::from(pick) % 17;
    if let Some(id) = peek_conn_id(data, cid_len) {
        assert_eq!(id, &data[1..1 + cid_len]);
    }
    if let Ok(w) = WireHeader::parse(data, cid_len) {
        let header = Header {
            flags: w.flags,
            epoch: Epoch(u32::from(w.epoch_low)),
            conn_id: w.conn_id,
            stream_id: w.stream_id,
            sequence: w.truncated,
            seq_len: w.seq_len,
        };
        assert!(w.seq_len.expand(w.truncated, None) <= MAX_SEQUENCE);
        let mut again = vec![0u8; header.len()];
        header
            .write_image(&mut again)
            .expect("a parsed header re-encodes");
        assert_eq!(
            again,
            &data[..w.len],
            "header re-encoding differs from the wire image"
        );
    }
    for suite in Suite::ALL {
        let Ok(key) = HeaderKey::new(suite, &TrafficSecret::from_bytes([0x5a; 32])) else {
            return;
        };
        if let Ok((w, image)) = key.unprotect(data, cid_len) {
            let mut packet = image[..w.len].to_vec();
            packet.extend_from_slice(&data[w.len..]);
            key.protect(&mut packet, cid_len).expect("same length");
            assert_eq!(packet, data, "unprotect then protect changed the datagram");
        }
    }
});
