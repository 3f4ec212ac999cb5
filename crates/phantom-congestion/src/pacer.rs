//! Token-bucket pacer: spreads a window's worth of packets over an RTT, releasing
//! them in batches that fit a runtime's millisecond timers.

use std::time::{Duration, Instant};

/// Time whose worth of tokens the bucket may hold beyond a quarter window: a
/// runtime's timers fire at millisecond granularity, so a bucket smaller than the
/// bytes due in a couple of milliseconds would lose rate to timer rounding.
const BURST_INTERVAL_US: u128 = 2_000;
/// Time whose worth of tokens the pacer waits for once its bucket ran dry, so that
/// one wake-up of the runtime sends a batch (one GSO send) instead of a packet.
const REFILL_QUANTUM_US: u128 = 1_000;
/// Largest bucket, in packets (a GSO send carries up to 64 segments).
const MAX_BURST_PACKETS: u64 = 64;

/// Token-bucket pacer: spreads a window's worth of packets over an RTT.
///
/// It starts unpaced (rate zero) with ten packets of tokens; the owner sets a rate
/// with [`Pacer::set_rate_bps`] or [`Pacer::set_rate`] once the controller has one.
/// The bucket holds a quarter window (2 to 16 packets) or the bytes due in 2 ms,
/// whichever is larger (at most 64 packets). Once it runs dry, the pacer waits
/// until it has refilled by 1 ms worth of tokens (at least the packet, at most the
/// bucket) before releasing anything: the average rate is still the controller's,
/// but packets leave in batches that fit the runtime's timer granularity instead
/// of one per wake-up.
///
/// # Invariants
/// Refills never take the bucket above its capacity, so over any interval `d`
/// the bytes released are at most the largest capacity in force plus `rate * d`.
/// The bucket holds at least two packets of the `mss` it was sized with.
#[derive(Debug, Clone)]
pub struct Pacer {
    tokens: u64,
    capacity: u64,
    last: Option<Instant>,
    /// Bytes per second; zero while unpaced.
    rate: u64,
    /// While the bucket refills after running dry: the tokens to wait for.
    refill_to: Option<u64>,
}

impl Pacer {
    /// An unpaced pacer holding ten packets of `mss` bytes.
    #[must_use]
    pub fn new(mss: u64) -> Self {
        Self {
            tokens: 10 * mss,
            capacity: 10 * mss,
            last: None,
            rate: 0,
            refill_to: None,
        }
    }

    /// The rate in bytes per second, `None` while unpaced.
    #[inline]
    #[must_use]
    pub fn rate(&self) -> Option<u64> {
        (self.rate != 0).then_some(self.rate)
    }

    /// The bucket size in bytes.
    #[inline]
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens (bytes) in the bucket as of the last refill.
    #[inline]
    #[must_use]
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Bytes sent at `rate` in `micros` microseconds.
    #[inline]
    fn bytes_in(rate: u64, micros: u128) -> u64 {
        (u128::from(rate) * micros / 1_000_000).min(u128::from(u64::MAX)) as u64
    }

    #[inline]
    fn set_capacity(&mut self, cwnd: u64, mss: u64) {
        let window_share = (cwnd / 4).clamp(2 * mss, 16 * mss);
        let timer_share =
            Self::bytes_in(self.rate, BURST_INTERVAL_US).min(MAX_BURST_PACKETS.saturating_mul(mss));
        self.capacity = window_share.max(timer_share);
    }

    /// Sets an explicit rate (bytes/s); the bucket is sized from it and the window.
    #[inline]
    pub fn set_rate_bps(&mut self, rate: u64, cwnd: u64, mss: u64) {
        self.rate = rate;
        self.set_capacity(cwnd, mss);
    }

    /// Sets the rate from the window and RTT (1.25 x cwnd / srtt, RFC 9002 §7.7);
    /// the bucket is sized from it and the window.
    #[inline]
    pub fn set_rate(&mut self, cwnd: u64, srtt: Duration, mss: u64) {
        let micros = srtt.as_micros().max(1);
        self.rate =
            (u128::from(cwnd) * 5 / 4 * 1_000_000 / micros).min(u128::from(u64::MAX)) as u64;
        self.set_capacity(cwnd, mss);
    }

    #[inline]
    fn refill(&mut self, now: Instant) {
        // A burst of packets is built at one `now`: nothing to add, skip the arithmetic.
        if self.last == Some(now) {
            return;
        }
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_micros();
            let add = match u64::try_from(dt)
                .ok()
                .and_then(|d| d.checked_mul(self.rate))
            {
                Some(x) => x / 1_000_000,
                None => (u128::from(self.rate) * dt / 1_000_000).min(u128::from(u64::MAX)) as u64,
            };
            self.tokens = self.tokens.saturating_add(add).min(self.capacity);
        }
        self.last = Some(now);
    }

    /// `None` if `bytes` may go now, else the instant at which they may.
    #[inline]
    pub fn delay(&mut self, now: Instant, bytes: u64) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        self.refill(now);
        let need = match self.refill_to {
            // Refilling after running dry: wait for the whole quantum (the bucket may
            // have shrunk meanwhile, so never more than it holds).
            Some(q) => q.min(self.capacity).max(bytes),
            None => bytes,
        };
        if self.tokens >= need {
            self.refill_to = None;
            return None;
        }
        let need = match self.refill_to {
            Some(_) => need,
            None => {
                let q = Self::bytes_in(self.rate, REFILL_QUANTUM_US)
                    .min(self.capacity)
                    .max(bytes);
                self.refill_to = Some(q);
                q
            }
        };
        let missing = need.saturating_sub(self.tokens);
        let micros = (u128::from(missing) * 1_000_000).div_ceil(u128::from(self.rate));
        Some(now + Duration::from_micros(micros.min(1_000_000) as u64))
    }

    /// `bytes` were sent: take them from the bucket (down to empty).
    #[inline]
    pub fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}
