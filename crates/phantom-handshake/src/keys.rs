//! Long-term keys and certificates: the pinned hybrid signing identity
//! (Ed25519 + ML-DSA-65), the rotating static hybrid KEM key (X25519 + ML-KEM-768)
//! and the certificate that binds the second to the first (KEMTLS).

use ml_dsa::signature::{Keypair as _, Signer as _};
use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa65};
use std::sync::{Arc, Mutex};

use phantom_wire::Reader;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::Rng;
use crate::backend::{KemPublic, KemSecret, XSecret};
use crate::error::{Error, ensure};

/// Length of an Ed25519 public key.
pub const ED25519_PUBLIC_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const ED25519_SIGNATURE_LEN: usize = 64;
/// Length of an encoded ML-DSA-65 verifying key.
pub const ML_DSA_65_PUBLIC_LEN: usize = 1952;
/// Length of an encoded ML-DSA-65 signature.
pub const ML_DSA_65_SIGNATURE_LEN: usize = 3309;
/// Length of an ML-KEM-768 encapsulation key.
pub const ML_KEM_768_PUBLIC_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const ML_KEM_768_CIPHERTEXT_LEN: usize = 1088;

/// Domain-separation prefix of the message a certificate's two signatures cover.
const CERT_CONTEXT: &[u8] = b"phantom-cert-v1\0";
/// Certificate format version byte.
const CERT_VERSION: u8 = 1;

/// The long-term hybrid signing key of a server: Ed25519 and ML-DSA-65.
///
/// It signs, once per rotation, the server's static KEM key (a [`ServerCertificate`]);
/// it is not used in handshakes. Serialised as 64 bytes: the Ed25519 secret key and the
/// ML-DSA-65 seed. Zeroized on drop, never printed (I8).
#[derive(Clone)]
pub struct HybridSigningKey {
    ed: ed25519_dalek::SigningKey,
    ml: ml_dsa::SigningKey<MlDsa65>,
    seeds: Zeroizing<[u8; 64]>,
}

impl HybridSigningKey {
    /// Length of [`HybridSigningKey::to_bytes`].
    pub const LEN: usize = 64;

    /// A fresh key from the caller's RNG.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut seeds = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seeds.as_mut_slice());
        Self::from_bytes(&seeds)
    }

    /// Rebuilds the key from its 64-byte secret encoding.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        let (ed_seed, ml_seed) = split_64(bytes);
        let ed = ed25519_dalek::SigningKey::from_bytes(&ed_seed);
        let ml = ml_dsa::SigningKey::<MlDsa65>::from_seed(&ml_seed.into());
        Self {
            ed,
            ml,
            seeds: Zeroizing::new(*bytes),
        }
    }

    /// The 64-byte secret encoding (for the server's secret key file).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; 64]> {
        self.seeds.clone()
    }

    /// The public half, which clients pin.
    #[must_use]
    pub fn verifying_key(&self) -> HybridVerifyingKey {
        let ed = self.ed.verifying_key();
        let ml = self.ml.verifying_key();
        HybridVerifyingKey::from_parts(ed, ml)
    }

    /// Signs a static KEM public key valid until `not_after` (unix seconds).
    pub fn certify(
        &self,
        kem: &StaticKemPublic,
        not_after: u64,
    ) -> Result<ServerCertificate, Error> {
        let msg = cert_message(kem, not_after);
        let ed_sig = ed25519_dalek::Signer::sign(&self.ed, &msg).to_bytes();
        let ml_sig = self
            .ml
            .try_sign(&msg)
            .map_err(|_| Error::BadSignature("ML-DSA signing failed"))?
            .encode();
        Ok(ServerCertificate {
            kem: kem.clone(),
            not_after,
            ed_sig,
            ml_sig: ml_sig.as_slice().to_vec(),
        })
    }
}

impl core::fmt::Debug for HybridSigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HybridSigningKey(<redacted>)")
    }
}

fn split_64(bytes: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let (x, y) = bytes.split_at(32);
    a.copy_from_slice(x);
    b.copy_from_slice(y);
    (a, b)
}

/// The public half of a [`HybridSigningKey`]: what a client pins.
///
/// Encoded as 1984 bytes: the Ed25519 public key then the ML-DSA-65 verifying key.
/// Its SHA-256 is the *server key id* that tickets and certificates are bound to.
///
/// Clones share the parsed key (cheap to clone into every `ClientConfig`) and a cache of
/// the last certificate that verified under it: verifying the same certificate again
/// (same bytes, so the same signatures) skips the Ed25519 and ML-DSA-65 checks; the
/// expiry is still checked every time.
#[derive(Clone)]
pub struct HybridVerifyingKey {
    inner: Arc<VerifyingInner>,
}

struct VerifyingInner {
    ed: ed25519_dalek::VerifyingKey,
    ml: ml_dsa::VerifyingKey<MlDsa65>,
    bytes: Vec<u8>,
    id: [u8; 32],
    /// The last certificate whose two signatures verified under this key.
    verified: Mutex<Option<VerifiedCertificate>>,
}

impl HybridVerifyingKey {
    /// Length of [`HybridVerifyingKey::to_bytes`].
    pub const LEN: usize = ED25519_PUBLIC_LEN + ML_DSA_65_PUBLIC_LEN;

    fn from_parts(ed: ed25519_dalek::VerifyingKey, ml: ml_dsa::VerifyingKey<MlDsa65>) -> Self {
        let mut bytes = Vec::with_capacity(Self::LEN);
        bytes.extend_from_slice(ed.as_bytes());
        bytes.extend_from_slice(ml.encode().as_slice());
        let id = Sha256::digest(&bytes).into();
        Self {
            inner: Arc::new(VerifyingInner {
                ed,
                ml,
                bytes,
                id,
                verified: Mutex::new(None),
            }),
        }
    }

    /// Parses the 1984-byte encoding. Fails on a wrong length, an Ed25519 key that
    /// is not a valid point, or a weak (small-order) Ed25519 key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        ensure!(
            bytes.len() == Self::LEN,
            Error::InvalidKey("verifying key length")
        );
        let mut r = Reader::new(bytes);
        let ed = ed25519_dalek::VerifyingKey::from_bytes(r.array::<ED25519_PUBLIC_LEN>()?)
            .map_err(|_| Error::InvalidKey("Ed25519 public key"))?;
        ensure!(!ed.is_weak(), Error::InvalidKey("weak Ed25519 public key"));
        let enc = EncodedVerifyingKey::<MlDsa65>::try_from(r.bytes(ML_DSA_65_PUBLIC_LEN)?)
            .map_err(|_| Error::InvalidKey("ML-DSA-65 public key"))?;
        let ml = ml_dsa::VerifyingKey::<MlDsa65>::decode(&enc);
        let parsed = Self::from_parts(ed, ml);
        // ML-DSA decoding is total; insist on a canonical encoding.
        ensure!(
            parsed.inner.bytes == bytes,
            Error::InvalidKey("non-canonical key")
        );
        Ok(parsed)
    }

    /// The 1984-byte encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        self.inner.bytes.clone()
    }

    /// SHA-256 of the encoding: the server key id.
    #[must_use]
    pub fn key_id(&self) -> [u8; 32] {
        self.inner.id
    }

    /// The last certificate that verified under this key (shared by all clones), if it
    /// has not expired at `unix_now`. Put it in `ClientConfig::certificate` to make the
    /// next handshake 1-RTT (PDK).
    #[must_use]
    pub fn cached_certificate(&self, unix_now: u64) -> Option<VerifiedCertificate> {
        let g = self.inner.verified.lock().ok()?;
        g.as_ref().filter(|v| unix_now <= v.cert.not_after).cloned()
    }

    /// Forgets the cached certificate verification (the next verification runs both
    /// signature checks again).
    pub fn clear_certificate_cache(&self) {
        if let Ok(mut g) = self.inner.verified.lock() {
            *g = None;
        }
    }

    fn cached_id(&self) -> Option<[u8; 32]> {
        self.inner
            .verified
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|v| v.id))
    }

    fn remember(&self, v: &VerifiedCertificate) {
        if let Ok(mut g) = self.inner.verified.lock() {
            *g = Some(v.clone());
        }
    }

    fn verify(&self, msg: &[u8], ed_sig: &[u8; 64], ml_sig: &[u8]) -> Result<(), Error> {
        // Both signatures must verify: the identity stands while either scheme holds.
        let ed_sig = ed25519_dalek::Signature::from_bytes(ed_sig);
        self.inner
            .ed
            .verify_strict(msg, &ed_sig)
            .map_err(|_| Error::BadSignature("Ed25519"))?;
        let enc = EncodedSignature::<MlDsa65>::try_from(ml_sig)
            .map_err(|_| Error::BadSignature("ML-DSA-65 length"))?;
        let sig =
            ml_dsa::Signature::<MlDsa65>::decode(&enc).ok_or(Error::BadSignature("ML-DSA-65"))?;
        ensure!(
            self.inner.ml.verify_with_context(msg, &[], &sig),
            Error::BadSignature("ML-DSA-65")
        );
        Ok(())
    }
}

impl PartialEq for HybridVerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.bytes == other.inner.bytes
    }
}
impl Eq for HybridVerifyingKey {}

impl core::fmt::Debug for HybridVerifyingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HybridVerifyingKey(")?;
        for b in self.inner.id.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// The server's static hybrid KEM key pair (X25519 + ML-KEM-768). Clients encapsulate to
/// it; the server proves possession by decapsulating (KEMTLS). Rotate it by certifying a
/// new one. Serialised as 96 secret bytes. Zeroized on drop, never printed (I8).
#[derive(Clone)]
pub struct StaticKemKeyPair {
    /// Kept parsed and expanded for the server's lifetime (no per-handshake parsing).
    pub(crate) x: XSecret,
    pub(crate) ml: KemSecret,
    public: StaticKemPublic,
    seeds: Zeroizing<[u8; 96]>,
}

impl StaticKemKeyPair {
    /// Length of [`StaticKemKeyPair::to_bytes`].
    pub const LEN: usize = 96;

    /// A fresh key pair from the caller's RNG.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut seeds = Zeroizing::new([0u8; 96]);
        rng.fill_bytes(seeds.as_mut_slice());
        Self::from_bytes(&seeds)
    }

    /// Rebuilds the pair from its 96 secret bytes (X25519 secret, ML-KEM-768 seed).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 96]) -> Self {
        let mut xs = Zeroizing::new([0u8; 32]);
        let mut ms = Zeroizing::new([0u8; 64]);
        let (a, b) = bytes.split_at(32);
        xs.copy_from_slice(a);
        ms.copy_from_slice(b);
        let x = XSecret::from_bytes(&xs);
        let ml = KemSecret::from_seed(&ms);
        let public = StaticKemPublic {
            x: x.public(),
            ml: ml.public().clone(),
        };
        Self {
            x,
            ml,
            public,
            seeds: Zeroizing::new(*bytes),
        }
    }

    /// The 96 secret bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; 96]> {
        self.seeds.clone()
    }

    /// The public half, which a certificate carries.
    #[must_use]
    pub fn public(&self) -> &StaticKemPublic {
        &self.public
    }
}

impl core::fmt::Debug for StaticKemKeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StaticKemKeyPair(<redacted>)")
    }
}

/// The public half of a [`StaticKemKeyPair`]: 32-byte X25519 key then the 1184-byte
/// ML-KEM-768 encapsulation key.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKemPublic {
    pub(crate) x: [u8; 32],
    pub(crate) ml: KemPublic,
}

impl StaticKemPublic {
    /// Length of the encoding.
    pub const LEN: usize = 32 + ML_KEM_768_PUBLIC_LEN;

    /// The encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.extend_from_slice(&self.x);
        v.extend_from_slice(self.ml.as_bytes());
        v
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let x = *r.array::<32>()?;
        let ml = KemPublic::from_bytes(r.bytes(ML_KEM_768_PUBLIC_LEN)?)?;
        Ok(Self { x, ml })
    }
}

impl core::fmt::Debug for StaticKemPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StaticKemPublic(..)")
    }
}

fn cert_message(kem: &StaticKemPublic, not_after: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CERT_CONTEXT.len() + StaticKemPublic::LEN + 8);
    m.extend_from_slice(CERT_CONTEXT);
    m.extend_from_slice(&kem.to_bytes());
    m.extend_from_slice(&not_after.to_be_bytes());
    m
}

/// A static KEM key signed by the pinned hybrid identity, valid until `not_after`.
///
/// Encoding (4598 bytes): `version=1 (u8) ‖ static_kem_pub (1216) ‖ not_after (u64 BE,
/// unix seconds) ‖ ed25519_sig (64) ‖ ml_dsa_65_sig (3309)`. Both signatures cover
/// `"phantom-cert-v1\0" ‖ static_kem_pub ‖ not_after`.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerCertificate {
    kem: StaticKemPublic,
    not_after: u64,
    ed_sig: [u8; 64],
    ml_sig: Vec<u8>,
}

impl ServerCertificate {
    /// Length of the encoding.
    pub const LEN: usize =
        1 + StaticKemPublic::LEN + 8 + ED25519_SIGNATURE_LEN + ML_DSA_65_SIGNATURE_LEN;

    /// The certified static KEM public key.
    #[must_use]
    pub fn static_kem_public(&self) -> &StaticKemPublic {
        &self.kem
    }

    /// Expiry, unix seconds.
    #[must_use]
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(CERT_VERSION);
        v.extend_from_slice(&self.kem.to_bytes());
        v.extend_from_slice(&self.not_after.to_be_bytes());
        v.extend_from_slice(&self.ed_sig);
        v.extend_from_slice(&self.ml_sig);
        v
    }

    /// Parses the encoding (structure only: see [`ServerCertificate::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        ensure!(
            r.u8()? == CERT_VERSION,
            Error::Malformed("certificate version")
        );
        let kem = StaticKemPublic::read(&mut r)?;
        let not_after = r.u64()?;
        let ed_sig = *r.array::<64>()?;
        let ml_sig = r.bytes(ML_DSA_65_SIGNATURE_LEN)?.to_vec();
        r.finish()?;
        Ok(Self {
            kem,
            not_after,
            ed_sig,
            ml_sig,
        })
    }

    /// SHA-256 of the encoding: how a PDK client names the certificate it encapsulated to.
    #[must_use]
    pub fn id(&self) -> [u8; 32] {
        Sha256::digest(self.to_bytes()).into()
    }

    /// Checks both signatures against the pinned key and the expiry against `unix_now`.
    /// Keep the result to skip re-verification on later connections.
    ///
    /// The pinned key remembers the last certificate that verified under it: the same
    /// certificate (same SHA-256 over its encoding, signatures included) is not
    /// re-verified, so repeated full-mode handshakes with one server pay for Ed25519 and
    /// ML-DSA-65 once.
    pub fn verify(
        &self,
        pinned: &HybridVerifyingKey,
        unix_now: u64,
    ) -> Result<VerifiedCertificate, Error> {
        let id = self.id();
        if pinned.cached_id() == Some(id) {
            ensure!(unix_now <= self.not_after, Error::CertificateExpired);
            return Ok(VerifiedCertificate {
                cert: Arc::new(self.clone()),
                id,
                server_key_id: pinned.key_id(),
            });
        }
        let msg = cert_message(&self.kem, self.not_after);
        pinned
            .verify(&msg, &self.ed_sig, &self.ml_sig)
            .map_err(|e| match e {
                // A signature that fails under the pinned key means another key signed it
                // or the certificate was altered; either way the server is not the pinned one.
                Error::BadSignature(what) => Error::BadSignature(what),
                other => other,
            })?;
        ensure!(unix_now <= self.not_after, Error::CertificateExpired);
        let v = VerifiedCertificate {
            cert: Arc::new(self.clone()),
            id,
            server_key_id: pinned.key_id(),
        };
        pinned.remember(&v);
        Ok(v)
    }
}

impl core::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A [`ServerCertificate`] whose signatures were checked against a pinned key. Only
/// [`ServerCertificate::verify`] makes one, so holding it proves the check ran; cache it
/// per server to skip the (ML-DSA) verification on later connections.
#[derive(Clone, Debug)]
pub struct VerifiedCertificate {
    pub(crate) cert: Arc<ServerCertificate>,
    pub(crate) id: [u8; 32],
    pub(crate) server_key_id: [u8; 32],
}

impl VerifiedCertificate {
    /// The certificate.
    #[must_use]
    pub fn certificate(&self) -> &ServerCertificate {
        &self.cert
    }

    /// The id of the pinned key it was verified against.
    #[must_use]
    pub fn server_key_id(&self) -> [u8; 32] {
        self.server_key_id
    }
}

/// What a server needs at run time: its current certificate and the static KEM secret it
/// certifies, plus the id of the long-term key that signed it. The long-term signing key
/// itself is not needed online.
#[derive(Clone)]
pub struct ServerIdentity {
    pub(crate) cert: ServerCertificate,
    pub(crate) cert_bytes: Vec<u8>,
    pub(crate) cert_id: [u8; 32],
    pub(crate) kem: StaticKemKeyPair,
    pub(crate) verifying_key: HybridVerifyingKey,
}

impl ServerIdentity {
    /// Certifies `kem` with `signing_key` until `not_after` (unix seconds).
    pub fn new(
        signing_key: &HybridSigningKey,
        kem: StaticKemKeyPair,
        not_after: u64,
    ) -> Result<Self, Error> {
        let cert = signing_key.certify(kem.public(), not_after)?;
        Ok(Self::assemble(cert, kem, signing_key.verifying_key()))
    }

    /// Generates a fresh static KEM key and certifies it (one rotation step).
    pub fn generate<R: Rng + ?Sized>(
        signing_key: &HybridSigningKey,
        rng: &mut R,
        not_after: u64,
    ) -> Result<Self, Error> {
        Self::new(signing_key, StaticKemKeyPair::generate(rng), not_after)
    }

    fn assemble(cert: ServerCertificate, kem: StaticKemKeyPair, vk: HybridVerifyingKey) -> Self {
        let cert_bytes = cert.to_bytes();
        let cert_id = Sha256::digest(&cert_bytes).into();
        Self {
            cert,
            cert_bytes,
            cert_id,
            kem,
            verifying_key: vk,
        }
    }

    /// The certificate (give it to clients with the pinned key to enable PDK from the
    /// first connection).
    #[must_use]
    pub fn certificate(&self) -> &ServerCertificate {
        &self.cert
    }

    /// The long-term public key that signed the certificate.
    #[must_use]
    pub fn verifying_key(&self) -> &HybridVerifyingKey {
        &self.verifying_key
    }

    /// Secret encoding for the server's key file:
    /// `static_kem_secret (96) ‖ verifying_key (1984) ‖ certificate (4598)`.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Vec::with_capacity(
            StaticKemKeyPair::LEN + HybridVerifyingKey::LEN + ServerCertificate::LEN,
        );
        v.extend_from_slice(self.kem.to_bytes().as_slice());
        v.extend_from_slice(&self.verifying_key.to_bytes());
        v.extend_from_slice(&self.cert_bytes);
        Zeroizing::new(v)
    }

    /// Parses [`ServerIdentity::to_bytes`], checks the certificate's signatures against the
    /// embedded verifying key and that it certifies the embedded static KEM key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let kem = StaticKemKeyPair::from_bytes(r.array::<96>()?);
        let vk = HybridVerifyingKey::from_bytes(r.bytes(HybridVerifyingKey::LEN)?)?;
        let cert = ServerCertificate::from_bytes(r.bytes(ServerCertificate::LEN)?)?;
        r.finish()?;
        // Signature check only; expiry is the caller's business (it has the clock).
        let msg = cert_message(&cert.kem, cert.not_after);
        vk.verify(&msg, &cert.ed_sig, &cert.ml_sig)?;
        ensure!(
            cert.kem == *kem.public(),
            Error::InvalidKey("certificate does not match KEM key")
        );
        Ok(Self::assemble(cert, kem, vk))
    }
}

impl core::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("verifying_key", &self.verifying_key)
            .field("not_after", &self.cert.not_after)
            .finish_non_exhaustive()
    }
}
