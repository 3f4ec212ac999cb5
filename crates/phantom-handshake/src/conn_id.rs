//! Each side's first 1-RTT connection id (sequence 0) and its stateless-reset token,
//! carried masked in the Finished messages (docs/PROTOCOL.md §4.3).
//!
//! The field is `u8 len ‖ (id ‖ token) XOR Expand_n(ms, label, len + 16)` with the label
//! `"phantom v2 id0 s"` in the ServerFinished and `"phantom v2 id0 c"` in the
//! ClientFinished. The master secret exists on both sides by the time either Finished is
//! built, in both flows (in full mode the ServerHello precedes it, which is why the ids
//! are not in the ServerHello), and each Finished MAC covers its field, so the ids are
//! hidden from a passive observer and bound to the handshake. Nothing the handshake
//! sends in clear (the 32-byte session id included) appears on a 1-RTT packet.

use hkdf::Hkdf;
use phantom_wire::{ConnId, DEFAULT_CONN_ID_LEN, MAX_CONN_ID_LEN, MIN_CONN_ID_LEN, Reader};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Rng;
use crate::error::{Error, ensure};

/// Label of the server's masked id0.
pub(crate) const LABEL_ID0_S: &[u8] = b"phantom v2 id0 s";
/// Label of the client's masked id0.
pub(crate) const LABEL_ID0_C: &[u8] = b"phantom v2 id0 c";

/// Length of a stateless-reset token.
pub const RESET_TOKEN_LEN: usize = 16;

/// A connection id an endpoint issued to its peer, with its stateless-reset token.
/// Debug shows the id, never the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IssuedConnId {
    /// The id the peer puts on the packets it sends to the issuer.
    pub id: ConnId,
    /// The token that authenticates a stateless reset for this id.
    pub reset_token: [u8; RESET_TOKEN_LEN],
}

impl IssuedConnId {
    /// A fresh id from `ids` and a random token (a client's: clients send no resets).
    pub fn draw<R: Rng + ?Sized>(rng: &mut R, ids: &dyn ConnIdGenerator) -> Self {
        let id = ids.generate(&mut &mut *rng);
        let mut reset_token = [0u8; RESET_TOKEN_LEN];
        rng.fill_bytes(&mut reset_token);
        Self { id, reset_token }
    }

    /// A fresh id from `ids` whose token derives from `key` (a server's).
    pub fn draw_keyed<R: Rng + ?Sized>(
        rng: &mut R,
        ids: &dyn ConnIdGenerator,
        key: &ResetKey,
    ) -> Self {
        let id = ids.generate(&mut &mut *rng);
        let reset_token = key.token(id.as_bytes());
        Self { id, reset_token }
    }

    /// The masked field: `u8 len ‖ (id ‖ token) XOR Expand_n(ms, label, len + 16)`.
    pub(crate) fn masked(&self, ms: &[u8; 32], label: &[u8]) -> Result<Vec<u8>, Error> {
        let id = self.id.as_bytes();
        let mut out = Vec::with_capacity(1 + id.len() + RESET_TOKEN_LEN);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.reset_token);
        let mask = mask(ms, label, id.len() + RESET_TOKEN_LEN)?;
        for (b, m) in out.iter_mut().skip(1).zip(mask.iter()) {
            *b ^= m;
        }
        Ok(out)
    }

    /// Recovers the id and token from a field [`read_masked`] accepted.
    pub(crate) fn unmask(ms: &[u8; 32], label: &[u8], field: &[u8]) -> Result<Self, Error> {
        let (_, body) = field
            .split_first()
            .ok_or(Error::Malformed("connection id"))?;
        let len = body
            .len()
            .checked_sub(RESET_TOKEN_LEN)
            .ok_or(Error::Malformed("connection id"))?;
        let mask = mask(ms, label, body.len())?;
        let clear: Zeroizing<Vec<u8>> =
            Zeroizing::new(body.iter().zip(mask.iter()).map(|(b, m)| b ^ m).collect());
        let (id, token) = clear
            .split_at_checked(len)
            .ok_or(Error::Malformed("connection id"))?;
        Ok(Self {
            id: ConnId::from_slice(id)?,
            reset_token: token
                .try_into()
                .map_err(|_| Error::Malformed("reset token"))?,
        })
    }
}

impl core::fmt::Debug for IssuedConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IssuedConnId")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Chooses the bytes of the connection ids an endpoint issues (docs/PROTOCOL.md §4.3).
///
/// The endpoint asks for every id it issues, its first (sent in the Finished) and each
/// later one; the peer puts them on the packets it sends, so they are what the
/// endpoint (or a load balancer, or the kernel in front of its sockets) routes by.
/// Ids must look random to an observer: two ids of one session must not be linkable by
/// their bytes beyond what the generator documents (a routable scheme reveals the server
/// it routes to, and no more).
pub trait ConnIdGenerator: Send + Sync + core::fmt::Debug {
    /// The length of every id this generator returns, within
    /// [`MIN_CONN_ID_LEN`]`..=`[`MAX_CONN_ID_LEN`]. The receiver parses headers with it.
    fn id_len(&self) -> usize;

    /// A fresh id of [`ConnIdGenerator::id_len`] bytes; `rng` is the endpoint's CSPRNG.
    fn generate(&self, rng: &mut dyn Rng) -> ConnId;
}

/// Uniformly random ids of one length: the default generator (8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomConnIds {
    len: usize,
}

impl RandomConnIds {
    /// Random ids of `len` bytes; fails unless `len` is within
    /// [`MIN_CONN_ID_LEN`]`..=`[`MAX_CONN_ID_LEN`].
    pub fn new(len: usize) -> Result<Self, Error> {
        ensure!(
            (MIN_CONN_ID_LEN..=MAX_CONN_ID_LEN).contains(&len),
            Error::Misuse("connection id length")
        );
        Ok(Self { len })
    }
}

impl Default for RandomConnIds {
    fn default() -> Self {
        Self {
            len: DEFAULT_CONN_ID_LEN,
        }
    }
}

impl ConnIdGenerator for RandomConnIds {
    fn id_len(&self) -> usize {
        self.len
    }

    fn generate(&self, rng: &mut dyn Rng) -> ConnId {
        ConnId::filled_with(self.len, |id| rng.fill_bytes(id))
    }
}

/// Reads a masked id field (`u8 len ‖ len + 16 bytes`, len 4..=20).
pub(crate) fn read_masked<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let rest = r.peek_rest();
    let len = usize::from(r.u8()?);
    ensure!(
        (MIN_CONN_ID_LEN..=MAX_CONN_ID_LEN).contains(&len),
        Error::Malformed("connection id length")
    );
    r.bytes(len + RESET_TOKEN_LEN)?;
    rest.get(..1 + len + RESET_TOKEN_LEN)
        .ok_or(Error::Malformed("connection id"))
}

/// `HKDF-Expand(ms, len(label) ‖ label ‖ 0, n)`: the info layout of every handshake
/// Expand, with an empty context.
fn mask(ms: &[u8; 32], label: &[u8], n: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let hk = Hkdf::<Sha256>::from_prk(ms).map_err(|_| Error::Misuse("prk length"))?;
    let label_len = [label.len() as u8];
    let info: [&[u8]; 3] = [&label_len, label, &[0]];
    let mut out = Zeroizing::new(vec![0u8; n]);
    hk.expand_multi_info(&info, &mut out)
        .map_err(|_| Error::Misuse("expand length"))?;
    Ok(out)
}

/// The key a server's stateless-reset tokens derive from: the token of connection id
/// `id` is the first 16 bytes of HMAC-SHA256(key, id). Static, so a restarted server
/// given the same key answers for the ids its predecessor issued. Zeroized on drop;
/// Debug is redacted.
#[derive(Clone)]
pub struct ResetKey(Zeroizing<[u8; 32]>);

impl ResetKey {
    /// Label of the key derived from a server identity.
    const LABEL: &'static [u8] = b"phantom v2 reset key";

    /// A key from raw bytes (e.g. drawn from a CSPRNG, or shared by a server cluster).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key of a server identity: HMAC-SHA256(identity's secret bytes, "phantom v2
    /// reset key"). A server restarted from the same key files reproduces its tokens.
    #[must_use]
    pub fn from_identity(identity: &crate::ServerIdentity) -> Self {
        let secret = identity.to_bytes();
        Self(Zeroizing::new(crate::schedule::hmac(
            &secret,
            &[Self::LABEL],
        )))
    }

    /// The stateless-reset token of `id`.
    #[must_use]
    pub fn token(&self, id: &[u8]) -> [u8; RESET_TOKEN_LEN] {
        let mac = Zeroizing::new(crate::schedule::hmac(self.0.as_slice(), &[id]));
        let mut out = [0u8; RESET_TOKEN_LEN];
        for (o, m) in out.iter_mut().zip(mac.iter()) {
            *o = *m;
        }
        out
    }
}

impl core::fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ResetKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_have_the_configured_length_and_differ() {
        let mut rng = crate::fuzzing::FuzzRng::new(7);
        for len in [MIN_CONN_ID_LEN, DEFAULT_CONN_ID_LEN, MAX_CONN_ID_LEN] {
            let ids = RandomConnIds::new(len).unwrap();
            let a = IssuedConnId::draw(&mut rng, &ids);
            let b = IssuedConnId::draw(&mut rng, &ids);
            assert_eq!((a.id.len(), b.id.len(), ids.id_len()), (len, len, len));
            assert_ne!(a.id, b.id);
            assert_ne!(a.reset_token, b.reset_token);
        }
    }

    #[test]
    fn random_ids_refuse_lengths_outside_4_to_20() {
        assert!(RandomConnIds::new(MIN_CONN_ID_LEN - 1).is_err());
        assert!(RandomConnIds::new(MAX_CONN_ID_LEN + 1).is_err());
    }

    #[test]
    fn a_keyed_id_carries_the_token_its_key_derives() {
        let mut rng = crate::fuzzing::FuzzRng::new(8);
        let key = ResetKey::from_bytes([9; 32]);
        let issued = IssuedConnId::draw_keyed(&mut rng, &RandomConnIds::default(), &key);
        assert_eq!(issued.reset_token, key.token(issued.id.as_bytes()));
        assert_eq!(issued.id.len(), DEFAULT_CONN_ID_LEN);
    }
}
