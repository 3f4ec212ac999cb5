//! The sans-IO [`Session`] state machine.
//!
//! [`Session`] keeps the calling protocol and delegates to parts that own their
//! state:
//!
//! * [`keys`]: the sealer and opener, their epochs and the rekey signals owed;
//! * [`spaces`]: per-space sequence counters, sent-packet index, ACK state, replay
//!   windows and the retirement of closed streams' spaces;
//! * [`streams`]: the stream table, session flow control, stream limits and the
//!   sets of streams with something to send;
//! * [`paths`]: per-path recovery, RTT, congestion control and pacing, the
//!   validation registry and the primary path;
//! * [`datagrams`] and [`handshake`]: the datagram queues and the handshake's tail;
//! * [`timers`]: the deadline table and what each deadline does;
//! * [`conn_ids`]: the ids we issued and the peer's, which path sends with which.
//!
//! The protocol steps are `impl Session` blocks of their own: [`recv`] (opening a
//! datagram, the payload's frames), [`ack`] (acknowledgements, losses, probe
//! timeouts), [`send`] (packet building in named steps: ACKs, control frames,
//! application data, probes; sealing) and [`close`].

mod ack;
mod close;
mod conn_ids;
mod datagrams;
mod handshake;
mod keys;
mod paths;
mod recv;
mod send;
mod spaces;
mod streams;
mod timers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use phantom_crypto::{Suite, TAG_LEN, TrafficSecret};
use phantom_guard::StreamWindows;
use phantom_handshake::{Established, IssuedConnId};
use phantom_wire::{ConnId, Epoch, Frame, PathId, SessionId, StreamId, parse_frames};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use crate::error::Error;
use crate::fallback::Fallback;
use crate::recovery::{MAX_RECORDS, Record};
use crate::scheduler::SchedulerMode;
use crate::stream::{Dir, RecvStream, Side, stream_initiator};
use crate::types::{
    AppCode, Config, Event, MIN_DATAGRAM_SIZE, PathSnapshot, RxMeta, State, Stats, Transmit,
};

use self::ack::AckScratch;
use self::close::CloseInfo;
use self::conn_ids::ConnIds;
pub use self::conn_ids::{
    ACTIVE_CONN_IDS, ConnIdEvent, ConnIdSource, MAX_PEER_CONN_IDS, MAX_PENDING_RETIRES,
};
use self::datagrams::Datagrams;
use self::handshake::HandshakeTail;
use self::keys::Keys;
use self::paths::{PathOrigin, Paths};
use self::send::SendState;
use self::spaces::Spaces;
use self::streams::Streams;
use self::timers::Timers;

/// The error text of a path refused for want of an unused peer connection id.
pub const NO_UNUSED_CONN_ID: &str = "no unused connection id";

/// The control stream's sequence space: packets without stream data use it.
const CONTROL_SPACE: StreamId = StreamId::CONTROL;

/// The secrets and identifiers a completed handshake hands to the session.
///
/// `send` protects our direction and `recv` the peer's; both start at epoch 0.
/// Zeroized on drop through [`TrafficSecret`] (I8).
pub struct SessionKeys {
    /// The negotiated AEAD suite.
    pub suite: Suite,
    /// The 256-bit session id the server chose (names the session; never on a 1-RTT
    /// packet).
    pub session_id: SessionId,
    /// The connection id we issued: the peer puts it on the packets it sends us.
    pub local_conn_id: ConnId,
    /// The connection id the peer issued: we put it on the packets we send.
    pub peer_conn_id: ConnId,
    /// The peer's stateless-reset token for `peer_conn_id`.
    pub peer_reset_token: [u8; 16],
    /// Our sending direction's traffic secret.
    pub send: TrafficSecret,
    /// The peer's sending direction's traffic secret.
    pub recv: TrafficSecret,
}

impl SessionKeys {
    /// The keys a completed `phantom-handshake` hands over, for our `side`: the client
    /// sends with `c2s` and opens with `s2c`, the server the other way round.
    #[must_use]
    pub fn from_established(side: Side, est: &Established) -> Self {
        let (send, recv, local, peer) = match side {
            Side::Client => (
                est.c2s.clone(),
                est.s2c.clone(),
                est.client_id0,
                est.server_id0,
            ),
            Side::Server => (
                est.s2c.clone(),
                est.c2s.clone(),
                est.server_id0,
                est.client_id0,
            ),
        };
        Self {
            suite: est.suite,
            session_id: est.session_id,
            local_conn_id: local.id,
            peer_conn_id: peer.id,
            peer_reset_token: peer.reset_token,
            send,
            recv,
        }
    }
}

impl core::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("suite", &self.suite)
            .field("session_id", &self.session_id)
            .field("local_conn_id", &self.local_conn_id)
            .field("peer_conn_id", &self.peer_conn_id)
            .finish_non_exhaustive()
    }
}

/// What a packet under construction holds.
#[derive(Debug)]
struct Built {
    space: StreamId,
    len: usize,
    ack_eliciting: bool,
    records: [Record; MAX_RECORDS],
    nrec: usize,
    has_data: bool,
}

impl Built {
    fn new() -> Self {
        Self {
            space: CONTROL_SPACE,
            len: 0,
            ack_eliciting: false,
            records: [Record::None; MAX_RECORDS],
            nrec: 0,
            has_data: false,
        }
    }
    fn records_full(&self) -> bool {
        self.nrec >= MAX_RECORDS
    }
    fn record(&mut self, r: Record) {
        if let Some(slot) = self.records.get_mut(self.nrec) {
            *slot = r;
            self.nrec += 1;
        }
    }
}

/// A Phantom session: sans-IO, deterministic, single-threaded.
///
/// The session owns streams, reliability, flow control, keys (through
/// `phantom-crypto`), replay windows and paths (through `phantom-guard`), and
/// congestion control per path. It never touches a socket, a clock or a thread.
///
/// # Calling protocol
///
/// The methods fall into four groups:
///
/// * **A. Getters** (`&self`): [`side`](Self::side), [`state`](Self::state),
///   [`stats`](Self::stats), [`paths`](Self::paths), [`is_closed`](Self::is_closed),
///   [`is_drained`](Self::is_drained), [`session_id`](Self::session_id).
/// * **B. Inputs**: [`handle_datagram`](Self::handle_datagram) for every datagram
///   received for this session, and [`handle_timeout`](Self::handle_timeout) when the
///   deadline from `poll_timeout` passes.
/// * **C. Application commands** (no I/O happens): [`open_stream`](Self::open_stream),
///   [`write`](Self::write), [`read`](Self::read), [`finish`](Self::finish),
///   [`reset`](Self::reset), [`stop_sending`](Self::stop_sending),
///   [`send_datagram`](Self::send_datagram), [`recv_datagram`](Self::recv_datagram),
///   [`probe_path`](Self::probe_path), [`close`](Self::close) and the tuning setters.
/// * **D. Outputs**: after every B or C call, call
///   [`poll_transmit`](Self::poll_transmit) until it returns `None`, then
///   [`poll_timeout`](Self::poll_timeout) to re-arm the single timer, then
///   [`poll_event`](Self::poll_event) until it returns `None`.
///
/// Every `now` handed in must be monotonic (never earlier than a previous one).
///
/// # Invariants
///
/// * I1: a datagram changes nothing but drop counters unless it authenticates; a
///   frame error after authentication closes the session, never panics.
/// * I2: every packet we send, control packets included, is sealed by
///   [`Sealer::seal_packet`](phantom_crypto::Sealer::seal_packet) with the header
///   image as associated data.
/// * I3: each stream space has one strictly increasing sequence counter; a lost
///   packet's *data* is re-sent in a new packet with a fresh sequence, never re-sealed;
///   stream ids are never reused; sequence exhaustion closes the session.
/// * I4: the replay window is consulted only after the AEAD verified the packet.
/// * I5/I6: epochs move by [`Sealer::rekey`](phantom_crypto::Sealer::rekey) and the
///   opener's authenticated catch-up; the integrity limit closes the session.
/// * I7: stream data and datagrams go only on validated paths; an unvalidated
///   address gets at most 3x the bytes it sent (enforced by `PathRegistry`).
/// * I9: all randomness comes from a ChaCha20 RNG seeded by the caller; all maps
///   iterate in a fixed order.
pub struct Session {
    side: Side,
    cfg: Config,
    state: State,
    session_id: SessionId,
    /// Our ids and the peer's, and which path sends with which (I11).
    conn_ids: ConnIds,
    keys: Keys,
    spaces: Spaces,
    streams: Streams,
    paths: Paths,
    datagrams: Datagrams,
    timers: Timers,
    send: SendState,
    ack: AckScratch,
    close: Option<CloseInfo>,
    events: VecDeque<Event>,
    stats: Stats,
    fallback: Fallback,
    handshake: HandshakeTail,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("side", &self.side)
            .field("state", &self.state)
            .field("session_id", &self.session_id)
            .field("send_epoch", &self.keys.send_epoch())
            .field("recv_epoch", &self.keys.recv_epoch())
            .field("paths", &self.paths.len())
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A connected session built from what the handshake hands over.
    ///
    /// `local`/`remote` is the path the handshake ran over; its reachability is
    /// proven, so it starts validated (path id 0). `rng_seed` seeds the session's
    /// ChaCha20 RNG (path challenges): the same inputs, times and seed give the same
    /// output bytes (I9).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an out-of-range configuration, [`Error::Crypto`] if
    /// the keys cannot be installed, [`Error::Path`] if the path configuration is invalid.
    pub fn from_secrets(
        side: Side,
        cfg: Config,
        keys: SessionKeys,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        rng_seed: [u8; 32],
    ) -> Result<Self, Error> {
        if cfg.max_datagram_size < MIN_DATAGRAM_SIZE || cfg.max_datagram_size > 65_527 {
            return Err(Error::InvalidConfig(
                "max_datagram_size must be in 256..=65527",
            ));
        }
        if cfg.idle_timeout.is_zero() || cfg.stream_receive_window == 0 {
            return Err(Error::InvalidConfig(
                "idle_timeout and windows must be positive",
            ));
        }
        let SessionKeys {
            suite,
            session_id,
            local_conn_id,
            peer_conn_id,
            peer_reset_token,
            send,
            recv,
        } = keys;
        let keys = Keys::new(suite, send, recv, &cfg)?;
        let rng = ChaCha20Rng::from_seed(rng_seed);
        // Ids draw from their own stream of the seed (I9), so path challenges stay as
        // they were.
        let mut id_seed = rng_seed;
        for b in &mut id_seed {
            *b ^= 0x5c;
        }
        let conn_ids = ConnIds::new(
            cfg.conn_ids.clone(),
            id_seed,
            IssuedConnId {
                id: local_conn_id,
                reset_token: [0; 16],
            },
            IssuedConnId {
                id: peer_conn_id,
                reset_token: peer_reset_token,
            },
        );
        let mut paths = Paths::new(&cfg, now, remote, rng)?;
        let replay = StreamWindows::with_width(cfg.replay_window)
            .map_err(|_| Error::Path("invalid replay window width"))?;
        paths.insert_initial(&cfg, now, local, remote)?;
        let mut s = Self {
            side,
            state: State::Connected,
            session_id,
            conn_ids,
            keys,
            spaces: Spaces::new(replay),
            streams: Streams::new(side, &cfg),
            paths,
            datagrams: Datagrams::default(),
            timers: Timers::new(now),
            send: SendState::new(),
            ack: AckScratch::default(),
            close: None,
            events: VecDeque::new(),
            stats: Stats::default(),
            fallback: Fallback::new(cfg.fallback, now),
            handshake: HandshakeTail::new(),
            cfg,
        };
        s.events.push_back(Event::Connected);
        s.rearm_idle(now);
        s.update_loss_timer();
        tracing::debug!(target: "phantom::session", side = ?side, session = ?session_id, "session established");
        Ok(s)
    }

    /// A connected session from a completed handshake (see [`Session::from_secrets`]);
    /// keeps the handshake's last flight to answer a retransmitted handshake datagram.
    ///
    /// # Errors
    /// As [`Session::from_secrets`].
    pub fn from_established(
        side: Side,
        cfg: Config,
        mut est: Established,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        rng_seed: [u8; 32],
    ) -> Result<Self, Error> {
        let keys = SessionKeys::from_established(side, &est);
        let mut s = Self::from_secrets(side, cfg, keys, now, local, remote, rng_seed)?;
        s.handshake
            .set_flight(std::mem::take(&mut est.pending_flight));
        s.handshake.set_resumption(
            est.resumption_ticket.take(),
            est.resumed,
            est.early_data_accepted,
        );
        if side == Side::Server
            && let Some(early) = est.early_data.take()
        {
            s.apply_early_data(now, &early);
        }
        Ok(s)
    }

    /// Server: delivers accepted early data (see [`crate::early`]). The blob was
    /// authenticated by the handshake under the ticket's early key; a blob that is not
    /// a sequence of STREAM frames at offset 0 on client-initiated streams is ignored
    /// (the client re-sends the same bytes under 1-RTT keys anyway).
    pub(crate) fn apply_early_data(&mut self, now: Instant, blob: &[u8]) {
        let valid = parse_frames(blob).all(|f| {
            matches!(f, Ok(Frame::Stream(ref st))
                if st.offset == 0 && stream_initiator(st.stream_id) == Side::Client)
        });
        if !valid || blob.is_empty() {
            self.stats.dropped.malformed += 1;
            tracing::debug!(target: "phantom::session", "early data ignored: not replay-safe stream openings");
            return;
        }
        for f in parse_frames(blob) {
            if let Ok(Frame::Stream(st)) = f
                && let Err(e) = self.streams.on_stream_frame(&st, &mut self.events)
            {
                // Authenticated but impossible (e.g. above the stream limit).
                self.fatal(now, e);
                return;
            }
        }
        tracing::debug!(target: "phantom::session", bytes = blob.len(), "early data delivered");
    }

    /// Server: applies early data the endpoint released at ClientHello acceptance
    /// ([`crate::Endpoint::poll_early_data`]). With `delivered` the application already
    /// has the bytes: the streams open with them read, and reading continues where they
    /// end; otherwise they are readable as with [`Session::apply_early_data`].
    pub(crate) fn apply_released_early_data(
        &mut self,
        now: Instant,
        early: &crate::early::EarlyData,
        delivered: bool,
    ) {
        let Ok(blob) = early.encode() else {
            self.stats.dropped.malformed += 1;
            return;
        };
        self.apply_early_data(now, &blob);
        if !delivered {
            return;
        }
        for st in early.streams() {
            // Consume exactly the early bytes (no packet arrived yet, so nothing else is
            // buffered), never the end of the stream: the application reads that.
            let mut left = st.data.len();
            while left > 0 {
                match self.read_with(st.id, |b| b.len().min(left)) {
                    Ok(Some(n)) if n > 0 => left -= n,
                    _ => break,
                }
            }
        }
    }

    /// Client: after a resumed handshake, opens the replay-safe streams of `early` (the
    /// same ids, in the same order) and queues their bytes, so they are sent again under
    /// the 1-RTT keys whether or not the server accepted the 0-RTT copy. Call it before
    /// opening any other stream.
    ///
    /// # Errors
    /// [`Error::EarlyDataMismatch`] if a stream would get another id (streams were opened
    /// first); errors of [`Session::write`] / [`Session::finish`].
    pub fn replay_early_data(&mut self, early: &crate::early::EarlyData) -> Result<(), Error> {
        if self.side != Side::Client {
            return Err(Error::EarlyDataMismatch("only a client sends early data"));
        }
        for st in early.streams() {
            let id = self.open_stream(st.dir)?;
            if id != st.id {
                return Err(Error::EarlyDataMismatch(
                    "stream opened before the early streams",
                ));
            }
            let mut off = 0;
            while let Some(rest) = st.data.get(off..).filter(|r| !r.is_empty()) {
                off += self.write(id, rest)?;
            }
            if st.fin {
                self.finish(id)?;
            }
        }
        Ok(())
    }

    /// Client: takes the resumption ticket the server issued in this handshake (for a
    /// later `ClientConfig::ticket`). `None` once taken, or if none was issued.
    pub fn take_resumption_ticket(&mut self) -> Option<phantom_handshake::ResumptionTicket> {
        self.handshake.take_ticket()
    }

    /// What the ticket of this session offers (expiry, early-data allowance), while it
    /// has not been taken.
    #[must_use]
    pub fn resumption_hint(&self) -> Option<phantom_handshake::ResumptionHint> {
        self.handshake.ticket_hint()
    }

    /// True if this session resumed an earlier one (a ticket's secret was mixed in).
    #[must_use]
    pub fn is_resumed(&self) -> bool {
        self.handshake.resumed()
    }

    /// True if the server accepted the client's early data (both sides know).
    #[must_use]
    pub fn early_data_accepted(&self) -> bool {
        self.handshake.early_accepted()
    }

    // ───────────────────────── A. getters ─────────────────────────

    /// Which end we are.
    #[must_use]
    pub fn side(&self) -> Side {
        self.side
    }

    /// Lifecycle state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The session id (the handshake's; it names the session and is never on a 1-RTT
    /// packet).
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// The connection ids the peer's packets may carry (the ones we issued and did not
    /// retire): what an endpoint routes this session's datagrams by. Later changes come
    /// from [`Session::poll_conn_id_event`].
    #[must_use]
    pub fn local_conn_ids(&self) -> Vec<ConnId> {
        self.conn_ids.local_ids()
    }

    /// The connection id the primary path's packets carry now (each path has its own).
    #[must_use]
    pub fn peer_conn_id(&self) -> ConnId {
        self.conn_ids.peer_id_for(self.paths.primary())
    }

    /// The connection id path `path`'s packets carry.
    #[must_use]
    pub fn path_conn_id(&self, path: PathId) -> ConnId {
        self.conn_ids.peer_id_for(path)
    }

    /// How many ids the peer issued that no path uses: a new path needs one
    /// ([`Session::probe_path`]).
    #[must_use]
    pub fn unused_peer_conn_ids(&self) -> usize {
        self.conn_ids.unused_peer_ids()
    }

    /// The next change to the ids this session's datagrams are routed by: apply it to
    /// the routing table ([`crate::Endpoint::add_conn_id`],
    /// [`crate::Endpoint::retire_conn_id`]). Poll it with [`Session::poll_event`].
    pub fn poll_conn_id_event(&mut self) -> Option<ConnIdEvent> {
        self.conn_ids.poll_event()
    }

    /// True if `datagram` ends with the stateless-reset token the peer gave for a
    /// connection id one of our paths sends with (compared in constant time): the peer
    /// lost the session's state. Tokens of ids no path uses, or that we retired, do
    /// not count.
    #[must_use]
    pub fn is_stateless_reset(&self, datagram: &[u8]) -> bool {
        datagram
            .len()
            .checked_sub(16)
            .and_then(|at| datagram.get(at..))
            .is_some_and(|tail| self.conn_ids.is_reset_token(tail))
    }

    /// A datagram that did not route or open: if it is a stateless reset from the peer
    /// ([`Session::is_stateless_reset`]), the session closes at once, sending nothing
    /// ([`CloseReason::Reset`](crate::CloseReason::Reset)). Returns true if it did.
    pub fn handle_stateless_reset(&mut self, datagram: &[u8]) -> bool {
        if self.is_closed() || !self.is_stateless_reset(datagram) {
            return false;
        }
        tracing::info!(target: "phantom::session", "stateless reset from the peer");
        self.timers.cancel_all();
        self.state = State::Closed;
        self.events
            .push_back(Event::Closed(crate::types::CloseReason::Reset));
        true
    }

    /// The longest header our packets can have: the sample offset of header protection.
    pub(super) fn max_header_len(&self) -> usize {
        phantom_wire::sample_offset(self.conn_ids.max_peer_len())
    }

    /// Counters, with RTT/cwnd/bandwidth of the primary path.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.replay_rejected_total = self.spaces.replay_rejected_total();
        self.paths.primary_stats(&mut s);
        s
    }

    /// Snapshots of every path.
    #[must_use]
    pub fn paths(&self) -> Vec<PathSnapshot> {
        self.paths.snapshots()
    }

    /// The path used for control traffic.
    #[must_use]
    pub fn primary_path(&self) -> PathId {
        self.paths.primary()
    }

    /// Epochs of our sending direction and of the peer's.
    #[must_use]
    pub fn epochs(&self) -> (Epoch, Epoch) {
        (self.keys.send_epoch(), self.keys.recv_epoch())
    }

    /// The carrier fallback state machine (the runtime feeds it socket-level facts).
    pub fn fallback_mut(&mut self) -> &mut Fallback {
        // The caller may change what the fallback deadline is computed from.
        self.flush_loss_timers();
        &mut self.fallback
    }

    /// True once the session is closing, draining or closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closing | State::Draining | State::Closed)
    }

    /// True once nothing more will happen: the session can be dropped.
    #[must_use]
    pub fn is_drained(&self) -> bool {
        self.state == State::Closed
    }

    /// True while an ack-eliciting packet is in flight or a sending stream still has
    /// unacknowledged data.
    #[must_use]
    pub fn has_unacked_data(&self) -> bool {
        self.paths.values().any(|p| p.ack_eliciting_in_flight() > 0)
            || self.streams.has_unacked_data()
    }

    // ───────────────────────── B. inputs ─────────────────────────

    /// Takes one received datagram (decrypted in place). Never returns an error: a
    /// bad datagram is dropped and counted in [`Stats::dropped`]; a protocol violation
    /// by an authenticated peer closes the session ([`Event::Closed`]).
    pub fn handle_datagram(&mut self, now: Instant, rx: RxMeta, datagram: &mut [u8]) {
        self.on_datagram(now, rx, datagram);
    }

    /// Handles expired timers. Call when `poll_timeout`'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.on_timeout(now);
    }

    // ───────────────────────── C. application commands ─────────────────────────

    /// Opens a stream of our own. Ids are never reused (I3).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::StreamLimit`] (the peer's MAX_STREAMS),
    /// [`Error::StreamIdsExhausted`].
    pub fn open_stream(&mut self, dir: Dir) -> Result<StreamId, Error> {
        self.check_open()?;
        self.streams.open(dir)
    }

    /// Queues data on a stream; returns how many bytes were taken.
    ///
    /// # Errors
    /// [`Error::Blocked`] if the send buffer is full, [`Error::UnknownStream`],
    /// [`Error::Finished`], [`Error::Stopped`], [`Error::Closed`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, Error> {
        self.check_open()?;
        self.streams.write(id, data)
    }

    /// Queues data on a stream without copying it: takes the longest prefix of
    /// `data` the send buffer has room for (sharing its memory) and leaves the rest
    /// in `data`. Returns how many bytes were taken. The bytes are copied once, into
    /// the packet that carries them.
    ///
    /// # Errors
    /// As [`Session::write`].
    pub fn write_chunk(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, Error> {
        self.check_open()?;
        self.streams.write_chunk(id, data)
    }

    /// Marks the end of a stream's data.
    ///
    /// # Errors
    /// As [`Session::write`].
    pub fn finish(&mut self, id: StreamId) -> Result<(), Error> {
        self.check_open()?;
        self.streams.finish(id)
    }

    /// Abandons sending on a stream with an application code (a bare `u64`
    /// converts).
    ///
    /// # Errors
    /// [`Error::UnknownStream`], [`Error::Closed`].
    pub fn reset(&mut self, id: StreamId, code: impl Into<AppCode>) -> Result<(), Error> {
        self.check_open()?;
        self.streams.reset(id, code.into())
    }

    /// Asks the peer to stop sending on a stream with an application code (a bare
    /// `u64` converts); received data is discarded.
    ///
    /// # Errors
    /// [`Error::UnknownStream`], [`Error::Closed`].
    pub fn stop_sending(&mut self, id: StreamId, code: impl Into<AppCode>) -> Result<(), Error> {
        self.check_open()?;
        self.streams.stop_sending(id, code.into())
    }

    /// Reads in-order data. `Ok(Some(n))` = n bytes (0: nothing yet); `Ok(None)` = end
    /// of stream.
    ///
    /// # Errors
    /// [`Error::Reset`] if the peer reset the stream, [`Error::UnknownStream`].
    pub fn read(&mut self, id: StreamId, out: &mut [u8]) -> Result<Option<usize>, Error> {
        self.streams.read_via(id, |r: &mut RecvStream| r.read(out))
    }

    /// Zero-copy read: hands the next contiguous in-order bytes of the stream to `f`
    /// (as a borrowed slice of the receive buffer), which returns how many it used;
    /// the rest stays for the next read. Results as [`Session::read`]; `f` is not
    /// called when nothing is readable.
    ///
    /// # Errors
    /// As [`Session::read`].
    pub fn read_with(
        &mut self,
        id: StreamId,
        f: impl FnOnce(&[u8]) -> usize,
    ) -> Result<Option<usize>, Error> {
        self.streams
            .read_via(id, |r: &mut RecvStream| r.read_with(f))
    }

    /// Queues an unreliable datagram.
    ///
    /// # Errors
    /// [`Error::DatagramTooLarge`] if it cannot fit one packet, [`Error::Closed`],
    /// [`Error::Blocked`] if the queue is full.
    pub fn send_datagram(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        let max = self.cfg.max_datagram_size - self.max_header_len() - TAG_LEN - 8;
        if data.len() > max {
            return Err(Error::DatagramTooLarge);
        }
        if self.datagrams.queued() >= self.cfg.datagram_queue {
            return Err(Error::Blocked);
        }
        self.datagrams.queue(data.to_vec());
        Ok(())
    }

    /// Takes the oldest received datagram.
    pub fn recv_datagram(&mut self) -> Option<Vec<u8>> {
        self.datagrams.take_received()
    }

    /// Closes the session gracefully: the peer gets CLOSE with `code` and `reason`
    /// (truncated to 1024 bytes), and the session drains for three PTOs. A bare
    /// `u64` converts to the [`AppCode`].
    pub fn close(&mut self, now: Instant, code: impl Into<AppCode>, reason: &[u8]) {
        self.close_locally(now, code.into(), reason);
    }

    /// Rekey our sending direction after `n` packets per epoch (tests lower it).
    pub fn set_rekey_threshold(&mut self, n: u64) {
        self.keys.set_rekey_threshold(n);
    }

    /// Force a rekey when a stream's sequence advances by `n` within an epoch.
    pub fn set_seq_rekey_watermark(&mut self, n: u64) {
        self.keys.set_seq_rekey_watermark(n);
    }

    /// Changes the multipath scheduler mode.
    pub fn set_scheduler(&mut self, mode: SchedulerMode) {
        self.cfg.scheduler = mode;
    }

    /// Lowers the AEAD limits of both directions (tests of I6).
    pub fn set_crypto_limits(&mut self, limits: phantom_crypto::Limits) {
        self.keys.set_limits(limits);
    }

    /// Opens an additional path from `local` to `remote` and starts validating it.
    /// Data uses it only once validated (I7).
    ///
    /// The path sends with a connection id of the peer's that no other path uses
    /// (I11); with none unused it is not opened.
    ///
    /// # Errors
    /// [`Error::Path`] if the path exists, too many paths are open, or no unused peer
    /// connection id is left (`"no unused connection id"`); [`Error::Closed`].
    pub fn probe_path(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<PathId, Error> {
        self.flush_loss_timers();
        self.check_open()?;
        if self.paths.find(local, remote).is_some() {
            return Err(Error::Path("path exists"));
        }
        if self.conn_ids.unused_peer_ids() == 0 {
            // I11: a new path never reuses another path's id.
            return Err(Error::Path(NO_UNUSED_CONN_ID));
        }
        let id = self.new_path(now, local, remote)?;
        if let Err(e) = self.conn_ids.assign_fresh(id) {
            self.drop_path(id);
            return Err(e);
        }
        if let Some(p) = self.paths.get_mut(id) {
            p.set_origin(PathOrigin::Additional);
        }
        // Our own probe: budget it as if validated locally for sending challenges,
        // since we chose this address ourselves (not an amplification vector).
        self.paths
            .registry_mut()
            .on_received(id, 1200)
            .map_err(|_| Error::Path("registry"))?;
        Ok(id)
    }

    /// Stops using the path from `local` to `remote` (the runtime closed its carrier,
    /// e.g. a TCP connection, or retires it to re-probe it): whatever was in flight
    /// on it is declared lost and re-sent on the other paths, so no stream data is
    /// lost. The primary moves to another path if needed.
    ///
    /// # Errors
    /// [`Error::Path`] if no such path exists or it is the only one; [`Error::Closed`].
    pub fn abandon_path(&mut self, local: SocketAddr, remote: SocketAddr) -> Result<PathId, Error> {
        self.flush_loss_timers();
        self.check_open()?;
        let id = self
            .paths
            .find(local, remote)
            .ok_or(Error::Path("no such path"))?;
        if self.paths.len() < 2 {
            return Err(Error::Path("the last path cannot be abandoned"));
        }
        self.drop_path(id);
        if self.paths.primary() == id {
            self.paths
                .replace_primary(id, &mut self.stats, &mut self.events);
        }
        if self.state == State::Migrating && !self.paths.any_validating() {
            self.state = State::Connected;
        }
        self.update_loss_timer();
        tracing::debug!(target: "phantom::session", path = id.0, "path abandoned");
        Ok(id)
    }

    /// Our local address `from` changed to `to` (the runtime rebound its socket): every
    /// path from `from` switches to a connection id of the peer's that no path used
    /// (I11), and the old one is retired. The path keeps its addresses until packets
    /// arrive at `to` (the peer then sees a new address, as after NAT rebinding, and
    /// the session migrates). Returns how many paths switched.
    ///
    /// # Errors
    /// [`Error::Path`] (`"no unused connection id"`) if a path found none unused: it
    /// keeps its id (linkable); [`Error::Closed`].
    pub fn rebind_local(&mut self, from: SocketAddr, to: SocketAddr) -> Result<usize, Error> {
        self.check_open()?;
        let ids: Vec<PathId> = self
            .paths
            .iter()
            .filter(|(_, p)| p.addresses().0 == from)
            .map(|(id, _)| id)
            .collect();
        let mut switched = 0;
        for id in ids {
            self.conn_ids.switch_fresh(id)?;
            switched += 1;
        }
        tracing::debug!(target: "phantom::session", %from, %to, switched, "local address rebound");
        Ok(switched)
    }

    // ───────────────────────── D. outputs ─────────────────────────

    /// Builds the next datagram into `buf` (at most `max_datagram_size` bytes of it).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.transmit(now, buf)
    }

    /// Streams the packet builder still looks at: `(may have data to send, may
    /// have a control frame to send)`.
    #[cfg(test)]
    pub(crate) fn active_stream_counts(&self) -> (usize, usize) {
        self.streams.active_counts()
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.earliest_deadline()
    }

    /// The next event for the application. Once the queue is drained its memory is
    /// freed: an idle session holds no room for events it may never have.
    pub fn poll_event(&mut self) -> Option<Event> {
        let e = self.events.pop_front();
        if e.is_none() && self.events.capacity() > 0 {
            self.events = VecDeque::new();
        }
        e
    }

    // ───────────────────────── internals ─────────────────────────

    fn check_open(&self) -> Result<(), Error> {
        if matches!(self.state, State::Connected | State::Migrating) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// The peer's oldest open epoch moved: forget the spaces only older epochs used.
    fn forget_quiet_spaces(&mut self) {
        let oldest_open = self.keys.oldest_open_epoch().0;
        self.spaces.forget_quiet(oldest_open);
    }

    /// Paths failed over so far.
    /// Test pairs: each side learns the ids the other issued at construction, as if
    /// the NEW_CONN_ID frames had arrived, and owes none of them any more.
    #[cfg(test)]
    pub(crate) fn exchange_conn_ids_directly(a: &mut Session, b: &mut Session) {
        for f in a.conn_ids.take_owed() {
            let _ = b.conn_ids.on_new_conn_id(&f);
        }
        for f in b.conn_ids.take_owed() {
            let _ = a.conn_ids.on_new_conn_id(&f);
        }
    }

    /// Tests: one authenticated frame, as if it arrived on no particular path.
    #[cfg(test)]
    pub(crate) fn handle_frame_for_test(
        &mut self,
        now: Instant,
        f: &Frame<'_>,
    ) -> Result<(), Error> {
        self.on_frame(now, None, f)
    }

    #[cfg(test)]
    pub(crate) fn conn_id_table_sizes(&self) -> (usize, usize, usize, usize) {
        self.conn_ids.sizes()
    }

    #[cfg(test)]
    pub(crate) fn failovers(&self) -> u64 {
        self.ack.failovers
    }

    /// Capacity of the spare sent-packet ring (tests of idle memory).
    #[cfg(test)]
    pub(crate) fn spare_sent_capacity(&self) -> usize {
        self.spaces.spare_capacity()
    }

    /// Capacity of every path's recovery record ring (tests of idle memory).
    #[cfg(test)]
    pub(crate) fn recovery_ring_capacity(&self) -> usize {
        self.paths.ring_capacity()
    }

    /// Per-space state held: (ACK spaces, our sequence counters, replay windows,
    /// closed streams waiting to retire).
    #[cfg(test)]
    pub(crate) fn space_state(&self) -> (usize, usize, usize, usize) {
        let (acks, seqs, replay) = self.spaces.counts();
        (acks, seqs, replay, self.streams.closed_len())
    }

    /// Out-of-order fragments held over all receive streams.
    #[cfg(test)]
    pub(crate) fn recv_fragments(&self) -> usize {
        self.streams.recv_fragments()
    }

    /// Lowers the most distinct spaces the peer may use in one epoch.
    #[cfg(test)]
    pub(crate) fn set_space_limit(&mut self, n: usize) {
        self.spaces.set_space_limit(n);
    }
}
