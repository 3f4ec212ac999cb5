//! Per-suite AEAD usage limits (RFC 9001 §6.6) and the rekey thresholds.

use crate::Suite;

/// How much one key may be used.
///
/// * `confidentiality`: packets one key may seal. Sealing refuses with
///   [`Error::LimitReached`](crate::Error::LimitReached) once reached; a rekey is requested
///   well before (see [`Limits::soft_threshold`]).
/// * `integrity`: packets that may fail authentication over the opener's lifetime,
///   across all keys. Reaching it makes every further open return
///   [`Error::IntegrityLimitExceeded`](crate::Error::IntegrityLimitExceeded): the session
///   must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Packets one key may seal.
    pub confidentiality: u64,
    /// Failed opens tolerated over the opener's lifetime.
    pub integrity: u64,
}

/// AES-256-GCM confidentiality limit: 2^23 packets (RFC 9001 §6.6).
pub const AES_GCM_CONFIDENTIALITY_LIMIT: u64 = 1 << 23;
/// AES-256-GCM integrity limit: 2^52 failed opens (RFC 9001 §6.6).
pub const AES_GCM_INTEGRITY_LIMIT: u64 = 1 << 52;
/// ChaCha20-Poly1305 confidentiality limit: none in RFC 9001 (more than any possible
/// packet count); Phantom uses 2^62 so the counter still has a finite bound.
pub const CHACHA20_CONFIDENTIALITY_LIMIT: u64 = 1 << 62;
/// ChaCha20-Poly1305 integrity limit: 2^36 failed opens (RFC 9001 §6.6).
pub const CHACHA20_INTEGRITY_LIMIT: u64 = 1 << 36;

/// Default per-stream sequence span within one epoch that requests a rekey (2^31).
pub const DEFAULT_SEQ_REKEY_WATERMARK: u64 = 1 << 31;

impl Limits {
    /// The RFC 9001 §6.6 limits of `suite`.
    #[must_use]
    pub const fn for_suite(suite: Suite) -> Limits {
        match suite {
            Suite::Aes256Gcm => Limits {
                confidentiality: AES_GCM_CONFIDENTIALITY_LIMIT,
                integrity: AES_GCM_INTEGRITY_LIMIT,
            },
            Suite::ChaCha20Poly1305 => Limits {
                confidentiality: CHACHA20_CONFIDENTIALITY_LIMIT,
                integrity: CHACHA20_INTEGRITY_LIMIT,
            },
        }
    }

    /// Each limit no higher than `ceiling`'s (the smaller of the two, per field).
    #[must_use]
    pub const fn clamped_to(self, ceiling: Limits) -> Limits {
        Limits {
            confidentiality: if self.confidentiality < ceiling.confidentiality {
                self.confidentiality
            } else {
                ceiling.confidentiality
            },
            integrity: if self.integrity < ceiling.integrity {
                self.integrity
            } else {
                ceiling.integrity
            },
        }
    }

    /// Seals after which a rekey is requested: three quarters of the confidentiality
    /// limit (rounded up, at least 1 when the limit is at least 1).
    #[must_use]
    pub const fn soft_threshold(&self) -> u64 {
        self.confidentiality - self.confidentiality / 4
    }
}
