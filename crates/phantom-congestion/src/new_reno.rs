//! NewReno as specified in RFC 9002 §7 (slow start, congestion avoidance,
//! recovery, persistent congestion).

use std::time::Instant;

use crate::{
    AckEvent, Algorithm, Config, CongestionController, LossWindow, Phase, RttEstimator, Snapshot,
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
    w: LossWindow,
    bytes_acked: u64,
}

impl NewReno {
    /// A controller in slow start with the configured initial window.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Self {
            w: LossWindow::new(Algorithm::NewReno, config),
            bytes_acked: 0,
        }
    }

    /// The slow-start threshold (`u64::MAX` while infinite).
    #[must_use]
    pub fn ssthresh(&self) -> u64 {
        self.w.ssthresh
    }
}

impl CongestionController for NewReno {
    fn on_sent(&mut self, _now: Instant, _bytes: u64, bytes_in_flight: u64) {
        self.w.bytes_in_flight = bytes_in_flight;
    }

    fn on_ack(&mut self, _now: Instant, ack: &AckEvent, rtt: &RttEstimator) {
        if !self.w.on_ack(ack, rtt) {
            return;
        }
        // Congestion avoidance: one datagram per window acknowledged.
        self.bytes_acked = self.bytes_acked.saturating_add(ack.acked_bytes);
        if self.bytes_acked >= self.w.cwnd {
            self.bytes_acked = self.bytes_acked.saturating_sub(self.w.cwnd);
            self.w.cwnd = self.w.cwnd.saturating_add(self.w.mss);
        }
    }

    fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64, persistent: bool) {
        if self.w.on_loss(now, sent_at, bytes) {
            self.w.reduce(LOSS_REDUCTION);
            self.bytes_acked = 0;
        }
        if persistent {
            self.w.on_persistent_congestion();
        }
    }

    fn window(&self) -> u64 {
        self.w.cwnd
    }

    fn pacing_rate(&self) -> Option<u64> {
        self.w.pacing_rate()
    }

    fn phase(&self) -> Phase {
        self.w.phase()
    }

    fn snapshot(&self) -> Snapshot {
        self.w.snapshot()
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::NewReno
    }

    fn clone_box(&self) -> Box<dyn CongestionController> {
        Box::new(self.clone())
    }
}
