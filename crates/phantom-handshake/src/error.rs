//! The one error type of the handshake crate.

/// Why a handshake step failed.
///
/// Variants carry only static strings and small numbers, never key material or
/// message bytes (I8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message, fragment or datagram does not parse, or breaks a structural rule — or,
    /// on the client, a server datagram is not bound to this handshake (it does not
    /// carry the echo of our ClientHello: the answer to another ClientHello, or a
    /// forgery; also a Retry not bound to our ClientHello's first fragment, and a
    /// Mismatch that does not verify). The client drops such input and
    /// its state is unchanged: not a reason to abandon the handshake.
    #[error("malformed handshake input: {0}")]
    Malformed(&'static str),
    /// A handshake datagram's integrity tag does not match its bytes: it was damaged on
    /// the way (or built by someone who does not follow the protocol). Dropped and
    /// counted; never a reason to abandon the handshake (the peer retransmits).
    #[error("damaged handshake datagram: its integrity tag does not match")]
    Damaged,
    /// A well-formed message arrived in a state that does not expect it.
    #[error("unexpected handshake message: {0}")]
    UnexpectedMessage(&'static str),
    /// A certificate signature (Ed25519 or ML-DSA-65) does not verify.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// The server presented a certificate signed by a key other than the pinned one.
    #[error("the server's key is not the pinned key")]
    WrongServerKey,
    /// The server's certificate is past its `not_after` time.
    #[error("the server certificate has expired")]
    CertificateExpired,
    /// No protocol version in common (the server refused the ClientHello, or on the
    /// server: the client offered none we speak), or the server chose one that was not
    /// offered.
    #[error(
        "no common protocol version: offered {offered}, the server speaks {supported}{}",
        auth_note(*.authenticated)
    )]
    VersionMismatch {
        /// The versions the client offered.
        offered: CodeList,
        /// The versions the server speaks (as it stated them).
        supported: CodeList,
        /// True if the server's refusal carried a valid MAC under the certified static
        /// KEM key (only possible when the client offered PDK for the current
        /// certificate); false means the refusal is bound to this ClientHello only.
        authenticated: bool,
    },
    /// No AEAD suite in common (the server refused the ClientHello, or on the server: the
    /// client offered none we accept), or the server chose one that was not offered.
    /// Suite codes: 1 = AES-256-GCM, 2 = ChaCha20-Poly1305.
    #[error(
        "no common AEAD suite: offered {offered}, the server accepts {supported} (1 = AES-256-GCM, 2 = ChaCha20-Poly1305){}",
        auth_note(*.authenticated)
    )]
    SuiteMismatch {
        /// The suites the client offered.
        offered: CodeList,
        /// The suites the server accepts (as it stated them).
        supported: CodeList,
        /// As for [`Error::VersionMismatch`].
        authenticated: bool,
    },
    /// A retry token is older than its validity period.
    #[error("retry token expired")]
    TokenExpired,
    /// A retry token does not authenticate (forged, other address, unknown key).
    #[error("retry token invalid")]
    TokenInvalid,
    /// A resumption ticket is past its lifetime.
    #[error("resumption ticket expired")]
    TicketExpired,
    /// A resumption ticket does not decrypt, or belongs to another server.
    #[error("resumption ticket invalid")]
    TicketInvalid,
    /// Early data for this ticket was already accepted once (I10).
    #[error("early data replayed")]
    EarlyDataReplayed,
    /// A resource cap was hit (reassembly memory, half-open handshakes, id redraws, ...).
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    /// A Finished MAC did not verify: the peer does not hold the same keys or transcript.
    #[error("key confirmation failed")]
    KeyConfirmation,
    /// The peer did not answer within the retransmission budget.
    #[error("handshake timed out: no answer")]
    Timeout,
    /// The retransmission budget ran out and the peer's datagrams did arrive, but every
    /// one was dropped: damaged on the way (integrity tag), malformed, or not bound to
    /// this ClientHello (answers to another one, forgeries).
    #[error(
        "handshake timed out: {dropped} answers arrived, none usable (damaged or not for this handshake)"
    )]
    UnusableAnswers {
        /// Datagrams dropped.
        dropped: u32,
    },
    /// Key bytes handed to a `from_bytes` constructor are not a valid key.
    #[error("invalid key encoding: {0}")]
    InvalidKey(&'static str),
    /// The caller used the API out of order (for example `into_established` too early).
    #[error("api misuse: {0}")]
    Misuse(&'static str),
}

fn auth_note(authenticated: bool) -> &'static str {
    if authenticated {
        "; refusal authenticated by the server's certified key"
    } else {
        ""
    }
}

/// Up to 16 one-byte protocol codes (versions or AEAD suites), as carried by
/// [`Error::VersionMismatch`] and [`Error::SuiteMismatch`]. `Copy`, so the error stays
/// `Copy`; longer lists are truncated (the wire format allows at most 16).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CodeList {
    len: u8,
    codes: [u8; 16],
}

impl CodeList {
    /// Most codes a list holds.
    pub const MAX: usize = 16;

    /// The first [`CodeList::MAX`] codes of `codes`.
    #[must_use]
    pub fn new(codes: &[u8]) -> Self {
        let mut c = [0u8; 16];
        let n = codes.len().min(Self::MAX);
        for (d, s) in c.iter_mut().zip(codes) {
            *d = *s;
        }
        Self {
            len: n as u8,
            codes: c,
        }
    }

    /// The codes.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        self.codes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl core::fmt::Debug for CodeList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl core::fmt::Display for CodeList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

impl From<phantom_wire::Error> for Error {
    fn from(e: phantom_wire::Error) -> Self {
        match e {
            phantom_wire::Error::Truncated { .. } => Error::Malformed("truncated"),
            phantom_wire::Error::TrailingBytes(_) => Error::Malformed("trailing bytes"),
            phantom_wire::Error::OutOfRange(what) => Error::Malformed(what),
            phantom_wire::Error::Malformed(what) => Error::Malformed(what),
            phantom_wire::Error::BufferTooSmall { .. } => Error::Malformed("buffer too small"),
            _ => Error::Malformed("wire"),
        }
    }
}

/// Returns `Err($err)` from the enclosing function unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr, $err:expr) => {
        if !($cond) {
            return Err($err);
        }
    };
}
pub(crate) use ensure;
