//! Token-bucket pacer.

use std::time::{Duration, Instant};

use crate::Error;
use crate::rtt::MAX_PTO;

/// Nano-bytes per byte: tokens are kept in units of 1e-9 byte so that
/// `rate (bytes/s) * elapsed (ns)` adds exactly.
const NANO: u128 = 1_000_000_000;

/// A token bucket: `rate` bytes per second refill a bucket of `burst` bytes;
/// a packet may leave when the bucket holds its size.
///
/// Unlimited by default. A packet larger than the bucket may leave when the
/// bucket is full (otherwise it could never leave); it empties the bucket.
///
/// # Invariants
/// The bucket never holds more than `burst` bytes, so over any interval `d`
/// the bytes released are at most `burst + rate * d` (plus one oversize packet
/// if the caller sends packets larger than `burst`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    rate: Option<u64>,
    burst: u64,
    tokens: u128,
    last: Option<Instant>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl Pacer {
    /// A pacer that never delays anything.
    #[must_use]
    pub const fn unlimited() -> Self {
        Self {
            rate: None,
            burst: u64::MAX,
            tokens: 0,
            last: None,
        }
    }

    /// A pacer at `rate` bytes/s with a bucket of `burst` bytes, starting full.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `rate` or `burst` is zero.
    pub fn new(rate: u64, burst: u64) -> Result<Self, Error> {
        if rate == 0 {
            return Err(Error::InvalidConfig("pacing rate must be positive"));
        }
        if burst == 0 {
            return Err(Error::InvalidConfig("pacing burst must be positive"));
        }
        Ok(Self {
            rate: Some(rate),
            burst,
            tokens: u128::from(burst) * NANO,
            last: None,
        })
    }

    /// The rate in bytes/s (`None`: unlimited).
    #[must_use]
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// The bucket size in bytes.
    #[must_use]
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Tokens (whole bytes) in the bucket at `now`; never more than `burst`.
    #[must_use]
    pub fn available(&self, now: Instant) -> u64 {
        if self.rate.is_none() {
            return u64::MAX;
        }
        u64::try_from(self.tokens_at(now) / NANO).unwrap_or(u64::MAX)
    }

    fn tokens_at(&self, now: Instant) -> u128 {
        let cap = u128::from(self.burst) * NANO;
        let Some(rate) = self.rate else { return cap };
        let elapsed = self
            .last
            .map_or(0, |l| now.saturating_duration_since(l).as_nanos());
        self.tokens
            .saturating_add(u128::from(rate).saturating_mul(elapsed))
            .min(cap)
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = self.tokens_at(now);
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// Changes the rate (`None`: unlimited) and the bucket size; the tokens
    /// accrued so far at the old rate are kept, up to the new bucket size.
    /// A zero `burst` is treated as one byte.
    pub fn set_rate(&mut self, now: Instant, rate: Option<u64>, burst: u64) {
        let burst = burst.max(1);
        let rate = rate.filter(|r| *r > 0);
        if self.rate.is_none() {
            // Leaving "unlimited": start with a full bucket.
            self.tokens = u128::from(burst) * NANO;
            self.last = Some(now);
        } else {
            self.refill(now);
        }
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(u128::from(burst) * NANO);
    }

    /// May `bytes` be sent at `now`? `Ok(())` if so, else `Err(when)`: the
    /// earliest instant at which they may.
    ///
    /// # Errors
    /// The instant to wait for (this is not a failure).
    pub fn poll(&self, now: Instant, bytes: u64) -> Result<(), Instant> {
        let Some(rate) = self.rate else { return Ok(()) };
        let need = u128::from(bytes.min(self.burst)) * NANO;
        let have = self.tokens_at(now);
        if have >= need {
            return Ok(());
        }
        let wait_ns = (need - have).div_ceil(u128::from(rate));
        let wait = Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX)).min(MAX_PTO);
        Err(now.checked_add(wait).unwrap_or(now))
    }

    /// `None` if `bytes` may be sent at `now`, else the instant they may.
    #[must_use]
    pub fn delay_until(&self, now: Instant, bytes: u64) -> Option<Instant> {
        self.poll(now, bytes).err()
    }

    /// `bytes` were sent at `now`: take them from the bucket (down to empty).
    pub fn on_sent(&mut self, now: Instant, bytes: u64) {
        if self.rate.is_none() {
            return;
        }
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(u128::from(bytes) * NANO);
    }
}
