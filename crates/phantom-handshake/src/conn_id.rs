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
    /// A fresh id of the default length and a random token.
    pub(crate) fn draw<R: Rng + ?Sized>(rng: &mut R) -> Result<Self, Error> {
        let mut id = [0u8; DEFAULT_CONN_ID_LEN];
        rng.fill_bytes(&mut id);
        let mut reset_token = [0u8; RESET_TOKEN_LEN];
        rng.fill_bytes(&mut reset_token);
        Ok(Self {
            id: ConnId::from_slice(&id)?,
            reset_token,
        })
    }

    /// A fresh id of the default length whose token derives from `key` (a server's).
    pub(crate) fn draw_keyed<R: Rng + ?Sized>(rng: &mut R, key: &ResetKey) -> Result<Self, Error> {
        let mut issued = Self::draw(rng)?;
        issued.reset_token = key.token(issued.id.as_bytes());
        Ok(issued)
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
