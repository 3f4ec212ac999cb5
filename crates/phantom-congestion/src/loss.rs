//! Sent-packet ledger and loss detection for one packet-number space, RFC 9002 §6.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::delivery::{DeliveryRateEstimator, DeliveryState, RateSample};
use crate::{AckEvent, Error, RttEstimator};

/// Packet reordering threshold (RFC 9002 §6.1.1: 3).
pub(crate) const PACKET_THRESHOLD: u64 = 3;

/// One packet this path sent and has not yet forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentPacket {
    /// Packet number (strictly increasing within the space).
    pub pn: u64,
    /// When it was sent.
    pub time_sent: Instant,
    /// Its size on the wire in bytes.
    pub bytes: u64,
    /// Whether it needs an acknowledgement. Only ack-eliciting packets count as
    /// in flight, arm the PTO and take part in congestion control.
    pub ack_eliciting: bool,
    /// Delivery-rate stamps taken when it was sent.
    pub delivery: DeliveryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Outstanding,
    Acked,
    Lost,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    packet: SentPacket,
    status: Status,
}

/// What one ACK frame did to the ledger. Borrows the ledger's reusable buffers,
/// so handling an ACK allocates nothing once they have grown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckOutcome<'a> {
    /// Numbers of the packets newly acknowledged by this ACK, in the order the
    /// ranges listed them (the numbers only: the records stay in the ledger, so
    /// an acknowledgement copies 8 bytes, not the whole [`SentPacket`]).
    pub acked: &'a [u64],
    /// Packets declared lost while processing this ACK, in packet-number order.
    pub lost: &'a [SentPacket],
    /// Bytes of newly acknowledged in-flight packets.
    pub acked_bytes: u64,
    /// Bytes of newly lost in-flight packets.
    pub lost_bytes: u64,
    /// Send time of the newest newly acknowledged packet.
    pub largest_acked_sent_at: Option<Instant>,
    /// Send time of the newest newly lost packet.
    pub largest_lost_sent_at: Option<Instant>,
    /// The RTT sample taken from this ACK, if any (RFC 9002 §5.1).
    pub rtt_sample: Option<Duration>,
    /// RFC 9002 §7.6 persistent congestion among the packets lost here.
    pub persistent_congestion: bool,
    /// Delivery-rate sample, `None` if nothing was newly acknowledged.
    pub rate: Option<RateSample>,
    /// Bytes in flight after this ACK.
    pub bytes_in_flight: u64,
}

impl AckOutcome<'_> {
    /// The event to hand to [`crate::CongestionController::on_ack`], if anything
    /// was newly acknowledged.
    #[must_use]
    pub fn ack_event(&self) -> Option<AckEvent> {
        Some(AckEvent {
            acked_bytes: self.acked_bytes,
            largest_acked_sent_at: self.largest_acked_sent_at?,
            bytes_in_flight: self.bytes_in_flight,
            rtt_sample: self.rtt_sample,
            rate: self.rate?,
        })
    }
}

/// What a loss-detection timer expiry did (RFC 9002 §6.2 `OnLossDetectionTimeout`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeoutOutcome<'a> {
    /// Packets declared lost by the time threshold.
    pub lost: &'a [SentPacket],
    /// Their in-flight bytes.
    pub lost_bytes: u64,
    /// Send time of the newest of them.
    pub largest_lost_sent_at: Option<Instant>,
    /// RFC 9002 §7.6 persistent congestion among them.
    pub persistent_congestion: bool,
    /// The probe timer fired: the caller should send one or two ack-eliciting
    /// probe packets now, even beyond the congestion window.
    pub send_probe: bool,
}

/// Scan bookkeeping for persistent congestion.
#[derive(Debug, Clone, Copy, Default)]
struct PcScan {
    run_start: Option<Instant>,
    found: bool,
}

/// The ledger of sent packets of one packet-number space, with RFC 9002 §6 loss
/// detection and §7.6 persistent-congestion detection.
///
/// # Invariants
///
/// * Packet numbers are strictly increasing and send times non-decreasing, so
///   the ledger is sorted by both and every lookup is a binary search.
/// * An ACK is validated in full before anything changes (I1): an inverted
///   range or a packet number above the largest sent is rejected with a typed
///   error and leaves the ledger untouched.
/// * Memory is proportional to the packets the caller sent and has not seen
///   acknowledged or lost; ACK contents cannot make it grow.
#[derive(Debug, Clone)]
pub struct SentPackets {
    entries: VecDeque<Entry>,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    last_sent_time: Option<Instant>,
    bytes_in_flight: u64,
    ack_eliciting_in_flight: u64,
    time_of_last_ack_eliciting: Option<Instant>,
    loss_time: Option<Instant>,
    pto_count: u32,
    max_pto_backoff: u32,
    delivery: DeliveryRateEstimator,
    acked_buf: Vec<u64>,
    lost_buf: Vec<SentPacket>,
    /// The ACK being assembled packet by packet ([`SentPackets::on_packet_acked`]),
    /// until [`SentPackets::finish_ack`].
    batch: Option<AckBatch>,
}

/// Running totals of an ACK assembled with [`SentPackets::on_packet_acked`].
#[derive(Debug, Clone, Copy, Default)]
struct AckBatch {
    acked_bytes: u64,
    /// The newest newly acknowledged packet: `(pn, time_sent)` (the whole record
    /// is not copied per acknowledged packet).
    newest: Option<(u64, Instant)>,
    /// The newest newly acknowledged packet that was the largest of its ACK frame,
    /// with that frame's reported delay: the RTT-sample candidate, as
    /// `(pn, time_sent, ack_delay)`.
    sample: Option<(u64, Instant, Duration)>,
    any_ack_eliciting: bool,
}

impl Default for SentPackets {
    fn default() -> Self {
        Self::new()
    }
}

impl SentPackets {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self {
            entries: VecDeque::new(),
            largest_sent: None,
            largest_acked: None,
            last_sent_time: None,
            bytes_in_flight: 0,
            ack_eliciting_in_flight: 0,
            time_of_last_ack_eliciting: None,
            loss_time: None,
            pto_count: 0,
            max_pto_backoff: u32::MAX,
            delivery: DeliveryRateEstimator::default(),
            acked_buf: Vec::new(),
            lost_buf: Vec::new(),
            batch: None,
        }
    }

    /// Bytes of ack-eliciting packets neither acknowledged nor declared lost.
    #[must_use]
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }

    /// Packets still tracked (outstanding plus not yet compacted).
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// The largest packet number the peer has acknowledged.
    #[must_use]
    pub fn largest_acked(&self) -> Option<u64> {
        self.largest_acked
    }

    /// The largest packet number sent.
    #[must_use]
    pub fn largest_sent(&self) -> Option<u64> {
        self.largest_sent
    }

    /// Ack-eliciting packets neither acknowledged nor declared lost.
    #[must_use]
    pub fn ack_eliciting_in_flight(&self) -> u64 {
        self.ack_eliciting_in_flight
    }

    /// Caps the PTO back-off: the probe timer waits at most
    /// `pto_base * 2^max_exponent` however many PTOs expired in a row (unbounded
    /// by default, as RFC 9002). A transport that keeps probing a failed path to
    /// notice its return sets this so the probes do not thin out forever.
    pub fn set_max_pto_backoff(&mut self, max_exponent: u32) {
        self.max_pto_backoff = max_exponent;
    }

    /// Consecutive PTO expirations without an ACK.
    #[must_use]
    pub fn pto_count(&self) -> u32 {
        self.pto_count
    }

    /// The delivery-rate state of the path.
    #[must_use]
    pub fn delivery(&self) -> &DeliveryRateEstimator {
        &self.delivery
    }

    /// The sender ran out of data before filling the window: delivery-rate
    /// samples are marked application-limited until the data now in flight is
    /// delivered.
    pub fn on_app_limited(&mut self) {
        self.delivery.on_app_limited(self.bytes_in_flight);
    }

    /// Records a sent packet and returns its stamped record.
    ///
    /// A `now` earlier than the previous send is treated as equal to it, so send
    /// times stay ordered.
    ///
    /// # Errors
    /// [`Error::PacketNumberNotIncreasing`] if `pn` does not exceed every
    /// packet number already recorded (a caller bug; nothing is recorded).
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        pn: u64,
        bytes: u64,
        ack_eliciting: bool,
    ) -> Result<SentPacket, Error> {
        if let Some(largest) = self.largest_sent
            && pn <= largest
        {
            return Err(Error::PacketNumberNotIncreasing { pn, largest });
        }
        let now = self.last_sent_time.map_or(now, |t| t.max(now));
        let in_flight_bytes = if ack_eliciting { bytes } else { 0 };
        let delivery = self
            .delivery
            .on_packet_sent(now, self.bytes_in_flight, in_flight_bytes);
        let packet = SentPacket {
            pn,
            time_sent: now,
            bytes,
            ack_eliciting,
            delivery,
        };
        self.entries.push_back(Entry {
            packet,
            status: Status::Outstanding,
        });
        self.largest_sent = Some(pn);
        self.last_sent_time = Some(now);
        if ack_eliciting {
            self.bytes_in_flight = self.bytes_in_flight.saturating_add(bytes);
            self.ack_eliciting_in_flight = self.ack_eliciting_in_flight.saturating_add(1);
            self.time_of_last_ack_eliciting = Some(now);
        }
        Ok(packet)
    }

    /// Processes one ACK frame (RFC 9002 §6 `OnAckReceived`): `ranges` lists the
    /// acknowledged packet numbers in any order, `ack_delay` is the peer's
    /// reported delay. Updates `rtt`, detects losses and returns what changed.
    ///
    /// # Errors
    /// [`Error::InvalidAckRange`] for an inverted range and
    /// [`Error::AckedUnsentPacket`] for a packet number above the largest sent
    /// (both peer faults); the ledger and `rtt` are then left unchanged.
    pub fn on_ack_received(
        &mut self,
        now: Instant,
        ranges: &[RangeInclusive<u64>],
        ack_delay: Duration,
        rtt: &mut RttEstimator,
    ) -> Result<AckOutcome<'_>, Error> {
        // I1: validate everything before touching state.
        let mut largest: Option<u64> = None;
        for r in ranges {
            let (start, end) = (*r.start(), *r.end());
            if start > end {
                return Err(Error::InvalidAckRange { start, end });
            }
            if self.largest_sent.is_none_or(|l| end > l) {
                return Err(Error::AckedUnsentPacket { pn: end });
            }
            largest = Some(largest.map_or(end, |l| l.max(end)));
        }
        let Some(largest) = largest else {
            self.acked_buf.clear();
            self.lost_buf.clear();
            self.batch = None;
            return Ok(self.ack_outcome(0, 0, None, false));
        };
        self.begin_batch();
        if self.largest_acked.is_none_or(|l| largest > l) {
            self.largest_acked = Some(largest);
        }
        for r in ranges {
            let (start, end) = (*r.start(), *r.end());
            let mut i = self.entries.partition_point(|e| e.packet.pn < start);
            while let Some(pn) = self.entries.get(i).map(|e| e.packet.pn) {
                if pn > end {
                    break;
                }
                self.ack_entry(now, i, (pn == largest).then_some(ack_delay));
                i += 1;
            }
        }
        Ok(self.finish_ack(now, rtt))
    }

    /// Marks one packet acknowledged, as part of an ACK the caller assembles packet
    /// by packet (e.g. from several ACK frames of one datagram, or from ACK frames
    /// that name packets in the caller's own numbering); [`Self::finish_ack`] then
    /// takes the RTT sample, detects losses once for the whole ACK and reports.
    ///
    /// `frame_largest` is `Some(ack_delay)` when `pn` is the largest packet number
    /// its ACK frame acknowledges, with the delay that frame reported: the newest
    /// such packet gives the RTT sample (RFC 9002 §5.1). Returns the packet if it
    /// was outstanding; `None` if it is unknown, already acknowledged or already
    /// declared lost (nothing changes then, except that an acknowledgement of a
    /// sent packet still raises the largest acknowledged number, as in
    /// [`Self::on_ack_received`]).
    pub fn on_packet_acked(
        &mut self,
        now: Instant,
        pn: u64,
        frame_largest: Option<Duration>,
    ) -> Option<&SentPacket> {
        if self.largest_sent.is_none_or(|l| pn > l) {
            return None;
        }
        if self.batch.is_none() {
            self.begin_batch();
        }
        if self.largest_acked.is_none_or(|l| pn > l) {
            self.largest_acked = Some(pn);
        }
        let i = self.index_of(pn)?;
        self.ack_entry(now, i, frame_largest)
    }

    /// Completes an ACK assembled with [`Self::on_packet_acked`] (RFC 9002 §6
    /// `OnAckReceived` from the RTT sample on): updates `rtt`, detects losses,
    /// resets the PTO count and takes the delivery-rate sample. With nothing newly
    /// acknowledged it reports nothing and runs no loss detection, as the RFC says.
    pub fn finish_ack(&mut self, now: Instant, rtt: &mut RttEstimator) -> AckOutcome<'_> {
        let Some(batch) = self.batch.take() else {
            self.acked_buf.clear();
            self.lost_buf.clear();
            return self.ack_outcome(0, 0, None, false);
        };
        let Some(newest) = batch.newest else {
            self.compact();
            return self.ack_outcome(0, 0, None, false);
        };
        // RFC 9002 §5.1: sample only if the largest acknowledged is newly acked
        // and at least one newly acked packet is ack-eliciting.
        let mut rtt_sample = None;
        if let Some((_, time_sent, ack_delay)) = batch.sample
            && batch.any_ack_eliciting
        {
            let latest = now.saturating_duration_since(time_sent);
            rtt.update(now, latest, ack_delay);
            rtt_sample = Some(latest);
        }
        let (lost_bytes, persistent) = self.detect_lost(now, rtt);
        self.pto_count = 0;
        self.compact();
        let rate = self.delivery.take_sample(rtt.min_rtt());
        let mut outcome = self.ack_outcome(batch.acked_bytes, lost_bytes, rtt_sample, persistent);
        outcome.largest_acked_sent_at = Some(newest.1);
        outcome.rate = rate;
        outcome
    }

    fn begin_batch(&mut self) {
        self.acked_buf.clear();
        self.lost_buf.clear();
        self.batch = Some(AckBatch::default());
    }

    /// The position of packet `pn`: a direct index when the numbers in the ledger
    /// are dense (the common case: one number per packet sent), else a binary search.
    fn index_of(&self, pn: u64) -> Option<usize> {
        let front = self.entries.front()?.packet.pn;
        let guess = usize::try_from(pn.checked_sub(front)?).ok()?;
        if self.entries.get(guess).is_some_and(|e| e.packet.pn == pn) {
            return Some(guess);
        }
        let i = self.entries.partition_point(|e| e.packet.pn < pn);
        (self.entries.get(i)?.packet.pn == pn).then_some(i)
    }

    /// Acknowledges the entry at `i` if it is outstanding, adding it to the batch;
    /// returns its record (read in place in the ledger).
    fn ack_entry(
        &mut self,
        now: Instant,
        i: usize,
        frame_largest: Option<Duration>,
    ) -> Option<&SentPacket> {
        let entry = self.entries.get_mut(i)?;
        if entry.status != Status::Outstanding {
            return None;
        }
        entry.status = Status::Acked;
        // Read in place: only the number is copied, into `acked_buf`.
        let p = &entry.packet;
        let batch = self.batch.get_or_insert_with(AckBatch::default);
        if p.ack_eliciting {
            batch.any_ack_eliciting = true;
            batch.acked_bytes = batch.acked_bytes.saturating_add(p.bytes);
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.bytes);
            self.ack_eliciting_in_flight = self.ack_eliciting_in_flight.saturating_sub(1);
            self.delivery
                .on_packet_acked(now, p.pn, p.time_sent, p.bytes, &p.delivery);
        }
        if batch.newest.is_none_or(|(n, _)| p.pn > n) {
            batch.newest = Some((p.pn, p.time_sent));
        }
        if let Some(delay) = frame_largest
            && batch.sample.is_none_or(|(s, _, _)| p.pn > s)
        {
            batch.sample = Some((p.pn, p.time_sent, delay));
        }
        self.acked_buf.push(p.pn);
        self.entries.get(i).map(|e| &e.packet)
    }

    fn ack_outcome(
        &self,
        acked_bytes: u64,
        lost_bytes: u64,
        rtt_sample: Option<Duration>,
        persistent: bool,
    ) -> AckOutcome<'_> {
        AckOutcome {
            acked: &self.acked_buf,
            lost: &self.lost_buf,
            acked_bytes,
            lost_bytes,
            largest_acked_sent_at: None,
            largest_lost_sent_at: self.lost_buf.last().map(|p| p.time_sent),
            rtt_sample,
            persistent_congestion: persistent,
            rate: None,
            bytes_in_flight: self.bytes_in_flight,
        }
    }

    /// RFC 9002 §6.1 `DetectAndRemoveLostPackets`: fills `lost_buf`, re-arms
    /// `loss_time`, and returns the lost in-flight bytes and whether they
    /// establish persistent congestion.
    fn detect_lost(&mut self, now: Instant, rtt: &RttEstimator) -> (u64, bool) {
        self.loss_time = None;
        let Some(largest_acked) = self.largest_acked else {
            return (0, false);
        };
        let loss_delay = rtt.loss_delay();
        let lost_send_time = now.checked_sub(loss_delay);
        let pc_duration = rtt.persistent_congestion_duration();
        let first_rtt_sample = rtt.first_sample_at();
        let mut pc = PcScan::default();
        let mut lost_bytes = 0u64;
        for entry in &mut self.entries {
            match entry.status {
                Status::Acked => {
                    // An acknowledged packet breaks a persistent-congestion run.
                    pc.run_start = None;
                    continue;
                }
                Status::Lost => continue,
                Status::Outstanding => {}
            }
            let p = entry.packet;
            if p.pn > largest_acked {
                break;
            }
            let by_time = lost_send_time.is_some_and(|t| p.time_sent <= t);
            let by_count = largest_acked >= p.pn.saturating_add(PACKET_THRESHOLD);
            if !(by_time || by_count) {
                // Later packets are newer in both number and time: none of them is lost.
                self.loss_time = p.time_sent.checked_add(loss_delay);
                break;
            }
            entry.status = Status::Lost;
            self.lost_buf.push(p);
            if p.ack_eliciting {
                lost_bytes = lost_bytes.saturating_add(p.bytes);
                self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.bytes);
                self.ack_eliciting_in_flight = self.ack_eliciting_in_flight.saturating_sub(1);
                // RFC 9002 §7.6.2: only packets sent after the first RTT sample count.
                if first_rtt_sample.is_some_and(|s| p.time_sent > s) {
                    match pc.run_start {
                        None => pc.run_start = Some(p.time_sent),
                        Some(start) => {
                            if p.time_sent.saturating_duration_since(start) > pc_duration {
                                pc.found = true;
                            }
                        }
                    }
                }
            }
        }
        self.delivery.on_packets_lost(lost_bytes);
        (lost_bytes, pc.found)
    }

    /// Packets the ledger has room for without allocating (its memory).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Frees the ledger's memory if it holds no packet: a path with nothing in
    /// flight keeps no ring grown by its last burst (an idle session's memory stays
    /// at its resting size). The next packet sent allocates again.
    pub fn release_if_empty(&mut self) {
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            self.entries = VecDeque::new();
        }
    }

    /// Drops acknowledged and lost records from the front. Records behind an
    /// outstanding packet stay until it resolves (they keep persistent-congestion
    /// runs honest); the loss timer bounds how long that takes.
    fn compact(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.status != Status::Outstanding)
        {
            self.entries.pop_front();
        }
    }

    /// When the loss-detection timer should fire (RFC 9002 §6.2
    /// `GetLossTimeAndSpace` / `SetLossDetectionTimer`): the time-threshold loss
    /// time if armed, else the PTO deadline if ack-eliciting packets are in
    /// flight, else `None`.
    #[must_use]
    pub fn loss_detection_timer(&self, rtt: &RttEstimator) -> Option<Instant> {
        if self.loss_time.is_some() {
            return self.loss_time;
        }
        if self.ack_eliciting_in_flight == 0 {
            return None;
        }
        let last = self.time_of_last_ack_eliciting?;
        last.checked_add(rtt.pto(self.pto_count.min(self.max_pto_backoff)))
    }

    /// RFC 9002 §6.2 `OnLossDetectionTimeout`: if the time-threshold loss time
    /// has passed, declares packets lost; otherwise, if the PTO has passed,
    /// counts a PTO and asks for probes. Calling it early does nothing.
    pub fn on_loss_detection_timeout(
        &mut self,
        now: Instant,
        rtt: &RttEstimator,
    ) -> TimeoutOutcome<'_> {
        self.lost_buf.clear();
        let mut outcome_bytes = 0;
        let mut persistent = false;
        let mut send_probe = false;
        if let Some(loss_time) = self.loss_time {
            if now >= loss_time {
                (outcome_bytes, persistent) = self.detect_lost(now, rtt);
                self.compact();
            }
        } else if let Some(deadline) = self.loss_detection_timer(rtt)
            && now >= deadline
        {
            self.pto_count = self.pto_count.saturating_add(1);
            send_probe = true;
        }
        TimeoutOutcome {
            lost: &self.lost_buf,
            lost_bytes: outcome_bytes,
            largest_lost_sent_at: self.lost_buf.last().map(|p| p.time_sent),
            persistent_congestion: persistent,
            send_probe,
        }
    }

    /// Takes every outstanding packet out of the ledger and returns them, without
    /// a congestion signal: the path failed over or was abandoned and the caller
    /// re-sends their content elsewhere. The PTO count is kept (the path is still
    /// backing off); bytes in flight drop to zero.
    pub fn drain_outstanding(&mut self) -> &[SentPacket] {
        self.lost_buf.clear();
        self.batch = None;
        for e in self.entries.drain(..) {
            if e.status == Status::Outstanding {
                self.lost_buf.push(e.packet);
            }
        }
        self.bytes_in_flight = 0;
        self.ack_eliciting_in_flight = 0;
        self.loss_time = None;
        &self.lost_buf
    }

    /// Forgets every outstanding packet without declaring it lost (the space was
    /// discarded, e.g. the path was abandoned). Returns the in-flight bytes removed.
    pub fn discard_all(&mut self) -> u64 {
        let bytes = self.bytes_in_flight;
        self.entries.clear();
        self.batch = None;
        self.bytes_in_flight = 0;
        self.ack_eliciting_in_flight = 0;
        self.loss_time = None;
        self.pto_count = 0;
        bytes
    }
}
