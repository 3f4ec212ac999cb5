//! Per-path loss recovery bookkeeping (RFC 9002): what is in flight on a path, which
//! packets an ACK covers, which are lost by packet or time threshold, and the probe
//! timeout.
//!
//! Packets are identified on the wire by `(stream space, sequence)`; loss detection
//! runs per path over an internal, per-path send order (`ppn`), so that two paths
//! with different delays never declare each other's packets lost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Packet reordering threshold (RFC 9002 §6.1.1).
pub(crate) const PACKET_THRESHOLD: u64 = 3;
/// Most retransmittable frame records one packet carries.
pub(crate) const MAX_RECORDS: usize = 6;

/// A frame whose content must be re-sent (as fresh data, in a new packet) if the
/// packet carrying it is lost (I3: nothing is ever re-sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    None,
    Stream {
        id: u32,
        offset: u64,
        len: u32,
        fin: bool,
    },
    ResetStream {
        id: u32,
    },
    StopSending {
        id: u32,
    },
    MaxData,
    MaxStreamData {
        id: u32,
    },
    MaxStreams {
        kind: u8,
    },
    PathChallenge,
}

/// One sent packet.
#[derive(Debug, Clone)]
pub(crate) struct SentPacket {
    pub(crate) space: u32,
    pub(crate) seq: u64,
    pub(crate) time: Instant,
    pub(crate) size: u64,
    pub(crate) ack_eliciting: bool,
    pub(crate) in_flight: bool,
    pub(crate) records: [Record; MAX_RECORDS],
    /// Delivery-rate state at send time (for the BBR-style estimator).
    pub(crate) delivery: phantom_congestion::DeliveryState,
}

/// Loss-recovery state of one path.
#[derive(Debug)]
pub(crate) struct PathRecovery {
    next_ppn: u64,
    /// Outstanding packets indexed by `ppn - base_ppn`; acknowledged or lost ones
    /// leave a `None` hole until the front is trimmed (per-path numbers are dense,
    /// so this is a ring instead of a map: no allocation or rebalancing per packet).
    sent: VecDeque<Option<SentPacket>>,
    /// The per-path number of `sent[0]`.
    base_ppn: u64,
    largest_acked: Option<u64>,
    pub(crate) loss_time: Option<Instant>,
    pub(crate) last_ack_eliciting: Option<Instant>,
    pub(crate) pto_count: u32,
    pub(crate) bytes_in_flight: u64,
    pub(crate) ack_eliciting_in_flight: u64,
}

impl PathRecovery {
    pub(crate) fn new() -> Self {
        Self {
            next_ppn: 0,
            sent: VecDeque::new(),
            base_ppn: 0,
            largest_acked: None,
            loss_time: None,
            last_ack_eliciting: None,
            pto_count: 0,
            bytes_in_flight: 0,
            ack_eliciting_in_flight: 0,
        }
    }

    /// Records a sent packet; returns its per-path number.
    pub(crate) fn on_sent(&mut self, p: SentPacket) -> u64 {
        let ppn = self.next_ppn;
        self.next_ppn += 1;
        if p.in_flight {
            self.bytes_in_flight += p.size;
        }
        if p.ack_eliciting {
            self.ack_eliciting_in_flight += 1;
            self.last_ack_eliciting = Some(p.time);
        }
        if self.sent.is_empty() {
            self.base_ppn = ppn;
        }
        self.sent.push_back(Some(p));
        ppn
    }

    /// Takes the packet `ppn` out of the ring (leaving a hole) and trims the front.
    fn take(&mut self, ppn: u64) -> Option<SentPacket> {
        let i = usize::try_from(ppn.checked_sub(self.base_ppn)?).ok()?;
        let p = self.sent.get_mut(i)?.take()?;
        self.trim_front();
        Some(p)
    }

    fn trim_front(&mut self) {
        while let Some(None) = self.sent.front() {
            self.sent.pop_front();
            self.base_ppn += 1;
        }
    }

    /// Removes an acknowledged packet. Returns it and whether it is the new largest.
    pub(crate) fn on_acked(&mut self, ppn: u64) -> Option<(SentPacket, bool)> {
        let p = self.take(ppn)?;
        self.forget(&p);
        let newest = self.largest_acked.is_none_or(|l| ppn > l);
        if newest {
            self.largest_acked = Some(ppn);
        }
        Some((p, newest))
    }

    fn forget(&mut self, p: &SentPacket) {
        if p.in_flight {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.size);
        }
        if p.ack_eliciting {
            self.ack_eliciting_in_flight = self.ack_eliciting_in_flight.saturating_sub(1);
        }
    }

    /// Declares lost every packet that the packet or time threshold condemns;
    /// sets `loss_time` for the earliest packet not yet condemned.
    pub(crate) fn detect_lost(
        &mut self,
        now: Instant,
        loss_delay: Duration,
        out: &mut Vec<(u64, SentPacket)>,
    ) {
        self.loss_time = None;
        let Some(largest) = self.largest_acked else {
            return;
        };
        let lost_send_time = now.checked_sub(loss_delay);
        let below = usize::try_from(largest.saturating_sub(self.base_ppn))
            .unwrap_or(usize::MAX)
            .min(self.sent.len());
        let base = self.base_ppn;
        let mut in_flight_lost = 0u64;
        let mut eliciting_lost = 0u64;
        let mut loss_time = None;
        for (i, slot) in self.sent.iter_mut().take(below).enumerate() {
            let ppn = base + i as u64;
            let Some(p) = slot.as_ref() else { continue };
            if largest - ppn >= PACKET_THRESHOLD || lost_send_time.is_some_and(|t| p.time <= t) {
                if let Some(p) = slot.take() {
                    if p.in_flight {
                        in_flight_lost += p.size;
                    }
                    if p.ack_eliciting {
                        eliciting_lost += 1;
                    }
                    out.push((ppn, p));
                }
            } else {
                let t = p.time + loss_delay;
                loss_time = Some(loss_time.map_or(t, |l: Instant| l.min(t)));
            }
        }
        self.loss_time = loss_time;
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(in_flight_lost);
        self.ack_eliciting_in_flight = self.ack_eliciting_in_flight.saturating_sub(eliciting_lost);
        self.trim_front();
    }

    /// Declares every outstanding packet lost (the path is abandoned or failed over).
    pub(crate) fn drain_all(&mut self, out: &mut Vec<(u64, SentPacket)>) {
        while let Some(slot) = self.sent.pop_front() {
            let ppn = self.base_ppn;
            self.base_ppn += 1;
            if let Some(p) = slot {
                self.forget(&p);
                out.push((ppn, p));
            }
        }
        self.loss_time = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(t: Instant, seq: u64) -> SentPacket {
        SentPacket {
            space: 0,
            seq,
            time: t,
            size: 1000,
            ack_eliciting: true,
            in_flight: true,
            records: [Record::None; MAX_RECORDS],
            delivery: phantom_congestion::DeliveryRateEstimator::default()
                .on_packet_sent(t, 0, 1000),
        }
    }

    #[test]
    fn ring_handles_out_of_order_acks_and_drain() {
        let t = crate::test_instant();
        let mut r = PathRecovery::new();
        for i in 0..8 {
            assert_eq!(r.on_sent(pkt(t, i)), i);
        }
        // Acknowledge out of order; holes stay until the front is acknowledged.
        assert!(r.on_acked(3).unwrap().1);
        assert!(!r.on_acked(1).unwrap().1);
        assert!(r.on_acked(3).is_none(), "acknowledged twice");
        assert!(r.on_acked(0).is_some());
        assert_eq!(r.base_ppn, 2);
        assert_eq!(r.bytes_in_flight, 5000);
        assert!(r.on_acked(99).is_none());
        let mut lost = Vec::new();
        r.drain_all(&mut lost);
        let ppns: Vec<u64> = lost.iter().map(|(p, _)| *p).collect();
        assert_eq!(ppns, vec![2, 4, 5, 6, 7]);
        assert_eq!((r.bytes_in_flight, r.ack_eliciting_in_flight), (0, 0));
        // Numbering continues after a drain.
        assert_eq!(r.on_sent(pkt(t, 8)), 8);
        assert!(r.on_acked(8).is_some());
        assert!(r.sent.is_empty());
    }

    #[test]
    fn packet_threshold_declares_loss() {
        let t = crate::test_instant();
        let mut r = PathRecovery::new();
        for i in 0..5 {
            r.on_sent(pkt(t, i));
        }
        assert_eq!(r.bytes_in_flight, 5000);
        r.on_acked(4).unwrap();
        let mut lost = Vec::new();
        r.detect_lost(t, Duration::from_secs(1), &mut lost);
        let ppns: Vec<u64> = lost.iter().map(|(p, _)| *p).collect();
        assert_eq!(ppns, vec![0, 1]);
        assert!(r.loss_time.is_some(), "2 and 3 wait for the time threshold");
        let mut lost = Vec::new();
        r.detect_lost(
            t + Duration::from_secs(1),
            Duration::from_secs(1),
            &mut lost,
        );
        assert_eq!(lost.len(), 2);
        assert_eq!(r.bytes_in_flight, 0);
    }
}
