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

/// Time whose worth of tokens the bucket may hold beyond a quarter window: the
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
/// The bucket holds a quarter window (2 to 16 packets) or the bytes due in
/// [`BURST_INTERVAL_US`], whichever is larger (at most 64 packets). Once it runs
/// dry, the pacer waits until it has refilled by [`REFILL_QUANTUM_US`] worth of
/// tokens (at least the packet, at most the bucket) before releasing anything:
/// the average rate is still the controller's, but packets leave in batches that
/// fit the runtime's timer granularity instead of one per wake-up.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    tokens: u64,
    capacity: u64,
    last: Option<Instant>,
    /// Bytes per second.
    pub(crate) rate: u64,
    /// While the bucket refills after running dry: the tokens to wait for.
    refill_to: Option<u64>,
}

impl Pacer {
    pub(crate) fn new(mss: u64) -> Self {
        Self {
            tokens: 10 * mss,
            capacity: 10 * mss,
            last: None,
            rate: 0,
            refill_to: None,
        }
    }

    /// Bytes sent at `rate` in `micros` microseconds.
    fn bytes_in(rate: u64, micros: u128) -> u64 {
        (u128::from(rate) * micros / 1_000_000).min(u128::from(u64::MAX)) as u64
    }

    fn set_capacity(&mut self, cwnd: u64, mss: u64) {
        let window_share = (cwnd / 4).clamp(2 * mss, 16 * mss);
        let timer_share =
            Self::bytes_in(self.rate, BURST_INTERVAL_US).min(MAX_BURST_PACKETS.saturating_mul(mss));
        self.capacity = window_share.max(timer_share);
    }

    /// Sets an explicit rate (bytes/s); the bucket is sized from it and the window.
    pub(crate) fn set_rate_bps(&mut self, rate: u64, cwnd: u64, mss: u64) {
        self.rate = rate;
        self.set_capacity(cwnd, mss);
    }

    /// Sets the rate from the window and RTT (1.25 x cwnd / srtt); the bucket is
    /// sized from it and the window.
    pub(crate) fn set_rate(&mut self, cwnd: u64, srtt: Duration, mss: u64) {
        let micros = srtt.as_micros().max(1);
        self.rate =
            (u128::from(cwnd) * 5 / 4 * 1_000_000 / micros).min(u128::from(u64::MAX)) as u64;
        self.set_capacity(cwnd, mss);
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
        // A huge rate takes the u128 path and saturates at the capacity, which at
        // such a rate is the 64-packet ceiling.
        p.set_rate_bps(u64::MAX / 2, 1_000_000, 1000);
        assert_eq!(p.delay(t0 + Duration::from_secs(10), 1000), None);
        assert_eq!(p.tokens, 64_000);
    }

    #[test]
    fn pacer_bucket_holds_two_milliseconds_of_a_fast_rate_within_bounds() {
        let mut p = Pacer::new(1000);
        // 10 MB/s: 2 ms = 20_000 bytes, more than a quarter of a 40_000-byte window.
        p.set_rate_bps(10_000_000, 40_000, 1000);
        assert_eq!(p.capacity, 20_000);
        // 1 MB/s: 2 ms = 2_000 bytes; the quarter window (10_000) wins.
        p.set_rate_bps(1_000_000, 40_000, 1000);
        assert_eq!(p.capacity, 10_000);
        // 1 GB/s: 2 ms = 2 MB, capped at 64 packets.
        p.set_rate_bps(1_000_000_000, 40_000, 1000);
        assert_eq!(p.capacity, 64_000);
    }

    #[test]
    fn pacer_waits_for_a_millisecond_of_tokens_once_dry_and_keeps_the_average_rate() {
        let t0 = crate::test_instant();
        let mut p = Pacer::new(1000);
        // 20 MB/s: capacity 40 packets (2 ms), refill quantum 20 packets (1 ms).
        p.set_rate_bps(20_000_000, 1_000_000, 1000);
        assert_eq!(p.capacity, 40_000);
        // Drain the initial bucket.
        let mut t = t0;
        while p.delay(t, 1000).is_none() {
            p.on_sent(1000);
        }
        // Dry: the wait is for 20_000 tokens (1 ms), not for one packet's 50 us.
        let wake = p.delay(t, 1000).unwrap();
        assert_eq!(wake, t + Duration::from_millis(1));
        // An earlier wake-up (an ACK arriving) with one packet's worth of tokens
        // still waits for the quantum: no packet trickles out alone.
        t += Duration::from_micros(100);
        assert_eq!(p.delay(t, 1000), Some(t0 + Duration::from_millis(1)));
        // At the deadline the quantum goes out as one batch, then the pacer waits again.
        let mut batch = 0;
        while p.delay(wake, 1000).is_none() {
            p.on_sent(1000);
            batch += 1;
        }
        assert_eq!(batch, 20);
        // Over a long run the average rate is the configured one: the 100 ms from
        // `wake` at 20 MB/s release 2 MB (plus at most one bucket).
        let mut now = wake;
        let end = wake + Duration::from_millis(100);
        let mut bytes = batch * 1000;
        for _ in 0..100_000 {
            if now >= end {
                break;
            }
            match p.delay(now, 1000) {
                None => {
                    p.on_sent(1000);
                    bytes += 1000;
                }
                Some(at) => now = at.min(end),
            }
        }
        assert!(
            (1_990_000..=2_000_000 + 40_000).contains(&bytes),
            "{bytes} bytes in 100 ms"
        );
    }
}
