//! One path's complete congestion state: RTT, sent packets, controller, pacer.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::{
    AckOutcome, Algorithm, Config, CongestionController, Error, Pacer, RttEstimator, SentPacket,
    SentPackets, Snapshot, TimeoutOutcome, bytes_in,
};

/// How much of a second of pacing rate the bucket holds: 1 ms, as Linux's
/// pacing granularity, between 2 and 16 datagrams.
const BURST_INTERVAL: Duration = Duration::from_millis(1);
const MIN_BURST_PACKETS: u64 = 2;
const MAX_BURST_PACKETS: u64 = 16;

/// Whether a datagram may be sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SendPermit {
    /// Send it now.
    Now,
    /// The congestion window has room but the pacer does not: retry at this instant.
    At(Instant),
    /// The congestion window is full: wait for an ACK or the loss timer.
    Blocked,
}

/// Everything one path needs for congestion control, owned by the session:
/// an [`RttEstimator`], a [`SentPackets`] ledger, a boxed
/// [`CongestionController`] and a [`Pacer`].
///
/// # Invariants
/// The pacer's rate is refreshed from the controller inside the same `&mut self`
/// call that fed the controller an ACK or a loss, so it can never carry a rate
/// from another update (the reference design's double-lock defect) and no lock
/// is needed: the session owns this value outright (I9).
#[derive(Debug)]
pub struct PathRecovery {
    mss: u64,
    rtt: RttEstimator,
    sent: SentPackets,
    controller: Box<dyn CongestionController>,
    pacer: Pacer,
}

impl Clone for PathRecovery {
    fn clone(&self) -> Self {
        Self {
            mss: self.mss,
            rtt: self.rtt,
            sent: self.sent.clone(),
            controller: self.controller.clone_box(),
            pacer: self.pacer,
        }
    }
}

impl PathRecovery {
    /// A fresh path running `algorithm`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `config` does not validate.
    pub fn new(algorithm: Algorithm, config: &Config) -> Result<Self, Error> {
        let controller = algorithm.build(config)?;
        Ok(Self::with_controller(controller, config))
    }

    /// A fresh path around an existing controller (e.g. a custom one).
    #[must_use]
    pub fn with_controller(controller: Box<dyn CongestionController>, config: &Config) -> Self {
        Self {
            mss: config.max_datagram_size,
            rtt: RttEstimator::new(config.initial_rtt, config.max_ack_delay),
            sent: SentPackets::new(),
            pacer: initial_pacer(controller.as_ref(), config.max_datagram_size),
            controller,
        }
    }

    /// The RTT estimator.
    #[must_use]
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The sent-packet ledger.
    #[must_use]
    pub fn sent(&self) -> &SentPackets {
        &self.sent
    }

    /// The controller.
    #[must_use]
    pub fn controller(&self) -> &dyn CongestionController {
        self.controller.as_ref()
    }

    /// The pacer.
    #[must_use]
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Bytes in flight.
    #[must_use]
    pub fn bytes_in_flight(&self) -> u64 {
        self.sent.bytes_in_flight()
    }

    /// Whether `bytes` may be sent at `now` (congestion window, then pacer).
    pub fn poll_send(&self, now: Instant, bytes: u64) -> SendPermit {
        if self.sent.bytes_in_flight().saturating_add(bytes) > self.controller.window() {
            return SendPermit::Blocked;
        }
        match self.pacer.poll(now, bytes) {
            Ok(()) => SendPermit::Now,
            Err(at) => SendPermit::At(at),
        }
    }

    /// Records a sent packet. Probes sent after a PTO may exceed the window;
    /// every packet is charged to the pacer.
    ///
    /// # Errors
    /// [`Error::PacketNumberNotIncreasing`] (a caller bug; nothing changes).
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        pn: u64,
        bytes: u64,
        ack_eliciting: bool,
    ) -> Result<SentPacket, Error> {
        let packet = self.sent.on_packet_sent(now, pn, bytes, ack_eliciting)?;
        if ack_eliciting {
            self.controller
                .on_sent(now, bytes, self.sent.bytes_in_flight());
        }
        self.pacer.on_sent(now, bytes);
        Ok(packet)
    }

    /// The sender had no data to fill the window (delivery-rate samples taken
    /// until the current flight is delivered are marked application-limited).
    pub fn on_app_limited(&mut self) {
        self.sent.on_app_limited();
    }

    /// Processes an ACK frame: updates RTT, detects losses, feeds the
    /// controller (losses first, then the ACK, as RFC 9002 §6) and refreshes the
    /// pacer from it.
    ///
    /// # Errors
    /// The peer faults of [`SentPackets::on_ack_received`]; nothing changes then.
    pub fn on_ack_received(
        &mut self,
        now: Instant,
        ranges: &[RangeInclusive<u64>],
        ack_delay: Duration,
    ) -> Result<AckOutcome<'_>, Error> {
        let outcome = self
            .sent
            .on_ack_received(now, ranges, ack_delay, &mut self.rtt)?;
        if outcome.lost_bytes > 0
            && let Some(sent_at) = outcome.largest_lost_sent_at
        {
            self.controller.on_loss(
                now,
                sent_at,
                outcome.lost_bytes,
                outcome.persistent_congestion,
            );
        }
        if let Some(event) = outcome.ack_event() {
            self.controller.on_ack(now, &event, &self.rtt);
        }
        refresh_pacer(&mut self.pacer, self.controller.as_ref(), self.mss, now);
        Ok(outcome)
    }

    /// When the loss-detection / PTO timer should fire, if at all.
    #[must_use]
    pub fn timer(&self) -> Option<Instant> {
        self.sent.loss_detection_timer(&self.rtt)
    }

    /// The loss-detection timer fired (calling early is harmless).
    pub fn on_timeout(&mut self, now: Instant) -> TimeoutOutcome<'_> {
        let outcome = self.sent.on_loss_detection_timeout(now, &self.rtt);
        if outcome.lost_bytes > 0
            && let Some(sent_at) = outcome.largest_lost_sent_at
        {
            self.controller.on_loss(
                now,
                sent_at,
                outcome.lost_bytes,
                outcome.persistent_congestion,
            );
            refresh_pacer(&mut self.pacer, self.controller.as_ref(), self.mss, now);
        }
        outcome
    }

    /// The path is abandoned or its packet-number space discarded: forget
    /// everything in flight without calling it lost.
    pub fn discard_in_flight(&mut self) {
        self.sent.discard_all();
    }

    /// Telemetry snapshot (the controller's, with the ledger's exact
    /// bytes in flight and the estimator's min RTT as a fallback).
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let mut s = self.controller.snapshot();
        s.bytes_in_flight = self.sent.bytes_in_flight();
        if s.min_rtt.is_none() {
            s.min_rtt = self.rtt.min_rtt();
        }
        s
    }
}

/// Pacer burst for a rate: 1 ms worth, between 2 and 16 datagrams.
fn burst_for(rate: u64, mss: u64) -> u64 {
    bytes_in(rate, BURST_INTERVAL).clamp(
        MIN_BURST_PACKETS.saturating_mul(mss),
        MAX_BURST_PACKETS.saturating_mul(mss),
    )
}

fn initial_pacer(controller: &dyn CongestionController, mss: u64) -> Pacer {
    controller
        .pacing_rate()
        .and_then(|r| Pacer::new(r, burst_for(r, mss)).ok())
        .unwrap_or_default()
}

fn refresh_pacer(pacer: &mut Pacer, controller: &dyn CongestionController, mss: u64, now: Instant) {
    let rate = controller.pacing_rate();
    let burst = rate.map_or(u64::MAX, |r| burst_for(r, mss));
    pacer.set_rate(now, rate, burst);
}
