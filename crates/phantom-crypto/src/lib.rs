//! Phantom's packet protection: AEAD suites, key schedule, epochs, nonces, limits.
//!
//! (Work in progress: this crate doc is completed with the implementation.)

/// An AEAD suite Phantom can protect packets with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM (preferred where the CPU has AES and carry-less multiply).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (preferred without AES hardware).
    ChaCha20Poly1305,
}

impl Suite {
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
}

impl core::fmt::Debug for TrafficSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TrafficSecret(<redacted>)")
    }
}
