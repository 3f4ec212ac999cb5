//! The one error type of the crypto crate.

/// Why a packet could not be sealed or opened, or a key could not be derived.
///
/// Variants carry only small numbers and static strings: never key bytes, nonces
/// or payloads (I8). Peer faults ([`Error::DecryptFailed`], [`Error::EpochTooOld`],
/// [`Error::EpochTooFarAhead`], [`Error::PacketTooShort`], [`Error::Unprotected`],
/// [`Error::UnknownSession`], [`Error::Wire`] from `Opener::open_packet`) mean "drop and count the datagram";
/// [`Error::IntegrityLimitExceeded`] and [`Error::EpochSaturated`] mean the session must
/// close (or re-handshake); the rest are caller faults or rekey requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The AEAD did not verify. Deliberately says nothing more.
    #[error("decrypt failed")]
    DecryptFailed,
    /// The sealing key reached its confidentiality limit (I6): rekey before sealing more.
    #[error("confidentiality limit reached: rekey before sealing more packets")]
    LimitReached,
    /// More packets failed authentication than the suite's integrity limit allows (I6).
    /// The session must close; this opener refuses every further packet.
    #[error("integrity limit exceeded: the session must close")]
    IntegrityLimitExceeded,
    /// The epoch counter is at `Epoch::MAX` and cannot advance (I5): re-handshake or close.
    #[error("key epoch saturated: the session must re-handshake or close")]
    EpochSaturated,
    /// The packet claims an epoch more than `MAX_REKEY_CATCHUP` ahead of the current one.
    #[error("packet epoch too far ahead")]
    EpochTooFarAhead,
    /// The packet's epoch is older than every key still held (retired or never held).
    #[error("packet epoch older than any retained key")]
    EpochTooOld,
    /// The (path, stream, sequence) is not strictly above the last one sealed for that
    /// (path, stream) in this epoch: sealing it could repeat a nonce (I3).
    #[error("sequence not increasing within the epoch (nonce reuse refused)")]
    NonceReuse,
    /// The sequence number exceeds `MAX_SEQUENCE` (I3).
    #[error("sequence number exhausted")]
    SequenceExhausted,
    /// The first packet sealed in a space under an epoch must carry the full sequence.
    #[error("first packet of a space in an epoch must carry the full sequence")]
    TruncatedFirst,
    /// Too many distinct (path, stream) pairs were sealed in this epoch: rekey first.
    #[error("too many streams sealed in this epoch: rekey first")]
    StreamTableFull,
    /// The header carries the HANDSHAKE flag, which marks a cleartext packet: such a
    /// packet is neither sealed nor opened by traffic keys.
    #[error("handshake-flagged packets are not protected by traffic keys")]
    Unprotected,
    /// The header names another session (`Opener::open_session_packet`): refused
    /// before any key is tried.
    #[error("packet of another session")]
    UnknownSession,
    /// The datagram is too short to hold the AEAD tag.
    #[error("packet too short to hold an authentication tag")]
    PacketTooShort,
    /// The caller's buffer cannot hold header, payload and tag.
    #[error("buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the operation needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The AEAD refused to seal (input longer than the algorithm allows).
    #[error("seal failed")]
    SealFailed,
    /// An HKDF input or output length is outside what HKDF-SHA256 allows
    /// (PRK shorter than 32 bytes, or more than 255 * 32 output bytes).
    #[error("invalid key derivation length")]
    KeyDerivation,
    /// The header could not be parsed or written.
    #[error("wire: {0}")]
    Wire(#[from] phantom_wire::Error),
}
