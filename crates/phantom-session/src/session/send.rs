//! Sending: choosing the path of the next packet, building it in named steps
//! (ACKs, control frames, application data, probes) and sealing it.

use std::collections::VecDeque;
use std::time::Instant;

use phantom_crypto::TAG_LEN;
use phantom_guard::SendBudget;
use phantom_wire::frame::{Datagram, Rekey, Stream as StreamFrame};
use phantom_wire::{Encode, Flags, Frame, Header, MAX_SEQUENCE, PathId, StreamId, Writer};

use super::streams::SendHint;
use super::timers::Timer;
use super::{Built, Session};
use crate::error::Error;
use crate::recovery::Record;
use crate::scheduler::{PathView, SchedulerMode, pick};
use crate::types::{MIN_DATAGRAM_SIZE, State, Transmit};

/// Room a STREAM frame's header may take besides its data.
pub(super) const STREAM_OVERHEAD: usize = 24;

/// What the packet builder remembers between packets.
#[derive(Debug)]
pub(super) struct SendState {
    /// A PING is owed (keep-alive, carrier probe).
    ping_pending: bool,
    /// Some path may have a PTO probe to send (`Path::probes > 0`): set wherever a
    /// probe is armed, cleared by `send_regular` once no path has one.
    probes_maybe: bool,
    /// An ack-eliciting packet carrying more than PING/ACK/PADDING arrived since an
    /// ACK-only packet last carried a PING for a stale path (see `finish_with_ping`).
    data_since_stale_ping: bool,
    /// `next_send_stream()` as `has_stream_data` found it while `send_regular` chose
    /// a path, for `write_stream_data` of the same packet.
    hint: SendHint,
    /// Redundant scheduling: copies of stream records owed to other paths.
    redundant_queue: VecDeque<(PathId, Record)>,
    /// Gathers a non-contiguous stream range (grown on first use: an idle session
    /// keeps no datagram-sized buffer).
    scratch: Vec<u8>,
    pick_buf: Vec<PathId>,
    /// The scheduler's views of the packet being built.
    views_buf: Vec<PathView>,
}

impl SendState {
    pub(super) fn new() -> Self {
        Self {
            ping_pending: false,
            probes_maybe: false,
            data_since_stale_ping: false,
            hint: SendHint::Unasked,
            redundant_queue: VecDeque::new(),
            scratch: Vec::new(),
            pick_buf: Vec::new(),
            views_buf: Vec::new(),
        }
    }

    /// The next packet carries a PING.
    pub(super) fn request_ping(&mut self) {
        self.ping_pending = true;
    }

    /// A path's probe was armed.
    pub(super) fn arm_probes(&mut self) {
        self.probes_maybe = true;
    }

    /// An ack-eliciting packet with more than PING/ACK/PADDING arrived.
    pub(super) fn note_data_received(&mut self) {
        self.data_since_stale_ping = true;
    }
}

impl Session {
    /// See [`Session::poll_transmit`].
    pub(super) fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let size = buf.len().min(self.cfg.max_datagram_size);
        if size < MIN_DATAGRAM_SIZE {
            return None;
        }
        match self.state {
            State::Closed | State::Draining | State::Handshaking => return None,
            State::Closing => return self.send_close(now, buf, size),
            State::Connected | State::Migrating => {}
        }
        if let Some(d) = self.handshake.next_resend()
            && let Some(dst) = buf.get_mut(..d.len())
            && let Some(p) = self.paths.get(self.paths.primary())
        {
            dst.copy_from_slice(&d);
            let (src, dst) = p.addresses();
            return Some(Transmit {
                path: self.paths.primary(),
                src,
                dst,
                len: d.len(),
            });
        }
        if let Err(e) = self.maybe_rekey() {
            self.fatal(now, e);
            return self.send_close(now, buf, size);
        }
        if let Some(t) = self.send_path_packet(now, buf, size) {
            return Some(t);
        }
        let t = self.send_regular(now, buf, size);
        if t.is_some() {
            // Nothing the loss, path or keep-alive timers depend on changes unless a
            // packet went out.
            self.timers.mark_stale();
        }
        t
    }

    fn maybe_rekey(&mut self) -> Result<(), Error> {
        if !self.keys.needs_rekey() {
            return Ok(());
        }
        let _span = tracing::debug_span!(
            "phantom.session.rekey",
            side = ?self.side,
            from = self.keys.send_epoch().0
        )
        .entered();
        let epoch = self.keys.rekey()?;
        self.stats.rekeys_local += 1;
        self.events
            .push_back(crate::types::Event::Rekeyed { epoch, local: true });
        tracing::debug!(target: "phantom::session", epoch = epoch.0, "rekeyed send direction");
        Ok(())
    }

    /// The most payload a data packet of a `size`-byte budget carries: the budget less
    /// the longest header ([`Session::max_header_len`]) and the tag. The payload is
    /// built before its header's length is known, so a packet whose header is shorter
    /// than the longest (12-13 bytes for bulk data with an 8-byte id, against 20) leaves
    /// that difference unused.
    fn payload_room(&self, size: usize) -> usize {
        size.saturating_sub(self.max_header_len() + TAG_LEN)
    }

    /// PATH_CHALLENGE / PATH_RESPONSE on the path they belong to, within its
    /// anti-amplification budget (I7).
    fn send_path_packet(&mut self, now: Instant, buf: &mut [u8], size: usize) -> Option<Transmit> {
        let id = self.paths.validation_due()?;
        let budget = self.paths.registry().send_budget(id)?;
        let size = match budget {
            SendBudget::Unlimited => size,
            SendBudget::Limited(n) => size.min(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let min = self.max_header_len() + TAG_LEN + 33;
        if size < min {
            // Not enough budget yet: wait for more bytes from that address.
            return None;
        }
        let at = self.max_header_len();
        let path = self.paths.get_mut(id)?;
        let mut built = Built::new();
        let payload = buf.get_mut(at..size - TAG_LEN)?;
        let mut w = Writer::new(payload);
        path.write_validation(&mut w, &mut built);
        built.len = w.written();
        if built.len == 0 {
            return None;
        }
        built.ack_eliciting = true;
        // The keep-alive deadline follows this packet only at the next update.
        self.flush_loss_timers();
        self.finish_packet(now, id, buf, &built, false)
    }

    fn has_stream_data(&mut self) -> bool {
        if !self.send.redundant_queue.is_empty() || self.datagrams.has_outgoing() {
            return true;
        }
        let next = self.streams.next_send_stream();
        self.send.hint = match next {
            Some(id) => SendHint::Stream(id),
            None => SendHint::Nothing,
        };
        next.is_some()
    }

    fn control_due(&self, now: Instant) -> bool {
        // (A pending REKEY frame only piggybacks: it never causes a packet by itself,
        // or a tiny rekey threshold would make every packet trigger another one.)
        self.send.ping_pending
            || self.streams.control_due()
            || self.conn_ids.frames_due()
            // Acknowledge after every second ack-eliciting packet of the *session*, not
            // of one stream space: with many busy streams no single space may reach two,
            // and every ACK would wait for the delay timer (RFC 9000 §13.2.2 counts packets).
            || self.spaces.unacked_eliciting() >= 2
            || (self.timers.get(Timer::AckDelay).is_none_or(|t| t <= now)
                && self.spaces.ack_owed())
    }

    /// A validated path with a PTO probe to send; clears `probes_maybe` once no
    /// path has one. (Searched only while some path may hold a probe.)
    fn take_probe_path(&mut self) -> Option<PathId> {
        if !self.send.probes_maybe {
            return None;
        }
        let found = self.paths.probe_due();
        if found.is_none() && self.paths.values().all(|p| !p.has_probe()) {
            self.send.probes_maybe = false;
        }
        found
    }

    /// The path the next data packet goes on: one whose window has room and whose
    /// pacer lets it send now (else the pacing timer is armed).
    fn choose_data_path(&mut self, now: Instant, size: usize) -> Option<PathId> {
        let mut chosen = None;
        if self.paths.len() == 1 {
            // One path: every scheduler mode picks it if it is validated and its
            // window has room (what `pick` does with one view), then asks its
            // pacer; no views, picks or second lookup.
            if let Some((id, p)) = self.paths.first_if_validated()
                && p.has_room(size as u64)
            {
                match p.pacing_delay(now, size as u64) {
                    None => chosen = Some(id),
                    Some(t) => {
                        self.timers.set(Timer::Pacing, Some(t));
                    }
                }
            }
            return chosen;
        }
        let mut picks = std::mem::take(&mut self.send.pick_buf);
        let mut views = std::mem::take(&mut self.send.views_buf);
        self.paths.views(&mut views);
        pick(self.cfg.scheduler, &views, size as u64, &mut picks);
        self.send.views_buf = views;
        if self.cfg.scheduler == SchedulerMode::Aggregate {
            // Every path with room, best first: the first whose pacer lets it send
            // now takes the packet, so one path's pacer never holds the others back.
            let mut wake: Option<Instant> = None;
            for &pid in &picks {
                match self
                    .paths
                    .get_mut(pid)
                    .and_then(|p| p.pacing_delay(now, size as u64))
                {
                    None => {
                        chosen = Some(pid);
                        break;
                    }
                    Some(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
                }
            }
            if chosen.is_none() && wake.is_some() {
                self.timers.set(Timer::Pacing, wake);
            }
            self.send.pick_buf = picks;
            return chosen;
        }
        // Redundant mode: the first pick sends, the others get copies queued.
        let with_dup = picks
            .iter()
            .find(|p| self.send.redundant_queue.iter().any(|(q, _)| q == *p))
            .or(picks.first())
            .copied();
        if let Some(pid) = with_dup {
            let wait = self
                .paths
                .get_mut(pid)
                .and_then(|p| p.pacing_delay(now, size as u64));
            match wait {
                None => chosen = Some(pid),
                Some(t) => {
                    self.timers.set(Timer::Pacing, Some(t));
                }
            }
        }
        self.send.pick_buf = picks;
        chosen
    }

    fn send_regular(&mut self, now: Instant, buf: &mut [u8], size: usize) -> Option<Transmit> {
        self.send.hint = SendHint::Unasked;
        // A PTO probe takes precedence and ignores the congestion window.
        let probe = self.take_probe_path();
        let mut allow_data = true;
        let path_id = if let Some(id) = probe {
            id
        } else {
            let has_data = self.has_stream_data();
            if !has_data {
                self.mark_app_limited(size as u64);
            }
            let chosen = if has_data {
                self.choose_data_path(now, size)
            } else {
                None
            };
            match chosen {
                Some(id) => id,
                None => {
                    if !self.control_due(now) {
                        return None;
                    }
                    allow_data = false;
                    self.paths.control_path()?
                }
            }
        };
        let is_probe = probe == Some(path_id);
        if is_probe && self.paths.get(path_id).is_some_and(|p| p.is_degraded()) {
            allow_data = false;
        }
        // Built in place and handed on by reference (the record array is not moved).
        let mut built = Built::new();
        let at = self.max_header_len();
        let payload = buf.get_mut(at..at + self.payload_room(size))?;
        self.build_regular(now, path_id, payload, allow_data, is_probe, &mut built)?;
        if is_probe && let Some(p) = self.paths.get_mut(path_id) {
            p.probe_sent();
        }
        // (`finish_packet` takes a data packet's bytes from its path's pacer.)
        self.finish_packet(now, path_id, buf, &built, true)
    }

    /// Nothing to send: every path whose window has room for another packet is
    /// application-limited, so its rate samples of this flight cannot lower the
    /// bandwidth estimate (they measure the application, not the path).
    fn mark_app_limited(&mut self, mss: u64) {
        for p in self.paths.values_mut() {
            p.mark_app_limited(mss);
        }
    }

    /// Builds a regular packet's payload: ACKs, control frames, application data
    /// (on a validated path, if `allow_data`), then a PING if one is due.
    fn build_regular(
        &mut self,
        now: Instant,
        path_id: PathId,
        payload: &mut [u8],
        allow_data: bool,
        is_probe: bool,
        built: &mut Built,
    ) -> Option<()> {
        let mut w = Writer::new(payload);
        if is_probe && self.paths.get(path_id).is_some_and(|p| p.is_degraded()) {
            // A probe of a failed-over path is a bare PING: ACKs and control frames
            // (credit, resets) put there would be lost with it, and a retransmitted
            // control frame would follow the next probe onto the dead path again and
            // again, starving the peer of credit.
            Frame::Ping.encode(&mut w).ok()?;
            built.ack_eliciting = true;
            built.len = w.written();
            return Some(());
        }
        // 1. ACKs for every space with something to acknowledge.
        if self.spaces.write_acks(now, &mut w) {
            self.timers.set(Timer::AckDelay, None);
        }
        // 2. Control frames.
        self.write_control(&mut w, built);
        // 3. Application data, only on a validated path (I7).
        if allow_data && self.paths.is_validated(path_id) {
            self.write_app_data(path_id, &mut w, built);
        }
        // 4. A PING if the packet must elicit an acknowledgement.
        self.finish_with_ping(now, path_id, &mut w, is_probe, built);
        built.len = w.written();
        (built.len > 0).then_some(())
    }

    /// REKEY, MAX_DATA, MAX_STREAMS, then the streams' RESET_STREAM, STOP_SENDING
    /// and MAX_STREAM_DATA.
    fn write_control(&mut self, w: &mut Writer<'_>, built: &mut Built) {
        if let Some(epoch) = self.keys.rekey_frame_due() {
            let f = Frame::Rekey(Rekey { epoch });
            if f.encoded_len() <= w.remaining() && f.encode(w).is_ok() {
                self.keys.rekey_frame_sent();
                built.ack_eliciting = true;
            }
        }
        self.streams.write_flow_control(w, built);
        self.streams.write_stream_control(w, built);
        self.conn_ids.write_frames(w, built);
    }

    /// Queued datagrams, then stream data.
    fn write_app_data(&mut self, path_id: PathId, w: &mut Writer<'_>, built: &mut Built) {
        while let Some(d) = self.datagrams.front() {
            let f = Frame::Datagram(Datagram { data: d });
            if f.encoded_len() > w.remaining() {
                break;
            }
            if f.encode(w).is_ok() {
                self.datagrams.pop_sent();
                built.ack_eliciting = true;
                built.has_data = true;
            }
        }
        self.write_stream_data(path_id, w, built);
    }

    /// RFC 9000 §13.2.4: a path that only carries ACKs is never acknowledged, so
    /// a path dead towards the peer would go unnoticed (its ACKs lost, the peer
    /// retransmitting what was received). An ACK-only packet becomes
    /// ack-eliciting when nothing ack-eliciting left on its path for a smoothed
    /// RTT (at least `max_ack_delay`): the path's PTO then finds a dead path.
    /// Only while the acknowledgements owed are for more than PINGs and ACKs:
    /// otherwise the peer's ACK of this PING would carry a PING too, and so on
    /// (an endless ping-pong on an idle session, which would also never time out).
    /// A probe and an owed PING (keep-alive) also add one.
    fn finish_with_ping(
        &mut self,
        now: Instant,
        path_id: PathId,
        w: &mut Writer<'_>,
        is_probe: bool,
        built: &mut Built,
    ) {
        // (The clock comparison last: packets with data skip it.)
        let stale_ping = !built.ack_eliciting
            && w.written() > 0
            && self.send.data_since_stale_ping
            && self
                .paths
                .get(path_id)
                .is_some_and(|p| p.eliciting_stale(now, self.cfg.max_ack_delay));
        if (is_probe || self.send.ping_pending || stale_ping)
            && !built.ack_eliciting
            && Frame::Ping.encode(w).is_ok()
        {
            built.ack_eliciting = true;
            if stale_ping {
                self.send.data_since_stale_ping = false;
            }
        }
        if built.ack_eliciting {
            self.send.ping_pending = false;
        }
    }

    /// Adds STREAM frames of one stream (the packet's sequence space) to the packet:
    /// a redundant copy queued for this path first, else the next stream's data.
    fn write_stream_data(&mut self, path_id: PathId, w: &mut Writer<'_>, built: &mut Built) {
        let hint = std::mem::replace(&mut self.send.hint, SendHint::Unasked);
        let mut scratch = std::mem::take(&mut self.send.scratch);
        if scratch.len() < self.cfg.max_datagram_size {
            scratch.resize(self.cfg.max_datagram_size, 0);
        }
        let mut space = self.write_redundant_copy(path_id, w, built, &mut scratch);
        if space.is_none() {
            // Round-robin over streams with sendable data.
            let next = match hint {
                SendHint::Stream(id) => Some(id),
                SendHint::Nothing => None,
                SendHint::Unasked => self.streams.next_send_stream(),
            };
            if let Some(id) = next {
                space = Some(id);
                let redundant = self.cfg.scheduler == SchedulerMode::Redundant;
                let views = &self.send.views_buf;
                let queue = &mut self.send.redundant_queue;
                let any_healthy = redundant && views.iter().any(|v| v.healthy);
                self.streams.write_stream_frames(
                    id,
                    w,
                    built,
                    &mut scratch,
                    &mut self.stats,
                    |rec| {
                        if !redundant {
                            return;
                        }
                        // A copy for every other usable path (the views of this
                        // packet's scheduling), also those whose window is full right
                        // now: each sends its copy once it has room, unless the data
                        // was acknowledged by then (`copy_out` fails).
                        for v in views {
                            if v.id != path_id && (v.healthy || !any_healthy) && queue.len() < 1024
                            {
                                queue.push_back((v.id, rec));
                            }
                        }
                    },
                );
            }
        }
        if let Some(id) = space {
            built.space = id;
        }
        self.send.scratch = scratch;
    }

    /// The first redundant copy queued for `path_id`, if its data is still unacknowledged;
    /// returns its stream.
    fn write_redundant_copy(
        &mut self,
        path_id: PathId,
        w: &mut Writer<'_>,
        built: &mut Built,
        scratch: &mut [u8],
    ) -> Option<StreamId> {
        let i = self
            .send
            .redundant_queue
            .iter()
            .position(|(p, _)| *p == path_id)?;
        let (
            _,
            Record::Stream {
                id,
                offset,
                len,
                fin,
            },
        ) = self.send.redundant_queue.remove(i)?
        else {
            return None;
        };
        let s = self.streams.send_stream(id)?;
        if w.remaining() <= STREAM_OVERHEAD + len as usize {
            return None;
        }
        let data = scratch.get_mut(..len as usize)?;
        if !s.copy_out(offset, data) {
            return None;
        }
        let f = Frame::Stream(StreamFrame {
            stream_id: id,
            offset,
            fin,
            data,
        });
        f.encode(w).ok()?;
        built.record(Record::Stream {
            id,
            offset,
            len,
            fin,
        });
        built.ack_eliciting = true;
        built.has_data = true;
        self.stats.stream_bytes_sent += u64::from(len);
        self.stats.stream_bytes_retransmitted += u64::from(len);
        Some(id)
    }

    /// Seals the built packet into `buf` under the next sequence of its space and
    /// accounts for it on its path; `track`: it goes into loss recovery.
    ///
    /// The payload was built after room for the longest header
    /// ([`Session::max_header_len`]); once the header's length is known (the space's
    /// stream id and the truncated sequence), the payload is moved up behind it and
    /// padded (PADDING frames are zero bytes) to the length header protection samples.
    pub(super) fn finish_packet(
        &mut self,
        now: Instant,
        path_id: PathId,
        buf: &mut [u8],
        built: &Built,
        track: bool,
    ) -> Option<Transmit> {
        let space = built.space;
        // One search: the counter's position is kept for the increment below.
        let (at, seq) = self.spaces.peek_seq(space);
        if seq > MAX_SEQUENCE {
            // I3: exhaustion closes, never reuses.
            self.fatal(now, Error::Crypto("sequence space exhausted"));
            return None;
        }
        let mut flags = Flags::empty();
        if built.ack_eliciting {
            flags = flags | Flags::ACK_ELICITING;
        }
        // The first packet sealed under a new epoch is marked REKEY.
        if self.keys.rekey_flag_due() {
            flags = flags | Flags::REKEY;
        }
        // I11: each path sends with its own id of the peer's.
        let conn_id = self.conn_ids.peer_id_for(path_id);
        let header = Header {
            flags,
            epoch: self.keys.send_epoch(),
            conn_id,
            stream_id: space,
            sequence: seq,
            seq_len: self.seq_len(space, seq, at),
        };
        let (from, hlen) = (self.max_header_len(), header.len());
        let min_payload =
            phantom_wire::min_packet_len(conn_id.len()).saturating_sub(hlen + TAG_LEN);
        let payload_len = built.len.max(min_payload);
        if buf.len() < from + built.len {
            return None;
        }
        buf.copy_within(from..from + built.len, hlen);
        buf.get_mut(hlen + built.len..hlen + payload_len)?.fill(0);
        let out = buf.get_mut(..hlen + payload_len + TAG_LEN)?;
        // I2: every packet is sealed; the unprotected header image is the associated data.
        let len = match self.keys.seal(&header, out, payload_len) {
            Ok(n) => n,
            Err(err) => {
                self.fatal(now, err);
                return None;
            }
        };
        self.spaces.advance_seq(at, space, seq);
        if self
            .paths
            .registry_mut()
            .on_sent(path_id, len as u64)
            .is_err()
        {
            // Budget was checked before building; a failure here means a bug.
            debug_assert!(false, "amplification budget exceeded after check");
        }
        self.on_packet_sent(now, path_id, built, seq, len, track)
    }

    /// How many sequence bytes packet `seq` of `space` (at `at`) carries: the shortest
    /// that covers twice the distance from the largest acknowledged (the sealer makes
    /// it the full 6 for the first of the space in an epoch), and at least 4 while the
    /// session has several paths: one space's packets are then reordered across paths
    /// by far more than the acknowledged distance (a slow path's delay times the fast
    /// path's rate), and a misexpanded sequence only fails the AEAD.
    fn seq_len(&self, space: StreamId, seq: u64, at: Option<usize>) -> phantom_wire::SeqLen {
        let len = self.keys.seq_len(space, seq, self.spaces.largest_acked(at));
        if self.paths.len() > 1 {
            len.max(phantom_wire::SeqLen::FOUR)
        } else {
            len
        }
    }

    /// Accounts for a sealed packet of `len` bytes on its path: pacer, counters,
    /// recovery ledger, congestion controller and the space's sent index.
    fn on_packet_sent(
        &mut self,
        now: Instant,
        path_id: PathId,
        built: &Built,
        seq: u64,
        len: usize,
        track: bool,
    ) -> Option<Transmit> {
        let path = self.paths.get_mut(path_id)?;
        let ppn = path.on_packet_sent(now, built, seq, len as u64, track);
        let (src, dst) = path.addresses();
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += len as u64;
        if built.ack_eliciting {
            self.timers.on_eliciting_sent(now);
        }
        if let Some(ppn) = ppn {
            self.spaces.track_sent(built.space, seq, path_id, ppn);
        }
        Some(Transmit {
            path: path_id,
            src,
            dst,
            len,
        })
    }
}
