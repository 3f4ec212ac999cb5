//! The seam between the protocol and the public-key arithmetic: X25519 and ML-KEM-768.
//!
//! The protocol code only sees [`XSecret`], [`KemSecret`] and [`KemPublic`]. By default
//! they are RustCrypto (`x25519-dalek`, `ml-kem`); with the `aws-lc` feature they run on
//! aws-lc-rs (about 2x faster X25519 and 4x faster ML-KEM here). Both compute the same
//! functions (RFC 7748 X25519, FIPS 203 ML-KEM-768), so the wire format and the key
//! schedule do not depend on the backend and either side may use either.
//!
//! Randomness: X25519 secrets and (RustCrypto) ML-KEM seeds and encapsulation
//! randomness come from the caller's RNG. aws-lc-rs has no API that takes the caller's
//! randomness for ML-KEM key generation or encapsulation, so with `aws-lc` those two
//! draw from aws-lc's own CSPRNG and a seeded RNG no longer makes a run bit-reproducible.

#[cfg(feature = "aws-lc")]
use std::sync::Arc;

use ml_kem::DecapsulationKey768;
use ml_kem::EncapsulationKey768;
use ml_kem::kem::{Decapsulate as _, Encapsulate as _, KeyExport as _};
use zeroize::Zeroizing;

use crate::Rng;
use crate::error::{Error, ensure};
use crate::keys::{ML_KEM_768_CIPHERTEXT_LEN, ML_KEM_768_PUBLIC_LEN};
use crate::schedule::Secret;

#[cfg(all(test, feature = "aws-lc"))]
thread_local! {
    /// Test hook: build new keys with the RustCrypto backend even though `aws-lc` is on
    /// (keys already built keep their backend), to test the two against each other.
    pub(crate) static FORCE_RUSTCRYPTO: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

/// Whether newly built keys use aws-lc-rs.
#[cfg(feature = "aws-lc")]
fn aws() -> bool {
    #[cfg(test)]
    {
        !FORCE_RUSTCRYPTO.with(core::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// An X25519 secret usable for several agreements (ephemeral ones are dropped after the
/// handshake; nothing reuses them across handshakes). Its public key is computed once.
#[derive(Clone)]
pub(crate) struct XSecret {
    inner: XInner,
    public: [u8; 32],
}

#[derive(Clone)]
enum XInner {
    Rc(x25519_dalek::StaticSecret),
    #[cfg(feature = "aws-lc")]
    Aws(Arc<aws_lc_rs::agreement::PrivateKey>),
}

impl XSecret {
    /// A fresh secret from the caller's RNG.
    pub(crate) fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(b.as_mut_slice());
        Self::from_bytes(&b)
    }

    /// The secret with these 32 bytes (clamped by X25519 itself).
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        #[cfg(feature = "aws-lc")]
        if aws()
            && let Ok(k) = aws_lc_rs::agreement::PrivateKey::from_private_key(
                &aws_lc_rs::agreement::X25519,
                bytes,
            )
            && let Ok(p) = k.compute_public_key()
            && let Ok(public) = <[u8; 32]>::try_from(p.as_ref())
        {
            return Self {
                inner: XInner::Aws(Arc::new(k)),
                public,
            };
        }
        let s = x25519_dalek::StaticSecret::from(*bytes);
        // Fixed-base multiplication on the Edwards basepoint table.
        let public = x25519_dalek::PublicKey::from(&s).to_bytes();
        Self {
            inner: XInner::Rc(s),
            public,
        }
    }

    /// The public key.
    pub(crate) fn public(&self) -> [u8; 32] {
        self.public
    }

    /// X25519 with a contributory check: an all-zero result (a low-order peer key) is
    /// `Malformed`.
    pub(crate) fn agree(&self, peer: &[u8; 32]) -> Result<Secret, Error> {
        const LOW_ORDER: Error = Error::Malformed("X25519 low-order key");
        match &self.inner {
            XInner::Rc(s) => {
                let ss = s.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
                ensure!(ss.was_contributory(), LOW_ORDER);
                Ok(Zeroizing::new(ss.to_bytes()))
            }
            #[cfg(feature = "aws-lc")]
            XInner::Aws(k) => {
                let mut out = Zeroizing::new([0u8; 32]);
                // aws-lc refuses an all-zero result itself; check anyway.
                aws_lc_rs::agreement::agree(
                    k,
                    aws_lc_rs::agreement::UnparsedPublicKey::new(
                        &aws_lc_rs::agreement::X25519,
                        peer,
                    ),
                    LOW_ORDER,
                    |ss| {
                        ensure!(ss.len() == 32, LOW_ORDER);
                        out.copy_from_slice(ss);
                        Ok(())
                    },
                )?;
                ensure!(out.iter().any(|b| *b != 0), LOW_ORDER);
                Ok(out)
            }
        }
    }
}

/// An ML-KEM-768 decapsulation key (the client's ephemeral one or the server's static
/// one, kept parsed and expanded for the server's lifetime) with its public key.
#[derive(Clone)]
pub(crate) struct KemSecret {
    inner: KemSecretInner,
    public: KemPublic,
}

#[derive(Clone)]
enum KemSecretInner {
    Rc(Box<DecapsulationKey768>),
    #[cfg(feature = "aws-lc")]
    Aws(Arc<aws_lc_rs::kem::DecapsulationKey>),
}

impl KemSecret {
    /// A fresh key pair: from a seed drawn from the caller's RNG (RustCrypto) or from
    /// aws-lc's own CSPRNG (`aws-lc`).
    pub(crate) fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        #[cfg(feature = "aws-lc")]
        if aws()
            && let Ok(dk) = aws_lc_rs::kem::DecapsulationKey::generate(&aws_lc_rs::kem::ML_KEM_768)
            && let Ok(ek) = dk.encapsulation_key()
            && let Ok(bytes) = ek.key_bytes()
            && let Ok(bytes) = <[u8; ML_KEM_768_PUBLIC_LEN]>::try_from(bytes.as_ref())
        {
            return Self {
                inner: KemSecretInner::Aws(Arc::new(dk)),
                public: KemPublic {
                    bytes: Box::new(bytes),
                    inner: KemPublicInner::Aws(Arc::new(ek)),
                },
            };
        }
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// The key pair of a 64-byte FIPS 203 seed `d ‖ z` (the static key's stored form).
    pub(crate) fn from_seed(seed: &[u8; 64]) -> Self {
        let dk = DecapsulationKey768::from_seed((*seed).into());
        let ek = dk.encapsulation_key().clone();
        let mut bytes = Box::new([0u8; ML_KEM_768_PUBLIC_LEN]);
        bytes.copy_from_slice(ek.to_bytes().as_slice());
        #[cfg(feature = "aws-lc")]
        if aws() {
            // aws-lc-rs takes only the expanded (2400-byte) FIPS 203 form; derive it once.
            #[allow(deprecated)]
            let expanded = Zeroizing::new(ml_kem::ExpandedKeyEncoding::to_expanded_bytes(&dk).0);
            if let Ok(adk) =
                aws_lc_rs::kem::DecapsulationKey::new(&aws_lc_rs::kem::ML_KEM_768, &*expanded)
                && let Ok(aek) =
                    aws_lc_rs::kem::EncapsulationKey::new(&aws_lc_rs::kem::ML_KEM_768, &*bytes)
            {
                return Self {
                    inner: KemSecretInner::Aws(Arc::new(adk)),
                    public: KemPublic {
                        bytes,
                        inner: KemPublicInner::Aws(Arc::new(aek)),
                    },
                };
            }
        }
        Self {
            inner: KemSecretInner::Rc(Box::new(dk)),
            public: KemPublic {
                bytes,
                inner: KemPublicInner::Rc(Box::new(ek)),
            },
        }
    }

    /// The encapsulation key.
    pub(crate) fn public(&self) -> &KemPublic {
        &self.public
    }

    /// Decapsulates a ciphertext (implicit rejection: a wrong ciphertext of the right
    /// length yields a pseudorandom secret, which then fails key confirmation).
    pub(crate) fn decapsulate(&self, ct: &[u8]) -> Result<Secret, Error> {
        ensure!(
            ct.len() == ML_KEM_768_CIPHERTEXT_LEN,
            Error::Malformed("ciphertext")
        );
        match &self.inner {
            KemSecretInner::Rc(dk) => {
                let ct = ml_kem::array::Array::try_from(ct)
                    .map_err(|_| Error::Malformed("ciphertext"))?;
                Ok(Zeroizing::new(dk.decapsulate(&ct).into()))
            }
            #[cfg(feature = "aws-lc")]
            KemSecretInner::Aws(dk) => {
                let ss = dk
                    .decapsulate(aws_lc_rs::kem::Ciphertext::from(ct))
                    .map_err(|_| Error::Malformed("ciphertext"))?;
                let mut out = Zeroizing::new([0u8; 32]);
                ensure!(
                    ss.as_ref().len() == 32,
                    Error::Malformed("ML-KEM shared secret")
                );
                out.copy_from_slice(ss.as_ref());
                Ok(out)
            }
        }
    }
}

/// An ML-KEM-768 encapsulation key: parsed and checked once (FIPS 203 §7.2 modulus
/// check), kept with its 1184-byte encoding.
#[derive(Clone)]
pub(crate) struct KemPublic {
    bytes: Box<[u8; ML_KEM_768_PUBLIC_LEN]>,
    inner: KemPublicInner,
}

#[derive(Clone)]
enum KemPublicInner {
    Rc(Box<EncapsulationKey768>),
    #[cfg(feature = "aws-lc")]
    Aws(Arc<aws_lc_rs::kem::EncapsulationKey>),
}

impl PartialEq for KemPublic {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for KemPublic {}

/// FIPS 203 §7.2 encapsulation-key modulus check: every 12-bit coefficient of `t̂`
/// (the first 1152 bytes) is below q = 3329.
fn modulus_check(ek: &[u8; ML_KEM_768_PUBLIC_LEN]) -> bool {
    let t_hat = ek.get(..ML_KEM_768_PUBLIC_LEN - 32).unwrap_or_default();
    t_hat.chunks_exact(3).all(|c| {
        let (a, b, d) = match c {
            [a, b, d] => (u16::from(*a), u16::from(*b), u16::from(*d)),
            _ => return false,
        };
        let lo = a | ((b & 0x0f) << 8);
        let hi = (b >> 4) | (d << 4);
        lo < 3329 && hi < 3329
    })
}

impl KemPublic {
    /// Parses and checks an encapsulation key: `Malformed` on a wrong length or a
    /// coefficient out of range.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: Box<[u8; ML_KEM_768_PUBLIC_LEN]> = Box::new(
            bytes
                .try_into()
                .map_err(|_| Error::Malformed("ML-KEM key length"))?,
        );
        ensure!(modulus_check(&bytes), Error::Malformed("ML-KEM key"));
        #[cfg(feature = "aws-lc")]
        if aws() {
            let ek = aws_lc_rs::kem::EncapsulationKey::new(&aws_lc_rs::kem::ML_KEM_768, &*bytes)
                .map_err(|_| Error::Malformed("ML-KEM key"))?;
            return Ok(Self {
                bytes,
                inner: KemPublicInner::Aws(Arc::new(ek)),
            });
        }
        let arr = ml_kem::array::Array::from(*bytes);
        let ek = EncapsulationKey768::new(&arr).map_err(|_| Error::Malformed("ML-KEM key"))?;
        Ok(Self {
            bytes,
            inner: KemPublicInner::Rc(Box::new(ek)),
        })
    }

    /// The 1184-byte encoding.
    pub(crate) fn as_bytes(&self) -> &[u8; ML_KEM_768_PUBLIC_LEN] {
        &self.bytes
    }

    /// Encapsulates a fresh secret: `(ciphertext, shared secret)`.
    pub(crate) fn encapsulate<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> Result<(Vec<u8>, Secret), Error> {
        match &self.inner {
            KemPublicInner::Rc(ek) => {
                let (ct, ss) = ek.encapsulate_with_rng(rng);
                Ok((ct.as_slice().to_vec(), Zeroizing::new(ss.into())))
            }
            #[cfg(feature = "aws-lc")]
            KemPublicInner::Aws(ek) => {
                let (ct, ss) = ek
                    .encapsulate()
                    .map_err(|_| Error::Malformed("ML-KEM key"))?;
                ensure!(
                    ss.as_ref().len() == 32 && ct.as_ref().len() == ML_KEM_768_CIPHERTEXT_LEN,
                    Error::Malformed("ML-KEM encapsulation")
                );
                let mut out = Zeroizing::new([0u8; 32]);
                out.copy_from_slice(ss.as_ref());
                Ok((ct.as_ref().to_vec(), out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng as _;

    use super::*;

    #[test]
    fn modulus_check_agrees_with_fips203_parser() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let k = KemSecret::generate(&mut rng);
        let good = *k.public().as_bytes();
        assert!(modulus_check(&good));
        assert!(KemPublic::from_bytes(&good).is_ok());
        // Set one coefficient to q (3329 = 0xd01) in the low and in the high half.
        for (at, patch) in [(0usize, [0x01u8, 0x0d]), (1, [0x10, 0xd0])] {
            let mut bad = good;
            if at == 0 {
                bad[0] = patch[0];
                bad[1] = (bad[1] & 0xf0) | patch[1];
            } else {
                bad[1] = (bad[1] & 0x0f) | patch[0];
                bad[2] = patch[1];
            }
            assert!(!modulus_check(&bad));
            let arr = ml_kem::array::Array::from(bad);
            assert!(EncapsulationKey768::new(&arr).is_err());
            assert_eq!(
                KemPublic::from_bytes(&bad).err(),
                Some(Error::Malformed("ML-KEM key"))
            );
        }
        assert!(KemPublic::from_bytes(&good[1..]).is_err());
    }

    #[test]
    fn kem_and_x25519_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let k = KemSecret::generate(&mut rng);
        let (ct, ss) = k.public().encapsulate(&mut rng).unwrap();
        assert_eq!(*k.decapsulate(&ct).unwrap(), *ss);
        assert!(k.decapsulate(&ct[1..]).is_err());
        let a = XSecret::generate(&mut rng);
        let b = XSecret::generate(&mut rng);
        assert_eq!(
            *a.agree(&b.public()).unwrap(),
            *b.agree(&a.public()).unwrap()
        );
        assert_eq!(
            a.agree(&[0u8; 32]).err(),
            Some(Error::Malformed("X25519 low-order key"))
        );
    }

    /// With `aws-lc`, keys of the two backends interoperate in both directions.
    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_and_rustcrypto_interoperate() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let with_rc = |f: &mut dyn FnMut()| {
            FORCE_RUSTCRYPTO.with(|c| c.set(true));
            f();
            FORCE_RUSTCRYPTO.with(|c| c.set(false));
        };
        let seed = [9u8; 64];
        let aws_static = KemSecret::from_seed(&seed);
        assert!(matches!(aws_static.inner, KemSecretInner::Aws(_)));
        let mut rc_static = None;
        with_rc(&mut || rc_static = Some(KemSecret::from_seed(&seed)));
        let rc_static = rc_static.unwrap();
        assert!(matches!(rc_static.inner, KemSecretInner::Rc(_)));
        // Same seed, same public key under both backends.
        assert_eq!(
            aws_static.public().as_bytes(),
            rc_static.public().as_bytes()
        );
        for (enc, dec) in [(&aws_static, &rc_static), (&rc_static, &aws_static)] {
            let (ct, ss) = enc.public().encapsulate(&mut rng).unwrap();
            assert_eq!(*dec.decapsulate(&ct).unwrap(), *ss);
        }
        let xb = [3u8; 32];
        let aws_x = XSecret::from_bytes(&xb);
        let mut rc_x = None;
        with_rc(&mut || rc_x = Some(XSecret::from_bytes(&xb)));
        let rc_x = rc_x.unwrap();
        assert!(matches!(aws_x.inner, XInner::Aws(_)));
        assert!(matches!(rc_x.inner, XInner::Rc(_)));
        assert_eq!(aws_x.public(), rc_x.public());
        let peer = XSecret::generate(&mut rng).public();
        assert_eq!(*aws_x.agree(&peer).unwrap(), *rc_x.agree(&peer).unwrap());
    }
}
