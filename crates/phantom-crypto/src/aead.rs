//! The AEAD seam: one enum over the backends, and the per-epoch packet key.
//!
//! Callers (the [`Sealer`](crate::Sealer) and [`Opener`](crate::Opener)) only see
//! [`PacketKey`]; a new backend is one more [`AeadKey`] variant behind a cargo feature.
//! Cipher objects are built once per epoch, never per packet.
//!
//! Backends: RustCrypto (`aes-gcm`, `chacha20poly1305`) by default; with the `aws-lc`
//! cargo feature, aws-lc-rs (`LessSafeKey`) instead. Both give the same contract:
//! seal in place with a detached tag; open in place, and on failure the buffer is
//! unchanged.

#[cfg(not(feature = "aws-lc"))]
use aes_gcm::aead::{AeadInOut, KeyInit};
use phantom_wire::StreamId;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::kdf::{LABEL_IV, LABEL_KEY};
use crate::{Error, Suite, TrafficSecret};

/// Length of an AEAD key (both suites).
pub const KEY_LEN: usize = 32;
/// Length of the AEAD nonce and of the per-epoch IV.
pub const NONCE_LEN: usize = 12;
/// Length of the AEAD authentication tag (both suites).
pub const TAG_LEN: usize = 16;

/// One AEAD cipher object, keyed. Each backend zeroizes its key schedule on drop
/// (RustCrypto's `zeroize` feature).
///
/// Both ciphers are boxed, so the enum is one pointer whichever the suite. Inline, the
/// ChaCha20 variant would leave the rest of the (AES-sized) enum as a tail that moves
/// copy from wherever the value was built, stack bytes that can hold a secret, and that
/// no drop wipes; `tests/zeroize_observed.rs` found exactly that. The box costs one
/// pointer load per packet.
/// AES-256-GCM on the encryption-only AES key schedule: GCM never runs the block
/// cipher backwards, and `aes_gcm::Aes256Gcm` would keep the decryption round keys
/// too (624 bytes per key where this takes 384).
#[cfg(not(feature = "aws-lc"))]
type Aes256Gcm = aes_gcm::AesGcm<aes::Aes256Enc, aes_gcm::aead::consts::U12>;

#[cfg(not(feature = "aws-lc"))]
pub(crate) enum AeadKey {
    Aes256Gcm(Box<Aes256Gcm>),
    ChaCha20Poly1305(Box<chacha20poly1305::ChaCha20Poly1305>),
}

#[cfg(not(feature = "aws-lc"))]
impl AeadKey {
    pub(crate) fn new(suite: Suite, key: &[u8; KEY_LEN]) -> Self {
        match suite {
            Suite::Aes256Gcm => AeadKey::Aes256Gcm(Box::new(Aes256Gcm::new(key.into()))),
            Suite::ChaCha20Poly1305 => AeadKey::ChaCha20Poly1305(Box::new(
                chacha20poly1305::ChaCha20Poly1305::new(key.into()),
            )),
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let tag = match self {
            AeadKey::Aes256Gcm(c) => c.encrypt_inout_detached(nonce.into(), aad, buf.into()),
            AeadKey::ChaCha20Poly1305(c) => c.encrypt_inout_detached(nonce.into(), aad, buf.into()),
        }
        .map_err(|_| Error::SealFailed)?;
        Ok(tag.into())
    }

    /// Verifies `tag` over `aad` and `buf`, then decrypts `buf` in place.
    ///
    /// Both RustCrypto backends verify the tag *before* touching `buf`, so on error the
    /// buffer is unchanged and a trial open with another key can follow.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        match self {
            AeadKey::Aes256Gcm(c) => {
                c.decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
            }
            AeadKey::ChaCha20Poly1305(c) => {
                c.decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
            }
        }
        .map_err(|_| Error::DecryptFailed)
    }
}

/// One AEAD cipher object, keyed, on aws-lc-rs (cargo feature `aws-lc`).
///
/// aws-lc keeps the key schedule in a heap `EVP_AEAD_CTX`; dropping the
/// `LessSafeKey` frees it with `EVP_AEAD_CTX_free`, whose `OPENSSL_free` cleanses the
/// whole allocation, so the key schedule is wiped on drop here too.
#[cfg(feature = "aws-lc")]
pub(crate) enum AeadKey {
    /// The suite's algorithm, keyed.
    Ready(aws_lc_rs::aead::LessSafeKey),
    /// aws-lc could not build the context (only on allocation failure inside the C
    /// library): every seal fails with [`Error::SealFailed`], every open with
    /// [`Error::DecryptFailed`]. Nothing is ever sealed or opened with a bad key.
    Unavailable,
}

#[cfg(feature = "aws-lc")]
std::thread_local! {
    /// Per-thread copy of the ciphertext being opened (public bytes only, never
    /// plaintext or keys). Grows to the largest datagram seen, then is reused.
    static OPEN_SCRATCH: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
}

#[cfg(feature = "aws-lc")]
impl AeadKey {
    pub(crate) fn new(suite: Suite, key: &[u8; KEY_LEN]) -> Self {
        let algorithm = match suite {
            Suite::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &aws_lc_rs::aead::CHACHA20_POLY1305,
        };
        match aws_lc_rs::aead::UnboundKey::new(algorithm, key) {
            Ok(k) => AeadKey::Ready(aws_lc_rs::aead::LessSafeKey::new(k)),
            Err(_) => AeadKey::Unavailable,
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let AeadKey::Ready(key) = self else {
            return Err(Error::SealFailed);
        };
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce);
        let tag = key
            .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), buf)
            .map_err(|_| Error::SealFailed)?;
        tag.as_ref().try_into().map_err(|_| Error::SealFailed)
    }

    /// Verifies `tag` over `aad` and `buf` and decrypts `buf` in place.
    ///
    /// aws-lc decrypts while it authenticates and, on failure, zeroes the output
    /// (`EVP_AEAD_CTX_open_gather`), which in place would destroy the ciphertext. To
    /// keep the seam's contract (on error `buf` is unchanged), the ciphertext is first
    /// copied into a per-thread scratch buffer and written back on failure: one
    /// `memcpy` of the payload per open, no allocation once the scratch has grown.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Error> {
        let AeadKey::Ready(key) = self else {
            return Err(Error::DecryptFailed);
        };
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce);
        OPEN_SCRATCH.with(|scratch| {
            // A re-entrant borrow cannot happen (no callbacks below); fail closed anyway.
            let mut scratch = scratch.try_borrow_mut().map_err(|_| Error::DecryptFailed)?;
            scratch.clear();
            scratch.extend_from_slice(buf);
            match key.open_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::from(aad), tag, buf) {
                Ok(_) => Ok(()),
                Err(_) => {
                    buf.copy_from_slice(&scratch);
                    Err(Error::DecryptFailed)
                }
            }
        })
    }
}

// Every variant zeroizes itself on drop.
impl ZeroizeOnDrop for AeadKey {}

impl core::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

/// The AEAD key and IV of one direction and one epoch.
///
/// # Invariants
/// I3: [`PacketKey::nonce`] is injective in (stream, 48-bit sequence) for a fixed key,
/// so distinct (stream, sequence) pairs never share a nonce.
/// I8: the IV is zeroized on drop and the cipher wipes its key schedule; Debug is redacted.
pub(crate) struct PacketKey {
    aead: AeadKey,
    iv: [u8; NONCE_LEN],
}

impl PacketKey {
    /// Derives the key and IV of the epoch whose secret is `secret`.
    pub(crate) fn derive(suite: Suite, secret: &TrafficSecret) -> Result<Self, Error> {
        let mut key = [0u8; KEY_LEN];
        let mut iv = [0u8; NONCE_LEN];
        let derived = secret
            .expand_label(LABEL_KEY, &mut key)
            .and_then(|()| secret.expand_label(LABEL_IV, &mut iv));
        let out = derived.map(|()| Self::from_raw(suite, &key, iv));
        key.zeroize();
        iv.zeroize();
        out
    }

    /// A key from raw material (test vectors, fuzzing).
    pub(crate) fn from_raw(suite: Suite, key: &[u8; KEY_LEN], iv: [u8; NONCE_LEN]) -> Self {
        Self {
            aead: AeadKey::new(suite, key),
            iv,
        }
    }

    /// `iv XOR (0x00 0x00 ‖ stream_id (4, BE) ‖ sequence (6, BE))`.
    /// The caller guarantees `sequence <= MAX_SEQUENCE` (its top 16 bits are dropped).
    #[inline]
    pub(crate) fn nonce(&self, stream: StreamId, sequence: u64) -> [u8; NONCE_LEN] {
        debug_assert!(sequence <= phantom_wire::MAX_SEQUENCE);
        let [s0, s1, s2, s3] = stream.0.to_be_bytes();
        let [_, _, q0, q1, q2, q3, q4, q5] = sequence.to_be_bytes();
        let mask = [0, 0, s0, s1, s2, s3, q0, q1, q2, q3, q4, q5];
        let mut nonce = self.iv;
        for (n, m) in nonce.iter_mut().zip(mask) {
            *n ^= m;
        }
        nonce
    }

    #[inline]
    pub(crate) fn aead(&self) -> &AeadKey {
        &self.aead
    }

    #[cfg(test)]
    pub(crate) fn iv(&self) -> &[u8; NONCE_LEN] {
        &self.iv
    }
}

impl Drop for PacketKey {
    fn drop(&mut self) {
        self.iv.zeroize();
    }
}

impl ZeroizeOnDrop for PacketKey {}

impl core::fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PacketKey(<redacted>)")
    }
}
