//! HKDF-SHA256 (RFC 5869) and Phantom's key schedule labels.
//!
//! Every derivation in Phantom is HKDF-SHA256. The labels are the HKDF `info`
//! strings, used verbatim (no length prefix, no terminator):
//!
//! | output                 | derivation                                         |
//! |------------------------|----------------------------------------------------|
//! | AEAD key (32 bytes)    | `HKDF-Expand(secret, "phantom v1 key", 32)`        |
//! | AEAD IV (12 bytes)     | `HKDF-Expand(secret, "phantom v1 iv", 12)`         |
//! | next epoch's secret    | `HKDF-Expand(secret, "phantom-rekey-v1", 32)`      |
//!
//! where `secret` is the 32-byte [`TrafficSecret`] of one direction and one epoch,
//! used directly as the HKDF pseudorandom key.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, TrafficSecret};

/// Length of a SHA-256 output, a PRK and a traffic secret.
pub const HASH_LEN: usize = 32;

/// The largest HKDF-SHA256 output: 255 blocks of 32 bytes (RFC 5869 §2.3).
pub const MAX_EXPAND_LEN: usize = 255 * HASH_LEN;

/// `info` label of the per-epoch AEAD key.
pub const LABEL_KEY: &[u8] = b"phantom v1 key";
/// `info` label of the per-epoch AEAD IV.
pub const LABEL_IV: &[u8] = b"phantom v1 iv";
/// `info` label of the rekey chain step (SPEC capability 3).
pub const LABEL_REKEY: &[u8] = b"phantom-rekey-v1";

type HkdfSha256 = hkdf::Hkdf<sha2::Sha256>;

/// An HKDF-SHA256 pseudorandom key, the output of [`hkdf_extract`].
/// Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Prk([u8; HASH_LEN]);

impl Prk {
    /// Wraps PRK bytes obtained elsewhere.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// The PRK bytes. Named loudly: the caller takes responsibility for not leaking them.
    #[must_use]
    pub const fn dangerously_expose(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// `HKDF-Expand(self, info, okm.len())` into `okm`.
    ///
    /// # Errors
    /// [`Error::KeyDerivation`] if `okm` is longer than [`MAX_EXPAND_LEN`].
    pub fn expand(&self, info: &[u8], okm: &mut [u8]) -> Result<(), Error> {
        hkdf_expand(&self.0, info, okm)
    }

    /// Expands a 32-byte [`TrafficSecret`] under `label` (for the handshake's
    /// derivation of the epoch-0 secrets of each direction).
    ///
    /// # Errors
    /// Never in practice (32 bytes is a valid length); typed for totality.
    pub fn expand_secret(&self, label: &[u8]) -> Result<TrafficSecret, Error> {
        expand_secret(&self.0, label)
    }
}

impl core::fmt::Debug for Prk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Prk(<redacted>)")
    }
}

/// `HKDF-Extract(salt, ikm)` (RFC 5869 §2.2). An empty salt means the all-zero salt.
#[must_use]
pub fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> Prk {
    let (prk, _) = HkdfSha256::extract(Some(salt), ikm);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&prk);
    // `prk` is a stack array owned by us; wipe our copy source as well.
    let mut prk = prk;
    prk.as_mut_slice().zeroize();
    Prk(out)
}

/// `HKDF-Expand(prk, info, okm.len())` into `okm` (RFC 5869 §2.3).
///
/// # Errors
/// [`Error::KeyDerivation`] if `prk` is shorter than 32 bytes or `okm` is longer
/// than [`MAX_EXPAND_LEN`].
pub fn hkdf_expand(prk: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), Error> {
    let hk = HkdfSha256::from_prk(prk).map_err(|_| Error::KeyDerivation)?;
    hk.expand(info, okm).map_err(|_| Error::KeyDerivation)
}

/// `HKDF-Expand(secret, label, 32)` as a new [`TrafficSecret`].
pub(crate) fn expand_secret(prk: &[u8; HASH_LEN], label: &[u8]) -> Result<TrafficSecret, Error> {
    let mut out = TrafficSecret::from_bytes([0u8; HASH_LEN]);
    hkdf_expand(prk, label, out.bytes_mut())?;
    Ok(out)
}

impl TrafficSecret {
    /// The next epoch's secret: `HKDF-Expand(self, "phantom-rekey-v1", 32)`.
    ///
    /// The caller replaces (and so zeroizes, I5) the old secret once the new epoch is
    /// committed; `Sealer` and `Opener` do this themselves.
    ///
    /// # Errors
    /// Never in practice (fixed valid lengths); typed for totality.
    pub fn next_epoch(&self) -> Result<TrafficSecret, Error> {
        expand_secret(self.dangerously_expose(), LABEL_REKEY)
    }

    /// `HKDF-Expand(self, label, out.len())`: the secret used as an HKDF PRK.
    ///
    /// # Errors
    /// [`Error::KeyDerivation`] if `out` is longer than [`MAX_EXPAND_LEN`].
    pub fn expand_label(&self, label: &[u8], out: &mut [u8]) -> Result<(), Error> {
        hkdf_expand(self.dangerously_expose(), label, out)
    }
}
