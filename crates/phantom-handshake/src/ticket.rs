//! Resumption tickets (server-encrypted, expiring, bound to the server key) and the
//! bounded anti-replay store for early data (I10).

use std::collections::{HashSet, VecDeque};

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut as _, KeyInit as _};
use phantom_crypto::Suite;
use phantom_wire::Reader;
use zeroize::Zeroizing;

use crate::Rng;
use crate::error::{Error, ensure};

const TICKET_VERSION: u8 = 2;
/// Plaintext: version, server key id, issuing instance, issued, lifetime, suite,
/// ticket id, secret.
const PLAIN_LEN: usize = 1 + 32 + 16 + 8 + 4 + 1 + 16 + 32;
/// Blob: key id, nonce, ciphertext, tag.
pub(crate) const BLOB_LEN: usize = 1 + 12 + PLAIN_LEN + 16;

/// What the server recovers from a ticket it issued.
pub(crate) struct TicketContents {
    /// The random id of the server instance that issued the ticket.
    pub(crate) instance: [u8; 16],
    pub(crate) issued: u64,
    pub(crate) ticket_id: [u8; 16],
    pub(crate) secret: Zeroizing<[u8; 32]>,
}

#[cfg_attr(test, derive(Clone))]
struct Key {
    id: u8,
    aead: ChaCha20Poly1305,
}

/// The rotating ticket-encryption key (current + previous).
#[cfg_attr(test, derive(Clone))]
pub(crate) struct TicketKeys {
    current: Key,
    previous: Option<Key>,
}

fn fresh_key<R: Rng + ?Sized>(rng: &mut R, id: u8) -> Key {
    let mut k = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(k.as_mut_slice());
    key_from(id, &k)
}

fn key_from(id: u8, k: &[u8; 32]) -> Key {
    Key {
        id,
        aead: ChaCha20Poly1305::new(&(*k).into()),
    }
}

impl TicketKeys {
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R) -> Self {
        Self {
            current: fresh_key(rng, 0),
            previous: None,
        }
    }

    /// Keys given by the caller (a fleet's schedule): `current` under id `id`, and
    /// `previous` under id `id - 1` (mod 256).
    pub(crate) fn with_keys(id: u8, current: &[u8; 32], previous: Option<&[u8; 32]>) -> Self {
        Self {
            current: key_from(id, current),
            previous: previous.map(|k| key_from(id.wrapping_sub(1), k)),
        }
    }

    pub(crate) fn rotate<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let id = self.current.id.wrapping_add(1);
        let old = core::mem::replace(&mut self.current, fresh_key(rng, id));
        self.previous = Some(old);
    }

    /// Seals a ticket for `secret`, bound to `server_key_id`, naming the issuing
    /// server `instance`.
    #[expect(clippy::too_many_arguments, reason = "the ticket's fields")]
    pub(crate) fn seal<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        server_key_id: &[u8; 32],
        instance: &[u8; 16],
        issued: u64,
        lifetime: u32,
        suite: Suite,
        secret: &[u8; 32],
    ) -> Result<Vec<u8>, Error> {
        let mut ticket_id = [0u8; 16];
        rng.fill_bytes(&mut ticket_id);
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let mut plain = Zeroizing::new(Vec::with_capacity(PLAIN_LEN));
        plain.push(TICKET_VERSION);
        plain.extend_from_slice(server_key_id);
        plain.extend_from_slice(instance);
        plain.extend_from_slice(&issued.to_be_bytes());
        plain.extend_from_slice(&lifetime.to_be_bytes());
        plain.push(suite.code());
        plain.extend_from_slice(&ticket_id);
        plain.extend_from_slice(secret);
        let aad = aad(server_key_id, self.current.id);
        let mut buf = plain.to_vec();
        let tag = self
            .current
            .aead
            .encrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into())
            .map_err(|_| Error::TicketInvalid)?;
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.push(self.current.id);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&buf);
        blob.extend_from_slice(tag.as_slice());
        Ok(blob)
    }

    /// Opens a ticket: `TicketInvalid` unless it decrypts under a current or previous key
    /// and names this server; `TicketExpired` past its lifetime.
    pub(crate) fn open(
        &self,
        blob: &[u8],
        server_key_id: &[u8; 32],
        unix_now: u64,
    ) -> Result<TicketContents, Error> {
        ensure!(blob.len() == BLOB_LEN, Error::TicketInvalid);
        let mut r = Reader::new(blob);
        let id = r.u8().map_err(|_| Error::TicketInvalid)?;
        let nonce = *r.array::<12>().map_err(|_| Error::TicketInvalid)?;
        let ct = r.bytes(PLAIN_LEN).map_err(|_| Error::TicketInvalid)?;
        let tag = *r.array::<16>().map_err(|_| Error::TicketInvalid)?;
        let key = if id == self.current.id {
            &self.current
        } else {
            self.previous
                .as_ref()
                .filter(|k| k.id == id)
                .ok_or(Error::TicketInvalid)?
        };
        let mut buf = Zeroizing::new(ct.to_vec());
        key.aead
            .decrypt_inout_detached(
                &nonce.into(),
                &aad(server_key_id, id),
                buf.as_mut_slice().into(),
                &tag.into(),
            )
            .map_err(|_| Error::TicketInvalid)?;
        let mut r = Reader::new(buf.as_slice());
        ensure!(r.u8()? == TICKET_VERSION, Error::TicketInvalid);
        ensure!(r.array::<32>()? == server_key_id, Error::TicketInvalid);
        let instance = *r.array::<16>()?;
        let issued = r.u64()?;
        let lifetime = r.u32()?;
        let _suite = r.u8()?;
        let ticket_id = *r.array::<16>()?;
        let secret = Zeroizing::new(*r.array::<32>()?);
        ensure!(issued <= unix_now.saturating_add(1), Error::TicketInvalid);
        ensure!(
            unix_now.saturating_sub(issued) <= u64::from(lifetime),
            Error::TicketExpired
        );
        Ok(TicketContents {
            instance,
            issued,
            ticket_id,
            secret,
        })
    }
}

fn aad(server_key_id: &[u8; 32], key_id: u8) -> [u8; 49] {
    let mut a = [0u8; 49];
    a[..16].copy_from_slice(b"phantom-ticket-1");
    a[16..48].copy_from_slice(server_key_id);
    a[48] = key_id;
    a
}

/// Remembers, for a time window, which tickets already carried accepted early data.
///
/// # Invariants
/// I10: a ticket id is recorded before its early data is released, and an entry is only
/// evicted once its ticket is older than the window — at which point 0-RTT is refused for
/// that ticket anyway. A full store refuses 0-RTT (fails closed).
#[cfg_attr(test, derive(Clone))]
pub(crate) struct AntiReplay {
    window: u64,
    capacity: usize,
    seen: HashSet<[u8; 16]>,
    order: VecDeque<(u64, [u8; 16])>,
}

impl AntiReplay {
    pub(crate) fn new(window: u64, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True if a ticket issued at `issued` is young enough for 0-RTT at `unix_now`.
    pub(crate) fn in_window(&self, issued: u64, unix_now: u64) -> bool {
        unix_now.saturating_sub(issued) <= self.window
    }

    /// Records `id`; `EarlyDataReplayed` if already there, `LimitExceeded` if full.
    pub(crate) fn check_and_insert(
        &mut self,
        id: [u8; 16],
        issued: u64,
        unix_now: u64,
    ) -> Result<(), Error> {
        // Evict entries whose tickets can no longer do 0-RTT. Entries are kept in
        // insertion order; issue times may be out of order, so only pop from the front
        // while the front is stale (a conservative, O(1) amortised sweep).
        while let Some(&(t, old)) = self.order.front() {
            if self.in_window(t, unix_now) {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        ensure!(!self.seen.contains(&id), Error::EarlyDataReplayed);
        ensure!(
            self.seen.len() < self.capacity,
            Error::LimitExceeded("anti-replay store")
        );
        self.seen.insert(id);
        self.order.push_back((issued, id));
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}
