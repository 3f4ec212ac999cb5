//! Per-path loss recovery: which frames each packet in flight carried, so that a
//! lost packet's content is re-sent as fresh data (I3).
//!
//! *When* a packet is acknowledged or lost, and what that does to the window and
//! the pacing rate, is decided by `phantom-congestion`'s
//! [`phantom_congestion::PathRecovery`] (RTT estimator, sent-packet ledger with
//! RFC 9002 §6 loss detection, §6.2 probe timeout and §7.6 persistent congestion,
//! the controller and the pacer: the same code the congestion simulator drives);
//! this module keeps, beside it and under the same per-path packet number, *what*
//! each packet carried.
//!
//! Packets are identified on the wire by `(stream space, sequence)`; loss detection
//! runs per path over an internal, per-path send order (`ppn`), so that two paths
//! with different delays never declare each other's packets lost. One datagram
//! acknowledges each stream space in its own ACK frame: the session feeds every
//! packet those frames acknowledge to [`PathRecovery::on_acked`] and runs loss
//! detection once, in [`PathRecovery::finish_ack`], after the last frame.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[cfg(test)]
use phantom_congestion::AckEvent;
use phantom_congestion::{Config, CongestionController, RttEstimator};
use phantom_wire::StreamId;
/// Most retransmittable frame records one packet carries.
pub(crate) const MAX_RECORDS: usize = 6;

/// A frame whose content must be re-sent (as fresh data, in a new packet) if the
/// packet carrying it is lost (I3: nothing is ever re-sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    None,
    /// `len` fits 16 bits: a datagram is at most 65,527 bytes (`Config`), and the
    /// narrow field keeps a record at 16 bytes (records are copied per packet sent
    /// and acknowledged).
    Stream {
        id: StreamId,
        offset: u64,
        len: u16,
        fin: bool,
    },
    ResetStream {
        id: StreamId,
    },
    StopSending {
        id: StreamId,
    },
    MaxData,
    MaxStreamData {
        id: StreamId,
    },
    MaxStreams {
        kind: u8,
    },
    PathChallenge,
    /// NEW_CONN_ID of our id of this sequence number.
    NewConnId {
        seq: u64,
    },
    /// RETIRE_CONN_ID of the peer's id of this sequence number.
    RetireConnId {
        seq: u64,
    },
}

const _: () = assert!(std::mem::size_of::<Record>() == 16);

/// What one tracked packet carried: its wire identity and the frames to re-send
/// if it is lost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentMeta {
    pub(crate) space: StreamId,
    pub(crate) seq: u64,
    pub(crate) records: [Record; MAX_RECORDS],
}

/// What an assembled ACK or a loss timer did to one path (the controller and the
/// pacer have already been fed).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    /// The controller's ACK event, if anything ack-eliciting was newly acknowledged.
    #[cfg(test)]
    pub(crate) ack: Option<AckEvent>,
    /// Whether anything at all was newly acknowledged.
    pub(crate) acked_any: bool,
    /// Lost in-flight bytes.
    #[cfg(test)]
    pub(crate) lost_bytes: u64,
    /// The probe timer fired: send an ack-eliciting probe on this path.
    pub(crate) send_probe: bool,
}

/// Loss-recovery state of one path: `phantom-congestion`'s [`PathRecovery`]
/// (RTT, ledger, controller, pacer) plus the retransmission records of the
/// packets its ledger tracks.
///
/// [`PathRecovery`]: phantom_congestion::PathRecovery
#[derive(Debug)]
pub(crate) struct PathRecovery {
    cc: phantom_congestion::PathRecovery,
    /// Records indexed by `ppn - base_ppn`; acknowledged or lost packets leave a
    /// `None` hole until the front is trimmed (per-path numbers are dense, so this
    /// is a ring instead of a map: no allocation or rebalancing per packet).
    meta: VecDeque<Option<SentMeta>>,
    /// The per-path number of `meta[0]`.
    base_ppn: u64,
    next_ppn: u64,
    /// Since when ack-eliciting packets have been outstanding with nothing
    /// acknowledged: the later of the last ACK that acknowledged anything sent here
    /// and the sending of an ack-eliciting packet when none was outstanding.
    quiet_since: Option<Instant>,
}

impl PathRecovery {
    /// A path's recovery around `controller`; its probe timer backs off to at
    /// most `pto_base * 2^max_pto_backoff`.
    pub(crate) fn new(
        controller: Box<dyn CongestionController>,
        config: &Config,
        max_pto_backoff: u32,
    ) -> Self {
        let mut cc = phantom_congestion::PathRecovery::with_controller(controller, config);
        cc.set_max_pto_backoff(max_pto_backoff);
        Self {
            cc,
            meta: VecDeque::new(),
            base_ppn: 0,
            next_ppn: 0,
            quiet_since: None,
        }
    }

    #[inline]
    pub(crate) fn bytes_in_flight(&self) -> u64 {
        self.cc.bytes_in_flight()
    }

    #[inline]
    pub(crate) fn ack_eliciting_in_flight(&self) -> u64 {
        self.cc.ack_eliciting_in_flight()
    }

    #[inline]
    pub(crate) fn pto_count(&self) -> u32 {
        self.cc.pto_count()
    }

    /// The path's RTT estimator.
    #[inline]
    pub(crate) fn rtt(&self) -> &RttEstimator {
        self.cc.rtt()
    }

    /// The path's congestion controller.
    #[inline]
    pub(crate) fn controller(&self) -> &dyn CongestionController {
        self.cc.controller()
    }

    /// The congestion window in bytes.
    #[inline]
    pub(crate) fn window(&self) -> u64 {
        self.cc.window()
    }

    /// Whether the congestion window has room for `bytes` more.
    #[inline]
    pub(crate) fn has_room(&self, bytes: u64) -> bool {
        self.cc.has_room(bytes)
    }

    /// The pacer's verdict for `bytes` at `now`: `None` to send now, else when.
    #[inline]
    pub(crate) fn pace(&mut self, now: Instant, bytes: u64) -> Option<Instant> {
        self.cc.pace(now, bytes)
    }

    /// A paced packet of `bytes` left.
    #[inline]
    pub(crate) fn on_paced(&mut self, bytes: u64) {
        self.cc.on_paced(bytes);
    }

    /// The pacing rate in bytes/s, 0 while unpaced.
    #[inline]
    pub(crate) fn pacing_rate(&self) -> u64 {
        self.cc.pacer().rate().unwrap_or(0)
    }

    /// The path failed over: the controller takes it as persistent congestion.
    #[inline]
    pub(crate) fn on_failed_over(&mut self, now: Instant) {
        self.cc.on_failed_over(now);
    }

    /// When the path becomes suspect (docs/PROTOCOL.md §5.6): ack-eliciting
    /// packets outstanding and nothing acknowledged for one PTO base
    /// (`srtt + max(4 * rttvar, 1 ms) + max_ack_delay`), but at least
    /// `2 * srtt + max_ack_delay`; `None` with nothing ack-eliciting in flight.
    pub(crate) fn suspect_at(&self) -> Option<Instant> {
        if self.cc.ack_eliciting_in_flight() == 0 {
            return None;
        }
        let rtt = self.cc.rtt();
        let floor = rtt
            .smoothed()
            .saturating_mul(2)
            .saturating_add(rtt.max_ack_delay());
        let quiet_for = rtt.pto_base().max(floor);
        self.quiet_since.and_then(|t| t.checked_add(quiet_for))
    }

    /// When the loss-detection timer (time threshold, else PTO) fires.
    #[inline]
    pub(crate) fn timer(&self) -> Option<Instant> {
        self.cc.timer()
    }

    /// Records a sent packet; returns its per-path number.
    #[cfg(test)]
    pub(crate) fn on_sent(
        &mut self,
        now: Instant,
        size: u64,
        ack_eliciting: bool,
        meta: SentMeta,
    ) -> u64 {
        self.on_sent_records(
            now,
            size,
            ack_eliciting,
            meta.space,
            meta.seq,
            &meta.records,
        )
    }

    /// Records a sent packet of stream space `space`, sequence `seq`, carrying
    /// `records` (copied once, straight into the ring); returns its per-path number.
    pub(crate) fn on_sent_records(
        &mut self,
        now: Instant,
        size: u64,
        ack_eliciting: bool,
        space: StreamId,
        seq: u64,
        records: &[Record; MAX_RECORDS],
    ) -> u64 {
        let ppn = self.next_ppn;
        if ack_eliciting && self.cc.ack_eliciting_in_flight() == 0 {
            self.quiet_since = Some(now);
        }
        if self
            .cc
            .on_packet_sent(now, ppn, size, ack_eliciting)
            .is_err()
        {
            // Unreachable: `next_ppn` only grows. Tracking nothing is the safe outcome.
            debug_assert!(false, "per-path packet numbers must increase");
            return ppn;
        }
        self.next_ppn += 1;
        if self.meta.is_empty() {
            self.base_ppn = ppn;
        }
        self.meta.push_back(Some(SentMeta {
            space,
            seq,
            records: *records,
        }));
        ppn
    }

    /// Takes packet `ppn`'s records out of the ring and trims the front.
    #[cfg(test)]
    fn take(&mut self, ppn: u64) -> Option<SentMeta> {
        let i = usize::try_from(ppn.checked_sub(self.base_ppn)?).ok()?;
        let m = self.meta.get_mut(i)?.take()?;
        while let Some(None) = self.meta.front() {
            self.meta.pop_front();
            self.base_ppn += 1;
        }
        Some(m)
    }

    /// The sender has nothing to send and room in the window: delivery-rate
    /// samples until the flight now in the air is delivered are application-limited.
    pub(crate) fn on_app_limited(&mut self) {
        self.cc.on_app_limited();
    }

    /// Appends packet `ppn`'s records (up to the first empty slot: they fill a
    /// packet's slots from the front) to `out` and empties its slot in place (no copy
    /// of the whole entry); false if it is not held.
    fn take_records(&mut self, ppn: u64, out: &mut Vec<Record>) -> bool {
        let Some(i) = ppn
            .checked_sub(self.base_ppn)
            .and_then(|d| usize::try_from(d).ok())
        else {
            return false;
        };
        let Some(slot) = self.meta.get_mut(i) else {
            return false;
        };
        let Some(m) = slot.as_ref() else {
            return false;
        };
        out.extend(m.records.iter().copied().take_while(|r| *r != Record::None));
        *slot = None;
        // The front is trimmed once per ACK, by `finish_ack` (indices stay relative
        // to `base_ppn` until then).
        true
    }

    /// One packet of an ACK being assembled was acknowledged; `frame_largest` is
    /// `Some(ack_delay)` if it was the largest its ACK frame named. If it was
    /// outstanding, appends its records to `records` and returns true.
    pub(crate) fn on_acked_records(
        &mut self,
        now: Instant,
        ppn: u64,
        frame_largest: Option<Duration>,
        records: &mut Vec<Record>,
    ) -> bool {
        self.cc.on_packet_acked(now, ppn, frame_largest) && self.take_records(ppn, records)
    }

    /// [`Self::on_acked_records`], returning the whole entry.
    #[cfg(test)]
    pub(crate) fn on_acked(
        &mut self,
        now: Instant,
        ppn: u64,
        frame_largest: Option<Duration>,
    ) -> Option<SentMeta> {
        if !self.cc.on_packet_acked(now, ppn, frame_largest) {
            return None;
        }
        self.take(ppn)
    }

    /// Completes the ACK assembled with [`Self::on_acked`]: RTT sample, loss
    /// detection (lost packets' records appended to `lost`), delivery-rate sample,
    /// the controller and the pacer fed, and the record ring's emptied front
    /// trimmed once for the whole ACK.
    pub(crate) fn finish_ack(&mut self, now: Instant, lost: &mut Vec<SentMeta>) -> Outcome {
        let o = self.cc.finish_ack(now);
        if !o.acked.is_empty() {
            self.quiet_since = Some(now);
        }
        let out = Outcome {
            #[cfg(test)]
            ack: o.ack_event(),
            acked_any: !o.acked.is_empty(),
            #[cfg(test)]
            lost_bytes: o.lost_bytes,
            send_probe: false,
        };
        let lost_pns = o.lost.iter().map(|p| p.pn);
        Self::collect(&mut self.meta, &mut self.base_ppn, lost_pns, lost);
        out
    }

    /// Frees the record ring's memory if it holds nothing (a session with nothing
    /// left to send: an idle session keeps no ring grown by its last burst).
    pub(crate) fn release_if_empty(&mut self) {
        if self.meta.is_empty() && self.meta.capacity() > 0 {
            self.meta = VecDeque::new();
        }
        self.cc.release_if_empty();
    }

    /// Capacity of the record ring and of the congestion ledger's (tests of idle
    /// memory).
    #[cfg(test)]
    pub(crate) fn ring_capacity(&self) -> usize {
        self.meta.capacity() + self.cc.sent().capacity()
    }

    /// The loss-detection timer fired: time-threshold losses (fed to the
    /// controller and the pacer) or a probe timeout.
    pub(crate) fn on_timeout(&mut self, now: Instant, lost: &mut Vec<SentMeta>) -> Outcome {
        let o = self.cc.on_timeout(now);
        let out = Outcome {
            #[cfg(test)]
            ack: None,
            acked_any: false,
            #[cfg(test)]
            lost_bytes: o.lost_bytes,
            send_probe: o.send_probe,
        };
        let lost_pns = o.lost.iter().map(|p| p.pn);
        Self::collect(&mut self.meta, &mut self.base_ppn, lost_pns, lost);
        out
    }

    /// Everything outstanding is re-sent elsewhere (the path is abandoned or failed
    /// over): no congestion signal, the PTO count is kept.
    pub(crate) fn drain_all(&mut self, lost: &mut Vec<SentMeta>) {
        let pns = self.cc.drain_outstanding().iter().map(|p| p.pn);
        Self::collect(&mut self.meta, &mut self.base_ppn, pns, lost);
        // Records of packets the ledger no longer tracks cannot be acknowledged any more.
        self.meta.clear();
        self.base_ppn = self.next_ppn;
    }

    /// Moves the records of `pns` (ascending) from the ring to `out`.
    fn collect(
        meta: &mut VecDeque<Option<SentMeta>>,
        base_ppn: &mut u64,
        pns: impl Iterator<Item = u64>,
        out: &mut Vec<SentMeta>,
    ) {
        for pn in pns {
            let Some(i) = pn
                .checked_sub(*base_ppn)
                .and_then(|d| usize::try_from(d).ok())
            else {
                continue;
            };
            if let Some(m) = meta.get_mut(i).and_then(Option::take) {
                out.push(m);
            }
        }
        while let Some(None) = meta.front() {
            meta.pop_front();
            *base_ppn += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> SentMeta {
        SentMeta {
            space: StreamId::CONTROL,
            seq,
            records: [Record::None; MAX_RECORDS],
        }
    }

    /// A path with a 100 ms initial RTT and a 25 ms peer ACK delay.
    fn recovery() -> PathRecovery {
        let config = Config {
            initial_rtt: Duration::from_millis(100),
            max_ack_delay: Duration::from_millis(25),
            ..Config::default()
        };
        let cc = phantom_congestion::Algorithm::NewReno
            .build(&config)
            .unwrap();
        PathRecovery::new(cc, &config, 6)
    }

    fn seqs(v: &[SentMeta]) -> Vec<u64> {
        v.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn records_follow_the_ledger_through_acks_losses_and_drain() {
        let t = crate::test_instant();
        let mut r = recovery();
        for i in 0..8 {
            assert_eq!(r.on_sent(t, 1000, true, meta(100 + i)), i);
        }
        // One assembled ACK of 5 and 3 (out of order): 0, 1 and 2 are three or
        // more behind 5 and are lost by the packet threshold; 4 waits.
        let later = t + Duration::from_millis(10);
        assert_eq!(
            r.on_acked(later, 5, Some(Duration::ZERO)).map(|m| m.seq),
            Some(105)
        );
        assert_eq!(r.on_acked(later, 3, None).map(|m| m.seq), Some(103));
        assert!(r.on_acked(later, 3, None).is_none(), "acknowledged twice");
        let mut lost = Vec::new();
        let o = r.finish_ack(later, &mut lost);
        assert_eq!(seqs(&lost), vec![100, 101, 102]);
        assert!(o.acked_any && o.ack.is_some());
        assert_eq!(o.lost_bytes, 3000);
        assert_eq!(r.bytes_in_flight(), 3000);
        assert_eq!(r.rtt().latest(), Duration::from_millis(10));
        // Draining returns the rest, once.
        let mut rest = Vec::new();
        r.drain_all(&mut rest);
        assert_eq!(seqs(&rest), vec![104, 106, 107]);
        assert_eq!((r.bytes_in_flight(), r.ack_eliciting_in_flight()), (0, 0));
        assert!(
            r.on_acked(later, 6, None).is_none(),
            "drained packets are gone"
        );
        // Numbering continues after a drain.
        assert_eq!(r.on_sent(later, 1000, true, meta(108)), 8);
        assert_eq!(r.on_acked(later, 8, None).map(|m| m.seq), Some(108));
        let _ = r.finish_ack(later, &mut lost);
        assert!(r.meta.is_empty());
    }

    #[test]
    fn probe_timeout_and_time_threshold_come_from_the_ledger() {
        let t = crate::test_instant();
        let mut r = recovery();
        r.on_sent(t, 1000, true, meta(0));
        r.on_sent(t, 1000, true, meta(1));
        let pto = r.timer().unwrap();
        assert!(pto > t);
        let mut lost = Vec::new();
        let early = r.on_timeout(pto - Duration::from_millis(1), &mut lost);
        assert!(!early.send_probe && lost.is_empty());
        let fired = r.on_timeout(pto, &mut lost);
        assert!(fired.send_probe && lost.is_empty());
        assert_eq!(r.pto_count(), 1);
        // An ACK of 1 alone leaves 0 waiting for 9/8 RTT, then the timer condemns it.
        let at = t + Duration::from_millis(40);
        r.on_acked(at, 1, Some(Duration::ZERO));
        let o = r.finish_ack(at, &mut lost);
        assert!(lost.is_empty() && o.acked_any);
        assert_eq!(r.pto_count(), 0);
        let deadline = r.timer().unwrap();
        let o = r.on_timeout(deadline, &mut lost);
        assert_eq!(seqs(&lost), vec![0]);
        assert_eq!(o.lost_bytes, 1000);
    }
}
