//! CUBIC, RFC 9438, with RFC 9002 recovery semantics.

use std::time::{Duration, Instant};

use crate::{
    AckEvent, Algorithm, Config, CongestionController, LossWindow, Phase, RttEstimator, Snapshot,
    scale,
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
    mss: u64,
    min_window: u64,
    cwnd: u64,
    ssthresh: u64,
    w_max: f64,
    cwnd_prior: f64,
    epoch: Option<Epoch>,
    recovery_start: Option<Instant>,
    in_recovery: bool,
    bytes_in_flight: u64,
    smoothed_rtt: Option<Duration>,
    min_rtt: Option<Duration>,
}

impl Cubic {
    /// A controller in slow start with the configured initial window.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        Self {
            mss: config.max_datagram_size,
            min_window: config.minimum_window(),
            cwnd: config.initial_window(),
            ssthresh: u64::MAX,
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch: None,
            recovery_start: None,
            in_recovery: false,
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

    /// `W_max` in bytes: the window at the last congestion event (after fast
    /// convergence).
    #[must_use]
    pub fn w_max(&self) -> u64 {
        to_bytes(self.w_max)
    }

    /// `W_cubic(t)` in bytes, `t` seconds into an epoch with constant `k`.
    fn w_cubic(&self, t: f64, k: f64) -> f64 {
        let d = t - k;
        C * d * d * d * self.mss as f64 + self.w_max
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn to_bytes(v: f64) -> u64 {
    // `as` saturates and maps NaN to 0.
    v as u64
}

impl Cubic {
    fn loss_window(&self) -> LossWindow {
        LossWindow {
            algorithm: Algorithm::Cubic,
            cwnd: self.cwnd,
            ssthresh: self.ssthresh,
            in_recovery: self.in_recovery,
            bytes_in_flight: self.bytes_in_flight,
            smoothed_rtt: self.smoothed_rtt,
            min_rtt: self.min_rtt,
        }
    }
}

impl CongestionController for Cubic {
    fn on_sent(&mut self, _now: Instant, _bytes: u64, bytes_in_flight: u64) {
        self.bytes_in_flight = bytes_in_flight;
    }

    fn on_ack(&mut self, now: Instant, ack: &AckEvent, rtt: &RttEstimator) {
        self.bytes_in_flight = ack.bytes_in_flight;
        if rtt.min_rtt().is_some() {
            self.smoothed_rtt = Some(rtt.smoothed());
            self.min_rtt = rtt.min_rtt();
        }
        if self
            .recovery_start
            .is_some_and(|start| ack.largest_acked_sent_at <= start)
        {
            return;
        }
        self.in_recovery = false;
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(ack.acked_bytes);
            return;
        }
        let cwnd = self.cwnd as f64;
        let mss = self.mss as f64;
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
            self.cwnd = to_bytes(w_est).max(self.cwnd);
            return;
        }
        // Concave/convex region (RFC 9438 §4.4, §4.5).
        let target = self.w_cubic(t + rtt_s, epoch.k).clamp(cwnd, 1.5 * cwnd);
        let grow = (target - cwnd) * acked / cwnd;
        self.cwnd = self.cwnd.saturating_add(to_bytes(grow));
    }

    fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64, persistent: bool) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(bytes);
        if self.recovery_start.is_none_or(|start| sent_at > start) {
            self.recovery_start = Some(now);
            self.in_recovery = true;
            self.epoch = None;
            let cwnd = self.cwnd as f64;
            // Fast convergence (RFC 9438 §4.7).
            self.w_max = if cwnd < self.w_max {
                cwnd * (1.0 + BETA) / 2.0
            } else {
                cwnd
            };
            self.cwnd_prior = cwnd;
            self.ssthresh = scale(self.cwnd, BETA).max(self.min_window);
            self.cwnd = self.ssthresh;
        }
        if persistent {
            self.cwnd = self.min_window;
            self.recovery_start = None;
            self.in_recovery = false;
            self.epoch = None;
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
        Algorithm::Cubic
    }

    fn clone_box(&self) -> Box<dyn CongestionController> {
        Box::new(self.clone())
    }
}
