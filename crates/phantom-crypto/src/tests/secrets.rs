//! I8: secrets zeroized and never printed.

use zeroize::Zeroize;

use super::{header, pair, seal, to_hex};
use crate::aead::PacketKey;
use crate::kdf::LABEL_KEY;
use crate::{Error, Opener, Prk, Sealer, Suite, TrafficSecret, hkdf_extract};

/// True if `text` contains `bytes` in any common rendering (hex either case, or a
/// decimal/hex list as a derived Debug would print it).
fn leaks(text: &str, bytes: &[u8]) -> bool {
    let lower = to_hex(bytes);
    let dec: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
    let list = dec.join(", ");
    let hex_list: Vec<String> = bytes.iter().map(|b| format!("{b:#x}")).collect();
    text.contains(&lower)
        || text.contains(&lower.to_uppercase())
        || text.contains(&lower[..8])
        || text.contains(&list[..list.len().min(20)])
        || text.contains(&hex_list.join(", "))
}

#[test]
fn i8_debug_output_contains_no_key_bytes() {
    let raw: [u8; 32] = core::array::from_fn(|i| 0xa0 ^ (i as u8).wrapping_mul(13));
    let secret = TrafficSecret::from_bytes(raw);
    let mut key = [0u8; 32];
    secret.expand_label(LABEL_KEY, &mut key).unwrap();
    let next = secret.next_epoch().unwrap();
    let sealer = Sealer::new(Suite::Aes256Gcm, secret.clone()).unwrap();
    let opener = Opener::new(Suite::ChaCha20Poly1305, secret.clone()).unwrap();
    let pk = PacketKey::derive(Suite::Aes256Gcm, &secret).unwrap();
    let iv = *pk.iv();
    let prk: Prk = hkdf_extract(b"salt", &raw);
    let outputs = [
        format!("{secret:?}"),
        format!("{secret:#?}"),
        format!("{next:?}"),
        format!("{sealer:?}"),
        format!("{sealer:#?}"),
        format!("{opener:?}"),
        format!("{pk:?}"),
        format!("{prk:?}"),
    ];
    for out in &outputs {
        for material in [
            &raw[..],
            &key[..],
            &iv[..],
            next.dangerously_expose(),
            prk.dangerously_expose(),
        ] {
            assert!(!leaks(out, material), "Debug leaks key material: {out}");
        }
    }
    assert!(outputs[0].contains("redacted"));
    // The leak detector itself works.
    assert!(leaks(&format!("{:?}", raw), &raw));
    assert!(leaks(&to_hex(&key), &key));
}

#[test]
fn i8_errors_carry_no_key_material() {
    let (mut sealer, mut opener) = pair(Suite::Aes256Gcm);
    let mut p = seal(&mut sealer, &header(0, 1, 0), b"secret payload bytes");
    let n = p.len();
    p[n - 1] ^= 1;
    let err = opener.open_packet(&mut p, 8, |_| None).unwrap_err();
    assert_eq!(err, Error::DecryptFailed);
    assert_eq!(err.to_string(), "decrypt failed");
    assert!(!format!("{err:?}").contains("secret payload"));
    // An opened packet's Debug shows the payload length, not the plaintext.
    let mut q = seal(&mut sealer, &header(0, 1, 1), b"secret payload bytes");
    let opened = opener.open_packet(&mut q, 8, |_| None).unwrap();
    let shown = format!("{opened:?}");
    assert!(shown.contains("payload_len: 20"), "{shown}");
    assert!(!leaks(&shown, b"secret payload bytes"), "{shown}");
}

#[test]
fn i8_secrets_zeroize() {
    let mut s = TrafficSecret::from_bytes([0x77; 32]);
    s.zeroize();
    assert_eq!(s.dangerously_expose(), &[0u8; 32]);
    let mut prk = Prk::from_bytes([0x66; 32]);
    prk.zeroize();
    assert_eq!(prk.dangerously_expose(), &[0u8; 32]);
}

#[test]
fn i5_rekey_replaces_secret_and_key() {
    let (mut sealer, _) = pair(Suite::ChaCha20Poly1305);
    let before = *sealer.secret().dangerously_expose();
    let iv_before = *sealer.packet_key().iv();
    sealer.rekey().unwrap();
    assert_ne!(sealer.secret().dangerously_expose(), &before);
    assert_ne!(sealer.packet_key().iv(), &iv_before);
}

// Compile-time check: every secret-holding type promises to zeroize on drop. The promise
// is checked on the bytes themselves in tests/zeroize_observed.rs.
#[test]
fn i8_secret_types_are_zeroize_on_drop() {
    fn zod<T: zeroize::ZeroizeOnDrop>() {}
    zod::<TrafficSecret>();
    zod::<Prk>();
    zod::<Sealer>();
    zod::<Opener>();
    zod::<PacketKey>();
}
