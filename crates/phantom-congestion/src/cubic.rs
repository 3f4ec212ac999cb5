//! CUBIC, RFC 9438, with RFC 9002 recovery semantics.

use std::time::Instant;

use crate::{
    AckEvent, Algorithm, Config, CongestionController, LossWindow, Phase, RttEstimator, Snapshot,
};

/// RFC 9438 §5 `C`.
const C: f64 = 0.4;
/// RFC 9438 §4.6 `beta_cubic`.
const BETA: f64 = 0.7;
/// RFC 9438 §4.3 `alpha_cubic = 3 (1 - beta) / (1 + beta)`.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// The state of one congestion-avoidance epoch.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    start: Instant,
    /// Seconds the cubic needs to climb back to `w_max`.
    k: f64,
    /// Reno-friendly estimate in bytes.
    w_est: f64,
}

/// RFC 9438 CUBIC.
///
/// # Invariants
/// The window never grows during recovery; a congestion event multiplies it by
/// `beta_cubic = 0.7`; growth per ACK is bounded by `1.5 * cwnd` (RFC 9438 §4.2).
#[derive(Debug, Clone)]
pub struct Cubic {
    w: LossWindow,
    w_max: f64,
    cwnd_prior: f64,
    epoch: Option<Epoch>,
    /// When the previous ACK arrived (the cubic clock stops while app-limited).
    last_ack: Option<Instant>,
}

impl Cubic {
    /// A controller in slow start with the configured initial window.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Self {
            w: LossWindow::new(Algorithm::Cubic, config),
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch: None,
            last_ack: None,
        }
    }

    /// The slow-start threshold (`u64::MAX` while infinite).
    #[must_use]
    pub fn ssthresh(&self) -> u64 {
        self.w.ssthresh
    }

    /// `W_max` in bytes: the window at the last congestion event (after fast
    /// convergence).
    #[must_use]
    pub fn w_max(&self) -> u64 {
        to_bytes(self.w_max)
    }

    /// `W_cubic(t)` in bytes, `t` seconds into an epoch with constant `k`.
    fn w_cubic(&self, t: f64, k: f64) -> f64 {
        let d = t - k;
        C * d * d * d * self.w.mss as f64 + self.w_max
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn to_bytes(v: f64) -> u64 {
    // `as` saturates and maps NaN to 0.
    v as u64
}

impl CongestionController for Cubic {
    fn on_sent(&mut self, _now: Instant, _bytes: u64, bytes_in_flight: u64) {
        self.w.bytes_in_flight = bytes_in_flight;
    }

    fn on_ack(&mut self, now: Instant, ack: &AckEvent, rtt: &RttEstimator) {
        // RFC 9438 §5.8: while the sender does not use its window the cubic curve
        // does not advance — the epoch start moves forward by the time spent
        // application-limited, so a sender resuming after a quiet spell does not
        // jump to where the curve would be had it been sending all along.
        if ack.rate.is_app_limited
            && let (Some(e), Some(last)) = (self.epoch.as_mut(), self.last_ack)
        {
            e.start += now.saturating_duration_since(last);
        }
        self.last_ack = Some(now);
        if !self.w.on_ack(ack, rtt) {
            return;
        }
        let cwnd = self.w.cwnd as f64;
        let mss = self.w.mss as f64;
        let epoch = match self.epoch {
            Some(e) => e,
            None => {
                if self.w_max < cwnd {
                    // No congestion event yet (or the window overtook it): the
                    // plateau is here.
                    self.w_max = cwnd;
                }
                let k = ((self.w_max - cwnd) / mss / C).cbrt();
                let e = Epoch {
                    start: now,
                    k,
                    w_est: cwnd,
                };
                self.epoch = Some(e);
                e
            }
        };
        let t = now.saturating_duration_since(epoch.start).as_secs_f64();
        let rtt_s = rtt.smoothed().as_secs_f64();
        let acked = ack.acked_bytes as f64;
        // Reno-friendly region (RFC 9438 §4.3).
        let alpha = if epoch.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA
        };
        let w_est = epoch.w_est + alpha * acked / cwnd * mss;
        self.epoch = Some(Epoch { w_est, ..epoch });
        if self.w_cubic(t, epoch.k) < w_est {
            self.w.cwnd = to_bytes(w_est).max(self.w.cwnd);
            return;
        }
        // Concave/convex region (RFC 9438 §4.4, §4.5).
        let target = self.w_cubic(t + rtt_s, epoch.k).clamp(cwnd, 1.5 * cwnd);
        let grow = (target - cwnd) * acked / cwnd;
        self.w.cwnd = self.w.cwnd.saturating_add(to_bytes(grow));
    }

    fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64, persistent: bool) {
        if self.w.on_loss(now, sent_at, bytes) {
            self.epoch = None;
            let cwnd = self.w.cwnd as f64;
            // Fast convergence (RFC 9438 §4.7).
            self.w_max = if cwnd < self.w_max {
                cwnd * (1.0 + BETA) / 2.0
            } else {
                cwnd
            };
            self.cwnd_prior = cwnd;
            self.w.reduce(BETA);
        }
        if persistent {
            self.w.on_persistent_congestion();
            self.epoch = None;
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
        Algorithm::Cubic
    }

    fn clone_box(&self) -> Box<dyn CongestionController> {
        Box::new(self.clone())
    }
}
