//! NewReno as specified in RFC 9002 §7 (slow start, congestion avoidance,
//! recovery, persistent congestion).

use std::time::{Duration, Instant};

use crate::{
    AckEvent, Algorithm, Config, CongestionController, LossWindow, Phase, RttEstimator, Snapshot,
    scale,
};

/// RFC 9002 §7.3.2 `kLossReductionFactor`.
const LOSS_REDUCTION: f64 = 0.5;

/// RFC 9002 NewReno.
///
/// # Invariants
/// The window never grows while an acknowledged packet was sent before the
/// current recovery period began, and one recovery period reduces the window
/// once, however many of its packets are lost.
#[derive(Debug, Clone)]
pub struct NewReno {
    mss: u64,
    min_window: u64,
    cwnd: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    in_recovery: bool,
    bytes_acked: u64,
    bytes_in_flight: u64,
    smoothed_rtt: Option<Duration>,
    min_rtt: Option<Duration>,
}

impl NewReno {
    /// A controller in slow start with the configured initial window.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Self {
            mss: config.max_datagram_size,
            min_window: config.minimum_window(),
            cwnd: config.initial_window(),
            ssthresh: u64::MAX,
            recovery_start: None,
            in_recovery: false,
            bytes_acked: 0,
            bytes_in_flight: 0,
            smoothed_rtt: None,
            min_rtt: None,
        }
    }

    /// The slow-start threshold (`u64::MAX` while infinite).
    #[must_use]
    pub fn ssthresh(&self) -> u64 {
        self.ssthresh
    }
}

impl NewReno {
    fn loss_window(&self) -> LossWindow {
        LossWindow {
            algorithm: Algorithm::NewReno,
            cwnd: self.cwnd,
            ssthresh: self.ssthresh,
            in_recovery: self.in_recovery,
            bytes_in_flight: self.bytes_in_flight,
            smoothed_rtt: self.smoothed_rtt,
            min_rtt: self.min_rtt,
        }
    }
}

impl CongestionController for NewReno {
    fn on_sent(&mut self, _now: Instant, _bytes: u64, bytes_in_flight: u64) {
        self.bytes_in_flight = bytes_in_flight;
    }

    fn on_ack(&mut self, _now: Instant, ack: &AckEvent, rtt: &RttEstimator) {
        self.bytes_in_flight = ack.bytes_in_flight;
        if rtt.min_rtt().is_some() {
            self.smoothed_rtt = Some(rtt.smoothed());
            self.min_rtt = rtt.min_rtt();
        }
        if self
            .recovery_start
            .is_some_and(|start| ack.largest_acked_sent_at <= start)
        {
            // RFC 9002 §7.3.2: no growth for packets sent before recovery began.
            return;
        }
        self.in_recovery = false;
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(ack.acked_bytes);
            return;
        }
        // Congestion avoidance: one datagram per window acknowledged.
        self.bytes_acked = self.bytes_acked.saturating_add(ack.acked_bytes);
        if self.bytes_acked >= self.cwnd {
            self.bytes_acked = self.bytes_acked.saturating_sub(self.cwnd);
            self.cwnd = self.cwnd.saturating_add(self.mss);
        }
    }

    fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64, persistent: bool) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(bytes);
        if self.recovery_start.is_none_or(|start| sent_at > start) {
            self.recovery_start = Some(now);
            self.in_recovery = true;
            self.ssthresh = scale(self.cwnd, LOSS_REDUCTION).max(self.min_window);
            self.cwnd = self.ssthresh;
            self.bytes_acked = 0;
        }
        if persistent {
            // RFC 9002 §7.6.2: collapse to the minimum window and leave recovery.
            self.cwnd = self.min_window;
            self.recovery_start = None;
            self.in_recovery = false;
        }
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn pacing_rate(&self) -> Option<u64> {
        self.loss_window().pacing_rate()
    }

    fn phase(&self) -> Phase {
        self.loss_window().phase()
    }

    fn snapshot(&self) -> Snapshot {
        self.loss_window().snapshot()
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::NewReno
    }

    fn clone_box(&self) -> Box<dyn CongestionController> {
        Box::new(self.clone())
    }
}
