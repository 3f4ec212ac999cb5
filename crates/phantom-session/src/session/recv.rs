//! Receiving: opening a datagram, mapping it to a path, and handling the frames of
//! its payload.

use std::time::Instant;

use phantom_wire::{Frame, Header, PathId, parse_frames};

use super::paths::PathOrigin;
use super::timers::Timer;
use super::{CONTROL_SPACE, Session};
use crate::error::{Error, PeerViolation};
use crate::fallback::Carrier;
use crate::stream::Side;
use crate::types::{AppCode, CloseCode, CloseReason, Event, RxMeta, State};

/// Frames of a typical packet kept from the validation pass (parsed once).
const KEPT_FRAMES: usize = 8;

/// The frames of a typical packet, kept from the validation pass (parsed once).
type Kept<'a> = [Option<Frame<'a>>; KEPT_FRAMES];

/// What the validation pass over a payload found.
#[derive(Debug, Clone, Copy)]
struct Scan {
    count: usize,
    eliciting: bool,
    probing_only: bool,
    ping_only: bool,
    control_only: bool,
}

/// Validates the whole payload, so that a malformed frame changes nothing; keeps
/// its first frames in `kept` (filled in place: the array is not moved).
#[inline(always)]
fn scan<'a>(payload: &'a [u8], kept: &mut Kept<'a>) -> Result<Scan, Error> {
    let mut s = Scan {
        count: 0,
        eliciting: false,
        probing_only: true,
        ping_only: true,
        control_only: true,
    };
    for f in parse_frames(payload) {
        let f = f.map_err(|_| Error::PeerViolation(PeerViolation::MalformedFrame))?;
        if let Some(slot) = kept.get_mut(s.count) {
            *slot = Some(f);
        }
        s.count += 1;
        s.eliciting |= f.is_ack_eliciting();
        s.ping_only &= matches!(f, Frame::Ping | Frame::Padding(_));
        s.control_only &= matches!(f, Frame::Ping | Frame::Padding(_) | Frame::Ack(_));
        if !matches!(
            f,
            Frame::Padding(_) | Frame::PathChallenge(_) | Frame::PathResponse(_)
        ) {
            s.probing_only = false;
        }
    }
    if payload.is_empty() {
        return Err(Error::PeerViolation(PeerViolation::EmptyPayload));
    }
    Ok(s)
}

impl Session {
    /// See [`Session::handle_datagram`].
    pub(super) fn on_datagram(&mut self, now: Instant, rx: RxMeta, datagram: &mut [u8]) {
        if matches!(self.state, State::Closed | State::Draining) {
            self.stats.dropped.closed += 1;
            return;
        }
        let len = datagram.len() as u64;
        // The header is parsed once, by the opener, which also refuses another
        // session's packets and handshake datagrams before any key is tried, and
        // expands the truncated sequence against the space's largest authenticated one.
        // I1/I2: nothing below runs unless the AEAD verified the packet.
        // Any id of ours the peer holds (I11: one per path); another id is refused.
        let cid = self.conn_ids.local_id_of(datagram);
        let spaces = &self.spaces;
        let opened = match self
            .keys
            .open(&cid, datagram, |s| spaces.largest_received(s))
        {
            Ok(p) => p,
            Err(e) => {
                self.on_unopened(now, e, datagram);
                return;
            }
        };
        let header = *opened.header();
        let advanced = opened.advanced_epoch();
        let payload = opened.payload();
        // I4: the replay window is consulted only now, after the AEAD verified.
        if !self.spaces.accept_replay(header.stream_id, header.sequence) {
            self.stats.dropped.replayed += 1;
            tracing::trace!(target: "phantom::session", stream = header.stream_id.0, seq = header.sequence, "replay rejected");
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += len;
        self.handshake.on_protected_packet();
        self.rearm_idle(now);
        if rx.carrier == Carrier::Udp {
            let action = self.fallback.on_udp_received(now);
            self.on_fallback_action(action);
        }
        if advanced {
            self.on_peer_rekey(now, header);
        }
        let path = self.resolve_path(now, rx, len);
        if self.state == State::Closing {
            // Answer anything with our CLOSE again (bounded).
            if let Some(c) = self.close.as_mut() {
                c.on_peer_packet();
            }
            return;
        }
        if let Err(e) = self.process_payload(now, path, header, payload) {
            self.fatal(now, e);
        }
        if advanced {
            // The opener dropped the key before its new previous one, if it still
            // held it (a peer rekeying faster than every 3 PTOs keeps postponing
            // RetireKeys). Only now: this packet's space holds its epoch, so its
            // window (which already records it) is kept.
            self.forget_quiet_spaces();
        }
        if !self.is_closed() {
            self.timers.mark_stale();
        }
    }

    /// A datagram that did not open: counted, and at most answered with our last
    /// handshake flight.
    fn on_unopened(&mut self, now: Instant, e: phantom_crypto::Error, datagram: &[u8]) {
        if !matches!(e, phantom_crypto::Error::IntegrityLimitExceeded)
            && self.handle_stateless_reset(datagram)
        {
            return;
        }
        match e {
            phantom_crypto::Error::Wire(_) => {
                if self.handshake.awaits_peer()
                    && phantom_handshake::Datagram::parse(datagram).is_ok()
                {
                    // The peer is still in the handshake: our last flight was lost.
                    self.stats.dropped.unexpected_handshake += 1;
                    self.handshake.on_peer_retransmit();
                    return;
                }
                self.stats.dropped.malformed += 1;
            }
            phantom_crypto::Error::UnknownSession => {
                self.stats.dropped.unknown_session += 1;
            }
            phantom_crypto::Error::Unprotected => {
                self.stats.dropped.unexpected_handshake += 1;
            }
            phantom_crypto::Error::IntegrityLimitExceeded => {
                self.stats.dropped.unauthenticated += 1;
                // I6: the integrity limit closes the session.
                self.fatal(now, Error::Crypto("integrity limit reached"));
            }
            _ => {
                self.stats.dropped.unauthenticated += 1;
            }
        }
    }

    /// The opener followed the peer to a new epoch.
    fn on_peer_rekey(&mut self, now: Instant, header: Header) {
        self.spaces.on_peer_epoch();
        self.stats.rekeys_peer += 1;
        let pto = self.max_pto();
        self.timers.set(Timer::RetireKeys, Some(now + pto * 3));
        self.events.push_back(Event::Rekeyed {
            epoch: header.epoch,
            local: false,
        });
        tracing::debug!(target: "phantom::session", epoch = header.epoch.0, "followed peer rekey");
    }

    /// Maps an authenticated datagram's addresses to a path, creating (and starting to
    /// validate) a path for a new address. Only called after the AEAD and replay
    /// checks passed.
    fn resolve_path(&mut self, now: Instant, rx: RxMeta, len: u64) -> Option<PathId> {
        // The path's receive time is set where it is found (one walk, no second
        // lookup); the guard's registry below keeps its own records.
        let found = self
            .paths
            .iter_mut()
            .find(|(_, p)| p.addresses() == (rx.local, rx.remote))
            .map(|(id, p)| {
                p.on_received(now);
                id
            });
        let id = match found {
            Some(id) => id,
            None => {
                if matches!(self.state, State::Closing) {
                    return None;
                }
                let id = self.new_path(now, rx.local, rx.remote).ok()?;
                // I11: a fresh id of the peer's if one is unused, else the primary's
                // (NAT rebinding the peer did not notice, linkable).
                let like = self.paths.primary();
                self.conn_ids.assign_passive(id, like);
                if self.state == State::Connected {
                    self.state = State::Migrating;
                }
                if let Some(p) = self.paths.get_mut(id) {
                    p.on_received(now);
                }
                id
            }
        };
        let _ = self.paths.registry_mut().on_authenticated(id, len, now);
        Some(id)
    }

    fn process_payload(
        &mut self,
        now: Instant,
        path: Option<PathId>,
        header: Header,
        payload: &[u8],
    ) -> Result<(), Error> {
        // The frames of a typical packet are kept from the validation pass, so they
        // are parsed once; a packet with more frames than that is parsed again below.
        let mut kept: Kept<'_> = [None; KEPT_FRAMES];
        let scan = scan(payload, &mut kept)?;
        if scan.eliciting && !scan.control_only {
            self.send.note_data_received();
        }
        if scan.ping_only
            && let Some(p) = path.and_then(|id| self.paths.get_mut(id))
        {
            // The peer probes a path we count as failed: answer on that path, so the
            // probe's acknowledgement shows it working (and puts it back in service).
            p.on_peer_ping();
        }
        let space = header.stream_id;
        if space != CONTROL_SPACE {
            // A packet's space is that of the stream whose data it carries: one of
            // ours, or one the peer opens (implicitly, like its STREAM frame would; the
            // stream limit applies). Otherwise the space's state would never be retired.
            self.streams.check_space(space, &mut self.events)?;
        }
        let current = self.keys.recv_epoch().0;
        self.spaces.on_received(
            now,
            space,
            header.epoch.0,
            current,
            header.sequence,
            scan.eliciting,
        )?;
        if scan.eliciting && self.timers.get(Timer::AckDelay).is_none() {
            self.timers
                .set(Timer::AckDelay, Some(now + self.cfg.max_ack_delay));
        }
        self.ack.begin_packet();
        if scan.count <= KEPT_FRAMES {
            // By reference: a frame is not copied again per handler call.
            for f in kept.iter().take(scan.count).flatten() {
                self.on_frame(now, path, f)?;
                if self.is_closed() {
                    return Ok(());
                }
            }
        } else {
            for f in parse_frames(payload) {
                let Ok(f) = f else { break };
                self.on_frame(now, path, &f)?;
                if self.is_closed() {
                    return Ok(());
                }
            }
        }
        if self.ack.touched_any() {
            self.on_acks_done(now);
        }
        if let Some(p) = path {
            if let Some(x) = self.paths.get_mut(p)
                && x.origin() == PathOrigin::Unknown
            {
                // Only a client opens additional paths; a server's packets on a new
                // path follow its move to the client's new address (after the
                // client rebound), which the client then follows.
                x.set_origin(if scan.probing_only && self.side == Side::Server {
                    PathOrigin::Additional
                } else {
                    PathOrigin::Moved
                });
            }
            self.maybe_migrate(p, scan.probing_only);
        }
        Ok(())
    }

    pub(super) fn on_frame(
        &mut self,
        now: Instant,
        path: Option<PathId>,
        f: &Frame<'_>,
    ) -> Result<(), Error> {
        let events = &mut self.events;
        match f {
            Frame::Padding(_) | Frame::Ping | Frame::Rekey(_) => {}
            Frame::Ack(ack) => self.on_ack(now, ack)?,
            Frame::Stream(s) => self.streams.on_stream_frame(s, events)?,
            Frame::ResetStream(r) => self.streams.on_reset_stream(r, events)?,
            Frame::StreamOpen(o) => self.streams.on_stream_open(o.stream_id, o.kind, events)?,
            Frame::MaxData(m) => self.streams.on_max_data(m.max),
            Frame::MaxStreamData(m) => {
                self.streams
                    .on_max_stream_data(m.stream_id, m.max, events)?;
            }
            Frame::MaxStreams(m) => self.streams.on_max_streams(m.kind, m.max),
            Frame::StopSending(s) => {
                self.streams
                    .on_stop_sending(s.stream_id, AppCode(s.error_code), events)?;
            }
            Frame::PathChallenge(c) => {
                if let Some(p) = path.and_then(|p| self.paths.get_mut(p)) {
                    p.queue_response(c.token);
                }
            }
            Frame::PathResponse(r) => self.on_path_response(now, path, &r.token),
            Frame::Close(c) => {
                tracing::info!(target: "phantom::session", code = c.error_code, "peer closed");
                self.events.push_back(Event::Closed(CloseReason::Peer {
                    code: CloseCode::from_wire(c.error_code, c.application),
                    reason: c.reason.to_vec(),
                }));
                self.state = State::Draining;
                self.timers.cancel_all();
                let pto = self.max_pto();
                self.timers.set(Timer::Close, Some(now + pto * 3));
            }
            Frame::Handshake(_) => {
                self.stats.dropped.unexpected_handshake += 1;
            }
            Frame::Datagram(d) => {
                self.datagrams.on_received(d.data, self.cfg.datagram_queue);
                self.events.push_back(Event::DatagramReceived);
            }
            Frame::DataBlocked(_) | Frame::StreamDataBlocked(_) | Frame::StreamsBlocked(_) => {}
            Frame::NewConnId(f) => self.conn_ids.on_new_conn_id(f)?,
            Frame::RetireConnId(f) => self.conn_ids.on_retire_conn_id(f)?,
        }
        Ok(())
    }
}
