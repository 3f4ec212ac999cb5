//! The sending half: seals packets of one direction and enforces I3 and I6 itself.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use phantom_wire::{Epoch, Header, MAX_SEQUENCE, SeqLen, StreamId, min_packet_len};
use zeroize::ZeroizeOnDrop;

use crate::aead::{PacketKey, TAG_LEN};
use crate::hp::HeaderKey;
use crate::limits::{DEFAULT_SEQ_REKEY_WATERMARK, Limits};
use crate::{Error, Suite, TrafficSecret};

/// Distinct streams (sequence spaces) in one epoch after which a rekey is requested.
pub const STREAM_TABLE_SOFT_LIMIT: usize = 1 << 14;
/// Distinct streams in one epoch after which sealing in a new one is refused until the
/// next rekey (bounds the sealer's memory).
pub const STREAM_TABLE_HARD_LIMIT: usize = 1 << 16;

/// Why a [`Sealer`] asks for a rekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RekeyReason {
    /// The key sealed as many packets as the soft threshold allows (I6).
    Invocations,
    /// A stream's sequence advanced by the watermark within this epoch (I3).
    SequenceSpan,
    /// Too many distinct streams were sealed in this epoch.
    StreamTable,
}

/// The sealing state of one direction: suite, epoch, secret, packet key, counters.
///
/// `seal_packet` needs no allocation except the first time a stream is sealed in an
/// epoch; the cipher object is built once per epoch, the header-protection key once.
///
/// # Invariants
/// * I3: within an epoch it refuses to seal a (stream, sequence) that is not strictly
///   greater than the last sequence it sealed for that stream, and any
///   sequence above [`MAX_SEQUENCE`]; together with the injective nonce this means a
///   (key, nonce) pair is never sealed twice. A stream whose sequence has advanced by
///   the watermark within an epoch makes [`Sealer::needs_rekey`] true.
/// * I6: every seal is counted in the key object; past the soft threshold
///   `needs_rekey` is true, at the suite's confidentiality limit sealing is refused.
/// * I5: [`Sealer::rekey`] moves the epoch forward by one, zeroizes the old secret and
///   key, and refuses at [`Epoch::MAX`] instead of wrapping.
/// * I8: secrets are zeroized on drop and Debug shows no key material.
pub struct Sealer {
    suite: Suite,
    epoch: Epoch,
    secret: TrafficSecret,
    key: PacketKey,
    hp: HeaderKey,
    invocations: u64,
    limits: Limits,
    rekey_threshold: u64,
    seq_watermark: u64,
    seq_watermark_crossed: bool,
    streams: HashMap<u64, SeqSpan, BuildHasherDefault<StreamKeyHasher>>,
}

/// First and last sequence sealed on one stream in the current epoch.
#[derive(Debug, Clone, Copy)]
struct SeqSpan {
    first: u64,
    last: u64,
}

/// The stream's map key.
#[inline]
fn stream_key(stream: StreamId) -> u64 {
    u64::from(stream.0)
}

/// A multiplicative hasher for the 32-bit stream keys. The keys are chosen by
/// our own sender, never by the peer, so flooding resistance is not needed.
#[derive(Default)]
struct StreamKeyHasher(u64);

impl Hasher for StreamKeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

impl Sealer {
    /// A sealer at epoch 0 under the handshake's `secret` for this direction.
    ///
    /// # Errors
    /// Never in practice (key derivation has fixed valid lengths); typed for totality.
    pub fn new(suite: Suite, secret: TrafficSecret) -> Result<Self, Error> {
        Self::at_epoch(suite, secret, Epoch(0))
    }

    /// A sealer at `epoch`, where `secret` is that epoch's secret (resumption, tests).
    /// The header-protection key is derived from `secret` too: the peer's opener must
    /// start from the same secret.
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
            invocations: 0,
            limits: Limits::for_suite(suite),
            rekey_threshold: u64::MAX,
            seq_watermark: DEFAULT_SEQ_REKEY_WATERMARK,
            seq_watermark_crossed: false,
            streams: HashMap::default(),
        })
    }

    /// Replaces the header-protection key with the one of the direction's epoch-0
    /// secret `first` (a sealer built [`Sealer::at_epoch`] a later epoch derives it from
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

    /// The epoch packets are sealed under.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Packets sealed under the current key.
    #[must_use]
    pub fn invocations(&self) -> u64 {
        self.invocations
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

    /// Caps the soft threshold: `needs_rekey` becomes true after `n` seals (or at three
    /// quarters of the confidentiality limit, whichever is lower). Clamped to at least 1.
    pub fn set_rekey_threshold(&mut self, n: u64) {
        self.rekey_threshold = n.max(1);
    }

    /// Sets the per-stream sequence span within one epoch that requests a rekey
    /// (default 2^31). Clamped to at least 1.
    pub fn set_seq_rekey_watermark(&mut self, n: u64) {
        self.seq_watermark = n.max(1);
    }

    /// Seals after which `needs_rekey` is true.
    #[must_use]
    pub fn soft_threshold(&self) -> u64 {
        self.limits.soft_threshold().min(self.rekey_threshold)
    }

    /// Why a rekey is due now, if it is. The session rekeys (and marks the next
    /// packet [`phantom_wire::Flags::REKEY`]) when this is `Some`; at [`Epoch::MAX`] the rekey fails
    /// with [`Error::EpochSaturated`] and the session must re-handshake or close.
    #[must_use]
    pub fn rekey_reason(&self) -> Option<RekeyReason> {
        if self.invocations >= self.soft_threshold() {
            Some(RekeyReason::Invocations)
        } else if self.seq_watermark_crossed {
            Some(RekeyReason::SequenceSpan)
        } else if self.streams.len() >= STREAM_TABLE_SOFT_LIMIT {
            Some(RekeyReason::StreamTable)
        } else {
            None
        }
    }

    /// True when a rekey is due (see [`Sealer::rekey_reason`]).
    #[must_use]
    pub fn needs_rekey(&self) -> bool {
        self.rekey_reason().is_some()
    }

    /// How many sequence bytes the packet `sequence` of `stream` must carry, given the
    /// largest sequence of that space the peer acknowledged (`None`: none yet): the
    /// full 6 bytes for the first packet of the space under the current epoch and
    /// until the peer acknowledged one of this epoch (the receiver may hold no state
    /// for the space), else the shortest length covering twice the distance from the
    /// acknowledged one (RFC 9000 appendix A.2).
    #[must_use]
    pub fn seq_len(&self, stream: StreamId, sequence: u64, largest_acked: Option<u64>) -> SeqLen {
        match self.streams.get(&stream_key(stream)) {
            Some(span) => {
                SeqLen::for_sequence(sequence, largest_acked.filter(|a| *a >= span.first))
            }
            None => SeqLen::FULL,
        }
    }

    /// Seals one packet in place and applies header protection.
    ///
    /// `buf` holds `[header.len() header bytes | payload_len payload bytes | 16 free
    /// bytes ...]`. The header image is written with the sealer's epoch stamped into it
    /// (the `epoch` field of `header` is ignored), the payload is encrypted in place with
    /// the unprotected image as associated data (I2), the tag is appended, and the header
    /// is masked with a sample of the ciphertext. Returns the datagram length,
    /// `header.len() + payload_len + 16`.
    ///
    /// # Errors
    /// * [`Error::SequenceExhausted`] if the sequence exceeds [`MAX_SEQUENCE`].
    /// * [`Error::BufferTooSmall`] if `buf` cannot hold header, payload and tag, or
    ///   the packet would be shorter than the header-protection sample needs
    ///   ([`phantom_wire::min_packet_len`]; pad the payload).
    /// * [`Error::LimitReached`] at the confidentiality limit: rekey first.
    /// * [`Error::NonceReuse`] if the sequence is not above the last one sealed on
    ///   this stream in this epoch.
    /// * [`Error::TruncatedFirst`] if the first packet of a stream in this epoch does not
    ///   carry the full sequence.
    /// * [`Error::StreamTableFull`] if too many streams were sealed this epoch.
    ///
    /// On error nothing is sealed. The sequence is recorded before encryption, so a
    /// sequence is burnt even in the (practically impossible) case that the AEAD fails.
    pub fn seal_packet(
        &mut self,
        header: &Header,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, Error> {
        let sequence = header.sequence;
        // I3: a sequence beyond 48 bits would not fit the nonce injectively.
        if sequence > MAX_SEQUENCE {
            return Err(Error::SequenceExhausted);
        }
        let available = buf.len();
        let hlen = header.len();
        let needed = hlen
            .checked_add(payload_len)
            .and_then(|n| n.checked_add(TAG_LEN))
            .ok_or(Error::BufferTooSmall {
                needed: usize::MAX,
                available,
            })?;
        if available < needed {
            return Err(Error::BufferTooSmall { needed, available });
        }
        let min = min_packet_len(header.conn_id.len());
        if needed < min {
            return Err(Error::BufferTooSmall {
                needed: min,
                available: needed,
            });
        }
        // I6: the key object counts every seal and refuses at the limit.
        if self.invocations >= self.limits.confidentiality {
            return Err(Error::LimitReached);
        }
        let invocations = self.invocations.checked_add(1).ok_or(Error::LimitReached)?;

        // I3: strictly increasing sequence per stream within the epoch.
        let key = stream_key(header.stream_id);
        let span = if let Some(span) = self.streams.get_mut(&key) {
            if sequence <= span.last {
                return Err(Error::NonceReuse);
            }
            span.last = sequence;
            *span
        } else {
            if header.seq_len != SeqLen::FULL {
                return Err(Error::TruncatedFirst);
            }
            if self.streams.len() >= STREAM_TABLE_HARD_LIMIT {
                return Err(Error::StreamTableFull);
            }
            let span = SeqSpan {
                first: sequence,
                last: sequence,
            };
            self.streams.insert(key, span);
            span
        };
        // I3: nearing wrap within an epoch forces a rekey (span never underflows: last >= first).
        if span.last.saturating_sub(span.first) >= self.seq_watermark {
            self.seq_watermark_crossed = true;
        }
        self.invocations = invocations;

        let stamped = Header {
            epoch: self.epoch,
            ..*header
        };
        let packet = buf
            .get_mut(..needed)
            .ok_or(Error::BufferTooSmall { needed, available })?;
        stamped.write_image(packet)?;
        let (image, rest) = packet
            .split_at_mut_checked(hlen)
            .ok_or(Error::BufferTooSmall { needed, available })?;
        let (payload, tag_out) = rest
            .split_at_mut_checked(payload_len)
            .ok_or(Error::BufferTooSmall { needed, available })?;
        let tag_out: &mut [u8; TAG_LEN] = tag_out
            .try_into()
            .map_err(|_| Error::BufferTooSmall { needed, available })?;
        let nonce = self.key.nonce(header.stream_id, sequence);
        let tag = self.key.aead().seal_in_place(&nonce, image, payload)?;
        *tag_out = tag;
        // Header protection: the sample is taken as if every field had its longest size.
        self.hp.protect(packet, header.conn_id.len())?;
        Ok(needed)
    }

    /// Advances to the next epoch: derives its secret with `phantom-rekey-v1`, builds
    /// its key, zeroizes the old secret and key (I5), and resets the seal counter and
    /// the per-stream sequence table. Returns the new epoch.
    ///
    /// # Errors
    /// [`Error::EpochSaturated`] at [`Epoch::MAX`]: the epoch never wraps; the session
    /// must re-handshake or close. The sealer is unchanged on error.
    pub fn rekey(&mut self) -> Result<Epoch, Error> {
        // I5: forward only, never wrap.
        let next = self.epoch.0.checked_add(1).ok_or(Error::EpochSaturated)?;
        let secret = self.secret.next_epoch()?;
        let key = PacketKey::derive(self.suite, &secret)?;
        // The replaced secret and key drop here and zeroize themselves (I5, I8).
        self.secret = secret;
        self.key = key;
        self.epoch = Epoch(next);
        self.invocations = 0;
        self.seq_watermark_crossed = false;
        self.streams.clear();
        Ok(self.epoch)
    }

    #[cfg(test)]
    pub(crate) fn packet_key(&self) -> &PacketKey {
        &self.key
    }

    #[cfg(test)]
    pub(crate) fn secret(&self) -> &TrafficSecret {
        &self.secret
    }
}

// Every secret-holding field (TrafficSecret, PacketKey) zeroizes itself on drop.
impl ZeroizeOnDrop for Sealer {}

impl core::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sealer")
            .field("suite", &self.suite)
            .field("epoch", &self.epoch)
            .field("invocations", &self.invocations)
            .field("limits", &self.limits)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}
