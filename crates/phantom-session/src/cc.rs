//! The per-path token-bucket pacer and the congestion snapshot type.
//!
//! The controllers themselves (BBR, CUBIC, NewReno) are `phantom-congestion`'s; each
//! path owns one, so there is no lock and one update per ACK: the pacer is set from
//! the same controller state in the same call that fed it the ACK (fixing the
//! reference design's double-lock read).

use std::time::{Duration, Instant};

/// Snapshot of a path's congestion state for telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CongestionSnapshot {
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// Bytes in flight.
    pub in_flight: u64,
    /// Slow-start threshold in bytes (`u64::MAX` until the first loss).
    pub ssthresh: u64,
    /// Pacing rate in bytes per second.
    pub pacing_rate: u64,
    /// Delivery-rate estimate in bytes per second (bytes acked per smoothed RTT).
    pub bandwidth: u64,
}

/// Token-bucket pacer: spreads a window's worth of packets over an RTT.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    tokens: u64,
    capacity: u64,
    last: Option<Instant>,
    /// Bytes per second.
    pub(crate) rate: u64,
}

impl Pacer {
    pub(crate) fn new(mss: u64) -> Self {
        Self {
            tokens: 10 * mss,
            capacity: 10 * mss,
            last: None,
            rate: 0,
        }
    }

    /// Sets an explicit rate (bytes/s), with a burst of a quarter window.
    pub(crate) fn set_rate_bps(&mut self, rate: u64, cwnd: u64, mss: u64) {
        self.rate = rate;
        self.capacity = (cwnd / 4).clamp(2 * mss, 16 * mss);
    }

    /// Sets the rate from the window and RTT (1.25 x cwnd / srtt).
    pub(crate) fn set_rate(&mut self, cwnd: u64, srtt: Duration, mss: u64) {
        let micros = srtt.as_micros().max(1);
        self.rate =
            (u128::from(cwnd) * 5 / 4 * 1_000_000 / micros).min(u128::from(u64::MAX)) as u64;
        self.capacity = (cwnd / 4).clamp(2 * mss, 16 * mss);
    }

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
    pub(crate) fn delay(&mut self, now: Instant, bytes: u64) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        self.refill(now);
        if self.tokens >= bytes {
            return None;
        }
        let missing = bytes - self.tokens;
        let micros = (u128::from(missing) * 1_000_000).div_ceil(u128::from(self.rate));
        Some(now + Duration::from_micros(micros.min(1_000_000) as u64))
    }

    pub(crate) fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spreads_bursts() {
        let t0 = crate::test_instant();
        let mut p = Pacer::new(1000);
        p.set_rate(100_000, Duration::from_millis(100), 1000);
        // rate = 1.25 MB/s; capacity = 16 packets (cwnd/4 = 25_000 clamped to 16_000).
        let mut sent = 0;
        while p.delay(t0, 1000).is_none() {
            p.on_sent(1000);
            sent += 1;
            assert!(sent < 100);
        }
        let next = p.delay(t0, 1000).unwrap();
        assert!(next > t0 && next <= t0 + Duration::from_millis(1));
    }

    #[test]
    fn pacer_refills_rate_times_elapsed_and_nothing_at_the_same_instant() {
        let t0 = crate::test_instant();
        let mut p = Pacer::new(1000);
        p.set_rate_bps(1_000_000, 1_000_000, 1000); // 1 MB/s, capacity 16_000
        assert_eq!(p.delay(t0, 1000), None);
        p.on_sent(10_000);
        assert_eq!(p.tokens, 0);
        assert!(p.delay(t0, 1000).is_some(), "no refill at the same instant");
        // 3 ms at 1 MB/s = 3000 bytes.
        assert_eq!(p.delay(t0 + Duration::from_millis(3), 3000), None);
        assert_eq!(p.tokens, 3000);
        // A huge rate takes the u128 path and saturates at the capacity.
        p.set_rate_bps(u64::MAX / 2, 1_000_000, 1000);
        assert_eq!(p.delay(t0 + Duration::from_secs(10), 1000), None);
        assert_eq!(p.tokens, 16_000);
    }
}
