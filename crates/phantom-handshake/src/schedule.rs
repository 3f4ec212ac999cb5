//! Transcript hash and HKDF-SHA256 key schedule.
//!
//! ```text
//! psk  = resumption secret from an accepted ticket, else 0^32
//! es   = HKDF-Extract(salt = "phantom-hs-v1", ikm = psk)
//! ek0  = Expand(es, "phantom early data", SHA-256(ClientHello up to early data))
//! ms   = HKDF-Extract(salt = Expand(es, "phantom derived", ""),
//!                     ikm  = ee_x25519 ‖ ee_mlkem ‖ es_x25519 ‖ es_mlkem)
//! fk_s = Expand(ms, "phantom s finished", TH(CH‖SH))     fk_c likewise with "phantom c finished"
//! res  = Expand(ms, "phantom resumption", TH(CH‖SH))
//! c2s  = Expand(ms, "phantom c2s traffic", TH(all four messages))   s2c: "phantom s2c traffic"
//! ```
//! `Expand(k, label, ctx)` is HKDF-Expand(k, info = len(label) ‖ label ‖ len(ctx) ‖ ctx, 32).

use hkdf::Hkdf;
use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// A 32-byte secret that zeroizes on drop.
pub(crate) type Secret = Zeroizing<[u8; 32]>;

pub(crate) const LABEL_DERIVED: &[u8] = b"phantom derived";
pub(crate) const LABEL_EARLY: &[u8] = b"phantom early data";
pub(crate) const LABEL_S_FINISHED: &[u8] = b"phantom s finished";
pub(crate) const LABEL_C_FINISHED: &[u8] = b"phantom c finished";
pub(crate) const LABEL_RESUMPTION: &[u8] = b"phantom resumption";
pub(crate) const LABEL_C2S: &[u8] = b"phantom c2s traffic";
pub(crate) const LABEL_S2C: &[u8] = b"phantom s2c traffic";
const EARLY_SALT: &[u8] = b"phantom-hs-v1";
const MISMATCH_SALT: &[u8] = b"phantom-mismatch-v1";
pub(crate) const LABEL_MISMATCH: &[u8] = b"phantom mismatch";

/// SHA-256 over every handshake message, each prefixed by its u32 length.
#[derive(Clone)]
pub(crate) struct Transcript(Sha256);

impl Transcript {
    pub(crate) fn new() -> Self {
        Self(Sha256::new())
    }

    /// Appends a whole message.
    pub(crate) fn add(&mut self, msg: &[u8]) {
        self.0.update((msg.len() as u32).to_be_bytes());
        self.0.update(msg);
    }

    /// The hash of everything added so far.
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }

    /// The hash of the transcript followed by a message prefix (the part of a Finished
    /// message before its MAC). Domain-separated from [`Transcript::add`].
    pub(crate) fn hash_with_prefix(&self, prefix: &[u8]) -> [u8; 32] {
        let mut h = self.0.clone();
        h.update(b"fin");
        h.update((prefix.len() as u32).to_be_bytes());
        h.update(prefix);
        h.finalize().into()
    }
}

pub(crate) fn extract(salt: &[u8], ikm: &[u8]) -> Secret {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(prk.as_slice());
    out
}

pub(crate) fn expand(prk: &[u8; 32], label: &[u8], ctx: &[u8]) -> Secret {
    let mut out = Zeroizing::new([0u8; 32]);
    // A 32-byte PRK is always valid for SHA-256 and 32 bytes of output always fit.
    if let Ok(hk) = Hkdf::<Sha256>::from_prk(prk) {
        let label_len = [label.len() as u8];
        let ctx_len = [ctx.len() as u8];
        let info: [&[u8]; 4] = [&label_len, label, &ctx_len, ctx];
        if hk.expand_multi_info(&info, out.as_mut_slice()).is_err() {
            debug_assert!(false, "32-byte HKDF output");
        }
    } else {
        debug_assert!(false, "32-byte PRK");
    }
    out
}

/// HMAC-SHA256.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let Ok(mut m) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC accepts keys of any length.
        return [0u8; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Constant-time equality of two MACs (I8: no timing side channel on tags).
pub(crate) fn mac_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The early secret.
pub(crate) fn early_secret(psk: Option<&[u8; 32]>) -> Secret {
    let zero = [0u8; 32];
    extract(EARLY_SALT, psk.unwrap_or(&zero))
}

/// The four shared secrets of a handshake: ephemeral-ephemeral and ephemeral-static,
/// each as an X25519 and an ML-KEM-768 half.
pub(crate) struct Shares {
    pub(crate) ee_x: Secret,
    pub(crate) ee_ml: Secret,
    pub(crate) es_x: Secret,
    pub(crate) es_ml: Secret,
}

/// Which KEM family a test pretends is broken (its shared secrets are known to the attacker).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Half {
    X25519,
    MlKem,
}

#[cfg(test)]
thread_local! {
    /// Test hook: zero one KEM family's shared secrets before combining.
    pub(crate) static COMPROMISE: core::cell::Cell<Option<Half>> = const { core::cell::Cell::new(None) };
}

/// The master secret: every share in one HKDF-Extract, salted by the early secret. The
/// transcript (which holds every public key and ciphertext) enters through every Expand,
/// so the result stays secret while either KEM family holds.
pub(crate) fn master_secret(es: &[u8; 32], shares: &Shares) -> Secret {
    let salt = expand(es, LABEL_DERIVED, &[]);
    let mut ikm = Zeroizing::new([0u8; 128]);
    #[allow(unused_mut)]
    let mut parts: [&[u8; 32]; 4] = [&shares.ee_x, &shares.ee_ml, &shares.es_x, &shares.es_ml];
    #[cfg(test)]
    let zero = [0u8; 32];
    #[cfg(test)]
    match COMPROMISE.with(core::cell::Cell::get) {
        Some(Half::X25519) => {
            parts[0] = &zero;
            parts[2] = &zero;
        }
        Some(Half::MlKem) => {
            parts[1] = &zero;
            parts[3] = &zero;
        }
        None => {}
    }
    for (dst, src) in ikm.chunks_exact_mut(32).zip(parts) {
        dst.copy_from_slice(src);
    }
    extract(salt.as_slice(), ikm.as_slice())
}

/// The secrets derived from the master secret once the ServerHello is in the transcript.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct HandshakeKeys {
    pub(crate) ms: Secret,
    pub(crate) fk_s: Secret,
    pub(crate) fk_c: Secret,
    pub(crate) res: Secret,
}

impl HandshakeKeys {
    pub(crate) fn derive(ms: Secret, th_ch_sh: &[u8; 32]) -> Self {
        let fk_s = expand(&ms, LABEL_S_FINISHED, th_ch_sh);
        let fk_c = expand(&ms, LABEL_C_FINISHED, th_ch_sh);
        let res = expand(&ms, LABEL_RESUMPTION, th_ch_sh);
        Self {
            ms,
            fk_s,
            fk_c,
            res,
        }
    }

    /// `(c2s, s2c)` for the full transcript hash.
    pub(crate) fn traffic(&self, th_all: &[u8; 32]) -> (Secret, Secret) {
        (
            expand(&self.ms, LABEL_C2S, th_all),
            expand(&self.ms, LABEL_S2C, th_all),
        )
    }
}

/// The key of a Mismatch MAC: only the holder of the certified static KEM secret (and
/// the client that encapsulated to it) can derive it, and it is bound to the ClientHello.
pub(crate) fn mismatch_key(es_x: &[u8; 32], es_ml: &[u8; 32], ch_hash: &[u8; 32]) -> Secret {
    let mut ikm = Zeroizing::new([0u8; 64]);
    for (d, s) in ikm.iter_mut().zip(es_x.iter().chain(es_ml.iter())) {
        *d = *s;
    }
    let prk = extract(MISMATCH_SALT, ikm.as_slice());
    expand(&prk, LABEL_MISMATCH, ch_hash)
}

/// SHA-256 of a byte string.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}
