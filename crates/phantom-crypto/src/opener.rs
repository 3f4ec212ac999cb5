//! The receiving half: opens packets of one direction, follows authenticated rekeys.

use phantom_wire::{Epoch, Flags, HEADER_LEN, Header, SessionId};
use zeroize::ZeroizeOnDrop;

use crate::aead::{PacketKey, TAG_LEN};
use crate::limits::Limits;
use crate::{Error, Suite, TrafficSecret};

/// How many epochs ahead of the current one a packet may be and still be followed.
/// A forged epoch costs the receiver at most this many HKDF steps and one trial open.
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
/// # Invariants
/// * I5: the epoch moves only forward and only after a packet of the new epoch
///   authenticated; a forged epoch changes nothing. Replaced secrets and keys zeroize.
/// * I6: every failed open is counted here, across all keys; once the suite's
///   integrity limit is reached every open returns [`Error::IntegrityLimitExceeded`].
/// * I2: the 52-byte header image as received is the associated data.
/// * I1: nothing panics on input; a failed open leaves the datagram unchanged.
/// * I8: secrets zeroized on drop, Debug redacted.
pub struct Opener {
    suite: Suite,
    epoch: Epoch,
    secret: TrafficSecret,
    key: PacketKey,
    previous: Option<(Epoch, PacketKey)>,
    failed_opens: u64,
    limits: Limits,
}

/// Which key opened a packet.
enum Slot {
    Current,
    Previous,
    Forward(Box<Candidate>),
}

/// A newer epoch's keys, derived for a trial open and installed only if it verifies.
struct Candidate {
    epoch: Epoch,
    secret: TrafficSecret,
    key: PacketKey,
    prior_key: Option<PacketKey>,
}

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
        Ok(Self {
            suite,
            epoch,
            secret,
            key,
            previous: None,
            failed_opens: 0,
            limits: Limits::for_suite(suite),
        })
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
        self.previous.as_ref().map(|(e, _)| *e)
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

    /// Replaces the limits (tests lower them; production keeps [`Limits::for_suite`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True once the integrity limit is reached: the session must close.
    #[must_use]
    pub fn integrity_exhausted(&self) -> bool {
        self.failed_opens >= self.limits.integrity
    }

    /// Drops (and zeroizes) the previous epoch's key; its packets are refused from now
    /// on. Returns true if a key was retired.
    pub fn retire_previous(&mut self) -> bool {
        self.previous.take().is_some()
    }

    /// Opens one datagram in place.
    ///
    /// Parses the header, picks the key by epoch (current; previous; or a trial key
    /// 1..=[`MAX_REKEY_CATCHUP`] epochs ahead), verifies the tag with the 52-byte header
    /// image as associated data, and decrypts in place. On success the returned
    /// [`OpenedPacket`] borrows the plaintext from `datagram`.
    ///
    /// # Errors
    /// * [`Error::IntegrityLimitExceeded`]: the session must close (nothing is opened).
    /// * [`Error::Wire`]: the header does not parse.
    /// * [`Error::Unprotected`]: a HANDSHAKE-flagged (cleartext) packet.
    /// * [`Error::PacketTooShort`]: no room for a tag.
    /// * [`Error::EpochTooOld`] / [`Error::EpochTooFarAhead`]: no key for that epoch.
    /// * [`Error::DecryptFailed`]: the AEAD did not verify (counted).
    ///
    /// On any error the opener's epoch and keys are unchanged and `datagram` is not
    /// modified.
    pub fn open_packet<'a>(&mut self, datagram: &'a mut [u8]) -> Result<OpenedPacket<'a>, Error> {
        // I6: past the integrity limit nothing more is opened.
        if self.integrity_exhausted() {
            return Err(Error::IntegrityLimitExceeded);
        }
        let (header, _, _) = Header::parse(datagram)?;
        if header.flags.contains(Flags::HANDSHAKE) {
            return Err(Error::Unprotected);
        }
        self.open_parsed(header, datagram)
    }

    /// [`Opener::open_packet`] for the packets of one session, classifying a datagram
    /// in the order a receiver drops it: the header must parse ([`Error::Wire`]), name
    /// `session` ([`Error::UnknownSession`]) and not be a cleartext handshake packet
    /// ([`Error::Unprotected`]); only then are the integrity limit
    /// ([`Error::IntegrityLimitExceeded`]) and the AEAD consulted. The header is parsed
    /// once, for both the checks and the open.
    ///
    /// A datagram of another session is refused before any key is tried: it is not
    /// counted as a failed open (I6), and nothing changes.
    ///
    /// # Errors
    /// As [`Opener::open_packet`], plus [`Error::UnknownSession`].
    pub fn open_session_packet<'a>(
        &mut self,
        session: &SessionId,
        datagram: &'a mut [u8],
    ) -> Result<OpenedPacket<'a>, Error> {
        let (header, _, _) = Header::parse(datagram)?;
        if header.session_id != *session {
            return Err(Error::UnknownSession);
        }
        if header.flags.contains(Flags::HANDSHAKE) {
            return Err(Error::Unprotected);
        }
        // I6: past the integrity limit nothing more is opened.
        if self.integrity_exhausted() {
            return Err(Error::IntegrityLimitExceeded);
        }
        self.open_parsed(header, datagram)
    }

    /// Opens `datagram`, whose header (not a HANDSHAKE one) parsed as `header`.
    fn open_parsed<'a>(
        &mut self,
        header: Header,
        datagram: &'a mut [u8],
    ) -> Result<OpenedPacket<'a>, Error> {
        let (image, body) = datagram
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(Error::PacketTooShort)?;
        let ct_len = body
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(Error::PacketTooShort)?;
        let (ciphertext, tag) = body
            .split_at_mut_checked(ct_len)
            .ok_or(Error::PacketTooShort)?;
        let tag: &[u8; TAG_LEN] = tag.first_chunk().ok_or(Error::PacketTooShort)?;
        let image: &[u8; HEADER_LEN] = image;

        let slot = self.select(header.epoch)?;
        let key = match &slot {
            Slot::Current => &self.key,
            Slot::Previous => match &self.previous {
                Some((_, key)) => key,
                None => return Err(Error::EpochTooOld),
            },
            Slot::Forward(candidate) => &candidate.key,
        };
        let nonce = key.nonce(
            header.epoch,
            header.path_id,
            header.stream_id,
            header.sequence,
        );
        // I2: the received image is the associated data. The backend verifies before
        // decrypting, so a failure leaves `ciphertext` untouched.
        if key
            .aead()
            .open_in_place(&nonce, image, ciphertext, tag)
            .is_err()
        {
            // I6: count in the key object; the trial key (if any) drops and zeroizes,
            // the live epoch is untouched (I5).
            return Err(self.count_failure());
        }
        let advanced = matches!(slot, Slot::Forward(_));
        if let Slot::Forward(candidate) = slot {
            self.commit(*candidate);
        }
        Ok(OpenedPacket {
            header,
            payload: ciphertext,
            advanced,
        })
    }

    /// Chooses the key slot for a packet of `epoch`, deriving (not installing) a trial
    /// key for a newer epoch.
    fn select(&self, epoch: Epoch) -> Result<Slot, Error> {
        if epoch == self.epoch {
            return Ok(Slot::Current);
        }
        if self.previous_epoch() == Some(epoch) {
            return Ok(Slot::Previous);
        }
        let Some(steps) = epoch.0.checked_sub(self.epoch.0).filter(|s| *s > 0) else {
            return Err(Error::EpochTooOld);
        };
        if steps > MAX_REKEY_CATCHUP {
            return Err(Error::EpochTooFarAhead);
        }
        // Walk the chain `steps` times; keep the secret one epoch behind the target so
        // that, on commit, the new previous key is the epoch just before the new one.
        let mut prior: Option<TrafficSecret> = None;
        let mut secret = self.secret.next_epoch()?;
        for _ in 1..steps {
            let next = secret.next_epoch()?;
            // The replaced intermediate secret drops (zeroized) when `prior` is overwritten.
            prior = Some(core::mem::replace(&mut secret, next));
        }
        let key = PacketKey::derive(self.suite, &secret)?;
        let prior_key = match prior {
            Some(prior) => Some(PacketKey::derive(self.suite, &prior)?),
            None => None,
        };
        Ok(Slot::Forward(Box::new(Candidate {
            epoch,
            secret,
            key,
            prior_key,
        })))
    }

    /// Installs an authenticated newer epoch. The old current key becomes the previous
    /// one if the jump was one epoch; otherwise the key of the epoch just before the new
    /// one is. Replaced secrets and keys zeroize on drop (I5). Infallible, so an opened
    /// packet always commits.
    fn commit(&mut self, candidate: Candidate) {
        let Candidate {
            epoch,
            secret,
            key,
            prior_key,
        } = candidate;
        let old_key = core::mem::replace(&mut self.key, key);
        let previous_key = prior_key.unwrap_or(old_key);
        self.previous = Some((Epoch(epoch.0.saturating_sub(1)), previous_key));
        self.secret = secret;
        self.epoch = epoch;
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
