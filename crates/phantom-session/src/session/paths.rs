//! Network paths: each path's recovery ledger, RTT, congestion controller and
//! pacer, the validation registry (`phantom-guard`), the primary path, and the
//! choices made over all paths (control path, new primary, scheduler views).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use phantom_guard::{PathConfig, PathEvent, PathRegistry, PathState};
use phantom_wire::frame::{PathChallenge, PathResponse};
use phantom_wire::{Encode, Frame, PathId, Writer};
use rand::rngs::ChaCha20Rng;

use super::{Built, Session};
use crate::cc::CongestionSnapshot;
use crate::error::Error;
use crate::recovery::{Outcome, PathRecovery, Record, SentMeta};
use crate::scheduler::PathView;
use crate::types::{CloseReason, Config, Event, PathSnapshot, State, Stats};
use crate::vecmap::VecMap;

/// Most PATH_RESPONSEs queued per path.
const MAX_QUEUED_RESPONSES: usize = 4;
/// Upper bound of the PTO back-off exponent.
const MAX_PTO_BACKOFF: u32 = 6;

/// How a path came to be (PROTOCOL §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PathOrigin {
    /// The peer opened it and no authenticated packet on it was processed yet.
    Unknown,
    /// Opened deliberately as an additional path: by our own `probe_path`, or, at a
    /// server, by the client with a probing-only first packet.
    Additional,
    /// The peer's ordinary packets simply started arriving from a new address (NAT
    /// rebinding, a moved socket), or a server moved to our new address. Only such
    /// a path moves the session there while the old primary still works.
    Moved,
}

/// One network path as seen from this end.
#[derive(Debug)]
pub(super) struct Path {
    local: SocketAddr,
    remote: SocketAddr,
    /// RTT, ledger, controller and pacer, with the records of packets in flight.
    recovery: PathRecovery,
    /// PATH_RESPONSE tokens owed on this path.
    responses: VecDeque<[u8; 32]>,
    /// A PATH_CHALLENGE token to send on this path.
    challenge: Option<[u8; 32]>,
    /// PTO probes to send.
    probes: u8,
    /// Failed over: only probed until an acknowledgement puts it back in service.
    degraded: bool,
    created: Instant,
    last_rx: Option<Instant>,
    /// When an ack-eliciting packet last left on this path.
    last_tx_eliciting: Option<Instant>,
    /// The peer probed this (failed) path: the next acknowledgement goes here.
    answer_probe: bool,
    bytes_sent: u64,
    origin: PathOrigin,
}

impl Path {
    fn new(
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        cfg: &Config,
    ) -> Result<Self, Error> {
        let mss = cfg.max_datagram_size as u64;
        let cc_cfg = phantom_congestion::Config {
            max_datagram_size: mss,
            initial_rtt: cfg.initial_rtt,
            max_ack_delay: cfg.max_ack_delay,
            ..phantom_congestion::Config::default()
        };
        let cc = cfg
            .congestion
            .build(&cc_cfg)
            .map_err(|_| Error::Path("invalid congestion configuration"))?;
        Ok(Self {
            local,
            remote,
            recovery: PathRecovery::new(cc, &cc_cfg, MAX_PTO_BACKOFF),
            responses: VecDeque::new(),
            challenge: None,
            probes: 0,
            degraded: false,
            created: now,
            last_rx: None,
            last_tx_eliciting: None,
            answer_probe: false,
            origin: PathOrigin::Unknown,
            bytes_sent: 0,
        })
    }

    fn bandwidth(&self) -> u64 {
        self.recovery.controller().snapshot().bandwidth.unwrap_or(0)
    }

    fn snapshot(&self) -> CongestionSnapshot {
        let s = self.recovery.controller().snapshot();
        CongestionSnapshot {
            cwnd: s.cwnd,
            in_flight: self.recovery.bytes_in_flight(),
            ssthresh: s.ssthresh.unwrap_or(u64::MAX),
            pacing_rate: self.recovery.pacing_rate(),
            bandwidth: s.bandwidth.unwrap_or(0),
        }
    }

    /// Its local and remote addresses.
    pub(super) fn addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.local, self.remote)
    }

    /// How the path came to be.
    pub(super) fn origin(&self) -> PathOrigin {
        self.origin
    }

    pub(super) fn set_origin(&mut self, origin: PathOrigin) {
        self.origin = origin;
    }

    /// An authenticated packet arrived on it.
    pub(super) fn on_received(&mut self, now: Instant) {
        self.last_rx = Some(now);
    }

    /// The peer sent only PINGs here: if the path counts as failed, the next
    /// acknowledgement goes here (to show it working again).
    pub(super) fn on_peer_ping(&mut self) {
        if self.degraded {
            self.answer_probe = true;
        }
    }

    /// Queues a PATH_RESPONSE (bounded).
    pub(super) fn queue_response(&mut self, token: [u8; 32]) {
        if self.responses.len() < MAX_QUEUED_RESPONSES {
            self.responses.push_back(token);
        }
    }

    /// Writes the owed PATH_RESPONSEs, then the PATH_CHALLENGE.
    pub(super) fn write_validation(&mut self, w: &mut Writer<'_>, built: &mut Built) {
        while let Some(token) = self.responses.front().copied() {
            let f = Frame::PathResponse(PathResponse { token });
            if f.encoded_len() > w.remaining() || f.encode(w).is_err() {
                break;
            }
            self.responses.pop_front();
        }
        if let Some(token) = self.challenge {
            let f = Frame::PathChallenge(PathChallenge { token });
            if f.encoded_len() <= w.remaining() && f.encode(w).is_ok() {
                self.challenge = None;
                built.record(Record::PathChallenge);
            }
        }
    }

    /// Failed over: only probed until an acknowledgement puts it back in service.
    pub(super) fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// Ack-eliciting packets in flight.
    pub(super) fn ack_eliciting_in_flight(&self) -> u64 {
        self.recovery.ack_eliciting_in_flight()
    }

    /// True if another packet of `size` bytes fits its congestion window.
    pub(super) fn has_room(&self, size: u64) -> bool {
        self.recovery.has_room(size)
    }

    /// When the pacer lets a packet of `size` bytes go, if not now.
    pub(super) fn pacing_delay(&mut self, now: Instant, size: u64) -> Option<Instant> {
        self.recovery.pace(now, size)
    }

    /// Nothing to send: with room for another packet the path is application-limited.
    pub(super) fn mark_app_limited(&mut self, mss: u64) {
        if self.has_room(mss) {
            self.recovery.on_app_limited();
        }
    }

    /// True if it has a PTO probe to send.
    pub(super) fn has_probe(&self) -> bool {
        self.probes > 0
    }

    /// A PTO probe was sent.
    pub(super) fn probe_sent(&mut self) {
        self.probes = self.probes.saturating_sub(1);
    }

    /// True if nothing ack-eliciting left on it for a smoothed RTT (at least
    /// `min_every`).
    pub(super) fn eliciting_stale(&self, now: Instant, min_every: Duration) -> bool {
        let every = self.recovery.rtt().smoothed().max(min_every);
        self.last_tx_eliciting
            .is_none_or(|t| now.saturating_duration_since(t) >= every)
    }

    /// Its loss-detection deadline.
    pub(super) fn loss_timer(&self) -> Option<Instant> {
        self.recovery.timer()
    }

    /// When it becomes suspect (§5.6); `None` once failed over.
    pub(super) fn suspect_at(&self) -> Option<Instant> {
        if self.degraded {
            return None;
        }
        self.recovery.suspect_at()
    }

    /// Its PTO base.
    pub(super) fn pto_base(&self) -> Duration {
        self.recovery.rtt().pto_base()
    }

    /// Everything in flight, declared lost, into `lost`.
    pub(super) fn drain_all(&mut self, lost: &mut Vec<SentMeta>) {
        self.recovery.drain_all(lost);
    }

    /// Ledger part of an ACK frame: see `PathRecovery::on_acked_records`.
    pub(super) fn on_acked_records(
        &mut self,
        now: Instant,
        ppn: u64,
        frame_largest: Option<Duration>,
        records: &mut Vec<Record>,
    ) -> bool {
        self.recovery
            .on_acked_records(now, ppn, frame_largest, records)
    }

    /// Finishes the ACK of one packet: RTT sample and loss detection; an
    /// acknowledgement puts a failed path back in service. `release`: an emptied
    /// record ring gives its memory back.
    pub(super) fn finish_ack(
        &mut self,
        now: Instant,
        lost: &mut Vec<SentMeta>,
        release: bool,
    ) -> Outcome {
        let outcome = self.recovery.finish_ack(now, lost);
        if release {
            self.recovery.release_if_empty();
        }
        if outcome.acked_any {
            self.degraded = false;
        }
        outcome
    }

    /// The loss timer fired: time-threshold losses or a probe.
    pub(super) fn on_loss_timeout(&mut self, now: Instant, lost: &mut Vec<SentMeta>) -> Outcome {
        self.recovery.on_timeout(now, lost)
    }

    /// Arms a PTO probe; returns the PTO count.
    pub(super) fn arm_probe(&mut self) -> u32 {
        self.probes = 1;
        self.recovery.pto_count()
    }

    /// Fails the path over: a congestion event, and everything in flight lost.
    pub(super) fn fail_over(&mut self, now: Instant, lost: &mut Vec<SentMeta>) {
        self.degraded = true;
        self.recovery.on_failed_over(now);
        self.recovery.drain_all(lost);
    }

    /// Everything in flight is presumed lost (the session moved away from it).
    pub(super) fn abandon_flight(&mut self, lost: &mut Vec<SentMeta>) {
        self.recovery.drain_all(lost);
        self.degraded = true;
    }

    /// A sealed packet of `len` bytes left on this path: pacer, counters, and for a
    /// `track`ed packet the recovery ledger and the controller. Returns the path
    /// packet number of a tracked packet.
    pub(super) fn on_packet_sent(
        &mut self,
        now: Instant,
        built: &Built,
        seq: u64,
        len: u64,
        track: bool,
    ) -> Option<u64> {
        if built.has_data {
            self.recovery.on_paced(len);
        }
        self.bytes_sent += len;
        self.answer_probe = false;
        if built.ack_eliciting {
            self.last_tx_eliciting = Some(now);
        }
        if !(track && (built.ack_eliciting || built.nrec > 0)) {
            return None;
        }
        let ppn = self.recovery.on_sent_records(
            now,
            len,
            built.ack_eliciting,
            built.space,
            seq,
            &built.records,
        );
        Some(ppn)
    }
}

/// Every path of the session and their validation state.
///
/// # Invariants
/// * The table holds at most `max_paths` paths (the registry's bound): opening one
///   more first removes the least useful path that is not the primary (see
///   [`Paths::evictable`]), so a session follows any number of address changes.
/// * I3: path ids are recycled. An id is free once its path was removed from both
///   the table and the registry; ids are handed out round-robin from a cursor, so a
///   freed id is the last one reused. Reuse cannot repeat a nonce: the sequence
///   counter of each space is shared by all paths and only grows within an epoch,
///   so (path, stream, sequence) is new even when the path id is not (PROTOCOL §5.5).
pub(super) struct Paths {
    map: VecMap<PathId, Path>,
    registry: PathRegistry,
    primary: PathId,
    /// Where the search for a free path id starts.
    next_id: u8,
    /// Path challenges come from here (I9: seeded by the caller).
    rng: ChaCha20Rng,
}

impl Paths {
    /// The handshake's path, validated, as path 0.
    pub(super) fn new(
        cfg: &Config,
        now: Instant,
        remote: SocketAddr,
        rng: ChaCha20Rng,
    ) -> Result<Self, Error> {
        let mut registry = PathRegistry::new(PathConfig {
            max_paths: cfg.path.max_paths,
            challenge_timeout: cfg.path.challenge_timeout,
            max_retransmits: cfg.path.max_retransmits,
            idle_timeout: cfg.path.idle_timeout,
        })
        .map_err(|_| Error::Path("invalid path configuration"))?;
        registry
            .insert_validated(PathId(0), remote, now)
            .map_err(|_| Error::Path("initial path"))?;
        Ok(Self {
            map: VecMap::new(),
            registry,
            primary: PathId(0),
            next_id: 1,
            rng,
        })
    }

    /// Adds the handshake's path (after [`Self::new`]; replay window checks first).
    pub(super) fn insert_initial(
        &mut self,
        cfg: &Config,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(), Error> {
        self.map
            .insert(PathId(0), Path::new(local, remote, now, cfg)?);
        Ok(())
    }

    /// A new path from `local` to `remote`, registered and with a challenge to send.
    pub(super) fn open(
        &mut self,
        cfg: &Config,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<PathId, Error> {
        let id = self.free_id().ok_or(Error::Path("too many paths"))?;
        self.registry
            .insert(id, remote, now)
            .map_err(|_| Error::Path("too many paths"))?;
        let challenge = self
            .registry
            .issue_challenge(id, now, &mut self.rng)
            .map_err(|_| Error::Path("challenge"))?;
        self.next_id = id.0.wrapping_add(1);
        let mut p = Path::new(local, remote, now, cfg)?;
        p.challenge = Some(*challenge.as_bytes());
        self.map.insert(id, p);
        tracing::debug!(target: "phantom::session", path = id.0, %remote, "validating new path");
        Ok(id)
    }

    /// The first id from the cursor on that neither the table nor the registry
    /// holds (I3: recycled ids; see the type's invariants).
    fn free_id(&self) -> Option<PathId> {
        (0..=u8::MAX)
            .map(|k| PathId(self.next_id.wrapping_add(k)))
            .find(|&id| !self.map.contains_key(&id) && self.registry.state(id).is_none())
    }

    /// The path to remove to make room for a new one: never the primary nor a
    /// healthy validated path. First a path the registry no longer holds or holds
    /// as failed, then a failed-over or abandoned one (the session moved away from
    /// it), then one still being validated; the least recently heard from first.
    pub(super) fn evictable(&self) -> Option<PathId> {
        self.iter()
            .filter(|&(id, _)| id != self.primary)
            .filter_map(|(id, p)| {
                let rank = match self.registry.state(id) {
                    Some(PathState::Validated) if p.degraded => 1u8,
                    Some(PathState::Validated) => return None,
                    Some(PathState::Validating | PathState::Unvalidated) => 2,
                    _ => 0,
                };
                Some((rank, p.last_rx.unwrap_or(p.created), id))
            })
            .min()
            .map(|(_, _, id)| id)
    }

    /// Paths the registry evicted on its own (it makes room by forgetting failed
    /// paths): they can never be validated again.
    pub(super) fn orphaned(&self) -> Option<PathId> {
        self.ids().find(|&id| self.registry.state(id).is_none())
    }

    /// Most paths the table holds.
    pub(super) fn capacity(&self) -> usize {
        self.registry.config().max_paths
    }

    /// Removes a path from the map and the registry.
    pub(super) fn remove(&mut self, id: PathId) -> Option<Path> {
        let p = self.map.remove(&id);
        self.registry.remove(id);
        p
    }

    pub(super) fn get(&self, id: PathId) -> Option<&Path> {
        self.map.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: PathId) -> Option<&mut Path> {
        self.map.get_mut(&id)
    }

    pub(super) fn contains(&self, id: PathId) -> bool {
        self.map.contains_key(&id)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (PathId, &Path)> {
        self.map.iter().map(|(&id, p)| (id, p))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (PathId, &mut Path)> {
        self.map.iter_mut().map(|(&id, p)| (id, p))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Path> {
        self.map.values()
    }

    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut Path> {
        self.map.values_mut()
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = PathId> {
        self.map.keys().copied()
    }

    /// The path from `local` to `remote`.
    pub(super) fn find(&self, local: SocketAddr, remote: SocketAddr) -> Option<PathId> {
        self.iter()
            .find(|(_, p)| p.local == local && p.remote == remote)
            .map(|(id, _)| id)
    }

    /// The path used for control traffic.
    pub(super) fn primary(&self) -> PathId {
        self.primary
    }

    pub(super) fn set_primary(&mut self, id: PathId) {
        self.primary = id;
    }

    /// The validation registry.
    pub(super) fn registry(&self) -> &PathRegistry {
        &self.registry
    }

    /// The validation registry, to feed it.
    pub(super) fn registry_mut(&mut self) -> &mut PathRegistry {
        &mut self.registry
    }

    pub(super) fn is_validated(&self, id: PathId) -> bool {
        self.registry.is_validated(id)
    }

    /// True while some path is still being validated.
    pub(super) fn any_validating(&self) -> bool {
        self.map.keys().any(|&id| {
            matches!(
                self.registry.state(id),
                Some(PathState::Validating | PathState::Unvalidated)
            )
        })
    }

    /// Snapshots of every path.
    pub(super) fn snapshots(&self) -> Vec<PathSnapshot> {
        self.iter()
            .map(|(id, p)| PathSnapshot {
                id,
                local: p.local,
                remote: p.remote,
                validated: self.registry.is_validated(id),
                primary: id == self.primary,
                rtt: p.recovery.rtt().smoothed(),
                pto: p.pto_base(),
                congestion: p.snapshot(),
                bytes_sent: p.bytes_sent,
                bytes_received: self.registry.info(id).map_or(0, |i| i.bytes_received),
            })
            .collect()
    }

    /// The primary path's RTT, window and bandwidth into `s`.
    pub(super) fn primary_stats(&self, s: &mut Stats) {
        if let Some(p) = self.map.get(&self.primary) {
            s.rtt = p.recovery.rtt().smoothed();
            s.cwnd = p.recovery.window();
            s.bandwidth = p.bandwidth();
        }
    }

    /// The scheduler's view of every validated path.
    pub(super) fn views(&self, out: &mut Vec<PathView>) {
        out.clear();
        out.extend(
            self.iter()
                .filter(|(id, _)| self.registry.is_validated(*id))
                .map(|(id, p)| PathView {
                    id,
                    srtt: p.recovery.rtt().smoothed(),
                    cwnd: p.recovery.window(),
                    in_flight: p.recovery.bytes_in_flight(),
                    healthy: !p.degraded,
                }),
        );
    }

    /// Where control-only packets (ACKs, credit) go: a failed path the peer just
    /// probed, else the healthy validated path that most recently received an
    /// authenticated packet, else such a failed path, else the primary.
    pub(super) fn control_path(&self) -> Option<PathId> {
        // The healthy validated path the peer's latest packet came in on; if every
        // validated path has failed, the failed one it came in on (the peer is using
        // it, so it may work again: an acknowledgement there puts it back in service).
        let recent = |healthy_only: bool| {
            self.iter()
                .filter(|(id, p)| (!healthy_only || !p.degraded) && self.registry.is_validated(*id))
                .filter_map(|(id, p)| p.last_rx.map(|t| (t, id)))
                .max()
                .map(|(_, id)| id)
        };
        let probed = self
            .iter()
            .find(|(id, p)| p.answer_probe && self.registry.is_validated(*id))
            .map(|(id, _)| id);
        probed
            .or_else(|| recent(true))
            .or_else(|| recent(false))
            .or_else(|| {
                self.registry
                    .is_validated(self.primary)
                    .then_some(self.primary)
            })
            .or_else(|| self.ids().find(|&id| self.registry.is_validated(id)))
    }

    /// Moves the primary to the healthy validated path of lowest RTT, if another.
    pub(super) fn choose_new_primary(&mut self, stats: &mut Stats, events: &mut VecDeque<Event>) {
        let best = self
            .iter()
            .filter(|(id, p)| !p.degraded && self.registry.is_validated(*id))
            .min_by_key(|(_, p)| p.recovery.rtt().smoothed())
            .map(|(id, _)| id);
        if let Some(id) = best
            && id != self.primary
        {
            let from = self.primary;
            self.primary = id;
            stats.migrations += 1;
            events.push_back(Event::Migrated { from, to: id });
        }
    }

    /// The primary `gone` was abandoned: a healthy validated path if any, else any
    /// validated one, else any at all.
    pub(super) fn replace_primary(
        &mut self,
        gone: PathId,
        stats: &mut Stats,
        events: &mut VecDeque<Event>,
    ) {
        self.choose_new_primary(stats, events);
        if self.primary == gone {
            let next = self
                .ids()
                .find(|&o| self.registry.is_validated(o))
                .or_else(|| self.ids().next());
            if let Some(next) = next {
                self.primary = next;
            }
        }
    }

    /// True if a validated, healthy path other than `id` exists.
    pub(super) fn others_healthy(&self, id: PathId) -> bool {
        self.iter()
            .any(|(o, p)| o != id && !p.degraded && self.registry.is_validated(o))
    }

    /// The last healthy path `id` is failing too: arms a PING probe on every failed
    /// validated path with nothing in flight. True if one was armed.
    pub(super) fn reprobe_failed(&mut self, id: PathId) -> bool {
        let mut armed = false;
        for (&o, p) in self.map.iter_mut() {
            if o != id
                && p.degraded
                && p.probes == 0
                && p.recovery.ack_eliciting_in_flight() == 0
                && self.registry.is_validated(o)
            {
                p.probes = 1;
                armed = true;
            }
        }
        armed
    }

    /// The first path, if it is validated (the one-path send shortcut).
    pub(super) fn first_if_validated(&mut self) -> Option<(PathId, &mut Path)> {
        let (&id, p) = self.map.iter_mut().next()?;
        self.registry.is_validated(id).then_some((id, p))
    }

    /// A validated path with a PTO probe to send.
    pub(super) fn probe_due(&self) -> Option<PathId> {
        self.iter()
            .find(|(id, p)| p.probes > 0 && self.registry.is_validated(*id))
            .map(|(id, _)| id)
    }

    /// The first path with a PATH_CHALLENGE or PATH_RESPONSE to send.
    pub(super) fn validation_due(&self) -> Option<PathId> {
        self.iter()
            .find(|(_, p)| p.challenge.is_some() || !p.responses.is_empty())
            .map(|(id, _)| id)
    }

    /// Capacity of every path's recovery record ring.
    #[cfg(test)]
    pub(super) fn ring_capacity(&self) -> usize {
        self.map.values().map(|p| p.recovery.ring_capacity()).sum()
    }
}

impl Session {
    /// Opens a path (ours or the peer's) and starts validating it.
    pub(super) fn new_path(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<PathId, Error> {
        self.make_room_for_path();
        let id = self.paths.open(&self.cfg, now, local, remote)?;
        self.update_loss_timer();
        Ok(id)
    }

    /// Keeps the path table bounded: forgets paths the registry dropped, and with
    /// the table full removes the least useful path (see `Paths::evictable`), so
    /// its id is free again.
    fn make_room_for_path(&mut self) {
        while let Some(id) = self.paths.orphaned() {
            self.evict_path(id);
        }
        if self.paths.len() >= self.paths.capacity()
            && let Some(id) = self.paths.evictable()
        {
            self.evict_path(id);
        }
    }

    /// Removes path `id` for good, as a failed path is removed.
    fn evict_path(&mut self, id: PathId) {
        tracing::debug!(target: "phantom::session", path = id.0, "path removed to make room");
        self.events.push_back(Event::PathFailed(id));
        self.drop_path(id);
        if self.paths.primary() == id {
            self.paths
                .replace_primary(id, &mut self.stats, &mut self.events);
        }
    }

    /// Removes path `id`; whatever was in flight on it is declared lost, and no
    /// record of a packet sent on it is kept (its id may be reused, I3).
    pub(super) fn drop_path(&mut self, id: PathId) {
        let mut lost = self.ack.take_lost();
        if let Some(mut p) = self.paths.remove(id) {
            p.drain_all(&mut lost);
        }
        // I11: the path's id is retired with it (the peer issues a replacement).
        self.conn_ids.release(id);
        self.handle_lost(id, &lost);
        self.ack.put_lost(lost);
        self.spaces.forget_path(id);
    }

    pub(super) fn on_path_response(
        &mut self,
        now: Instant,
        path: Option<PathId>,
        token: &[u8; 32],
    ) {
        let _span =
            tracing::debug_span!("phantom.session.path_validation", side = ?self.side).entered();
        // The response normally arrives on the path it answers; try that one first.
        let mut candidates: Vec<PathId> = path.into_iter().collect();
        candidates.extend(self.paths.ids().filter(|&id| Some(id) != path));
        for id in candidates {
            if self
                .paths
                .registry_mut()
                .verify_response(id, now, token)
                .is_ok()
            {
                self.stats.paths_validated += 1;
                if let Some(p) = self.paths.get_mut(id) {
                    p.challenge = None;
                }
                tracing::info!(target: "phantom::session", path = id.0, "path validated");
                self.events.push_back(Event::PathValidated(id));
                if self.state == State::Migrating && !self.paths.any_validating() {
                    self.state = State::Connected;
                }
                return;
            }
        }
    }

    /// Moves the primary path to `p` if the peer has moved there: `p` is validated,
    /// carried a non-probing packet, and the current primary has received nothing since
    /// `p` appeared (so a spoofed or probing copy does not move the session, I7). A
    /// path opened deliberately as an additional one (its first packet was a probe, or
    /// we probed it) is no move: the session goes there only once the primary failed.
    pub(super) fn maybe_migrate(&mut self, p: PathId, probing_only: bool) {
        let primary = self.paths.primary();
        if p == primary || probing_only || !self.paths.is_validated(p) {
            return;
        }
        let Some((created, additional)) = self
            .paths
            .get(p)
            .map(|x| (x.created, x.origin == PathOrigin::Additional))
        else {
            return;
        };
        // Move if the old primary failed, or (for a path the peer did not open as an
        // additional one) heard nothing since `p` appeared.
        let moved = self.paths.get(primary).is_none_or(|old| {
            old.degraded || (!additional && old.last_rx.is_none_or(|t| t < created))
        });
        if !moved {
            return;
        }
        let from = primary;
        let _span =
            tracing::info_span!("phantom.session.migrate", side = ?self.side, from = from.0, to = p.0)
                .entered();
        self.paths.set_primary(p);
        self.stats.migrations += 1;
        // Whatever is in flight on the old path is presumed lost: re-send it on the new one.
        let mut lost = self.ack.take_lost();
        if let Some(old) = self.paths.get_mut(from) {
            old.abandon_flight(&mut lost);
        }
        self.handle_lost(from, &lost);
        self.ack.put_lost(lost);
        tracing::info!(target: "phantom::session", from = from.0, to = p.0, "migrated");
        self.events.push_back(Event::Migrated { from, to: p });
    }

    pub(super) fn on_path_timer(&mut self, now: Instant) {
        let mut guard = 0;
        while let Some(ev) = self.paths.registry_mut().poll_retransmit(now) {
            guard += 1;
            if guard > 64 {
                break;
            }
            self.on_path_event(ev);
        }
        let mut guard = 0;
        while let Some(ev) = self.paths.registry_mut().sweep(now) {
            guard += 1;
            if guard > 64 {
                break;
            }
            self.on_path_event(ev);
        }
    }

    fn on_path_event(&mut self, ev: PathEvent) {
        match ev {
            PathEvent::Retransmit { path, challenge } => {
                if let Some(p) = self.paths.get_mut(path) {
                    p.challenge = Some(*challenge.as_bytes());
                }
            }
            PathEvent::Failed { path, reason } => {
                tracing::info!(target: "phantom::session", path = path.0, ?reason, "path failed");
                self.events.push_back(Event::PathFailed(path));
                self.drop_path(path);
                if self.paths.primary() == path {
                    self.paths
                        .choose_new_primary(&mut self.stats, &mut self.events);
                }
                if self.state == State::Migrating && !self.paths.any_validating() {
                    self.state = State::Connected;
                }
                if self.paths.is_empty() {
                    self.state = State::Closed;
                    self.timers.cancel_all();
                    self.events
                        .push_back(Event::Closed(CloseReason::Error(Error::Path(
                            "all paths failed",
                        ))));
                }
            }
        }
    }
}
