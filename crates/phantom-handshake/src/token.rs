//! Stateless retry tokens: `key_id (u8) ‖ issued (u64 BE, unix seconds) ‖
//! HMAC-SHA256(key, "phantom-retry-v1" ‖ address ‖ key_id ‖ issued)`.

use std::net::SocketAddr;

use zeroize::Zeroizing;

use crate::Rng;
use crate::error::{Error, ensure};
use crate::schedule::{hmac, mac_eq};

/// Length of a retry token.
pub const TOKEN_LEN: usize = 1 + 8 + 32;
/// How long a token is valid, in seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 10;

const TOKEN_CONTEXT: &[u8] = b"phantom-retry-v1";

/// The bytes of a socket address a token is bound to: family, IP, port.
pub(crate) fn address_bytes(addr: &SocketAddr) -> Vec<u8> {
    let mut v = Vec::with_capacity(19);
    match addr {
        SocketAddr::V4(a) => {
            v.push(4);
            v.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            v.push(6);
            v.extend_from_slice(&a.ip().octets());
        }
    }
    v.extend_from_slice(&addr.port().to_be_bytes());
    v
}

#[cfg_attr(test, derive(Clone))]
struct Key {
    id: u8,
    key: Zeroizing<[u8; 32]>,
}

/// The rotating retry-token secret: the current key and the previous one.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct RetryKeys {
    current: Key,
    previous: Option<Key>,
}

impl RetryKeys {
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        Self {
            current: Key { id: 0, key },
            previous: None,
        }
    }

    /// Keys given by the caller (a fleet's schedule): `current` under id `id`, and
    /// `previous` under id `id - 1` (mod 256).
    pub(crate) fn with_keys(
        id: u8,
        current: Zeroizing<[u8; 32]>,
        previous: Option<Zeroizing<[u8; 32]>>,
    ) -> Self {
        Self {
            current: Key { id, key: current },
            previous: previous.map(|key| Key {
                id: id.wrapping_sub(1),
                key,
            }),
        }
    }

    /// Makes a fresh key current and keeps the old one for validation.
    pub(crate) fn rotate<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut_slice());
        let id = self.current.id.wrapping_add(1);
        let old = core::mem::replace(&mut self.current, Key { id, key });
        self.previous = Some(old);
    }

    fn mac(key: &Key, addr: &[u8], issued: u64) -> [u8; 32] {
        hmac(
            key.key.as_slice(),
            &[TOKEN_CONTEXT, addr, &[key.id], &issued.to_be_bytes()],
        )
    }

    pub(crate) fn issue(&self, addr: &SocketAddr, unix_now: u64) -> Vec<u8> {
        let a = address_bytes(addr);
        let mut t = Vec::with_capacity(TOKEN_LEN);
        t.push(self.current.id);
        t.extend_from_slice(&unix_now.to_be_bytes());
        t.extend_from_slice(&Self::mac(&self.current, &a, unix_now));
        t
    }

    /// Checks a token for `addr` at `unix_now`: authenticity first (`TokenInvalid`), then
    /// age (`TokenExpired`).
    pub(crate) fn validate(
        &self,
        token: &[u8],
        addr: &SocketAddr,
        unix_now: u64,
    ) -> Result<(), Error> {
        ensure!(token.len() == TOKEN_LEN, Error::TokenInvalid);
        let mut r = phantom_wire::Reader::new(token);
        let id = r.u8().map_err(|_| Error::TokenInvalid)?;
        let issued = r.u64().map_err(|_| Error::TokenInvalid)?;
        let tag = r.bytes(32).map_err(|_| Error::TokenInvalid)?;
        let key = if id == self.current.id {
            &self.current
        } else {
            self.previous
                .as_ref()
                .filter(|k| k.id == id)
                .ok_or(Error::TokenInvalid)?
        };
        let a = address_bytes(addr);
        ensure!(
            mac_eq(&Self::mac(key, &a, issued), tag),
            Error::TokenInvalid
        );
        ensure!(issued <= unix_now.saturating_add(1), Error::TokenInvalid);
        ensure!(
            unix_now.saturating_sub(issued) <= TOKEN_LIFETIME_SECS,
            Error::TokenExpired
        );
        Ok(())
    }
}
