//! Connection ids that something in front of the server can route by
//! (docs/PROTOCOL.md §1.4, docs/DEPLOYMENT.md).
//!
//! [`RoutableConnIds`] encodes a configured server id into every id it issues, after
//! draft-ietf-quic-load-balancers (QUIC-LB): a first byte of config-rotation bits and
//! random bits, then `server id ‖ nonce`, in the clear (plaintext scheme) or encrypted
//! under a 16-byte routing key the balancer shares (encrypted scheme: a four-pass
//! Feistel network with AES-128-ECB as its round function, or one AES block when
//! `server id ‖ nonce` is exactly 16 bytes). [`RoutableConnIds::server_id_of`] is the
//! decoder a layer-4 balancer implements.
//!
//! [`SteeredConnIds`] wraps any generator so that every id it returns carries a chosen
//! worker index in its last byte (`last byte mod workers == worker`): the kernel's
//! reuseport program in front of a multi-socket server reads that byte to pick the
//! socket, so a migrated client keeps reaching the worker that holds its session.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use phantom_wire::{ConnId, MAX_CONN_ID_LEN};

use crate::Rng;
use crate::conn_id::ConnIdGenerator;
use crate::error::{Error, ensure};

/// Longest server id a routable id carries.
pub const MAX_SERVER_ID_LEN: usize = 6;
/// Shortest nonce after the server id: ids of one server differ in at least 4 bytes.
pub const MIN_NONCE_LEN: usize = 4;
/// Largest config-rotation value (3 bits; 7 is QUIC-LB's "unroutable" code point).
pub const MAX_CONFIG_ROTATION: u8 = 6;
/// Most workers [`SteeredConnIds`] can steer to (one steering byte).
pub const MAX_WORKERS: usize = 256;
/// Draws per worker [`SteeredConnIds`] makes before it gives up and returns a
/// mis-steered id (a fault of the inner generator: a uniform one fails with
/// probability below e^-64).
pub const STEERING_DRAWS_PER_WORKER: usize = 64;

/// Bits of the first byte that carry the config rotation (the rest are random).
const ROTATION_SHIFT: u32 = 5;
/// The AES block, and the one-pass length of `server id ‖ nonce`.
const BLOCK: usize = 16;

/// A server id of 1..=[`MAX_SERVER_ID_LEN`] bytes, as a routable id carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerId {
    len: u8,
    bytes: [u8; MAX_SERVER_ID_LEN],
}

impl ServerId {
    /// A server id from its bytes.
    ///
    /// # Errors
    /// [`Error::Misuse`] unless `bytes` is 1..=6 bytes long.
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        ensure!(
            (1..=MAX_SERVER_ID_LEN).contains(&bytes.len()),
            Error::Misuse("server id length")
        );
        let mut out = [0u8; MAX_SERVER_ID_LEN];
        for (o, b) in out.iter_mut().zip(bytes) {
            *o = *b;
        }
        Ok(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// The id's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl core::fmt::Debug for ServerId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ServerId(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// How the server id is carried.
enum Scheme {
    /// In the clear: anyone can read it (and link a server's sessions).
    Plaintext,
    /// Under AES-128 with the routing key (zeroized on drop by the `aes` crate).
    Encrypted(Box<aes::Aes128>),
}

/// QUIC-LB-style routable connection ids (docs/PROTOCOL.md §1.4).
///
/// Layout of an id of `len` bytes: `first ‖ body`, where `first` is
/// `config_rotation << 5 | 5 random bits` and `body` (`len − 1` bytes) is
/// `server_id ‖ nonce` — in the clear (plaintext scheme), or encrypted with the
/// routing key (encrypted scheme; the four-pass Feistel network of QUIC-LB's
/// "encrypted short" algorithm, or one AES-128 block when `len − 1` is 16). The nonce is
/// at least [`MIN_NONCE_LEN`] bytes. Plaintext nonces are random; encrypted ones count
/// up from a random start, so one server's ids never repeat before 2^(8·nonce) draws.
///
/// Linkability: under the encrypted scheme two ids reveal only their config rotation
/// (one value for a whole fleet); whoever holds the key learns the server, and nothing
/// links two sessions of one server beyond that. The plaintext scheme shows the server
/// id to every observer. Debug never shows the key.
pub struct RoutableConnIds {
    len: usize,
    config_rotation: u8,
    server_id: ServerId,
    scheme: Scheme,
    /// Encrypted scheme: the nonce counter and its random start.
    counter: AtomicU64,
    start: OnceLock<u64>,
}

impl core::fmt::Debug for RoutableConnIds {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RoutableConnIds")
            .field("len", &self.len)
            .field("config_rotation", &self.config_rotation)
            .field("server_id", &self.server_id)
            .field(
                "scheme",
                &match self.scheme {
                    Scheme::Plaintext => "plaintext",
                    Scheme::Encrypted(_) => "encrypted(<redacted key>)",
                },
            )
            .finish_non_exhaustive()
    }
}

impl RoutableConnIds {
    /// Ids of `len` bytes carrying `server_id` in the clear.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `server_id` is not 1..=6 bytes, `config_rotation` is above
    /// [`MAX_CONFIG_ROTATION`], or `len` leaves less than [`MIN_NONCE_LEN`] nonce bytes
    /// (or exceeds 20).
    pub fn plaintext(len: usize, config_rotation: u8, server_id: &[u8]) -> Result<Self, Error> {
        Self::with_scheme(len, config_rotation, server_id, Scheme::Plaintext)
    }

    /// Ids of `len` bytes carrying `server_id` encrypted under `routing_key`, which the
    /// load balancer shares.
    ///
    /// # Errors
    /// As [`RoutableConnIds::plaintext`].
    pub fn encrypted(
        len: usize,
        config_rotation: u8,
        server_id: &[u8],
        routing_key: &[u8; 16],
    ) -> Result<Self, Error> {
        let aes = Box::new(aes::Aes128::new(routing_key.into()));
        Self::with_scheme(len, config_rotation, server_id, Scheme::Encrypted(aes))
    }

    fn with_scheme(
        len: usize,
        config_rotation: u8,
        server_id: &[u8],
        scheme: Scheme,
    ) -> Result<Self, Error> {
        let server_id = ServerId::new(server_id)?;
        ensure!(
            config_rotation <= MAX_CONFIG_ROTATION,
            Error::Misuse("config rotation")
        );
        ensure!(
            len <= MAX_CONN_ID_LEN && len >= 1 + server_id.as_bytes().len() + MIN_NONCE_LEN,
            Error::Misuse("connection id length")
        );
        Ok(Self {
            len,
            config_rotation,
            server_id,
            scheme,
            counter: AtomicU64::new(0),
            start: OnceLock::new(),
        })
    }

    /// The server id every id carries.
    #[must_use]
    pub fn server_id(&self) -> ServerId {
        self.server_id
    }

    /// The config rotation in every id's first byte.
    #[must_use]
    pub fn config_rotation(&self) -> u8 {
        self.config_rotation
    }

    /// The load balancer's decoder: the server id `id` carries, or `None` if `id` has
    /// another length or config rotation (not one of this configuration's ids: route
    /// it by the 4-tuple). Under the encrypted scheme any `id` of the right shape
    /// decodes to some server id; the balancer checks it against its server table.
    #[must_use]
    pub fn server_id_of(&self, id: &[u8]) -> Option<ServerId> {
        if id.len() != self.len {
            return None;
        }
        let (first, body) = id.split_first()?;
        if first >> ROTATION_SHIFT != self.config_rotation {
            return None;
        }
        let mut clear = [0u8; MAX_CONN_ID_LEN];
        let clear = clear.get_mut(..body.len())?;
        clear.copy_from_slice(body);
        if let Scheme::Encrypted(aes) = &self.scheme {
            decrypt(aes, clear);
        }
        ServerId::new(clear.get(..self.server_id.as_bytes().len())?).ok()
    }

    /// The id with first byte `first` (its rotation bits are overwritten) and `nonce`
    /// (`len − 1 − server id length` bytes; shorter is zero-padded).
    pub(crate) fn encode(&self, first: u8, nonce: &[u8]) -> ConnId {
        let sid = self.server_id.as_bytes();
        ConnId::filled_with(self.len, |out| {
            let Some((b0, body)) = out.split_first_mut() else {
                return;
            };
            *b0 = self.config_rotation << ROTATION_SHIFT | (first & 0x1f);
            for (o, i) in body.iter_mut().zip(sid.iter().chain(nonce)) {
                *o = *i;
            }
            if let Scheme::Encrypted(aes) = &self.scheme {
                encrypt(aes, body);
            }
        })
    }
}

impl ConnIdGenerator for RoutableConnIds {
    fn id_len(&self) -> usize {
        self.len
    }

    fn generate(&self, rng: &mut dyn Rng) -> ConnId {
        let mut first = [0u8; 1];
        rng.fill_bytes(&mut first);
        let mut nonce = [0u8; MAX_CONN_ID_LEN];
        match self.scheme {
            Scheme::Plaintext => rng.fill_bytes(&mut nonce),
            Scheme::Encrypted(_) => {
                // A counter from a random start: unique per server until it wraps
                // (the nonce is encrypted, so counting reveals nothing).
                let start = *self.start.get_or_init(|| rng.next_u64());
                let n = start.wrapping_add(self.counter.fetch_add(1, Ordering::Relaxed));
                let nonce_len = self.len - 1 - self.server_id.as_bytes().len();
                let be = n.to_be_bytes();
                // The low bytes of the counter end the nonce; random bytes lead it.
                rng.fill_bytes(&mut nonce);
                for (o, b) in nonce.iter_mut().take(nonce_len).rev().zip(be.iter().rev()) {
                    *o = *b;
                }
            }
        }
        self.encode(first[0], &nonce)
    }
}

/// Encrypts `body` (5..=19 bytes) in place.
fn encrypt(aes: &aes::Aes128, body: &mut [u8]) {
    if let Ok(block) = <&mut [u8; BLOCK]>::try_from(&mut *body) {
        aes.encrypt_block(block.into());
        return;
    }
    feistel(aes, body, false);
}

/// Decrypts `body` in place.
fn decrypt(aes: &aes::Aes128, body: &mut [u8]) {
    if let Ok(block) = <&mut [u8; BLOCK]>::try_from(&mut *body) {
        aes.decrypt_block(block.into());
        return;
    }
    feistel(aes, body, true);
}

/// QUIC-LB's four-pass network over `body` split into two halves of `len` nibbles each
/// (an odd middle byte is split between them): round `i` encrypts
/// `half ‖ zeros ‖ i` (16 bytes) and XORs the leading nibbles of the result into the
/// other half. Passes 1 and 3 change the right half, 2 and 4 the left.
fn feistel(aes: &aes::Aes128, body: &mut [u8], inverse: bool) {
    let p = body.len();
    let mut nib = [0u8; 2 * MAX_CONN_ID_LEN];
    to_nibbles(body, &mut nib);
    let Some((left, rest)) = nib.split_at_mut_checked(p) else {
        return;
    };
    let Some(right) = rest.get_mut(..p) else {
        return;
    };
    if inverse {
        round(aes, right, left, 4);
        round(aes, left, right, 3);
        round(aes, right, left, 2);
        round(aes, left, right, 1);
    } else {
        round(aes, left, right, 1);
        round(aes, right, left, 2);
        round(aes, left, right, 3);
        round(aes, right, left, 4);
    }
    from_nibbles(nib.get(..2 * p).unwrap_or(&[]), body);
}

/// `dst ^= truncate(AES(expand(src, i)))`, on nibbles.
fn round(aes: &aes::Aes128, src: &[u8], dst: &mut [u8], i: u8) {
    let mut block = [0u8; BLOCK];
    from_nibbles(src, &mut block);
    if let Some(last) = block.last_mut() {
        *last = i;
    }
    aes.encrypt_block((&mut block).into());
    let mut mask = [0u8; 2 * BLOCK];
    to_nibbles(&block, &mut mask);
    for (d, m) in dst.iter_mut().zip(mask) {
        *d ^= m;
    }
}

/// Each byte as two nibbles, high first.
fn to_nibbles(bytes: &[u8], out: &mut [u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        if let [hi, lo] = pair {
            *hi = b >> 4;
            *lo = b & 0x0f;
        }
    }
}

/// Packs nibbles two to a byte, high first (an odd last nibble fills a high half).
fn from_nibbles(nib: &[u8], out: &mut [u8]) {
    for (o, pair) in out.iter_mut().zip(nib.chunks(2)) {
        let hi = pair.first().copied().unwrap_or(0);
        let lo = pair.get(1).copied().unwrap_or(0);
        *o = hi << 4 | lo;
    }
}

/// Ids from `inner` whose last byte selects worker `worker` of `workers`
/// (`last byte mod workers == worker`): what a kernel reuseport program or any
/// in-host dispatcher reads to reach the worker that holds the session.
///
/// It draws from `inner` until an id matches (about `workers` draws), at most
/// [`STEERING_DRAWS_PER_WORKER`]` · workers` times, then returns the last draw
/// unsteered (only a degenerate inner generator gets there; the id then reaches some
/// other worker, which drops its packets as unknown). The id keeps the inner
/// generator's length and format (a routable id stays routable). The cost: every id a
/// worker issues shares `last byte mod workers`, which tells an observer that two ids
/// belong to the same worker with probability 1 instead of 1/workers, and no more.
#[derive(Debug, Clone)]
pub struct SteeredConnIds {
    inner: Arc<dyn ConnIdGenerator>,
    worker: usize,
    workers: usize,
}

impl SteeredConnIds {
    /// Ids of `inner` steered to `worker` of `workers`.
    ///
    /// # Errors
    /// [`Error::Misuse`] unless `workers` is 1..=[`MAX_WORKERS`] and
    /// `worker < workers`.
    pub fn new(
        inner: Arc<dyn ConnIdGenerator>,
        worker: usize,
        workers: usize,
    ) -> Result<Self, Error> {
        ensure!(
            (1..=MAX_WORKERS).contains(&workers) && worker < workers,
            Error::Misuse("worker index")
        );
        Ok(Self {
            inner,
            worker,
            workers,
        })
    }

    /// The worker an id selects among `workers`: its last byte mod `workers` (`None`
    /// for an empty id or no workers). The same rule as the kernel program.
    #[must_use]
    pub fn worker_of(id: &[u8], workers: usize) -> Option<usize> {
        let last = usize::from(*id.last()?);
        last.checked_rem(workers)
    }

    /// The worker this generator steers to.
    #[must_use]
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl ConnIdGenerator for SteeredConnIds {
    fn id_len(&self) -> usize {
        self.inner.id_len()
    }

    fn generate(&self, rng: &mut dyn Rng) -> ConnId {
        let mut id = self.inner.generate(rng);
        for _ in 1..STEERING_DRAWS_PER_WORKER.saturating_mul(self.workers) {
            if Self::worker_of(id.as_bytes(), self.workers) == Some(self.worker) {
                break;
            }
            id = self.inner.generate(rng);
        }
        id
    }
}

#[cfg(test)]
#[path = "routable_tests.rs"]
mod tests;
