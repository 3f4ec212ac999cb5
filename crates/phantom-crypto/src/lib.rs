//! Phantom's packet protection: AEAD suites, adaptive suite choice, the HKDF-SHA256
//! key schedule, epochs and rekeying, nonce construction and AEAD usage limits.
//!
//! **What it owns.** Everything between a plaintext payload and a sealed datagram.
//! The handshake hands over one 32-byte epoch-0 [`TrafficSecret`] per direction and the
//! negotiated [`Suite`] ([`Suite::preferred`] picks AES-256-GCM when the CPU has AES and
//! carry-less-multiply instructions, ChaCha20-Poly1305 otherwise;
//! [`Suite::preference_order`] is the order the handshake offers, with an override).
//! A [`Sealer`] protects the sending direction and an [`Opener`] the receiving one.
//! Per epoch the key is `HKDF-Expand(secret, "phantom v1 key", 32)`, the 12-byte IV is
//! `HKDF-Expand(secret, "phantom v1 iv", 12)`, and the next epoch's secret is
//! `HKDF-Expand(secret, "phantom-rekey-v1", 32)` (the secret is the PRK; see [`kdf`]).
//! The nonce is `iv XOR (0x00 0x00 ‖ stream id (4 bytes) ‖ sequence (6 bytes))`: the
//! path id is not in it, since per space the sequence counter is shared by all paths
//! and only grows. A full 12-byte IV is used, as TLS 1.3 and QUIC do. Sealing and opening
//! are in place over the caller's buffer with the *unprotected* short-header image as
//! associated data, then header protection masks the header (RFC 9001 §5.4 model: the
//! key is `HKDF-Expand(S_0, "phantom v2 hp", 32)` of the epoch-0 secret and never
//! changes on rekey; AES-256-ECB or ChaCha20 over a 16-byte ciphertext sample). The
//! sealer picks how many sequence bytes a packet carries ([`Sealer::seq_len`]); the
//! opener expands them against the receiver's largest authenticated sequence of the
//! space. Nothing is allocated per packet (the sealer allocates once per new stream per
//! epoch), and cipher objects are built once per epoch. The AEAD is
//! behind one internal enum, so another backend can be added behind a cargo feature
//! without touching callers; RustCrypto `aes-gcm`/`chacha20poly1305` is the default.
//!
//! **Invariants upheld.** I2: every packet is sealed with its exact header wire image
//! as associated data, and [`OpenedPacket`] (header plus plaintext) can only be built
//! by this crate after the AEAD verified. I3: the nonce is injective in (stream, 48-bit
//! sequence) for a fixed key, and the [`Sealer`] itself refuses any (stream, sequence)
//! not strictly above the last one it sealed in the epoch, refuses
//! sequences above `MAX_SEQUENCE`, and asks for a rekey when a stream's sequence span in
//! an epoch reaches the watermark; exhaustion is an error, never reuse. I5: epochs move
//! only forward — the sealer by [`Sealer::rekey`], the opener only after a packet of the
//! newer epoch (at most [`MAX_REKEY_CATCHUP`] ahead) authenticated under a trial key —
//! saturate at `Epoch::MAX` with [`Error::EpochSaturated`] instead of wrapping, and every
//! replaced secret and key is zeroized where it lies (`tests/zeroize_observed.rs` looks
//! at the freed and replaced bytes); the opener derives each epoch ahead at most once
//! while it stays in an epoch, so a forged future-epoch packet costs one trial open.
//! I6: RFC 9001 §6.6 limits per suite ([`Limits`]) are enforced inside the key objects
//! (`set_limits` can lower them, never raise them): past three quarters of the
//! confidentiality limit the sealer asks for a rekey, at the limit it refuses; failed
//! opens are counted by the opener and at the integrity limit every open fails with
//! [`Error::IntegrityLimitExceeded`] (the session must close). I8: every secret-holding
//! type zeroizes on drop and prints `<redacted>`; no error variant carries key bytes.
//! I1 for this layer: opening never panics on arbitrary bytes and a failed open leaves
//! the datagram unchanged.

#![forbid(unsafe_code)]

mod aead;
mod error;
mod hp;
pub mod kdf;
mod limits;
mod opener;
mod sealer;

#[cfg(any(test, fuzzing))]
pub mod fuzzing;

#[cfg(test)]
mod tests;

pub use aead::{KEY_LEN, NONCE_LEN, TAG_LEN};
pub use error::Error;
pub use hp::HeaderKey;
pub use kdf::{Prk, hkdf_expand, hkdf_extract};
pub use limits::{
    AES_GCM_CONFIDENTIALITY_LIMIT, AES_GCM_INTEGRITY_LIMIT, CHACHA20_CONFIDENTIALITY_LIMIT,
    CHACHA20_INTEGRITY_LIMIT, DEFAULT_SEQ_REKEY_WATERMARK, Limits,
};
pub use opener::{MAX_REKEY_CATCHUP, OpenedPacket, Opener};
pub use sealer::{RekeyReason, STREAM_TABLE_HARD_LIMIT, STREAM_TABLE_SOFT_LIMIT, Sealer};

/// The most bytes a sealed packet adds to its payload: the longest header (20-byte id)
/// and the 16-byte tag. With the default 8-byte id a packet adds at most 20 + 16.
pub const PACKET_OVERHEAD: usize = phantom_wire::MAX_HEADER_LEN + TAG_LEN;

/// An AEAD suite Phantom can protect packets with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM (preferred where the CPU has AES and carry-less multiply).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (preferred without AES hardware).
    ChaCha20Poly1305,
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod aes_hw {
    #![allow(missing_docs, unreachable_pub)]
    cpufeatures::new!(detect, "aes", "pclmulqdq");
    pub(crate) fn present() -> bool {
        detect::get()
    }
}

#[cfg(target_arch = "aarch64")]
mod aes_hw {
    #![allow(missing_docs, unreachable_pub)]
    // On aarch64 the `aes` feature includes PMULL (carry-less multiply).
    cpufeatures::new!(detect, "aes");
    pub(crate) fn present() -> bool {
        detect::get()
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
mod aes_hw {
    pub(crate) fn present() -> bool {
        false
    }
}

impl Suite {
    /// Every suite, in the default preference order on AES hardware.
    pub const ALL: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];

    /// The suite's one-byte code on the wire (handshake negotiation).
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 1,
            Suite::ChaCha20Poly1305 => 2,
        }
    }

    /// The suite for a wire code, if known.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Suite> {
        match code {
            1 => Some(Suite::Aes256Gcm),
            2 => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// True if this CPU has AES and carry-less-multiply instructions (x86 AES-NI +
    /// PCLMULQDQ, aarch64 AES/PMULL), detected at run time and cached.
    #[must_use]
    pub fn hardware_aes() -> bool {
        aes_hw::present()
    }

    /// The fastest constant-time suite here: AES-256-GCM with AES hardware, else
    /// ChaCha20-Poly1305.
    #[must_use]
    pub fn preferred() -> Suite {
        if Self::hardware_aes() {
            Suite::Aes256Gcm
        } else {
            Suite::ChaCha20Poly1305
        }
    }

    /// The order the handshake offers suites in: `override_first` first if given (a
    /// configuration or test choice), else [`Suite::preferred`] first; the other suite
    /// second.
    #[must_use]
    pub fn preference_order(override_first: Option<Suite>) -> [Suite; 2] {
        match override_first.unwrap_or_else(Suite::preferred) {
            Suite::Aes256Gcm => [Suite::Aes256Gcm, Suite::ChaCha20Poly1305],
            Suite::ChaCha20Poly1305 => [Suite::ChaCha20Poly1305, Suite::Aes256Gcm],
        }
    }

    /// The suite's RFC 9001 §6.6 usage limits.
    #[must_use]
    pub const fn limits(self) -> Limits {
        Limits::for_suite(self)
    }
}

/// A 32-byte traffic secret (one direction, one epoch). Zeroized on drop, never printed.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct TrafficSecret([u8; 32]);

impl TrafficSecret {
    /// Wraps secret bytes (the handshake hands these over).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes. Named loudly: the caller takes responsibility for not leaking them.
    #[must_use]
    pub const fn dangerously_expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }
}

impl core::fmt::Debug for TrafficSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TrafficSecret(<redacted>)")
    }
}
