//! One path's complete congestion state: RTT, sent packets, controller, pacer.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::{
    AckOutcome, Algorithm, Config, CongestionController, Error, Pacer, RttEstimator, SentPacket,
    SentPackets, Snapshot, TimeoutOutcome,
};

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

/// Everything one path needs for congestion control, owned by its user (the
/// session, one per path; the simulator): an [`RttEstimator`], a [`SentPackets`]
/// ledger, a boxed [`CongestionController`] and a [`Pacer`].
///
/// # Call protocol
///
/// Before sending, check the window ([`Self::has_room`]) and the pacer
/// ([`Self::pace`]), or both at once with [`Self::poll_send`]. Record every
/// tracked packet with [`Self::on_packet_sent`] (the controller sees the
/// ack-eliciting ones) and charge the pacer with [`Self::on_paced`] for the
/// packets it paces. An ACK is either applied packet by packet
/// ([`Self::on_packet_acked`], then [`Self::finish_ack`] once for all the ACK
/// frames of one datagram) or as ranges ([`Self::on_ack_received`]). Arm the
/// loss/PTO timer at [`Self::timer`] and call [`Self::on_timeout`] when it fires.
///
/// # Invariants
/// After every ACK or loss the controller is fed the losses first, then the ACK
/// (RFC 9002 §6), and the pacer is re-rated from the controller in the same
/// `&mut self` call, so it can never carry a rate from another update (the
/// reference design's double-lock defect) and no lock is needed: the owner holds
/// this value outright (I9). The pacer follows the controller's pacing rate, or
/// 1.25 x cwnd / smoothed RTT if it has none; it is unpaced until the first ACK
/// or loss.
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
            pacer: self.pacer.clone(),
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
            pacer: Pacer::new(config.max_datagram_size),
            controller,
        }
    }

    /// Caps the probe timer's backoff at `pto_base * 2^max_exponent`
    /// ([`SentPackets::set_max_pto_backoff`]).
    pub fn set_max_pto_backoff(&mut self, max_exponent: u32) {
        self.sent.set_max_pto_backoff(max_exponent);
    }

    /// The RTT estimator.
    #[inline]
    #[must_use]
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The sent-packet ledger.
    #[inline]
    #[must_use]
    pub fn sent(&self) -> &SentPackets {
        &self.sent
    }

    /// Frees the sent-packet ledger's memory if nothing is in it (see
    /// [`SentPackets::release_if_empty`]).
    pub fn release_if_empty(&mut self) {
        self.sent.release_if_empty();
    }

    /// The controller.
    #[inline]
    #[must_use]
    pub fn controller(&self) -> &dyn CongestionController {
        self.controller.as_ref()
    }

    /// The pacer.
    #[inline]
    #[must_use]
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Bytes in flight.
    #[inline]
    #[must_use]
    pub fn bytes_in_flight(&self) -> u64 {
        self.sent.bytes_in_flight()
    }

    /// Ack-eliciting packets in flight.
    #[inline]
    #[must_use]
    pub fn ack_eliciting_in_flight(&self) -> u64 {
        self.sent.ack_eliciting_in_flight()
    }

    /// Consecutive probe timeouts without an ACK.
    #[inline]
    #[must_use]
    pub fn pto_count(&self) -> u32 {
        self.sent.pto_count()
    }

    /// The controller's congestion window in bytes.
    #[inline]
    #[must_use]
    pub fn window(&self) -> u64 {
        self.controller.window()
    }

    /// Whether the congestion window has room for `bytes` more.
    #[inline]
    #[must_use]
    pub fn has_room(&self, bytes: u64) -> bool {
        self.sent.bytes_in_flight().saturating_add(bytes) <= self.controller.window()
    }

    /// The pacer's verdict for `bytes` at `now`: `None` to send now, else when.
    #[inline]
    pub fn pace(&mut self, now: Instant, bytes: u64) -> Option<Instant> {
        self.pacer.delay(now, bytes)
    }

    /// Whether `bytes` may be sent at `now` (congestion window, then pacer).
    pub fn poll_send(&mut self, now: Instant, bytes: u64) -> SendPermit {
        if !self.has_room(bytes) {
            return SendPermit::Blocked;
        }
        match self.pacer.delay(now, bytes) {
            None => SendPermit::Now,
            Some(at) => SendPermit::At(at),
        }
    }

    /// Records a sent packet in the ledger; an ack-eliciting one is also handed
    /// to the controller. Probes sent after a PTO may exceed the window. The pacer
    /// is charged separately ([`Self::on_paced`]).
    ///
    /// # Errors
    /// [`Error::PacketNumberNotIncreasing`] (a caller bug; nothing changes).
    #[inline]
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
        Ok(packet)
    }

    /// A paced packet of `bytes` left: take them from the pacer's bucket.
    #[inline]
    pub fn on_paced(&mut self, bytes: u64) {
        self.pacer.on_sent(bytes);
    }

    /// The sender had no data to fill the window (delivery-rate samples taken
    /// until the current flight is delivered are marked application-limited).
    #[inline]
    pub fn on_app_limited(&mut self) {
        self.sent.on_app_limited();
    }

    /// One packet of an ACK being assembled was acknowledged; `frame_largest` is
    /// `Some(ack_delay)` if it was the largest its ACK frame named. True if it was
    /// outstanding. [`Self::finish_ack`] completes the ACK.
    #[inline]
    pub fn on_packet_acked(
        &mut self,
        now: Instant,
        pn: u64,
        frame_largest: Option<Duration>,
    ) -> bool {
        self.sent.on_packet_acked(now, pn, frame_largest).is_some()
    }

    /// Completes the ACK assembled with [`Self::on_packet_acked`]: RTT sample,
    /// loss detection, delivery-rate sample, then the controller (losses first,
    /// then the ACK) and the pacer.
    pub fn finish_ack(&mut self, now: Instant) -> AckOutcome<'_> {
        let outcome = self.sent.finish_ack(now, &mut self.rtt);
        feed(
            &mut self.pacer,
            self.controller.as_mut(),
            &self.rtt,
            self.mss,
            now,
            &outcome,
        );
        outcome
    }

    /// Processes an ACK frame's ranges in one call: [`Self::on_packet_acked`] for
    /// every packet they name, then [`Self::finish_ack`].
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
        feed(
            &mut self.pacer,
            self.controller.as_mut(),
            &self.rtt,
            self.mss,
            now,
            &outcome,
        );
        Ok(outcome)
    }

    /// When the loss-detection / PTO timer should fire, if at all.
    #[inline]
    #[must_use]
    pub fn timer(&self) -> Option<Instant> {
        self.sent.loss_detection_timer(&self.rtt)
    }

    /// The loss-detection timer fired (calling early is harmless): time-threshold
    /// losses go to the controller and re-rate the pacer; a probe timeout only
    /// asks for probes.
    pub fn on_timeout(&mut self, now: Instant) -> TimeoutOutcome<'_> {
        let outcome = self.sent.on_loss_detection_timeout(now, &self.rtt);
        if outcome.lost_bytes > 0 {
            if let Some(sent_at) = outcome.largest_lost_sent_at {
                self.controller.on_loss(
                    now,
                    sent_at,
                    outcome.lost_bytes,
                    outcome.persistent_congestion,
                );
            }
            refresh_pacer(
                &mut self.pacer,
                self.controller.as_ref(),
                &self.rtt,
                self.mss,
            );
        }
        outcome
    }

    /// The path failed over to others: the controller takes it as persistent
    /// congestion (window to the minimum); the pacer keeps its rate until the
    /// next ACK or loss.
    #[inline]
    pub fn on_failed_over(&mut self, now: Instant) {
        self.controller.on_loss(now, now, 0, true);
    }

    /// Takes every outstanding packet out of the ledger and returns them, without
    /// a congestion signal ([`SentPackets::drain_outstanding`]).
    #[inline]
    pub fn drain_outstanding(&mut self) -> &[SentPacket] {
        self.sent.drain_outstanding()
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

/// What an ACK taught the path, for the controller and the pacer: losses first,
/// then the ACK; the pacer is re-rated if either happened.
#[inline]
fn feed(
    pacer: &mut Pacer,
    controller: &mut dyn CongestionController,
    rtt: &RttEstimator,
    mss: u64,
    now: Instant,
    outcome: &AckOutcome<'_>,
) {
    if let Some(sent_at) = outcome.largest_lost_sent_at
        && outcome.lost_bytes > 0
    {
        controller.on_loss(
            now,
            sent_at,
            outcome.lost_bytes,
            outcome.persistent_congestion,
        );
    }
    let ack = outcome.ack_event();
    if let Some(event) = &ack {
        controller.on_ack(now, event, rtt);
    }
    if ack.is_some() || outcome.lost_bytes > 0 {
        refresh_pacer(pacer, controller, rtt, mss);
    }
}

/// Pacing follows the controller's rate, or 1.25 cwnd / srtt if it has none.
#[inline]
fn refresh_pacer(
    pacer: &mut Pacer,
    controller: &dyn CongestionController,
    rtt: &RttEstimator,
    mss: u64,
) {
    let cwnd = controller.window();
    match controller.pacing_rate() {
        Some(rate) => pacer.set_rate_bps(rate, cwnd, mss),
        None => pacer.set_rate(cwnd, rtt.smoothed(), mss),
    }
}
