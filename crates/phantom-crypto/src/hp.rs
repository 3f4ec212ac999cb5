//! Header protection (the RFC 9001 §5.4 construction): a mask computed from a sample of
//! the ciphertext under a key of its own hides the header's low bits of byte 0 and
//! every byte after the connection id.
//!
//! The key is `HKDF-Expand(S_0, "phantom v2 hp", 32)` of the direction's epoch-0
//! secret and never changes on rekey (the receiver must remove the mask before it
//! knows the epoch). AES-256 suite: `mask = AES-256-ECB(hp, sample)`; ChaCha20 suite:
//! the first 16 bytes of the ChaCha20 keystream with block counter `LE u32
//! sample[0..4]` and nonce `sample[4..16]`. One block cipher call per packet, nothing
//! allocated.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use phantom_wire::SAMPLE_LEN;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Error, Suite, TrafficSecret};

/// The HKDF label of the header-protection key.
pub(crate) const LABEL_HP: &[u8] = b"phantom v2 hp";

/// A header-protection key of one direction. Zeroized on drop (the AES key schedule by
/// the `aes` crate's `zeroize` feature, the ChaCha20 key here); Debug is redacted.
pub(crate) enum HpKey {
    /// Encryption only (the mask is one forward block): half the round keys.
    Aes(Box<aes::Aes256Enc>),
    ChaCha(Box<Zeroizing<[u8; 32]>>),
}

impl HpKey {
    /// Derives the key from the direction's epoch-0 secret.
    pub(crate) fn derive(suite: Suite, secret: &TrafficSecret) -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        secret.expand_label(LABEL_HP, key.as_mut_slice())?;
        Ok(Self::from_raw(suite, &key))
    }

    /// A key from raw bytes (known-answer tests, fuzzing).
    pub(crate) fn from_raw(suite: Suite, key: &[u8; 32]) -> Self {
        match suite {
            Suite::Aes256Gcm => HpKey::Aes(Box::new(aes::Aes256Enc::new(key.into()))),
            Suite::ChaCha20Poly1305 => HpKey::ChaCha(Box::new(Zeroizing::new(*key))),
        }
    }

    /// The 16-byte mask for `sample`.
    pub(crate) fn mask(&self, sample: &[u8; SAMPLE_LEN]) -> Result<[u8; SAMPLE_LEN], Error> {
        match self {
            HpKey::Aes(cipher) => {
                let mut block = (*sample).into();
                cipher.encrypt_block(&mut block);
                Ok(block.into())
            }
            HpKey::ChaCha(key) => {
                let [c0, c1, c2, c3, nonce @ ..] = *sample;
                let counter = u32::from_le_bytes([c0, c1, c2, c3]);
                let key: &[u8; 32] = key;
                let mut cipher = chacha20::ChaCha20::new(key.into(), (&nonce).into());
                cipher
                    .try_seek(u64::from(counter) * 64)
                    .map_err(|_| Error::KeyDerivation)?;
                let mut mask = [0u8; SAMPLE_LEN];
                cipher
                    .try_apply_keystream(&mut mask)
                    .map_err(|_| Error::KeyDerivation)?;
                Ok(mask)
            }
        }
    }
}

impl Drop for HpKey {
    fn drop(&mut self) {
        if let HpKey::ChaCha(key) = self {
            key.zeroize();
        }
    }
}

impl ZeroizeOnDrop for HpKey {}

impl core::fmt::Debug for HpKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HpKey(<redacted>)")
    }
}

/// The header-protection key of one direction, as a public tool: removes (or applies)
/// the mask of a short packet without opening it. The [`crate::Opener`] and
/// [`crate::Sealer`] hold one each; tests, fuzz targets and capture tools use this one.
/// Removing the mask needs the key, so it reveals nothing a passive observer could see.
#[derive(Debug)]
pub struct HeaderKey(HpKey);

impl HeaderKey {
    /// The header-protection key of the direction whose epoch-0 secret is `secret`.
    ///
    /// # Errors
    /// Never in practice; typed for totality.
    pub fn new(suite: Suite, secret: &TrafficSecret) -> Result<Self, Error> {
        HpKey::derive(suite, secret).map(Self)
    }

    /// The mask for the short packet `datagram` with a `cid_len`-byte id.
    fn mask_for(&self, datagram: &[u8], cid_len: usize) -> Result<[u8; SAMPLE_LEN], Error> {
        if datagram.len() < phantom_wire::min_packet_len(cid_len) {
            return Err(Error::PacketTooShort);
        }
        let offset = phantom_wire::sample_offset(cid_len);
        let sample: &[u8; SAMPLE_LEN] = datagram
            .get(offset..offset + SAMPLE_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::PacketTooShort)?;
        self.0.mask(sample)
    }

    /// Removes header protection into a copy of the header and parses it: the header
    /// as on the wire before masking, and its unprotected image (the AEAD's associated
    /// data, `image[..header.len]`). `datagram` is not modified.
    ///
    /// # Errors
    /// [`Error::PacketTooShort`] below the sample's end; [`Error::Wire`] if the
    /// unprotected header does not parse (not a short packet, reserved bits set).
    pub fn unprotect(
        &self,
        datagram: &[u8],
        cid_len: usize,
    ) -> Result<(phantom_wire::WireHeader, [u8; phantom_wire::MAX_HEADER_LEN]), Error> {
        let mask = self.mask_for(datagram, cid_len)?;
        let mut image = [0u8; phantom_wire::MAX_HEADER_LEN];
        let n = datagram.len().min(phantom_wire::MAX_HEADER_LEN);
        if let (Some(dst), Some(src)) = (image.get_mut(..n), datagram.get(..n)) {
            dst.copy_from_slice(src);
        }
        phantom_wire::protect_in_place(&mut image, cid_len, &mask, false)?;
        let wire = phantom_wire::WireHeader::parse(&image, cid_len)?;
        Ok((wire, image))
    }

    /// Applies header protection in place to a packet whose header is in clear.
    ///
    /// # Errors
    /// As [`HeaderKey::unprotect`].
    pub fn protect(&self, packet: &mut [u8], cid_len: usize) -> Result<(), Error> {
        let mask = self.mask_for(packet, cid_len)?;
        phantom_wire::protect_in_place(packet, cid_len, &mask, true)?;
        Ok(())
    }
}
