//! Acknowledgements and losses: ACK frames resolved against the sent-packet index,
//! each path's recovery ledger finished once per packet, lost packets' content
//! re-queued, and probe timeouts (including failover to another path).

use std::time::{Duration, Instant};

use phantom_wire::PathId;
use phantom_wire::frame::Ack;

use super::Session;
use crate::error::Error;
use crate::recovery::{Record, SentMeta};

/// Buffers reused by every ACK and loss.
#[derive(Debug, Default)]
pub(super) struct AckScratch {
    lost: Vec<SentMeta>,
    /// `(path, ppn, seq)` of the packets one ACK frame newly acknowledged.
    newly: Vec<(PathId, u64, u64)>,
    /// Records of the packets one ACK frame newly acknowledged.
    records: Vec<Record>,
    /// Paths the ACK frames of the packet being processed touched.
    touched: Vec<PathId>,
    /// Paths failed over so far (by either rule of docs/PROTOCOL.md §5.6).
    pub(super) failovers: u64,
}

impl AckScratch {
    /// A packet's frames are about to be processed.
    pub(super) fn begin_packet(&mut self) {
        self.touched.clear();
    }

    /// True if an ACK frame of the packet touched a path.
    pub(super) fn touched_any(&self) -> bool {
        !self.touched.is_empty()
    }

    /// The (cleared) lost-packet buffer, to hand back with [`Self::put_lost`].
    pub(super) fn take_lost(&mut self) -> Vec<SentMeta> {
        let mut lost = std::mem::take(&mut self.lost);
        lost.clear();
        lost
    }

    pub(super) fn put_lost(&mut self, lost: Vec<SentMeta>) {
        self.lost = lost;
    }
}

impl Session {
    pub(super) fn on_ack(&mut self, now: Instant, ack: &Ack<'_>) -> Result<(), Error> {
        let space = ack.stream_id;
        if !self.spaces.check_ack(space, ack.largest())? {
            return Ok(());
        }
        self.spaces.note_acked(space, ack.largest());
        let ack_delay = Duration::from_micros(ack.ack_delay_us.min(1 << 40));
        let mut newly = std::mem::take(&mut self.ack.newly);
        newly.clear();
        let keep_spare = !self.streams.nothing_to_send();
        self.spaces
            .take_acked(space, ack.ranges(), &mut newly, keep_spare);
        if newly.is_empty() {
            self.ack.newly = newly;
            return Ok(());
        }
        let largest_seq = ack.largest();
        // Each path's ledger assembles the ACK over every ACK frame of the packet;
        // `on_acks_done` finishes it once all are applied.
        let mut touched = std::mem::take(&mut self.ack.touched);
        let mut records = std::mem::take(&mut self.ack.records);
        records.clear();
        for &(path_id, ppn, seq) in &newly {
            let Some(path) = self.paths.get_mut(path_id) else {
                continue;
            };
            let frame_largest = (seq == largest_seq).then_some(ack_delay);
            if !path.on_acked_records(now, ppn, frame_largest, &mut records) {
                continue;
            }
            if !touched.contains(&path_id) {
                touched.push(path_id);
            }
        }
        self.ack.newly = newly;
        self.ack.touched = touched;
        // In acknowledgement order, after the ledgers (which the records' stream
        // bookkeeping does not touch).
        self.streams.on_records_acked(&records, &mut self.events);
        self.ack.records = records;
        Ok(())
    }

    /// Finishes the ACK on every path the ACK frames of one packet touched: RTT
    /// sample, loss detection and the congestion controller. Called once per
    /// packet, after *all* its frames: a packet acknowledges each stream space in
    /// its own ACK frame, and detecting losses after the first frame would condemn
    /// packets of the spaces whose ACK frames follow (spurious losses with many
    /// busy streams).
    pub(super) fn on_acks_done(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.ack.touched);
        let mut lost = std::mem::take(&mut self.ack.lost);
        // Nothing queued to send: rings emptied by this ACK give their memory back.
        let idle = self.streams.nothing_to_send();
        for &path_id in &touched {
            lost.clear();
            let Some(path) = self.paths.get_mut(path_id) else {
                continue;
            };
            // The path's recovery fed its controller and pacer; the lost content
            // goes back to the senders' queues.
            path.finish_ack(now, &mut lost, idle);
            self.handle_lost(path_id, &lost);
        }
        touched.clear();
        self.ack.touched = touched;
        self.ack.lost = lost;
    }

    /// Lost packets of `path_id`: counted, dropped from the sent index, and their
    /// content re-queued.
    pub(super) fn handle_lost(&mut self, path_id: PathId, lost: &[SentMeta]) {
        let _span = (!lost.is_empty()).then(|| {
            tracing::trace_span!("phantom.session.loss", side = ?self.side, path = path_id.0)
                .entered()
        });
        if !lost.is_empty() {
            tracing::trace!(target: "phantom::session", path = path_id.0, count = lost.len(), "packets lost");
        }
        for pkt in lost {
            self.stats.packets_lost += 1;
            let keep_spare = !self.streams.nothing_to_send();
            self.spaces.on_lost(pkt.space, pkt.seq, keep_spare);
            self.stats.stream_bytes_lost_already_acked +=
                self.streams.on_records_lost(&pkt.records);
            self.conn_ids.on_records_lost(&pkt.records);
        }
    }

    pub(super) fn on_loss_timer(&mut self, now: Instant) {
        let ids: Vec<PathId> = self.paths.ids().collect();
        let mut lost = std::mem::take(&mut self.ack.lost);
        for id in ids {
            lost.clear();
            let suspect = self.paths.get(id).and_then(super::paths::Path::suspect_at);
            if suspect.is_some_and(|t| t <= now) && self.paths.others_healthy(id) {
                self.on_path_suspect(now, id, &mut lost);
                continue;
            }
            let Some(path) = self.paths.get_mut(id) else {
                continue;
            };
            if path.loss_timer().is_none_or(|t| t > now) {
                continue;
            }
            let outcome = path.on_loss_timeout(now, &mut lost);
            if !outcome.send_probe {
                // Time-threshold losses.
                self.handle_lost(id, &lost);
                continue;
            }
            self.on_probe_timeout(now, id, &mut lost);
        }
        self.ack.lost = lost;
    }

    /// Path `id` has had ack-eliciting packets outstanding with nothing
    /// acknowledged for `max(pto_base, 2 * srtt + max_ack_delay)` while another
    /// path is healthy: it is failed over at once (its in-flight data re-sent on
    /// the healthy paths) and probed with PINGs until an acknowledgement puts it
    /// back (§5.6).
    fn on_path_suspect(&mut self, now: Instant, id: PathId, lost: &mut Vec<SentMeta>) {
        let Some(path) = self.paths.get_mut(id) else {
            return;
        };
        path.fail_over(now, lost);
        path.arm_probe();
        self.send.arm_probes();
        self.ack.failovers += 1;
        self.handle_lost(id, lost);
        tracing::info!(target: "phantom::session", path = id.0, "suspect path failed over");
        if self.paths.primary() == id {
            self.paths
                .choose_new_primary(&mut self.stats, &mut self.events);
        }
    }

    /// A PTO fired on path `id`: arm a probe, and fail over to the other paths once
    /// the path has missed `failover_ptos` of them.
    fn on_probe_timeout(&mut self, now: Instant, id: PathId, lost: &mut Vec<SentMeta>) {
        self.stats.ptos += 1;
        let action = self.fallback.on_udp_pto(now);
        self.on_fallback_action(action);
        let failover_ptos = self.cfg.failover_ptos;
        let others_healthy = self.paths.others_healthy(id);
        let Some(path) = self.paths.get_mut(id) else {
            return;
        };
        let pto_count = path.arm_probe();
        self.send.arm_probes();
        tracing::debug!(target: "phantom::session", path = id.0, pto_count, "probe timeout");
        if path.is_degraded() {
            // A failed-over path keeps being probed with PINGs only; anything still
            // in flight on it is moved to the healthy paths.
            path.drain_all(lost);
            self.handle_lost(id, lost);
        } else if pto_count >= failover_ptos && others_healthy {
            // Fail over: move this path's in-flight data to the other paths.
            path.fail_over(now, lost);
            self.ack.failovers += 1;
            self.handle_lost(id, lost);
            tracing::info!(target: "phantom::session", path = id.0, "path failed over");
            if self.paths.primary() == id {
                self.paths
                    .choose_new_primary(&mut self.stats, &mut self.events);
            }
        } else if pto_count >= failover_ptos {
            // The last healthy path is failing too: try the failed ones again
            // (one PING each; an acknowledgement puts a path back in service).
            // Their probes back off with this path's PTO.
            if self.paths.reprobe_failed(id) {
                self.send.arm_probes();
            }
        }
    }
}
