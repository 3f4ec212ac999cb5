//! Fleet keys: one 32-byte secret shared by several servers (processes or machines)
//! so that any of them validates another's retry token, resumes another's ticket and
//! answers another's connection ids with the right stateless reset
//! (docs/PROTOCOL.md §4.6, docs/DEPLOYMENT.md).
//!
//! Every key is HKDF-SHA256 of the fleet key with the salt `"phantom fleet v1"` and
//! its own label as info (32 bytes of output, 16 for the routing key):
//!
//! | key                      | info                                   |
//! |--------------------------|----------------------------------------|
//! | reset key ([`ResetKey`]) | `"phantom fleet reset"`                |
//! | routing key (16 bytes)   | `"phantom fleet routing"`              |
//! | retry key of period i    | `"phantom fleet retry" ‖ u64 BE i`     |
//! | ticket key of period i   | `"phantom fleet ticket" ‖ u64 BE i`    |
//!
//! The period is `unix_secs / key_rotation` (whole seconds; a `key_rotation` under one
//! second means period 0 for ever), so all members agree on the current keys without
//! talking, as long as their clocks agree to well within a period. Keys of the current
//! and the previous period are accepted; the key id byte of a token or ticket is the
//! period's low byte.

use std::time::{Duration, Instant};

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Rng;
use crate::common::Time;
use crate::conn_id::ResetKey;
use crate::ticket::TicketKeys;
use crate::token::RetryKeys;

/// HKDF-Extract salt of every fleet key.
const SALT: &[u8] = b"phantom fleet v1";
/// Info of the stateless-reset key.
const LABEL_RESET: &[u8] = b"phantom fleet reset";
/// Info of the routing key.
const LABEL_ROUTING: &[u8] = b"phantom fleet routing";
/// Info prefix of the retry-token key of a period.
const LABEL_RETRY: &[u8] = b"phantom fleet retry";
/// Info prefix of the ticket key of a period.
const LABEL_TICKET: &[u8] = b"phantom fleet ticket";

/// The secret a fleet of servers shares (32 bytes). Configure it with
/// [`crate::ServerConfig::with_fleet_key`]; the servers must also share their
/// [`crate::ServerIdentity`] (clients pin one key).
///
/// # Invariants
/// I8: zeroized on drop; Debug prints `FleetKey(<redacted>)`.
#[derive(Clone)]
pub struct FleetKey(Zeroizing<[u8; 32]>);

impl FleetKey {
    /// Length of a fleet key.
    pub const LEN: usize = 32;

    /// A key from its 32 bytes (as read from a fleet key file).
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh key from the caller's RNG.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(k.as_mut_slice());
        Self(k)
    }

    /// The 32 secret bytes (for writing the fleet key file).
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.0.clone()
    }

    /// The stateless-reset key every member derives (`"phantom fleet reset"`).
    #[must_use]
    pub fn reset_key(&self) -> ResetKey {
        ResetKey::from_bytes(*self.derive(LABEL_RESET, None))
    }

    /// The routing key (`"phantom fleet routing"`), for a connection-id scheme that
    /// lets a load balancer find the member holding a session.
    #[must_use]
    pub fn routing_key(&self) -> RoutingKey {
        // HKDF-Expand to 16 bytes is the first 16 bytes of the expansion to 32.
        let full = self.derive(LABEL_ROUTING, None);
        let mut key = Zeroizing::new([0u8; RoutingKey::LEN]);
        for (d, s) in key.iter_mut().zip(full.iter()) {
            *d = *s;
        }
        RoutingKey(key)
    }

    /// The retry-token key of rotation period `period`.
    pub(crate) fn retry_key(&self, period: u64) -> Zeroizing<[u8; 32]> {
        self.derive(LABEL_RETRY, Some(period))
    }

    /// The ticket key of rotation period `period`.
    pub(crate) fn ticket_key(&self, period: u64) -> Zeroizing<[u8; 32]> {
        self.derive(LABEL_TICKET, Some(period))
    }

    /// HKDF-SHA256(salt "phantom fleet v1", ikm = fleet key, info = label [‖ u64 BE i]).
    fn derive(&self, label: &[u8], period: Option<u64>) -> Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(Some(SALT), self.0.as_slice());
        let suffix = period.map(u64::to_be_bytes);
        let info: [&[u8]; 2] = [label, suffix.as_ref().map_or(&[][..], |s| &s[..])];
        let mut out = Zeroizing::new([0u8; 32]);
        if hk.expand_multi_info(&info, out.as_mut_slice()).is_err() {
            // 32 bytes are always within HKDF-SHA256's output limit.
            debug_assert!(false, "32-byte HKDF output");
        }
        out
    }
}

impl core::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FleetKey(<redacted>)")
    }
}

/// The 16-byte routing key of a fleet ([`FleetKey::routing_key`]): the AES-128 key of
/// the encrypted scheme of [`crate::RoutableConnIds`], which the fleet's load balancer
/// is configured with. Zeroized on drop; Debug is redacted (I8).
#[derive(Clone)]
pub struct RoutingKey(Zeroizing<[u8; 16]>);

impl RoutingKey {
    /// Length of a routing key.
    pub const LEN: usize = 16;

    /// The key bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl core::fmt::Debug for RoutingKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RoutingKey(<redacted>)")
    }
}

/// The fleet's key schedule as one server follows it.
#[cfg_attr(test, derive(Clone))]
struct Schedule {
    key: FleetKey,
    /// Rotation period in seconds (0: never rotate).
    period_secs: u64,
    /// The period `retry` and `tickets` hold (`None` before the first use).
    period: Option<u64>,
}

impl Schedule {
    fn period_at(&self, unix_secs: u64) -> u64 {
        unix_secs.checked_div(self.period_secs).unwrap_or(0)
    }

    fn retry_keys(&self, period: u64) -> RetryKeys {
        let previous = period.checked_sub(1).map(|p| self.key.retry_key(p));
        RetryKeys::with_keys(period as u8, self.key.retry_key(period), previous)
    }

    fn ticket_keys(&self, period: u64) -> TicketKeys {
        let previous = period.checked_sub(1).map(|p| self.key.ticket_key(p));
        TicketKeys::with_keys(
            period as u8,
            &self.key.ticket_key(period),
            previous.as_deref(),
        )
    }
}

/// A server's retry-token and ticket keys and how they rotate: drawn from the RNG and
/// rotated on a timer without a fleet key; derived from the fleet key and the wall
/// clock with one. Also holds the random id of this server instance, sealed into its
/// tickets, which limits 0-RTT to the server whose anti-replay store saw the ticket.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct KeyRing {
    fleet: Option<Schedule>,
    pub(crate) retry: RetryKeys,
    pub(crate) tickets: TicketKeys,
    /// When the keys rotate next (`None` until the first [`KeyRing::rotate_if_due`]).
    next_rotation: Option<Instant>,
    /// Random per server instance: early data is accepted only on its own tickets.
    pub(crate) instance: [u8; 16],
}

impl KeyRing {
    pub(crate) fn new<R: Rng + ?Sized>(
        fleet: Option<FleetKey>,
        rotation: Duration,
        rng: &mut R,
    ) -> Self {
        let retry = RetryKeys::new(rng);
        let tickets = TicketKeys::new(rng);
        let mut instance = [0u8; 16];
        rng.fill_bytes(&mut instance);
        Self {
            fleet: fleet.map(|key| Schedule {
                key,
                period_secs: rotation.as_secs(),
                period: None,
            }),
            retry,
            tickets,
            next_rotation: None,
            instance,
        }
    }

    /// With a fleet key, re-derives the keys if `unix_secs` is in another period than
    /// the one held. Returns whether the keys changed after their first derivation.
    pub(crate) fn sync(&mut self, unix_secs: u64) -> bool {
        let Some(s) = &mut self.fleet else {
            return false;
        };
        let period = s.period_at(unix_secs);
        if s.period == Some(period) {
            return false;
        }
        let rotated = s.period.is_some();
        s.period = Some(period);
        self.retry = s.retry_keys(period);
        self.tickets = s.ticket_keys(period);
        rotated
    }

    /// The retry keys of `unix_secs` if they differ from the held ones (a fleet
    /// server asked before its first [`KeyRing::sync`] of that period).
    pub(crate) fn retry_at(&self, unix_secs: u64) -> Option<RetryKeys> {
        let s = self.fleet.as_ref()?;
        let period = s.period_at(unix_secs);
        (s.period != Some(period)).then(|| s.retry_keys(period))
    }

    /// Draws a new retry key (without a fleet key; with one the schedule decides).
    pub(crate) fn rotate_retry<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        if self.fleet.is_none() {
            self.retry.rotate(rng);
        }
    }

    /// Draws a new ticket key (without a fleet key; with one the schedule decides).
    pub(crate) fn rotate_tickets<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        if self.fleet.is_none() {
            self.tickets.rotate(rng);
        }
    }

    /// See `Server::rotate_keys_if_due`.
    pub(crate) fn rotate_if_due<R: Rng + ?Sized>(
        &mut self,
        period: Duration,
        now: Time,
        rng: &mut R,
    ) -> bool {
        if let Some(s) = &self.fleet {
            let secs = s.period_secs;
            let rotated = self.sync(now.unix_secs);
            if secs > 0 {
                // The next period starts at the next multiple of `secs` (unix time).
                let left = secs.saturating_sub(now.unix_secs % secs).max(1);
                self.next_rotation = Some(now.instant + Duration::from_secs(left));
            }
            return rotated;
        }
        if period.is_zero() {
            return false;
        }
        match self.next_rotation {
            None => {
                self.next_rotation = Some(now.instant + period);
                false
            }
            Some(due) if due <= now.instant => {
                self.tickets.rotate(rng);
                self.retry.rotate(rng);
                self.next_rotation = Some(now.instant + period);
                true
            }
            Some(_) => false,
        }
    }

    /// When [`KeyRing::rotate_if_due`] rotates next.
    pub(crate) fn next_rotation(&self) -> Option<Instant> {
        self.next_rotation
    }
}

#[cfg(test)]
impl FleetKey {
    /// The derived keys, for tests that compare them.
    pub(crate) fn derived_for_tests(&self, period: u64) -> [Zeroizing<[u8; 32]>; 4] {
        [
            self.derive(LABEL_RESET, None),
            self.derive(LABEL_ROUTING, None),
            self.retry_key(period),
            self.ticket_key(period),
        ]
    }
}
