//! Per-path loss recovery bookkeeping (RFC 9002): what is in flight on a path, which
//! packets an ACK covers, which are lost by packet or time threshold, and the probe
//! timeout.
//!
//! Packets are identified on the wire by `(stream space, sequence)`; loss detection
//! runs per path over an internal, per-path send order (`ppn`), so that two paths
//! with different delays never declare each other's packets lost.

use std::collections::BTreeMap;
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
    pub(crate) sent: BTreeMap<u64, SentPacket>,
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
            sent: BTreeMap::new(),
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
        self.sent.insert(ppn, p);
        ppn
    }

    /// Removes an acknowledged packet. Returns it and whether it is the new largest.
    pub(crate) fn on_acked(&mut self, ppn: u64) -> Option<(SentPacket, bool)> {
        let p = self.sent.remove(&ppn)?;
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
        let mut lost = Vec::new();
        for (&ppn, p) in self.sent.range(..largest) {
            if largest - ppn >= PACKET_THRESHOLD || lost_send_time.is_some_and(|t| p.time <= t) {
                lost.push(ppn);
            } else {
                let t = p.time + loss_delay;
                self.loss_time = Some(self.loss_time.map_or(t, |l| l.min(t)));
            }
        }
        for ppn in lost {
            if let Some(p) = self.sent.remove(&ppn) {
                self.forget(&p);
                out.push((ppn, p));
            }
        }
    }

    /// Declares every outstanding packet lost (the path is abandoned or failed over).
    pub(crate) fn drain_all(&mut self, out: &mut Vec<(u64, SentPacket)>) {
        while let Some((ppn, p)) = self.sent.pop_first() {
            self.forget(&p);
            out.push((ppn, p));
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
