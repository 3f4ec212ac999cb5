//! Fuzz `Header::parse`: never panics, and a header that parses is canonical — its
//! re-encoding is exactly the 52-byte image it was parsed from, which is what the
//! AEAD authenticates (I1, I2), and the payload is the rest of the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use phantom_wire::{HEADER_LEN, Header, MAX_SEQUENCE};

fuzz_target!(|data: &[u8]| {
    match Header::parse(data) {
        Ok((header, image, payload)) => {
            assert_eq!(image.as_slice(), &data[..HEADER_LEN]);
            assert_eq!(payload, &data[HEADER_LEN..]);
            assert!(header.sequence <= MAX_SEQUENCE);
            let again = header.to_bytes().expect("a parsed header re-encodes");
            assert_eq!(
                &again, image,
                "header re-encoding differs from the wire image"
            );
        }
        Err(_) => {}
    }
});
