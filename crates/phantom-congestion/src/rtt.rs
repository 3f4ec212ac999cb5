//! RTT estimation, RFC 9002 §5.

use std::time::{Duration, Instant};

/// RTT assumed before the first sample (RFC 9002 §6.2.2: 333 ms).
pub const INITIAL_RTT: Duration = Duration::from_millis(333);

/// Timer granularity (RFC 9002 §6.1.2: 1 ms).
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// Longest PTO this crate ever reports (backoff included), so that adding it to
/// an `Instant` can never overflow.
pub(crate) const MAX_PTO: Duration = Duration::from_secs(3600);

/// RFC 9002 §5 RTT estimator: `latest_rtt`, `min_rtt`, `smoothed_rtt`, `rttvar`.
///
/// # Invariants
///
/// The peer's `ack_delay` is capped at `max_ack_delay` and is subtracted only if
/// the result stays at or above `min_rtt` (§5.3), so a lying peer can neither
/// push `smoothed_rtt` below `min_rtt` nor make any operation overflow: every
/// step saturates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    latest: Duration,
    min: Duration,
    smoothed: Duration,
    var: Duration,
    max_ack_delay: Duration,
    first_sample_at: Option<Instant>,
    /// [`Self::pto_base`] of the fields above, kept current by every change of
    /// them (the PTO is read for every packet sent; the estimate changes per ACK).
    pto_base: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::new(INITIAL_RTT, Duration::from_millis(25))
    }
}

impl RttEstimator {
    /// A fresh estimator: `smoothed_rtt = initial_rtt`, `rttvar = initial_rtt / 2`.
    #[must_use]
    pub fn new(initial_rtt: Duration, max_ack_delay: Duration) -> Self {
        let mut e = Self {
            latest: initial_rtt,
            min: initial_rtt,
            smoothed: initial_rtt,
            var: initial_rtt / 2,
            max_ack_delay,
            first_sample_at: None,
            pto_base: Duration::ZERO,
        };
        e.pto_base = e.compute_pto_base();
        e
    }

    /// Feeds one RTT sample taken at `now` (RFC 9002 §5.3). `latest_rtt` is
    /// `now - time_sent` of the largest newly acknowledged packet; `ack_delay` is
    /// the peer's reported delay, capped here at `max_ack_delay` (Phantom
    /// samples RTT only after the handshake is confirmed).
    pub fn update(&mut self, now: Instant, latest_rtt: Duration, ack_delay: Duration) {
        self.latest = latest_rtt;
        if self.first_sample_at.is_none() {
            self.first_sample_at = Some(now);
            self.min = latest_rtt;
            self.smoothed = latest_rtt;
            self.var = latest_rtt / 2;
            self.pto_base = self.compute_pto_base();
            return;
        }
        self.min = self.min.min(latest_rtt);
        let ack_delay = ack_delay.min(self.max_ack_delay);
        let adjusted = if latest_rtt >= self.min.saturating_add(ack_delay) {
            latest_rtt.saturating_sub(ack_delay)
        } else {
            latest_rtt
        };
        let deviation = self.smoothed.abs_diff(adjusted);
        self.var = (self.var.saturating_mul(3) / 4).saturating_add(deviation / 4);
        self.smoothed = (self.smoothed.saturating_mul(7) / 8).saturating_add(adjusted / 8);
        self.pto_base = self.compute_pto_base();
    }

    /// The most recent sample (the initial RTT before any).
    #[must_use]
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// The minimum RTT over the path's lifetime, `None` before the first sample.
    #[must_use]
    pub fn min_rtt(&self) -> Option<Duration> {
        self.first_sample_at.map(|_| self.min)
    }

    /// `smoothed_rtt`.
    #[must_use]
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// `rttvar`.
    #[must_use]
    pub fn var(&self) -> Duration {
        self.var
    }

    /// The peer's `max_ack_delay` this estimator caps `ack_delay` at.
    #[must_use]
    pub fn max_ack_delay(&self) -> Duration {
        self.max_ack_delay
    }

    /// When the first RTT sample was taken (persistent congestion needs one
    /// taken before the lost packets were sent, RFC 9002 §7.6.2).
    #[must_use]
    pub fn first_sample_at(&self) -> Option<Instant> {
        self.first_sample_at
    }

    /// The base probe timeout (RFC 9002 §6.2.1):
    /// `smoothed_rtt + max(4 * rttvar, kGranularity) + max_ack_delay`.
    #[must_use]
    pub fn pto_base(&self) -> Duration {
        self.pto_base
    }

    fn compute_pto_base(&self) -> Duration {
        self.smoothed
            .saturating_add(self.var.saturating_mul(4).max(GRANULARITY))
            .saturating_add(self.max_ack_delay)
            .min(MAX_PTO)
    }

    /// The PTO after `pto_count` consecutive expirations: `pto_base * 2^pto_count`,
    /// capped at one hour.
    #[must_use]
    pub fn pto(&self, pto_count: u32) -> Duration {
        if pto_count == 0 {
            // `pto_base` is already capped.
            return self.pto_base;
        }
        let factor = 1u32.checked_shl(pto_count.min(31)).unwrap_or(u32::MAX);
        self.pto_base.saturating_mul(factor).min(MAX_PTO)
    }

    /// The time threshold for loss (RFC 9002 §6.1.2):
    /// `max(9/8 * max(smoothed_rtt, latest_rtt), kGranularity)`.
    #[must_use]
    pub fn loss_delay(&self) -> Duration {
        let base = self.smoothed.max(self.latest);
        (base.saturating_mul(9) / 8).max(GRANULARITY)
    }

    /// The persistent-congestion duration (RFC 9002 §7.6.1):
    /// `(smoothed_rtt + max(4 * rttvar, kGranularity) + max_ack_delay) * 3`.
    #[must_use]
    pub fn persistent_congestion_duration(&self) -> Duration {
        self.pto_base().saturating_mul(3)
    }
}
