//! The receiving half: opens packets of one direction, follows authenticated rekeys.

use phantom_wire::{ConnId, Epoch, Header, StreamId};
use zeroize::ZeroizeOnDrop;

use crate::aead::{PacketKey, TAG_LEN};
use crate::hp::HeaderKey;
use crate::limits::Limits;
use crate::{Error, Suite, TrafficSecret};

/// How many epochs ahead of the current one a packet may be and still be followed.
/// The trial keys of those epochs are derived at most once per epoch the receiver is
/// in, so after the first, a forged future-epoch packet costs one trial open.
pub const MAX_REKEY_CATCHUP: u32 = 16;

/// A packet whose AEAD verified: its header and its plaintext, decrypted in place.
///
/// Only this crate can construct one (I1, I2): frame parsing that accepts only an
/// `OpenedPacket` cannot even be handed unauthenticated bytes. Outside the crate this
/// does not compile:
///
/// ```compile_fail
/// fn forge(header: phantom_wire::Header) -> phantom_crypto::OpenedPacket<'static> {
///     phantom_crypto::OpenedPacket { header, payload: b"frames", advanced: false }
/// }
/// ```
pub struct OpenedPacket<'a> {
    header: Header,
    payload: &'a [u8],
    advanced: bool,
}

impl<'a> OpenedPacket<'a> {
    /// The authenticated header.
    #[must_use]
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The plaintext payload (inside the caller's datagram buffer).
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// True if this packet moved the opener to a newer epoch (an authenticated rekey
    /// by the peer).
    #[must_use]
    pub fn advanced_epoch(&self) -> bool {
        self.advanced
    }
}

// Debug shows the header and the payload length, not the plaintext (which may be
// application secrets).
impl core::fmt::Debug for OpenedPacket<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpenedPacket")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .field("advanced", &self.advanced)
            .finish()
    }
}

/// The opening state of one direction.
///
/// Keys held: the current epoch's, and the previous epoch's until
/// [`Opener::retire_previous`] (the session calls it about 3 PTO after the epoch
/// advanced, as RFC 9001 §6.5 does), so reordered packets of the previous epoch still
/// open. A packet of a newer epoch, at most [`MAX_REKEY_CATCHUP`] ahead, is opened by a
/// *trial* key derived without being installed; only if the AEAD verifies does the
/// opener move to that epoch.
///
/// Trial keys are cached: the secrets of the epochs ahead (and the keys of those a
/// packet named) are derived at most once while the opener stays in its epoch, so a
/// stream of forged future-epoch packets costs one AEAD trial each, like a forged
/// current-epoch packet, after the first ([`Opener::hkdf_expansions`] counts the
/// work). The cache holds at most [`MAX_REKEY_CATCHUP`] entries, in a buffer reserved
/// once at that size (never regrown, so never copied), and is dropped in place
/// (zeroized) whenever the epoch moves.
///
/// # Invariants
/// * I5: the epoch moves only forward and only after a packet of the new epoch
///   authenticated; a forged epoch changes nothing but the trial-key cache. Replaced
///   secrets and keys are dropped where they lie, so they zeroize in place.
/// * I6: every failed open is counted here, across all keys; once the suite's
///   integrity limit is reached every open returns [`Error::IntegrityLimitExceeded`].
/// * I2: the header image as received, with header protection removed, is the
///   associated data.
/// * I1: nothing panics on input; a failed open leaves the datagram unchanged; the
///   work per packet is bounded (at most one chain walk per epoch ahead).
/// * I8: secrets zeroized on drop, Debug redacted.
pub struct Opener {
    suite: Suite,
    epoch: Epoch,
    secret: TrafficSecret,
    key: PacketKey,
    hp: HeaderKey,
    previous_epoch: Option<Epoch>,
    /// The previous epoch's key; `Some` exactly when `previous_epoch` is.
    previous_key: Option<PacketKey>,
    /// `ahead[i]` holds epoch `epoch + 1 + i`.
    ahead: Vec<Ahead>,
    hkdf_expansions: u64,
    failed_opens: u64,
    limits: Limits,
}

/// Which key opens a packet.
#[derive(Clone, Copy)]
enum Slot {
    Current,
    Previous,
    /// `ahead[index]`, the epoch `index + 1` steps ahead.
    Ahead(usize),
}

/// A newer epoch's secret, and its key once a packet named that epoch. Installed only
/// if a packet under it verifies.
struct Ahead {
    secret: TrafficSecret,
    key: Option<PacketKey>,
}

/// HKDF expansions per [`PacketKey::derive`] (key and IV).
const EXPANSIONS_PER_KEY: u64 = 2;

impl Opener {
    /// An opener at epoch 0 under the handshake's `secret` for the peer's direction.
    ///
    /// # Errors
    /// Never in practice; typed for totality.
    pub fn new(suite: Suite, secret: TrafficSecret) -> Result<Self, Error> {
        Self::at_epoch(suite, secret, Epoch(0))
    }

    /// An opener at `epoch`, where `secret` is that epoch's secret.
    ///
    /// # Errors
    /// Never in practice; typed for totality.
    pub fn at_epoch(suite: Suite, secret: TrafficSecret, epoch: Epoch) -> Result<Self, Error> {
        let key = PacketKey::derive(suite, &secret)?;
        let hp = HeaderKey::new(suite, &secret)?;
        Ok(Self {
            suite,
            epoch,
            secret,
            key,
            hp,
            previous_epoch: None,
            previous_key: None,
            ahead: Vec::new(),
            hkdf_expansions: EXPANSIONS_PER_KEY,
            failed_opens: 0,
            limits: Limits::for_suite(suite),
        })
    }

    /// Replaces the header-protection key with the one of the direction's epoch-0
    /// secret `first` (an opener built [`Opener::at_epoch`] a later epoch derives it from
    /// that epoch's secret otherwise).
    ///
    /// # Errors
    /// Never in practice; typed for totality.
    pub fn with_header_secret(mut self, first: &TrafficSecret) -> Result<Self, Error> {
        self.hp = HeaderKey::new(self.suite, first)?;
        Ok(self)
    }

    /// The suite.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The newest authenticated epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The epoch of the retained previous key, if any.
    #[must_use]
    pub fn previous_epoch(&self) -> Option<Epoch> {
        self.previous_epoch
    }

    /// HKDF-Expand calls this opener has made: two per packet key (key and IV), one
    /// per step of the rekey chain, counting the first key. Whatever arrives, it grows
    /// by at most `3 * MAX_REKEY_CATCHUP` while the opener stays in one epoch: each
    /// epoch ahead has its secret and key derived at most once until the opener moves.
    #[must_use]
    pub fn hkdf_expansions(&self) -> u64 {
        self.hkdf_expansions
    }

    /// Packets that failed authentication over this opener's lifetime.
    #[must_use]
    pub fn failed_opens(&self) -> u64 {
        self.failed_opens
    }

    /// The limits in force.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Lowers the limits (tests do; production keeps [`Limits::for_suite`]). Each
    /// limit is clamped to the suite's: a value above the RFC 9001 figure is ignored,
    /// so I6 cannot be switched off.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits.clamped_to(Limits::for_suite(self.suite));
    }

    /// True once the integrity limit is reached: the session must close.
    #[must_use]
    pub fn integrity_exhausted(&self) -> bool {
        self.failed_opens >= self.limits.integrity
    }

    /// Drops (and zeroizes) the previous epoch's key; its packets are refused from now
    /// on. Returns true if a key was retired.
    pub fn retire_previous(&mut self) -> bool {
        let had = self.previous_epoch.is_some();
        // Assignment drops the key where it lies, so it zeroizes in place (a `take`
        // would move it out and leave its bytes behind in `self`).
        self.previous_key = None;
        self.previous_epoch = None;
        had
    }

    /// Opens one datagram in place.
    ///
    /// Removes header protection (into a copy of the header: the datagram's header
    /// bytes are left as received), parses the short header of a `cid_len`-byte id,
    /// expands the truncated sequence against `largest(stream)` (the largest sequence
    /// the receiver authenticated in that space, `None` if none), reconstructs the epoch
    /// and picks its key (current; previous; or a trial key 1..=[`MAX_REKEY_CATCHUP`]
    /// epochs ahead), verifies the tag with the unprotected image as associated data,
    /// and decrypts in place. On success the returned [`OpenedPacket`] borrows the
    /// plaintext from `datagram`.
    ///
    /// # Errors
    /// * [`Error::IntegrityLimitExceeded`]: the session must close (nothing is opened).
    /// * [`Error::Wire`]: not a short packet, or the unprotected header does not parse.
    /// * [`Error::PacketTooShort`]: shorter than the header-protection sample needs.
    /// * [`Error::EpochTooOld`] / [`Error::EpochTooFarAhead`]: no key for that epoch.
    /// * [`Error::DecryptFailed`]: the AEAD did not verify (counted).
    ///
    /// On any error the opener's epoch and keys are unchanged and `datagram` is not
    /// modified.
    pub fn open_packet<'a>(
        &mut self,
        datagram: &'a mut [u8],
        cid_len: usize,
        largest: impl FnOnce(StreamId) -> Option<u64>,
    ) -> Result<OpenedPacket<'a>, Error> {
        // I6: past the integrity limit nothing more is opened.
        if self.integrity_exhausted() {
            return Err(Error::IntegrityLimitExceeded);
        }
        if phantom_wire::peek_conn_id(datagram, cid_len).is_none() {
            return Err(Error::Wire(phantom_wire::Error::Malformed(
                "not a short packet",
            )));
        }
        self.open_parsed(datagram, cid_len, largest)
    }

    /// [`Opener::open_packet`] for the packets of one session, classifying a datagram
    /// in the order a receiver drops it: it must be a short packet ([`Error::Wire`])
    /// carrying `conn_id` ([`Error::UnknownSession`]); only then are the integrity limit
    /// ([`Error::IntegrityLimitExceeded`]), header protection and the AEAD consulted.
    ///
    /// A datagram of another session is refused before any key is tried: it is not
    /// counted as a failed open (I6), and nothing changes.
    ///
    /// # Errors
    /// As [`Opener::open_packet`], plus [`Error::UnknownSession`].
    pub fn open_session_packet<'a>(
        &mut self,
        conn_id: &ConnId,
        datagram: &'a mut [u8],
        largest: impl FnOnce(StreamId) -> Option<u64>,
    ) -> Result<OpenedPacket<'a>, Error> {
        let Some(id) = phantom_wire::peek_conn_id(datagram, conn_id.len()) else {
            return Err(Error::Wire(phantom_wire::Error::Malformed(
                "not a short packet",
            )));
        };
        if id != conn_id.as_bytes() {
            return Err(Error::UnknownSession);
        }
        // I6: past the integrity limit nothing more is opened.
        if self.integrity_exhausted() {
            return Err(Error::IntegrityLimitExceeded);
        }
        self.open_parsed(datagram, conn_id.len(), largest)
    }

    /// Opens `datagram`, a short packet with a `cid_len`-byte id.
    fn open_parsed<'a>(
        &mut self,
        datagram: &'a mut [u8],
        cid_len: usize,
        largest: impl FnOnce(StreamId) -> Option<u64>,
    ) -> Result<OpenedPacket<'a>, Error> {
        let (wire, image) = self.hp.unprotect(datagram, cid_len)?;
        let aad = image.get(..wire.len).ok_or(Error::PacketTooShort)?;
        let sequence = wire.seq_len.expand(wire.truncated, largest(wire.stream_id));
        let epoch = Epoch::reconstruct(self.epoch, wire.epoch_low).ok_or(Error::EpochTooOld)?;
        let body = datagram.get_mut(wire.len..).ok_or(Error::PacketTooShort)?;
        let ct_len = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::PacketTooShort)?;
        let (ciphertext, tag) = body
            .split_at_mut_checked(ct_len)
            .ok_or(Error::PacketTooShort)?;
        let tag: &[u8; TAG_LEN] = tag.first_chunk().ok_or(Error::PacketTooShort)?;

        let slot = self.select(epoch)?;
        let key = match slot {
            Slot::Current => Some(&self.key),
            Slot::Previous => self.previous_key.as_ref(),
            Slot::Ahead(i) => self.ahead.get(i).and_then(|a| a.key.as_ref()),
        };
        let Some(key) = key else {
            return Err(Error::KeyDerivation);
        };
        let nonce = key.nonce(wire.stream_id, sequence);
        // I2: the unprotected image is the associated data. The backend verifies before
        // decrypting, so a failure leaves `ciphertext` untouched.
        if key
            .aead()
            .open_in_place(&nonce, aad, ciphertext, tag)
            .is_err()
        {
            // I6: count in the key object; the trial key stays cached, the live epoch
            // is untouched (I5).
            return Err(self.count_failure());
        }
        let advanced = matches!(slot, Slot::Ahead(_));
        if let Slot::Ahead(index) = slot {
            self.commit(index, epoch);
        }
        Ok(OpenedPacket {
            header: Header {
                flags: wire.flags,
                epoch,
                conn_id: wire.conn_id,
                stream_id: wire.stream_id,
                sequence,
                seq_len: wire.seq_len,
            },
            payload: ciphertext,
            advanced,
        })
    }

    /// Chooses the key slot for a packet of `epoch`. For a newer epoch, derives (not
    /// installs) what the cache lacks: the chain up to `epoch`, its key and the key of
    /// the epoch before it (the previous key should it commit).
    fn select(&mut self, epoch: Epoch) -> Result<Slot, Error> {
        if epoch == self.epoch {
            return Ok(Slot::Current);
        }
        if self.previous_epoch == Some(epoch) && self.previous_key.is_some() {
            return Ok(Slot::Previous);
        }
        let Some(steps) = epoch.0.checked_sub(self.epoch.0).filter(|s| *s > 0) else {
            return Err(Error::EpochTooOld);
        };
        if steps > MAX_REKEY_CATCHUP {
            return Err(Error::EpochTooFarAhead);
        }
        // `steps` is in 1..=16.
        let index = steps as usize - 1;
        self.extend_ahead(index + 1)?;
        self.ahead_key(index)?;
        if let Some(prior) = index.checked_sub(1) {
            self.ahead_key(prior)?;
        }
        Ok(Slot::Ahead(index))
    }

    /// Walks the rekey chain until `ahead` holds `len` epochs.
    fn extend_ahead(&mut self, len: usize) -> Result<(), Error> {
        if self.ahead.capacity() == 0 {
            // Reserved once at its bound: pushing never reallocates, so no secret is
            // ever left behind in a freed old buffer.
            self.ahead.reserve_exact(MAX_REKEY_CATCHUP as usize);
        }
        while self.ahead.len() < len {
            let next = match self.ahead.last() {
                Some(last) => last.secret.next_epoch()?,
                None => self.secret.next_epoch()?,
            };
            self.hkdf_expansions = self.hkdf_expansions.saturating_add(1);
            self.ahead.push(Ahead {
                secret: next,
                key: None,
            });
        }
        Ok(())
    }

    /// Derives the key of `ahead[index]` unless it is cached.
    fn ahead_key(&mut self, index: usize) -> Result<(), Error> {
        let suite = self.suite;
        let Some(entry) = self.ahead.get_mut(index) else {
            return Err(Error::KeyDerivation);
        };
        if entry.key.is_none() {
            entry.key = Some(PacketKey::derive(suite, &entry.secret)?);
            self.hkdf_expansions = self.hkdf_expansions.saturating_add(EXPANSIONS_PER_KEY);
        }
        Ok(())
    }

    /// Installs `ahead[index]`, the authenticated epoch `epoch`. The old current key
    /// becomes the previous one if the jump was one epoch; otherwise the key of the
    /// epoch just before the new one is. Values change places by swapping, and the
    /// cache is then dropped in place, so every replaced secret and key zeroizes where
    /// it lay (I5). Infallible, so an opened packet always commits.
    fn commit(&mut self, index: usize, epoch: Epoch) {
        let Some(target) = self.ahead.get_mut(index) else {
            return;
        };
        let Some(target_key) = target.key.as_mut() else {
            return;
        };
        // The new epoch becomes current; the old current lands in `ahead[index]`.
        core::mem::swap(&mut self.key, target_key);
        core::mem::swap(&mut self.secret, &mut target.secret);
        // The previous key: the old current one (now in `ahead[index]`) after a one-step
        // jump, else the key of the epoch before the new one (derived by `select`).
        let prior = index.checked_sub(1).unwrap_or(index);
        self.previous_key = None;
        self.previous_epoch = None;
        if let Some(entry) = self.ahead.get_mut(prior)
            && entry.key.is_some()
        {
            core::mem::swap(&mut self.previous_key, &mut entry.key);
            self.previous_epoch = Some(Epoch(epoch.0.saturating_sub(1)));
        }
        self.epoch = epoch;
        // Entries at or below the new epoch are spent, those above it are now indexed
        // wrongly: drop all of them in place.
        self.ahead.clear();
    }

    fn count_failure(&mut self) -> Error {
        match self.failed_opens.checked_add(1) {
            Some(n) => {
                self.failed_opens = n;
                if self.integrity_exhausted() {
                    Error::IntegrityLimitExceeded
                } else {
                    Error::DecryptFailed
                }
            }
            None => Error::IntegrityLimitExceeded,
        }
    }
}

// Every secret-holding field (TrafficSecret, PacketKey) zeroizes itself on drop.
impl ZeroizeOnDrop for Opener {}

impl core::fmt::Debug for Opener {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opener")
            .field("suite", &self.suite)
            .field("epoch", &self.epoch)
            .field("previous_epoch", &self.previous_epoch())
            .field("failed_opens", &self.failed_opens)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
