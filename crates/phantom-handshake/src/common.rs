//! Types shared by the client and the server: time, the handshake result, tickets.

use std::time::Instant;

use phantom_crypto::{Suite, TrafficSecret};
use phantom_wire::{Reader, SessionId};
use zeroize::Zeroizing;

use crate::error::{Error, ensure};

/// The time handed to every handshake call (the crate never reads a clock, I9).
///
/// `instant` drives retransmission timers and must be monotonic across calls;
/// `unix_secs` is wall-clock time in seconds since the Unix epoch and is used for the
/// things that must mean the same on both machines or across restarts: certificate
/// expiry, retry-token age, ticket age and the anti-replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// Monotonic time, for timers.
    pub instant: Instant,
    /// Wall-clock seconds since the Unix epoch, for tokens, tickets and certificates.
    pub unix_secs: u64,
}

impl Time {
    /// Bundles the two clocks.
    #[must_use]
    pub const fn new(instant: Instant, unix_secs: u64) -> Self {
        Self { instant, unix_secs }
    }
}

/// The handshake protocol version this crate speaks.
pub const HANDSHAKE_VERSION: u8 = 1;

/// Largest early (0-RTT) payload a client may send.
pub const MAX_EARLY_DATA: usize = 4096;

/// Result of feeding a datagram to a [`crate::Client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Progress {
    /// More messages are needed; check `poll_transmit`.
    Pending,
    /// The handshake is complete: call `into_established`.
    Complete,
}

/// What a finished handshake hands to the session.
#[cfg_attr(test, derive(Clone))]
pub struct Established {
    /// Negotiated handshake version.
    pub version: u8,
    /// Negotiated AEAD suite.
    pub suite: Suite,
    /// The 256-bit session id the server chose (handshake datagrams only).
    pub session_id: SessionId,
    /// The client's first 1-RTT connection id (the server puts it on its packets).
    pub client_id0: crate::IssuedConnId,
    /// The server's first 1-RTT connection id (the client puts it on its packets).
    pub server_id0: crate::IssuedConnId,
    /// Client-to-server traffic secret (epoch 0).
    pub c2s: TrafficSecret,
    /// Server-to-client traffic secret (epoch 0).
    pub s2c: TrafficSecret,
    /// Client side: the ticket the server issued for a later resumption, if any.
    pub resumption_ticket: Option<ResumptionTicket>,
    /// True if a ticket's resumption secret was mixed into this handshake.
    pub resumed: bool,
    /// True if the client already held the server's certificate and encapsulated to
    /// its static key in the first flight (the 1-RTT PDK handshake), which the
    /// server accepted.
    pub pdk: bool,
    /// True if the server accepted the ClientHello's early data (both sides know).
    pub early_data_accepted: bool,
    /// Server side: the accepted early-data plaintext.
    pub early_data: Option<Zeroizing<Vec<u8>>>,
    /// Datagrams this side sent last and that the peer may still need. The session
    /// re-sends them whenever a handshake datagram from the peer arrives after
    /// completion, until the peer's first protected packet authenticates.
    pub pending_flight: Vec<Vec<u8>>,
}

impl core::fmt::Debug for Established {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Established")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .field("session_id", &self.session_id)
            .field("c2s", &self.c2s)
            .field("s2c", &self.s2c)
            .field("resumption_ticket", &self.resumption_ticket)
            .field("resumed", &self.resumed)
            .field("pdk", &self.pdk)
            .field("early_data_accepted", &self.early_data_accepted)
            .field("early_data", &self.early_data.as_ref().map(|d| d.len()))
            .finish_non_exhaustive()
    }
}

/// What a ticket offers for the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumptionHint {
    /// Unix second after which the server refuses the ticket.
    pub expires_at: u64,
    /// Most early data the server takes with it (0: no 0-RTT).
    pub max_early_data: usize,
}

/// A resumption ticket as the client keeps it: the server's opaque encrypted blob plus
/// the resumption secret it stands for. Zeroized on drop, never printed (I8).
#[derive(Clone)]
pub struct ResumptionTicket {
    pub(crate) blob: Vec<u8>,
    pub(crate) secret: Zeroizing<[u8; 32]>,
    pub(crate) server_key_id: [u8; 32],
    pub(crate) suite: Suite,
    pub(crate) received_unix: u64,
    pub(crate) lifetime: u32,
    pub(crate) max_early_data: u32,
}

const TICKET_FILE_VERSION: u8 = 1;

impl ResumptionTicket {
    /// When and how it can be used.
    #[must_use]
    pub fn hint(&self) -> ResumptionHint {
        ResumptionHint {
            expires_at: self.received_unix.saturating_add(u64::from(self.lifetime)),
            max_early_data: (self.max_early_data as usize).min(MAX_EARLY_DATA),
        }
    }

    /// The suite of the session that issued it.
    #[must_use]
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Secret encoding for a client-side ticket cache.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Vec::with_capacity(84 + self.blob.len());
        v.push(TICKET_FILE_VERSION);
        v.extend_from_slice(&self.server_key_id);
        v.push(self.suite.code());
        v.extend_from_slice(&self.received_unix.to_be_bytes());
        v.extend_from_slice(&self.lifetime.to_be_bytes());
        v.extend_from_slice(&self.max_early_data.to_be_bytes());
        v.extend_from_slice(self.secret.as_slice());
        v.extend_from_slice(&(self.blob.len() as u16).to_be_bytes());
        v.extend_from_slice(&self.blob);
        Zeroizing::new(v)
    }

    /// Parses [`ResumptionTicket::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        ensure!(r.u8()? == TICKET_FILE_VERSION, Error::TicketInvalid);
        let server_key_id = *r.array::<32>()?;
        let suite = Suite::from_code(r.u8()?).ok_or(Error::TicketInvalid)?;
        let received_unix = r.u64()?;
        let lifetime = r.u32()?;
        let max_early_data = r.u32()?;
        let secret = Zeroizing::new(*r.array::<32>()?);
        let n = usize::from(r.u16()?);
        ensure!(
            n <= crate::msg::MAX_TICKET_LEN && n > 0,
            Error::TicketInvalid
        );
        let blob = r.bytes(n)?.to_vec();
        r.finish()?;
        Ok(Self {
            blob,
            secret,
            server_key_id,
            suite,
            received_unix,
            lifetime,
            max_early_data,
        })
    }
}

impl core::fmt::Debug for ResumptionTicket {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ResumptionTicket")
            .field("hint", &self.hint())
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The suites this machine offers, most preferred first: [`Suite::preferred`] (AES-256-GCM
/// where the CPU has AES hardware, else ChaCha20-Poly1305), then the other one.
#[must_use]
pub fn default_suites() -> Vec<Suite> {
    match Suite::preferred() {
        Suite::Aes256Gcm => vec![Suite::Aes256Gcm, Suite::ChaCha20Poly1305],
        _ => vec![Suite::ChaCha20Poly1305, Suite::Aes256Gcm],
    }
}
