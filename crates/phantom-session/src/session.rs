//! The sans-IO [`Session`] state machine.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::Bytes;
use phantom_crypto::{Opener, Sealer, Suite, TAG_LEN, TrafficSecret};
use phantom_guard::{PathConfig, PathEvent, PathRegistry, SendBudget, StreamWindows};
use phantom_handshake::Established;
use phantom_wire::frame::{
    Ack, Close, Datagram, MaxData, MaxStreamData, MaxStreams, PathChallenge, PathResponse, Rekey,
    ResetStream, StopSending, Stream as StreamFrame, StreamKind,
};
use phantom_wire::{
    Encode, Epoch, Flags, Frame, HEADER_LEN, Header, MAX_SEQUENCE, PathId, SessionId, StreamId,
    Writer, parse_frames,
};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use crate::cc::CongestionSnapshot;
use crate::error::Error;
use crate::fallback::{Carrier, Fallback, FallbackAction};
use crate::ranges::RangeSet;
use crate::recovery::{MAX_RECORDS, PathRecovery, Record, SentMeta};
use crate::scheduler::{PathView, SchedulerMode, pick};
use crate::stream::{
    ConnFlow, Dir, RecvStream, SendStream, Side, stream_dir, stream_id_for, stream_index,
    stream_initiator,
};
use crate::types::{
    CloseReason, Config, Event, INITIAL_MAX_STREAMS, INITIAL_SESSION_CREDIT, INITIAL_STREAM_CREDIT,
    MIN_DATAGRAM_SIZE, PathSnapshot, RxMeta, State, Stats, Transmit,
};
use crate::vecmap::VecMap;

/// The control stream's sequence space: packets without stream data use it.
const CONTROL_SPACE: u32 = 0;
/// Most ACK ranges remembered per space.
const MAX_ACK_RANGES_KEPT: usize = 32;
/// Most PATH_RESPONSEs queued per path.
const MAX_QUEUED_RESPONSES: usize = 4;
/// Upper bound of the PTO back-off exponent.
const MAX_PTO_BACKOFF: u32 = 6;
/// Most CLOSE retransmissions while closing.
const MAX_CLOSE_RESENDS: u32 = 8;

/// The secrets and identifiers a completed handshake hands to the session.
///
/// `send` protects our direction and `recv` the peer's; both start at epoch 0.
/// Zeroized on drop through [`TrafficSecret`] (I8).
pub struct SessionKeys {
    /// The negotiated AEAD suite.
    pub suite: Suite,
    /// The 256-bit session id the server chose.
    pub session_id: SessionId,
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
        let (send, recv) = match side {
            Side::Client => (est.c2s.clone(), est.s2c.clone()),
            Side::Server => (est.s2c.clone(), est.c2s.clone()),
        };
        Self {
            suite: est.suite,
            session_id: est.session_id,
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
            .finish_non_exhaustive()
    }
}

/// Indices into the timer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Idle = 0,
    KeepAlive = 1,
    LossDetection = 2,
    AckDelay = 3,
    Pacing = 4,
    PathValidation = 5,
    RetireKeys = 6,
    Close = 7,
    Fallback = 8,
}

const TIMER_COUNT: usize = 9;

/// One enum-indexed table of deadlines; `poll_timeout` returns the earliest.
#[derive(Debug, Clone, Default)]
struct Timers([Option<Instant>; TIMER_COUNT]);

impl Timers {
    fn set(&mut self, t: Timer, at: Option<Instant>) {
        if let Some(slot) = self.0.get_mut(t as usize) {
            *slot = at;
        }
    }
    fn get(&self, t: Timer) -> Option<Instant> {
        self.0.get(t as usize).copied().flatten()
    }
    fn expired(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|d| d <= now)
    }
    fn earliest(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

/// Acknowledgement state of one received sequence space.
#[derive(Debug, Default)]
struct AckSpace {
    received: RangeSet,
    largest_at: Option<Instant>,
    /// The peer epoch of the latest packet in this space, if it was the first of
    /// its epoch here counted in `spaces_this_epoch`.
    epoch: Option<u32>,
    /// The newest peer epoch of any packet received in this space.
    newest: u32,
    unacked_eliciting: u32,
    pending: bool,
}

/// Where each tracked packet of one sequence space went: `(path, ppn)` indexed by
/// `seq - base`. Sequences are dense per space, so a ring replaces a map; packets
/// that were not tracked, or are acknowledged or lost, are `None` holes until the
/// front is trimmed.
#[derive(Debug, Default)]
struct SpaceSent {
    base: u64,
    slots: VecDeque<Option<(u8, u64)>>,
    /// Number of `Some` slots: an ACK scan stops as soon as nothing is left.
    live: usize,
}

impl SpaceSent {
    fn insert(&mut self, seq: u64, v: (u8, u64)) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        // The next sequence of the space (the common case): append.
        if seq.checked_sub(self.base) == Some(self.slots.len() as u64) {
            self.slots.push_back(Some(v));
            self.live += 1;
            return;
        }
        let Some(i) = seq
            .checked_sub(self.base)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        while self.slots.len() < i {
            self.slots.push_back(None);
        }
        match self.slots.get_mut(i) {
            Some(slot) => {
                if slot.replace(v).is_none() {
                    self.live += 1;
                }
            }
            None => {
                self.slots.push_back(Some(v));
                self.live += 1;
            }
        }
    }

    /// Takes every tracked packet with a sequence in `[lo, hi)` out, appending
    /// `(path, ppn, seq)` to `out` in sequence order, then trims the front once
    /// (what `remove` of each sequence in turn does, without a front check per
    /// packet).
    fn take_range(&mut self, lo: u64, hi: u64, out: &mut Vec<(u8, u64, u64)>) {
        let end = self.base + self.slots.len() as u64;
        let lo = lo.max(self.base);
        let hi = hi.min(end);
        if lo >= hi {
            return;
        }
        let (Ok(i0), Ok(i1)) = (
            usize::try_from(lo - self.base),
            usize::try_from(hi - self.base),
        ) else {
            return;
        };
        for (seq, slot) in (lo..).zip(self.slots.range_mut(i0..i1)) {
            if let Some((path, ppn)) = slot.take() {
                out.push((path, ppn, seq));
                self.live = self.live.saturating_sub(1);
            }
        }
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    fn remove(&mut self, seq: u64) -> Option<(u8, u64)> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let v = self.slots.get_mut(i)?.take()?;
        self.live = self.live.saturating_sub(1);
        while let Some(None) = self.slots.front() {
            self.slots.pop_front();
            self.base += 1;
        }
        Some(v)
    }
}

/// A stream's two halves and its event flags.
#[derive(Debug)]
struct StreamEntry {
    send: Option<SendStream>,
    recv: Option<RecvStream>,
    readable_signalled: bool,
}

/// One network path as seen from this end.
#[derive(Debug)]
struct Path {
    local: SocketAddr,
    remote: SocketAddr,
    /// RTT, ledger, controller and pacer, with the records of packets in flight.
    recovery: PathRecovery,
    responses: VecDeque<[u8; 32]>,
    challenge: Option<[u8; 32]>,
    probes: u8,
    degraded: bool,
    created: Instant,
    last_rx: Option<Instant>,
    /// When an ack-eliciting packet last left on this path.
    last_tx_eliciting: Option<Instant>,
    /// The peer probed this (failed) path: the next acknowledgement goes here.
    answer_probe: bool,
    bytes_sent: u64,
    /// How the path came to be: `Some(true)` if it was opened deliberately as an
    /// additional path (by our own `probe_path`, or, at a server, by the client with a
    /// probing-only first packet), `Some(false)` if the peer's ordinary packets simply
    /// started arriving from a new address (NAT rebinding, a moved socket) or a server
    /// moved to our new address, `None` until the first authenticated packet on a path
    /// the peer opened. Only the latter moves the
    /// session there while the old primary still works (PROTOCOL §5.4).
    opened_by_probe: Option<bool>,
}

/// The closing frame we keep re-sending while closing.
#[derive(Debug, Clone)]
struct CloseInfo {
    code: u64,
    application: bool,
    reason: Vec<u8>,
    resends_left: u32,
    pending: bool,
}

/// What a packet under construction holds.
#[derive(Debug)]
struct Built {
    space: u32,
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
///   [`Sealer::seal_packet`] with the header image as associated data.
/// * I3: each stream space has one strictly increasing sequence counter; a lost
///   packet's *data* is re-sent in a new packet with a fresh sequence, never re-sealed;
///   stream ids are never reused; sequence exhaustion closes the session.
/// * I4: the replay window is consulted only after the AEAD verified the packet.
/// * I5/I6: epochs move by [`Sealer::rekey`] and the opener's authenticated catch-up;
///   the integrity limit closes the session.
/// * I7: stream data and datagrams go only on validated paths; an unvalidated
///   address gets at most 3x the bytes it sent (enforced by `PathRegistry`).
/// * I9: all randomness comes from a ChaCha20 RNG seeded by the caller; all maps
///   iterate in a fixed order.
pub struct Session {
    side: Side,
    cfg: Config,
    state: State,
    session_id: SessionId,
    sealer: Sealer,
    opener: Opener,
    rekey_frame_pending: bool,
    rekey_flag_pending: bool,
    replay: StreamWindows,
    rng: ChaCha20Rng,

    next_seq: VecMap<u32, u64>,
    acks: VecMap<u32, AckSpace>,
    sent_index: VecMap<u32, SpaceSent>,
    /// The ring of the space whose tracked packets were last all resolved, kept for
    /// the next space entry (a bulk stream's entry empties after every burst; reusing
    /// its ring saves growing a new one, and the allocations, per burst).
    spare_sent: VecDeque<Option<(u8, u64)>>,
    /// Closed streams whose own sequence counters wait for their last packets to be
    /// acknowledged or lost; see [`Session::retire_spaces`].
    retire_queue: VecDeque<u32>,
    /// Closed streams whose own sequence counters are dropped, as stream indices per
    /// kind (`id & 3`): compact ranges, since streams close roughly in id order.
    retired: [RangeSet; 4],
    /// Distinct sequence spaces the peer used in its current epoch (I1: bounded).
    spaces_this_epoch: usize,
    /// Most distinct spaces a peer may use in one epoch (its sealer rekeys long before).
    space_limit: usize,

    /// Boxed so that inserting or removing a stream moves pointers, not entries.
    streams: VecMap<u32, Box<StreamEntry>>,
    next_index: [u32; 2],
    opened_by_peer: [RangeSet; 2],
    local_max_streams: [u64; 2],
    max_streams_pending: [bool; 2],
    remote_max_streams: [u64; 2],
    flow: ConnFlow,
    rr_cursor: u32,
    /// Streams that may have data to send (unsent, lost, or a FIN): the only ones
    /// the packet builder looks at, so idle streams cost nothing per packet. A
    /// stream leaves when it has nothing left or waits for its own credit, and
    /// comes back on a write, a finish, a loss or a MAX_STREAM_DATA.
    send_active: BTreeSet<u32>,
    /// Streams with a RESET_STREAM, STOP_SENDING or MAX_STREAM_DATA to send.
    ctl_active: BTreeSet<u32>,
    /// Spaces with an ACK to send, and the ack-eliciting packets they hold
    /// unacknowledged in total (an ACK is due at two).
    ack_pending: BTreeSet<u32>,
    unacked_eliciting_total: u32,
    /// Scratch list of stream or space ids.
    stale_buf: Vec<u32>,

    dgram_out: VecDeque<Vec<u8>>,
    dgram_in: VecDeque<Vec<u8>>,

    paths: VecMap<u8, Path>,
    registry: PathRegistry,
    primary: u8,
    next_path_id: u16,
    redundant_queue: VecDeque<(u8, Record)>,

    timers: Timers,
    /// The loss, path-validation, fallback and keep-alive deadlines in `timers` are
    /// out of date: packets were sent or received since they were last worked out.
    /// A burst of packets works them out once, when they are next read
    /// (`poll_timeout`, `handle_timeout`) or an input of theirs changes outside
    /// `poll_transmit`/`handle_datagram` (which mark them stale after every change).
    loss_timers_stale: bool,
    last_rx: Instant,
    last_tx_eliciting: Instant,
    ping_pending: bool,
    /// Some path may have a PTO probe to send (`Path::probes > 0`): set wherever a
    /// probe is armed, cleared by `send_regular` once no path has one.
    probes_maybe: bool,
    /// An ack-eliciting packet carrying more than PING/ACK/PADDING arrived since an
    /// ACK-only packet last carried a PING for a stale path (see `build_regular`).
    data_since_stale_ping: bool,
    close: Option<CloseInfo>,
    events: VecDeque<Event>,
    stats: Stats,
    fallback: Fallback,

    scratch: Vec<u8>,
    lost_buf: Vec<SentMeta>,
    newly_buf: Vec<(u8, u64, u64)>,
    /// Records of the packets one ACK frame newly acknowledged.
    acked_records: Vec<Record>,
    /// Paths an ACK frame of the packet being processed touched.
    touched_buf: Vec<u8>,
    ack_ranges: Vec<RangeInclusive<u64>>,
    pick_buf: Vec<PathId>,
    views_buf: Vec<PathView>,
    /// `next_send_stream()` as `has_stream_data` found it while `send_regular` chose
    /// a path, for `write_stream_data` of the same packet (nothing in between
    /// changes what it returns); `None` if it was not asked.
    send_stream_hint: Option<Option<u32>>,

    /// The handshake's last flight, re-sent (raw, it is a handshake datagram) when a
    /// handshake retransmission from the peer shows it was lost, until the peer's first
    /// protected packet authenticates.
    handshake_flight: Vec<Vec<u8>>,
    flight_resend: VecDeque<Vec<u8>>,
    flight_resends_left: u32,
    peer_confirmed: bool,
    /// What the handshake said about resumption (client: the new ticket).
    resumption: Resumption,
}

/// Resumption facts from the handshake.
#[derive(Default)]
struct Resumption {
    ticket: Option<phantom_handshake::ResumptionTicket>,
    resumed: bool,
    early_accepted: bool,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("side", &self.side)
            .field("state", &self.state)
            .field("session_id", &self.session_id)
            .field("send_epoch", &self.sealer.epoch())
            .field("recv_epoch", &self.opener.epoch())
            .field("paths", &self.paths.len())
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

fn kind_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
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
            send,
            recv,
        } = keys;
        let mut sealer = Sealer::new(suite, send).map_err(|_| Error::Crypto("sealer"))?;
        if let Some(n) = cfg.rekey_threshold {
            sealer.set_rekey_threshold(n);
        }
        if let Some(n) = cfg.seq_rekey_watermark {
            sealer.set_seq_rekey_watermark(n);
        }
        let opener = Opener::new(suite, recv).map_err(|_| Error::Crypto("opener"))?;
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
        let replay = StreamWindows::with_width(cfg.replay_window)
            .map_err(|_| Error::Path("invalid replay window width"))?;
        let mss = cfg.max_datagram_size as u64;
        let mut paths = VecMap::new();
        paths.insert(0, Path::new(local, remote, now, &cfg, mss)?);
        let mut flow = ConnFlow::new(INITIAL_SESSION_CREDIT, cfg.session_receive_window);
        flow.credit_pending = cfg.session_receive_window > INITIAL_SESSION_CREDIT;
        // As for streams: the implicit initial credit is the least we can enforce.
        flow.recv_max = flow.recv_max.max(INITIAL_SESSION_CREDIT);
        // The peer may open the protocol's initial number of streams before it hears
        // from us: that is the least we can enforce (as for credit).
        let max_streams = cfg.max_concurrent_streams.max(INITIAL_MAX_STREAMS);
        let extra_streams = max_streams > INITIAL_MAX_STREAMS;
        let mut s = Self {
            side,
            state: State::Connected,
            session_id,
            sealer,
            opener,
            rekey_frame_pending: false,
            rekey_flag_pending: false,
            replay,
            rng: ChaCha20Rng::from_seed(rng_seed),
            next_seq: VecMap::new(),
            acks: VecMap::new(),
            sent_index: VecMap::new(),
            spare_sent: VecDeque::new(),
            retire_queue: VecDeque::new(),
            retired: Default::default(),
            spaces_this_epoch: 0,
            space_limit: phantom_crypto::STREAM_TABLE_HARD_LIMIT,
            streams: VecMap::new(),
            next_index: [1, 1],
            opened_by_peer: [RangeSet::new(), RangeSet::new()],
            local_max_streams: [max_streams; 2],
            max_streams_pending: [extra_streams; 2],
            remote_max_streams: [INITIAL_MAX_STREAMS; 2],
            flow,
            rr_cursor: 0,
            send_active: BTreeSet::new(),
            ctl_active: BTreeSet::new(),
            ack_pending: BTreeSet::new(),
            unacked_eliciting_total: 0,
            stale_buf: Vec::new(),
            dgram_out: VecDeque::new(),
            dgram_in: VecDeque::new(),
            paths,
            registry,
            primary: 0,
            next_path_id: 1,
            redundant_queue: VecDeque::new(),
            timers: Timers::default(),
            loss_timers_stale: false,
            last_rx: now,
            last_tx_eliciting: now,
            ping_pending: false,
            probes_maybe: false,
            data_since_stale_ping: false,
            close: None,
            events: VecDeque::new(),
            stats: Stats::default(),
            fallback: Fallback::new(cfg.fallback, now),
            // Grown on first use: an idle session keeps no datagram-sized buffer.
            scratch: Vec::new(),
            lost_buf: Vec::new(),
            newly_buf: Vec::new(),
            acked_records: Vec::new(),
            touched_buf: Vec::new(),
            ack_ranges: Vec::new(),
            pick_buf: Vec::new(),
            views_buf: Vec::new(),
            send_stream_hint: None,
            handshake_flight: Vec::new(),
            flight_resend: VecDeque::new(),
            flight_resends_left: 8,
            peer_confirmed: false,
            resumption: Resumption::default(),
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
        s.handshake_flight = std::mem::take(&mut est.pending_flight);
        s.resumption = Resumption {
            ticket: est.resumption_ticket.take(),
            resumed: est.resumed,
            early_accepted: est.early_data_accepted,
        };
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
                if st.offset == 0 && stream_initiator(st.stream_id.0) == Side::Client)
        });
        if !valid || blob.is_empty() {
            self.stats.dropped.malformed += 1;
            tracing::debug!(target: "phantom::session", "early data ignored: not replay-safe stream openings");
            return;
        }
        for f in parse_frames(blob) {
            if let Ok(Frame::Stream(st)) = f
                && let Err(e) = self.on_stream_frame(&st)
            {
                // Authenticated but impossible (e.g. above the stream limit).
                self.fatal(now, e);
                return;
            }
        }
        tracing::debug!(target: "phantom::session", bytes = blob.len(), "early data delivered");
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
        self.resumption.ticket.take()
    }

    /// What the ticket of this session offers (expiry, early-data allowance), while it
    /// has not been taken.
    #[must_use]
    pub fn resumption_hint(&self) -> Option<phantom_handshake::ResumptionHint> {
        self.resumption
            .ticket
            .as_ref()
            .map(phantom_handshake::ResumptionTicket::hint)
    }

    /// True if this session resumed an earlier one (a ticket's secret was mixed in).
    #[must_use]
    pub fn is_resumed(&self) -> bool {
        self.resumption.resumed
    }

    /// True if the server accepted the client's early data (both sides know).
    #[must_use]
    pub fn early_data_accepted(&self) -> bool {
        self.resumption.early_accepted
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

    /// The session id.
    #[must_use]
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// Counters, with RTT/cwnd/bandwidth of the primary path.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.replay_rejected_total = self.replay.rejected_total();
        if let Some(p) = self.paths.get(&self.primary) {
            s.rtt = p.recovery.rtt().smoothed();
            s.cwnd = p.recovery.window();
            s.bandwidth = p.bandwidth();
        }
        s
    }

    /// Snapshots of every path.
    #[must_use]
    pub fn paths(&self) -> Vec<PathSnapshot> {
        self.paths
            .iter()
            .map(|(&id, p)| PathSnapshot {
                id: PathId(id),
                local: p.local,
                remote: p.remote,
                validated: self.registry.is_validated(PathId(id)),
                primary: id == self.primary,
                rtt: p.recovery.rtt().smoothed(),
                congestion: p.snapshot(),
                bytes_sent: p.bytes_sent,
            })
            .collect()
    }

    /// The path used for control traffic.
    #[must_use]
    pub fn primary_path(&self) -> PathId {
        PathId(self.primary)
    }

    /// Epochs of our sending direction and of the peer's.
    #[must_use]
    pub fn epochs(&self) -> (Epoch, Epoch) {
        (self.sealer.epoch(), self.opener.epoch())
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
        self.paths
            .values()
            .any(|p| p.recovery.ack_eliciting_in_flight() > 0)
            || self.streams.values().any(|e| {
                e.send
                    .as_ref()
                    .is_some_and(|s| !s.is_done() && s.write_end() > 0)
            })
    }

    // ───────────────────────── B. inputs ─────────────────────────

    /// Takes one received datagram (decrypted in place). Never returns an error: a
    /// bad datagram is dropped and counted in [`Stats::dropped`]; a protocol violation
    /// by an authenticated peer closes the session ([`Event::Closed`]).
    pub fn handle_datagram(&mut self, now: Instant, rx: RxMeta, datagram: &mut [u8]) {
        if matches!(self.state, State::Closed | State::Draining) {
            self.stats.dropped.closed += 1;
            return;
        }
        let len = datagram.len() as u64;
        // The header is parsed once, by the opener, which also refuses another
        // session's packets and cleartext handshake packets before any key is tried.
        // I1/I2: nothing below runs unless the AEAD verified the packet.
        let opened = match self.opener.open_session_packet(&self.session_id, datagram) {
            Ok(p) => p,
            Err(phantom_crypto::Error::Wire(_)) => {
                if !self.peer_confirmed
                    && !self.handshake_flight.is_empty()
                    && phantom_handshake::Datagram::parse(datagram).is_ok()
                {
                    // The peer is still in the handshake: our last flight was lost.
                    self.stats.dropped.unexpected_handshake += 1;
                    if self.flight_resends_left > 0 && self.flight_resend.is_empty() {
                        self.flight_resends_left -= 1;
                        self.flight_resend
                            .extend(self.handshake_flight.iter().cloned());
                    }
                    return;
                }
                self.stats.dropped.malformed += 1;
                return;
            }
            Err(phantom_crypto::Error::UnknownSession) => {
                self.stats.dropped.unknown_session += 1;
                return;
            }
            Err(phantom_crypto::Error::Unprotected) => {
                self.stats.dropped.unexpected_handshake += 1;
                return;
            }
            Err(phantom_crypto::Error::IntegrityLimitExceeded) => {
                self.stats.dropped.unauthenticated += 1;
                // I6: the integrity limit closes the session.
                self.fatal(now, Error::Crypto("integrity limit reached"));
                return;
            }
            Err(_) => {
                self.stats.dropped.unauthenticated += 1;
                return;
            }
        };
        let header = *opened.header();
        let advanced = opened.advanced_epoch();
        let payload = opened.payload();
        // I4: the replay window is consulted only now, after the AEAD verified.
        if self
            .replay
            .accept_authenticated(header.stream_id, header.sequence)
            .is_err()
        {
            self.stats.dropped.replayed += 1;
            tracing::trace!(target: "phantom::session", stream = header.stream_id.0, seq = header.sequence, "replay rejected");
            return;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += len;
        if !self.peer_confirmed {
            self.peer_confirmed = true;
            self.handshake_flight.clear();
            self.flight_resend.clear();
        }
        self.last_rx = now;
        self.rearm_idle(now);
        if rx.carrier == Carrier::Udp {
            let action = self.fallback.on_udp_received(now);
            self.on_fallback_action(action);
        }
        if advanced {
            self.spaces_this_epoch = 0;
            self.stats.rekeys_peer += 1;
            let pto = self.max_pto();
            self.timers.set(Timer::RetireKeys, Some(now + pto * 3));
            self.events.push_back(Event::Rekeyed {
                epoch: header.epoch,
                local: false,
            });
            tracing::debug!(target: "phantom::session", epoch = header.epoch.0, "followed peer rekey");
        }
        let path = self.resolve_path(now, rx, len);
        if self.state == State::Closing {
            // Answer anything with our CLOSE again (bounded).
            if let Some(c) = self.close.as_mut()
                && c.resends_left > 0
            {
                c.resends_left -= 1;
                c.pending = true;
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
            self.loss_timers_stale = true;
        }
    }

    /// Handles expired timers. Call when `poll_timeout`'s deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush_loss_timers();
        if self.state == State::Closed {
            return;
        }
        if self.timers.expired(Timer::Close, now) {
            self.timers = Timers::default();
            self.loss_timers_stale = false;
            self.state = State::Closed;
            return;
        }
        if matches!(self.state, State::Closing | State::Draining) {
            return;
        }
        if self.timers.expired(Timer::Idle, now) {
            tracing::info!(target: "phantom::session", "idle timeout");
            self.timers = Timers::default();
            self.loss_timers_stale = false;
            self.state = State::Closed;
            self.events
                .push_back(Event::Closed(CloseReason::IdleTimeout));
            return;
        }
        self.retire_spaces();
        if self.timers.expired(Timer::RetireKeys, now) {
            self.timers.set(Timer::RetireKeys, None);
            self.opener.retire_previous();
            self.forget_quiet_spaces();
        }
        if self.timers.expired(Timer::AckDelay, now) {
            self.timers.set(Timer::AckDelay, None);
        }
        if self.timers.expired(Timer::Pacing, now) {
            self.timers.set(Timer::Pacing, None);
        }
        if self.timers.expired(Timer::KeepAlive, now) {
            self.timers.set(Timer::KeepAlive, None);
            self.ping_pending = true;
        }
        if self.timers.expired(Timer::Fallback, now) {
            let action = self.fallback.on_timeout(now);
            self.on_fallback_action(action);
        }
        if self.timers.expired(Timer::LossDetection, now) {
            self.on_loss_timer(now);
        }
        if self.timers.expired(Timer::PathValidation, now) {
            self.on_path_timer(now);
        }
        self.update_loss_timer();
    }

    // ───────────────────────── C. application commands ─────────────────────────

    /// Opens a stream of our own. Ids are never reused (I3).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::StreamLimit`] (the peer's MAX_STREAMS),
    /// [`Error::StreamIdsExhausted`].
    pub fn open_stream(&mut self, dir: Dir) -> Result<StreamId, Error> {
        self.check_open()?;
        let k = kind_index(dir);
        let index = self.next_index.get(k).copied().unwrap_or(u32::MAX);
        if u64::from(index) > self.remote_max_streams.get(k).copied().unwrap_or(0) {
            return Err(Error::StreamLimit);
        }
        let id = stream_id_for(self.side, dir, index).ok_or(Error::StreamIdsExhausted)?;
        if let Some(n) = self.next_index.get_mut(k) {
            *n = index.saturating_add(1);
        }
        let recv = (dir == Dir::Bi).then(|| self.new_recv());
        if recv.as_ref().is_some_and(|r| r.credit_pending) {
            self.ctl_active.insert(id);
        }
        self.streams.insert(
            id,
            Box::new(StreamEntry {
                send: Some(SendStream::new(
                    INITIAL_STREAM_CREDIT,
                    self.cfg.stream_send_buffer,
                )),
                recv,
                readable_signalled: false,
            }),
        );
        Ok(StreamId(id))
    }

    /// Queues data on a stream; returns how many bytes were taken.
    ///
    /// # Errors
    /// [`Error::Blocked`] if the send buffer is full, [`Error::UnknownStream`],
    /// [`Error::Finished`], [`Error::Stopped`], [`Error::Closed`].
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, Error> {
        self.check_open()?;
        let n = self.send_half(id)?.write(data)?;
        if n > 0 {
            self.send_active.insert(id.0);
        }
        Ok(n)
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
        let n = self.send_half(id)?.write_bytes(data)?;
        if n > 0 {
            self.send_active.insert(id.0);
        }
        Ok(n)
    }

    /// Marks the end of a stream's data.
    ///
    /// # Errors
    /// As [`Session::write`].
    pub fn finish(&mut self, id: StreamId) -> Result<(), Error> {
        self.check_open()?;
        self.send_half(id)?.finish()?;
        self.send_active.insert(id.0);
        Ok(())
    }

    /// Abandons sending on a stream with an application code.
    ///
    /// # Errors
    /// [`Error::UnknownStream`], [`Error::Closed`].
    pub fn reset(&mut self, id: StreamId, code: u64) -> Result<(), Error> {
        self.check_open()?;
        let s = self.send_half(id)?;
        s.reset(code);
        if s.reset_pending {
            self.ctl_active.insert(id.0);
        }
        Ok(())
    }

    /// Asks the peer to stop sending on a stream; received data is discarded.
    ///
    /// # Errors
    /// [`Error::UnknownStream`], [`Error::Closed`].
    pub fn stop_sending(&mut self, id: StreamId, code: u64) -> Result<(), Error> {
        self.check_open()?;
        let r = self
            .streams
            .get_mut(&id.0)
            .and_then(|e| e.recv.as_mut())
            .ok_or(Error::UnknownStream(id.0))?;
        if r.stop(code) {
            let released = r.take_released();
            self.flow.on_consumed(released);
            self.ctl_active.insert(id.0);
            // Its final size may be known already: then nothing more is expected.
            self.maybe_remove_stream(id.0);
        }
        Ok(())
    }

    /// Reads in-order data. `Ok(Some(n))` = n bytes (0: nothing yet); `Ok(None)` = end
    /// of stream.
    ///
    /// # Errors
    /// [`Error::Reset`] if the peer reset the stream, [`Error::UnknownStream`].
    pub fn read(&mut self, id: StreamId, out: &mut [u8]) -> Result<Option<usize>, Error> {
        self.read_via(id, |r| r.read(out))
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
        self.read_via(id, |r| r.read_with(f))
    }

    fn read_via(
        &mut self,
        id: StreamId,
        op: impl FnOnce(&mut RecvStream) -> Result<Option<usize>, Error>,
    ) -> Result<Option<usize>, Error> {
        let entry = self
            .streams
            .get_mut(&id.0)
            .ok_or(Error::UnknownStream(id.0))?;
        entry.readable_signalled = false;
        let r = entry.recv.as_mut().ok_or(Error::UnknownStream(id.0))?;
        let result = op(r);
        if r.credit_pending {
            self.ctl_active.insert(id.0);
        }
        if let Ok(Some(n)) = result {
            self.flow.on_consumed(n as u64);
        }
        self.maybe_remove_stream(id.0);
        result
    }

    /// Queues an unreliable datagram.
    ///
    /// # Errors
    /// [`Error::DatagramTooLarge`] if it cannot fit one packet, [`Error::Closed`],
    /// [`Error::Blocked`] if the queue is full.
    pub fn send_datagram(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        let max = self.cfg.max_datagram_size - HEADER_LEN - TAG_LEN - 8;
        if data.len() > max {
            return Err(Error::DatagramTooLarge);
        }
        if self.dgram_out.len() >= self.cfg.datagram_queue {
            return Err(Error::Blocked);
        }
        self.dgram_out.push_back(data.to_vec());
        Ok(())
    }

    /// Takes the oldest received datagram.
    pub fn recv_datagram(&mut self) -> Option<Vec<u8>> {
        self.dgram_in.pop_front()
    }

    /// Closes the session gracefully: the peer gets CLOSE with `code` and `reason`
    /// (truncated to 1024 bytes), and the session drains for three PTOs.
    pub fn close(&mut self, now: Instant, code: u64, reason: &[u8]) {
        if self.is_closed() {
            return;
        }
        let reason = reason
            .get(..reason.len().min(phantom_wire::frame::MAX_CLOSE_REASON_LEN))
            .unwrap_or_default()
            .to_vec();
        self.events.push_back(Event::Closed(CloseReason::Local {
            code,
            reason: reason.clone(),
        }));
        self.start_closing(now, code, true, reason);
    }

    /// Rekey our sending direction after `n` packets per epoch (tests lower it).
    pub fn set_rekey_threshold(&mut self, n: u64) {
        self.sealer.set_rekey_threshold(n);
    }

    /// Force a rekey when a stream's sequence advances by `n` within an epoch.
    pub fn set_seq_rekey_watermark(&mut self, n: u64) {
        self.sealer.set_seq_rekey_watermark(n);
    }

    /// Changes the multipath scheduler mode.
    pub fn set_scheduler(&mut self, mode: SchedulerMode) {
        self.cfg.scheduler = mode;
    }

    /// Lowers the AEAD limits of both directions (tests of I6).
    pub fn set_crypto_limits(&mut self, limits: phantom_crypto::Limits) {
        self.sealer.set_limits(limits);
        self.opener.set_limits(limits);
    }

    /// Opens an additional path from `local` to `remote` and starts validating it.
    /// Data uses it only once validated (I7).
    ///
    /// # Errors
    /// [`Error::Path`] if the path exists or too many paths are open; [`Error::Closed`].
    pub fn probe_path(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<PathId, Error> {
        self.flush_loss_timers();
        self.check_open()?;
        if self
            .paths
            .values()
            .any(|p| p.local == local && p.remote == remote)
        {
            return Err(Error::Path("path exists"));
        }
        let id = self.new_path(now, local, remote)?;
        if let Some(p) = self.paths.get_mut(&id) {
            p.opened_by_probe = Some(true);
        }
        // Our own probe: budget it as if validated locally for sending challenges,
        // since we chose this address ourselves (not an amplification vector).
        self.registry
            .on_received(PathId(id), 1200)
            .map_err(|_| Error::Path("registry"))?;
        Ok(PathId(id))
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
            .iter()
            .find(|(_, p)| p.local == local && p.remote == remote)
            .map(|(&id, _)| id)
            .ok_or(Error::Path("no such path"))?;
        if self.paths.len() < 2 {
            return Err(Error::Path("the last path cannot be abandoned"));
        }
        let mut lost = std::mem::take(&mut self.lost_buf);
        lost.clear();
        if let Some(mut p) = self.paths.remove(&id) {
            p.recovery.drain_all(&mut lost);
        }
        self.registry.remove(PathId(id));
        self.handle_lost(id, &lost);
        self.lost_buf = lost;
        if self.primary == id {
            self.choose_new_primary();
            if self.primary == id {
                // No healthy validated path: any validated one, else any at all.
                let next = self
                    .paths
                    .keys()
                    .copied()
                    .find(|&o| self.registry.is_validated(PathId(o)))
                    .or_else(|| self.paths.keys().next().copied());
                if let Some(next) = next {
                    self.primary = next;
                }
            }
        }
        if self.state == State::Migrating && !self.any_validating() {
            self.state = State::Connected;
        }
        self.update_loss_timer();
        tracing::debug!(target: "phantom::session", path = id, "path abandoned");
        Ok(PathId(id))
    }

    // ───────────────────────── D. outputs ─────────────────────────

    /// Builds the next datagram into `buf` (at most `max_datagram_size` bytes of it).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let size = buf.len().min(self.cfg.max_datagram_size);
        if size < MIN_DATAGRAM_SIZE {
            return None;
        }
        match self.state {
            State::Closed | State::Draining | State::Handshaking => return None,
            State::Closing => return self.send_close(now, buf, size),
            State::Connected | State::Migrating => {}
        }
        if let Some(d) = self.flight_resend.pop_front()
            && let Some(dst) = buf.get_mut(..d.len())
            && let Some(p) = self.paths.get(&self.primary)
        {
            dst.copy_from_slice(&d);
            return Some(Transmit {
                path: PathId(self.primary),
                src: p.local,
                dst: p.remote,
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
            self.loss_timers_stale = true;
        }
        t
    }

    /// Streams the packet builder still looks at: `(may have data to send, may
    /// have a control frame to send)`.
    #[cfg(test)]
    pub(crate) fn active_stream_counts(&self) -> (usize, usize) {
        (self.send_active.len(), self.ctl_active.len())
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.loss_timers_stale {
            let mut timers = self.timers.clone();
            self.loss_timers_into(&mut timers);
            return timers.earliest();
        }
        self.timers.earliest()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ───────────────────────── internals: receive ─────────────────────────

    fn process_payload(
        &mut self,
        now: Instant,
        path: Option<u8>,
        header: Header,
        payload: &[u8],
    ) -> Result<(), Error> {
        // Validate the whole payload first, so that a malformed frame changes nothing.
        // The frames of a typical packet are kept from this pass, so they are parsed
        // once; a packet with more frames than that is parsed again below.
        const KEPT_FRAMES: usize = 8;
        let mut kept: [Option<Frame<'_>>; KEPT_FRAMES] = [None; KEPT_FRAMES];
        let mut count = 0usize;
        let mut eliciting = false;
        let mut probing_only = true;
        let mut ping_only = true;
        let mut control_only = true;
        for f in parse_frames(payload) {
            let f = f.map_err(|_| Error::PeerViolation("malformed frame"))?;
            if let Some(slot) = kept.get_mut(count) {
                *slot = Some(f);
            }
            count += 1;
            eliciting |= f.is_ack_eliciting();
            ping_only &= matches!(f, Frame::Ping | Frame::Padding(_));
            control_only &= matches!(f, Frame::Ping | Frame::Padding(_) | Frame::Ack(_));
            if !matches!(
                f,
                Frame::Padding(_) | Frame::PathChallenge(_) | Frame::PathResponse(_)
            ) {
                probing_only = false;
            }
        }
        if payload.is_empty() {
            return Err(Error::PeerViolation("empty payload"));
        }
        if eliciting && !control_only {
            self.data_since_stale_ping = true;
        }
        if ping_only
            && let Some(p) = path.and_then(|id| self.paths.get_mut(&id))
            && p.degraded
        {
            // The peer probes a path we count as failed: answer on that path, so the
            // probe's acknowledgement shows it working (and puts it back in service).
            p.answer_probe = true;
        }
        let space = header.stream_id.0;
        if space != CONTROL_SPACE {
            // A packet's space is that of the stream whose data it carries: one of
            // ours, or one the peer opens (implicitly, like its STREAM frame would; the
            // stream limit applies). Otherwise the space's state would never be retired.
            self.check_space(space)?;
        }
        let current = self.opener.epoch().0;
        // (An existing space through the inlined lookup; the generic insert only for
        // a new one.)
        let ack = match self.acks.index_of(&space) {
            Some(i) => self.acks.value_at_mut(i),
            None => self.acks.get_or_insert_with(space, AckSpace::default),
        };
        let Some(ack) = ack else {
            return Ok(());
        };
        if header.epoch.0 == current && ack.epoch != Some(current) {
            // I1: the peer's sealer rekeys before it uses this many (path, stream)
            // pairs in one epoch, so more spaces than that is a violation — and the
            // per-space state of one epoch stays bounded.
            ack.epoch = Some(current);
            self.spaces_this_epoch += 1;
            if self.spaces_this_epoch > self.space_limit {
                return Err(Error::PeerViolation(
                    "too many sequence spaces in one epoch",
                ));
            }
        }
        ack.newest = ack.newest.max(header.epoch.0);
        // (Dropping the lowest ranges never drops the top one.)
        let top = ack
            .received
            .insert_reaches_top(header.sequence..header.sequence + 1);
        ack.received.truncate_low(MAX_ACK_RANGES_KEPT);
        if top {
            ack.largest_at = Some(now);
        }
        if eliciting {
            // A pending space is always in `ack_pending` (both change together).
            if !ack.pending {
                self.ack_pending.insert(space);
            }
            ack.pending = true;
            ack.unacked_eliciting += 1;
            self.unacked_eliciting_total = self.unacked_eliciting_total.saturating_add(1);
            if self.timers.get(Timer::AckDelay).is_none() {
                self.timers
                    .set(Timer::AckDelay, Some(now + self.cfg.max_ack_delay));
            }
        }
        self.touched_buf.clear();
        if count <= KEPT_FRAMES {
            // By reference: a frame is not copied again per handler call.
            for f in kept.iter().take(count).flatten() {
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
        if !self.touched_buf.is_empty() {
            self.on_acks_done(now);
        }
        if let Some(p) = path {
            if let Some(x) = self.paths.get_mut(&p)
                && x.opened_by_probe.is_none()
            {
                // Only a client opens additional paths; a server's packets on a new
                // path follow its move to the client's new address (after the
                // client rebound), which the client then follows.
                x.opened_by_probe = Some(probing_only && self.side == Side::Server);
            }
            self.maybe_migrate(p, probing_only);
        }
        Ok(())
    }

    fn on_frame(&mut self, now: Instant, path: Option<u8>, f: &Frame<'_>) -> Result<(), Error> {
        match f {
            Frame::Padding(_) | Frame::Ping | Frame::Rekey(_) => {}
            Frame::Ack(ack) => self.on_ack(now, ack)?,
            Frame::Stream(s) => self.on_stream_frame(s)?,
            Frame::ResetStream(r) => {
                if let Some(e) = self.peer_stream(r.stream_id.0, true)?
                    && let Some(recv) = e.recv.as_mut()
                {
                    let grew = recv.on_reset(r.error_code, r.final_size)?;
                    let released = recv.take_released();
                    let stopped = recv.stop.is_some();
                    self.flow.on_received(grew)?;
                    self.flow.on_consumed(released);
                    if stopped {
                        // Nobody reads a stopped stream: it is done now.
                        self.maybe_remove_stream(r.stream_id.0);
                    } else {
                        self.signal_readable(r.stream_id.0);
                    }
                }
            }
            Frame::StreamOpen(o) => {
                let dir = match o.kind {
                    StreamKind::Bidi => Dir::Bi,
                    StreamKind::Uni => Dir::Uni,
                };
                if stream_initiator(o.stream_id.0) == self.side || stream_dir(o.stream_id.0) != dir
                {
                    return Err(Error::PeerViolation("bad STREAM_OPEN"));
                }
                let _ = self.peer_stream(o.stream_id.0, true)?;
            }
            Frame::MaxData(m) => {
                self.flow.send_max = self.flow.send_max.max(m.max);
            }
            Frame::MaxStreamData(m) => {
                // A grant can arrive before the new stream's first data (it is sent in the
                // same flight): like QUIC, it opens a peer-initiated stream implicitly.
                let mut writable = false;
                if let Some(e) = self.peer_stream(m.stream_id.0, true)?
                    && let Some(s) = e.send.as_mut()
                {
                    s.max_data = s.max_data.max(m.max);
                    writable = std::mem::take(&mut s.blocked);
                    self.send_active.insert(m.stream_id.0);
                }
                if writable {
                    self.events.push_back(Event::StreamWritable(m.stream_id));
                }
            }
            Frame::MaxStreams(m) => {
                let k = match m.kind {
                    StreamKind::Bidi => 0,
                    StreamKind::Uni => 1,
                };
                if let Some(v) = self.remote_max_streams.get_mut(k) {
                    *v = (*v).max(m.max);
                }
            }
            Frame::StopSending(s) => {
                if let Some(e) = self.peer_stream(s.stream_id.0, true)?
                    && let Some(send) = e.send.as_mut()
                {
                    send.reset(s.error_code);
                    if send.reset_pending {
                        self.ctl_active.insert(s.stream_id.0);
                    }
                }
            }
            Frame::PathChallenge(c) => {
                if let Some(p) = path.and_then(|p| self.paths.get_mut(&p))
                    && p.responses.len() < MAX_QUEUED_RESPONSES
                {
                    p.responses.push_back(c.token);
                }
            }
            Frame::PathResponse(r) => self.on_path_response(now, path, &r.token),
            Frame::Close(c) => {
                tracing::info!(target: "phantom::session", code = c.error_code, "peer closed");
                self.events.push_back(Event::Closed(CloseReason::Peer {
                    code: c.error_code,
                    application: c.application,
                    reason: c.reason.to_vec(),
                }));
                self.state = State::Draining;
                self.timers = Timers::default();
                self.loss_timers_stale = false;
                let pto = self.max_pto();
                self.timers.set(Timer::Close, Some(now + pto * 3));
            }
            Frame::Handshake(_) => {
                self.stats.dropped.unexpected_handshake += 1;
            }
            Frame::Datagram(d) => {
                if self.dgram_in.len() >= self.cfg.datagram_queue {
                    self.dgram_in.pop_front();
                }
                self.dgram_in.push_back(d.data.to_vec());
                self.events.push_back(Event::DatagramReceived);
            }
            Frame::DataBlocked(_) | Frame::StreamDataBlocked(_) | Frame::StreamsBlocked(_) => {}
        }
        Ok(())
    }

    fn on_stream_frame(&mut self, s: &StreamFrame<'_>) -> Result<(), Error> {
        let id = s.stream_id.0;
        let Some(entry) = self.peer_stream(id, true)? else {
            return Ok(());
        };
        let Some(recv) = entry.recv.as_mut() else {
            return Err(Error::PeerViolation("STREAM on a send-only stream"));
        };
        let grew = recv.on_data(s.offset, s.data, s.fin)?;
        let released = recv.take_released();
        // Signalled on the entry at hand (no second lookup per packet).
        let signal = recv.is_readable() && !entry.readable_signalled;
        if signal {
            entry.readable_signalled = true;
        }
        self.flow.on_received(grew)?;
        self.flow.on_consumed(released);
        if released > 0 || s.fin {
            // A stopped stream whose final size just became known is done.
            self.maybe_remove_stream(id);
        }
        if signal {
            self.events.push_back(Event::StreamReadable(StreamId(id)));
        }
        Ok(())
    }

    fn signal_readable(&mut self, id: u32) {
        if let Some(e) = self.streams.get_mut(&id)
            && !e.readable_signalled
        {
            e.readable_signalled = true;
            self.events.push_back(Event::StreamReadable(StreamId(id)));
        }
    }

    /// Checks that a packet's sequence space `space` (not the control space) belongs
    /// to a stream that exists or existed — one we opened, or one the peer opened or
    /// opens now — so that its per-space state is retired once the stream closes.
    fn check_space(&mut self, space: u32) -> Result<(), Error> {
        if stream_index(space) == 0 {
            // Index 0 is no stream of any kind (id 0 is the control space).
            return Err(Error::PeerViolation("packet in stream index 0"));
        }
        if stream_initiator(space) == self.side {
            let k = kind_index(stream_dir(space));
            let next = self.next_index.get(k).copied().unwrap_or(0);
            if stream_index(space) >= next {
                return Err(Error::PeerViolation("packet in a stream we never opened"));
            }
            return Ok(());
        }
        self.peer_stream(space, true).map(|_| ())
    }

    /// The stream a peer frame refers to, opening a peer-initiated one if `open` and
    /// it is new. `Ok(None)` for a stream that existed and is finished (frames ignored).
    /// The lookup of an existing stream (twice per data packet: `check_space` and
    /// `on_stream_frame`) is inlined at the callers (`always`: the plain hint is not
    /// taken inside the large `on_frame`); the rest is [`Self::peer_stream_absent`].
    #[inline(always)]
    fn peer_stream(&mut self, id: u32, open: bool) -> Result<Option<&mut StreamEntry>, Error> {
        if id == 0 {
            return Err(Error::PeerViolation("stream frame on the control stream"));
        }
        if let Some(i) = self.streams.index_of(&id) {
            return Ok(self.streams.value_at_mut(i).map(|e| &mut **e));
        }
        self.peer_stream_absent(id, open)
    }

    /// [`Self::peer_stream`] for an `id` (not 0) that is not in the stream map.
    fn peer_stream_absent(
        &mut self,
        id: u32,
        open: bool,
    ) -> Result<Option<&mut StreamEntry>, Error> {
        let dir = stream_dir(id);
        let k = kind_index(dir);
        let index = stream_index(id);
        if stream_initiator(id) == self.side {
            // One of ours: either finished (ignore) or never opened (violation).
            let next = self.next_index.get(k).copied().unwrap_or(0);
            if index >= next {
                return Err(Error::PeerViolation("frame for a stream we never opened"));
            }
            return Ok(None);
        }
        let opened = self
            .opened_by_peer
            .get_mut(k)
            .ok_or(Error::PeerViolation("stream kind"))?;
        if opened.contains(u64::from(index)) || !open {
            return Ok(None);
        }
        if u64::from(index) > self.local_max_streams.get(k).copied().unwrap_or(0) {
            return Err(Error::PeerViolation("stream limit exceeded"));
        }
        opened.insert(u64::from(index)..u64::from(index) + 1);
        let send = (dir == Dir::Bi)
            .then(|| SendStream::new(INITIAL_STREAM_CREDIT, self.cfg.stream_send_buffer));
        let recv = self.new_recv();
        if recv.credit_pending {
            self.ctl_active.insert(id);
        }
        let recv = Some(recv);
        self.streams.insert(
            id,
            Box::new(StreamEntry {
                send,
                recv,
                readable_signalled: false,
            }),
        );
        self.events.push_back(Event::StreamOpened {
            id: StreamId(id),
            dir,
        });
        Ok(self.streams.get_mut(&id).map(|e| &mut **e))
    }

    fn new_recv(&self) -> RecvStream {
        let mut r = RecvStream::new(self.cfg.stream_receive_window);
        r.credit_pending = self.cfg.stream_receive_window > INITIAL_STREAM_CREDIT;
        // The peer may send up to the protocol's initial credit before it hears from
        // us, so that is the least we can enforce; a smaller configured window only
        // shapes later credit updates (credit is never withdrawn).
        r.max_data = r.max_data.max(INITIAL_STREAM_CREDIT);
        r
    }

    fn on_ack(&mut self, now: Instant, ack: &Ack<'_>) -> Result<(), Error> {
        let space = ack.stream_id.0;
        if self.is_retired(space) {
            // A late or repeated acknowledgement of a retired space: all of it was
            // acknowledged before the space was retired.
            return Ok(());
        }
        let next = self.next_seq.get(&space).copied().unwrap_or(0);
        if ack.largest() >= next {
            return Err(Error::PeerViolation("ACK of an unsent packet"));
        }
        let ack_delay = Duration::from_micros(ack.ack_delay_us.min(1 << 40));
        let mut newly = std::mem::take(&mut self.newly_buf);
        newly.clear();
        if let Some(index) = self.sent_index.get_mut(&space) {
            for r in ack.ranges() {
                if index.live == 0 {
                    break;
                }
                index.take_range(*r.start(), r.end().saturating_add(1), &mut newly);
            }
            if index.slots.is_empty() && space != CONTROL_SPACE {
                self.drop_space_sent(space);
            }
        }
        if newly.is_empty() {
            self.newly_buf = newly;
            return Ok(());
        }
        let largest_seq = ack.largest();
        // Each path's ledger assembles the ACK over every ACK frame of the packet;
        // `on_acks_done` finishes it once all are applied.
        let mut touched = std::mem::take(&mut self.touched_buf);
        let mut records = std::mem::take(&mut self.acked_records);
        records.clear();
        for &(path_id, ppn, seq) in &newly {
            let Some(path) = self.paths.get_mut(&path_id) else {
                continue;
            };
            let frame_largest = (seq == largest_seq).then_some(ack_delay);
            if !path
                .recovery
                .on_acked_records(now, ppn, frame_largest, &mut records)
            {
                continue;
            }
            if !touched.contains(&path_id) {
                touched.push(path_id);
            }
        }
        self.newly_buf = newly;
        self.touched_buf = touched;
        // In acknowledgement order, after the ledgers (which the records' stream
        // bookkeeping does not touch).
        self.on_records_acked(&records);
        self.acked_records = records;
        Ok(())
    }

    /// Finishes the ACK on every path the ACK frames of one packet touched: RTT
    /// sample, loss detection and the congestion controller. Called once per
    /// packet, after *all* its frames: a packet acknowledges each stream space in
    /// its own ACK frame, and detecting losses after the first frame would condemn
    /// packets of the spaces whose ACK frames follow (spurious losses with many
    /// busy streams).
    fn on_acks_done(&mut self, now: Instant) {
        let mut touched = std::mem::take(&mut self.touched_buf);
        let mut lost = std::mem::take(&mut self.lost_buf);
        // Nothing queued to send: rings emptied by this ACK give their memory back.
        let idle = self.send_active.is_empty();
        for &path_id in &touched {
            lost.clear();
            let Some(path) = self.paths.get_mut(&path_id) else {
                continue;
            };
            let outcome = path.recovery.finish_ack(now, &mut lost);
            if idle {
                path.recovery.release_if_empty();
            }
            if outcome.acked_any {
                path.degraded = false;
            }
            // The path's recovery fed its controller and pacer; the lost content
            // goes back to the senders' queues.
            self.handle_lost(path_id, &lost);
        }
        touched.clear();
        self.touched_buf = touched;
        self.lost_buf = lost;
    }

    fn on_records_acked(&mut self, records: &[Record]) {
        // A run of STREAM records of one stream, each starting where the previous
        // ended (a bulk stream's packets, acknowledged in order), is acknowledged as
        // one range `(id, offset, end, fin)`: the send buffer ends in the same state
        // and the same events follow as record by record, with one stream lookup and
        // one buffer advance per run instead of per packet.
        let mut run: Option<(u32, u64, u64, bool)> = None;
        for &r in records {
            match r {
                Record::Stream {
                    id,
                    offset,
                    len,
                    fin,
                } => {
                    if let Some((rid, _, end, rfin)) = run.as_mut()
                        && *rid == id
                        && *end == offset
                    {
                        *end = end.saturating_add(u64::from(len));
                        *rfin |= fin;
                        continue;
                    }
                    let next = (id, offset, offset.saturating_add(u64::from(len)), fin);
                    if let Some(done) = run.replace(next) {
                        self.on_stream_range_acked(done);
                    }
                }
                Record::ResetStream { id } => {
                    if let Some(done) = run.take() {
                        self.on_stream_range_acked(done);
                    }
                    if let Some(s) = self.streams.get_mut(&id).and_then(|e| e.send.as_mut()) {
                        s.reset_acked = true;
                    }
                    self.maybe_remove_stream(id);
                }
                _ => {}
            }
        }
        if let Some(done) = run {
            self.on_stream_range_acked(done);
        }
    }

    /// Stream `id`'s data `[offset, end)` (and its FIN if `fin`) was acknowledged.
    fn on_stream_range_acked(&mut self, (id, offset, end, fin): (u32, u64, u64, bool)) {
        let Some(s) = self.streams.get_mut(&id).and_then(|e| e.send.as_mut()) else {
            return;
        };
        let len = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let freed = s.on_ack(offset, len, fin);
        if freed && s.blocked && s.room() > 0 {
            s.blocked = false;
            self.events.push_back(Event::StreamWritable(StreamId(id)));
        }
        if s.is_done() {
            self.events.push_back(Event::StreamFinished(StreamId(id)));
            self.maybe_remove_stream(id);
        }
    }

    fn on_records_lost(&mut self, records: &[Record; MAX_RECORDS]) {
        for &r in records {
            match r {
                Record::Stream {
                    id,
                    offset,
                    len,
                    fin,
                } => {
                    if let Some(s) = self.streams.get_mut(&id).and_then(|e| e.send.as_mut()) {
                        s.on_lost(offset, len as usize, fin);
                        self.send_active.insert(id);
                    }
                }
                Record::ResetStream { id } => {
                    if let Some(s) = self.streams.get_mut(&id).and_then(|e| e.send.as_mut())
                        && !s.reset_acked
                    {
                        s.reset_pending = true;
                        self.ctl_active.insert(id);
                    }
                }
                Record::StopSending { id } => {
                    if let Some(r) = self.streams.get_mut(&id).and_then(|e| e.recv.as_mut())
                        && r.stop.is_some()
                    {
                        r.stop_pending = true;
                        self.ctl_active.insert(id);
                    }
                }
                Record::MaxData => self.flow.credit_pending = true,
                Record::MaxStreamData { id } => {
                    if let Some(r) = self.streams.get_mut(&id).and_then(|e| e.recv.as_mut()) {
                        r.credit_pending = true;
                        self.ctl_active.insert(id);
                    }
                }
                Record::MaxStreams { kind } => {
                    if let Some(p) = self.max_streams_pending.get_mut(usize::from(kind)) {
                        *p = true;
                    }
                }
                Record::None | Record::PathChallenge => {}
            }
        }
    }

    /// Forgets the (empty) sent-packet index of `space`, keeping its ring's memory
    /// for the next space entry while a stream has data queued (a bulk stream's entry
    /// empties after every burst); a session with nothing left to send keeps no spare
    /// (idle sessions hold no memory for a burst that may never come).
    fn drop_space_sent(&mut self, space: u32) {
        if let Some(old) = self.sent_index.remove(&space) {
            if self.send_active.is_empty() {
                self.spare_sent = VecDeque::new();
                return;
            }
            let mut slots = old.slots;
            slots.clear();
            if slots.capacity() > self.spare_sent.capacity() {
                self.spare_sent = slots;
            }
        }
    }

    /// Capacity of the spare sent-packet ring (tests of idle memory).
    #[cfg(test)]
    pub(crate) fn spare_sent_capacity(&self) -> usize {
        self.spare_sent.capacity()
    }

    /// Capacity of every path's recovery record ring (tests of idle memory).
    #[cfg(test)]
    pub(crate) fn recovery_ring_capacity(&self) -> usize {
        self.paths
            .values()
            .map(|p| p.recovery.ring_capacity())
            .sum()
    }

    fn handle_lost(&mut self, path_id: u8, lost: &[SentMeta]) {
        let _span = (!lost.is_empty()).then(|| {
            tracing::trace_span!("phantom.session.loss", side = ?self.side, path = path_id)
                .entered()
        });
        if !lost.is_empty() {
            tracing::trace!(target: "phantom::session", path = path_id, count = lost.len(), "packets lost");
        }
        for pkt in lost {
            self.stats.packets_lost += 1;
            if let Some(index) = self.sent_index.get_mut(&pkt.space) {
                index.remove(pkt.seq);
                if index.slots.is_empty() && pkt.space != CONTROL_SPACE {
                    self.drop_space_sent(pkt.space);
                }
            }
            self.on_records_lost(&pkt.records);
        }
    }

    fn on_loss_timer(&mut self, now: Instant) {
        let ids: Vec<u8> = self.paths.keys().copied().collect();
        let mut lost = std::mem::take(&mut self.lost_buf);
        for id in ids {
            lost.clear();
            let Some(path) = self.paths.get_mut(&id) else {
                continue;
            };
            if path.recovery.timer().is_none_or(|t| t > now) {
                continue;
            }
            let outcome = path.recovery.on_timeout(now, &mut lost);
            if !outcome.send_probe {
                // Time-threshold losses.
                self.handle_lost(id, &lost);
                continue;
            }
            self.stats.ptos += 1;
            let action = self.fallback.on_udp_pto(now);
            self.on_fallback_action(action);
            let failover_ptos = self.cfg.failover_ptos;
            let others_healthy = self
                .paths
                .iter()
                .any(|(&o, p)| o != id && !p.degraded && self.registry.is_validated(PathId(o)));
            let Some(path) = self.paths.get_mut(&id) else {
                continue;
            };
            path.probes = 1;
            self.probes_maybe = true;
            let pto_count = path.recovery.pto_count();
            tracing::debug!(target: "phantom::session", path = id, pto_count, "probe timeout");
            if path.degraded {
                // A failed-over path keeps being probed with PINGs only; anything still
                // in flight on it is moved to the healthy paths.
                path.recovery.drain_all(&mut lost);
                self.handle_lost(id, &lost);
            } else if pto_count >= failover_ptos && others_healthy {
                // Fail over: move this path's in-flight data to the other paths.
                path.degraded = true;
                path.recovery.on_failed_over(now);
                path.recovery.drain_all(&mut lost);
                self.handle_lost(id, &lost);
                tracing::info!(target: "phantom::session", path = id, "path failed over");
                if self.primary == id {
                    self.choose_new_primary();
                }
            } else if pto_count >= failover_ptos {
                // The last healthy path is failing too: try the failed ones again
                // (one PING each; an acknowledgement puts a path back in service).
                // Their probes back off with this path's PTO.
                for (&o, p) in self.paths.iter_mut() {
                    if o != id
                        && p.degraded
                        && p.probes == 0
                        && p.recovery.ack_eliciting_in_flight() == 0
                        && self.registry.is_validated(PathId(o))
                    {
                        p.probes = 1;
                        self.probes_maybe = true;
                    }
                }
            }
        }
        self.lost_buf = lost;
    }

    fn on_fallback_action(&mut self, action: FallbackAction) {
        if action == FallbackAction::None {
            return;
        }
        if action == FallbackAction::ProbeUdp {
            // The probe is an ordinary PING; the runtime sends it over UDP.
            self.ping_pending = true;
        }
        tracing::info!(target: "phantom::session", ?action, "carrier fallback");
        self.events.push_back(Event::Fallback(action));
    }

    fn update_loss_timer(&mut self) {
        let mut timers = std::mem::take(&mut self.timers);
        self.loss_timers_into(&mut timers);
        self.timers = timers;
        self.loss_timers_stale = false;
    }

    /// Brings the deadlines marked stale up to date (see `loss_timers_stale`).
    fn flush_loss_timers(&mut self) {
        if self.loss_timers_stale {
            self.update_loss_timer();
        }
    }

    /// Works out the loss, path-validation, fallback and keep-alive deadlines into
    /// `timers`.
    fn loss_timers_into(&self, timers: &mut Timers) {
        let mut earliest: Option<Instant> = None;
        for p in self.paths.values() {
            let t = p.recovery.timer();
            if let Some(t) = t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        timers.set(Timer::LossDetection, earliest);
        let pv = self.registry.next_timeout();
        timers.set(Timer::PathValidation, pv);
        timers.set(Timer::Fallback, Some(self.fallback.next_timeout()));
        if let Some(ka) = self.cfg.keep_alive
            && matches!(self.state, State::Connected | State::Migrating)
        {
            timers.set(Timer::KeepAlive, Some(self.last_tx_eliciting + ka));
        }
    }

    fn max_pto(&self) -> Duration {
        self.paths
            .values()
            .map(|p| p.recovery.rtt().pto_base())
            .max()
            .unwrap_or(Duration::from_millis(300))
    }

    fn rearm_idle(&mut self, now: Instant) {
        self.timers
            .set(Timer::Idle, Some(now + self.cfg.idle_timeout));
    }

    // ───────────────────────── internals: paths ─────────────────────────

    fn new_path(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<u8, Error> {
        let id = u8::try_from(self.next_path_id).map_err(|_| Error::Path("path ids exhausted"))?;
        self.registry
            .insert(PathId(id), remote, now)
            .map_err(|_| Error::Path("too many paths"))?;
        let challenge = self
            .registry
            .issue_challenge(PathId(id), now, &mut self.rng)
            .map_err(|_| Error::Path("challenge"))?;
        self.next_path_id += 1;
        let mss = self.cfg.max_datagram_size as u64;
        let mut p = Path::new(local, remote, now, &self.cfg, mss)?;
        p.challenge = Some(*challenge.as_bytes());
        self.paths.insert(id, p);
        self.update_loss_timer();
        tracing::debug!(target: "phantom::session", path = id, %remote, "validating new path");
        Ok(id)
    }

    /// Maps an authenticated datagram's addresses to a path, creating (and starting to
    /// validate) a path for a new address. Only called after the AEAD and replay
    /// checks passed.
    fn resolve_path(&mut self, now: Instant, rx: RxMeta, len: u64) -> Option<u8> {
        // The path's receive time is set where it is found (one walk, no second
        // lookup); the guard's registry below keeps its own records.
        let found = self
            .paths
            .iter_mut()
            .find(|(_, p)| p.remote == rx.remote && p.local == rx.local)
            .map(|(&id, p)| {
                p.last_rx = Some(now);
                id
            });
        let id = match found {
            Some(id) => id,
            None => {
                if matches!(self.state, State::Closing) {
                    return None;
                }
                let id = self.new_path(now, rx.local, rx.remote).ok()?;
                if self.state == State::Connected {
                    self.state = State::Migrating;
                }
                if let Some(p) = self.paths.get_mut(&id) {
                    p.last_rx = Some(now);
                }
                id
            }
        };
        let _ = self.registry.on_authenticated(PathId(id), len, now);
        Some(id)
    }

    fn on_path_response(&mut self, now: Instant, path: Option<u8>, token: &[u8; 32]) {
        let _span =
            tracing::debug_span!("phantom.session.path_validation", side = ?self.side).entered();
        // The response normally arrives on the path it answers; try that one first.
        let mut candidates: Vec<u8> = path.into_iter().collect();
        candidates.extend(self.paths.keys().copied().filter(|&id| Some(id) != path));
        for id in candidates {
            if self
                .registry
                .verify_response(PathId(id), now, token)
                .is_ok()
            {
                self.stats.paths_validated += 1;
                if let Some(p) = self.paths.get_mut(&id) {
                    p.challenge = None;
                }
                tracing::info!(target: "phantom::session", path = id, "path validated");
                self.events.push_back(Event::PathValidated(PathId(id)));
                if self.state == State::Migrating && !self.any_validating() {
                    self.state = State::Connected;
                }
                return;
            }
        }
    }

    fn any_validating(&self) -> bool {
        self.paths.keys().any(|&id| {
            matches!(
                self.registry.state(PathId(id)),
                Some(phantom_guard::PathState::Validating | phantom_guard::PathState::Unvalidated)
            )
        })
    }

    /// Moves the primary path to `p` if the peer has moved there: `p` is validated,
    /// carried a non-probing packet, and the current primary has received nothing since
    /// `p` appeared (so a spoofed or probing copy does not move the session, I7). A
    /// path opened deliberately as an additional one (its first packet was a probe, or
    /// we probed it) is no move: the session goes there only once the primary failed.
    fn maybe_migrate(&mut self, p: u8, probing_only: bool) {
        if p == self.primary || probing_only || !self.registry.is_validated(PathId(p)) {
            return;
        }
        let Some((created, additional)) = self
            .paths
            .get(&p)
            .map(|x| (x.created, x.opened_by_probe == Some(true)))
        else {
            return;
        };
        // Move if the old primary failed, or (for a path the peer did not open as an
        // additional one) heard nothing since `p` appeared.
        let moved = self.paths.get(&self.primary).is_none_or(|old| {
            old.degraded || (!additional && old.last_rx.is_none_or(|t| t < created))
        });
        if !moved {
            return;
        }
        let from = self.primary;
        let _span = tracing::info_span!("phantom.session.migrate", side = ?self.side, from, to = p)
            .entered();
        self.primary = p;
        self.stats.migrations += 1;
        // Whatever is in flight on the old path is presumed lost: re-send it on the new one.
        let mut lost = std::mem::take(&mut self.lost_buf);
        lost.clear();
        if let Some(old) = self.paths.get_mut(&from) {
            old.recovery.drain_all(&mut lost);
            old.degraded = true;
        }
        self.handle_lost(from, &lost);
        self.lost_buf = lost;
        tracing::info!(target: "phantom::session", from, to = p, "migrated");
        self.events.push_back(Event::Migrated {
            from: PathId(from),
            to: PathId(p),
        });
    }

    /// Where control-only packets (ACKs, credit) go: a failed path the peer just
    /// probed, else the healthy validated path that most recently received an
    /// authenticated packet, else such a failed path, else the primary.
    fn control_path(&self) -> Option<u8> {
        // The healthy validated path the peer's latest packet came in on; if every
        // validated path has failed, the failed one it came in on (the peer is using
        // it, so it may work again: an acknowledgement there puts it back in service).
        let recent = |healthy_only: bool| {
            self.paths
                .iter()
                .filter(|(id, p)| {
                    (!healthy_only || !p.degraded) && self.registry.is_validated(PathId(**id))
                })
                .filter_map(|(&id, p)| p.last_rx.map(|t| (t, id)))
                .max()
                .map(|(_, id)| id)
        };
        let probed = self
            .paths
            .iter()
            .find(|(id, p)| p.answer_probe && self.registry.is_validated(PathId(**id)))
            .map(|(&id, _)| id);
        probed
            .or_else(|| recent(true))
            .or_else(|| recent(false))
            .or_else(|| {
                self.registry
                    .is_validated(PathId(self.primary))
                    .then_some(self.primary)
            })
            .or_else(|| {
                self.paths
                    .keys()
                    .copied()
                    .find(|&id| self.registry.is_validated(PathId(id)))
            })
    }

    fn choose_new_primary(&mut self) {
        let best = self
            .paths
            .iter()
            .filter(|(id, p)| !p.degraded && self.registry.is_validated(PathId(**id)))
            .min_by_key(|(_, p)| p.recovery.rtt().smoothed())
            .map(|(&id, _)| id);
        if let Some(id) = best
            && id != self.primary
        {
            let from = self.primary;
            self.primary = id;
            self.stats.migrations += 1;
            self.events.push_back(Event::Migrated {
                from: PathId(from),
                to: PathId(id),
            });
        }
    }

    fn on_path_timer(&mut self, now: Instant) {
        let mut guard = 0;
        while let Some(ev) = self.registry.poll_retransmit(now) {
            guard += 1;
            if guard > 64 {
                break;
            }
            self.on_path_event(ev);
        }
        let mut guard = 0;
        while let Some(ev) = self.registry.sweep(now) {
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
                if let Some(p) = self.paths.get_mut(&path.0) {
                    p.challenge = Some(*challenge.as_bytes());
                }
            }
            PathEvent::Failed { path, reason } => {
                tracing::info!(target: "phantom::session", path = path.0, ?reason, "path failed");
                self.events.push_back(Event::PathFailed(path));
                let mut lost = std::mem::take(&mut self.lost_buf);
                lost.clear();
                if let Some(mut p) = self.paths.remove(&path.0) {
                    p.recovery.drain_all(&mut lost);
                }
                self.handle_lost(path.0, &lost);
                self.lost_buf = lost;
                self.registry.remove(path);
                if self.primary == path.0 {
                    self.choose_new_primary();
                }
                if self.state == State::Migrating && !self.any_validating() {
                    self.state = State::Connected;
                }
                if self.paths.is_empty() {
                    self.state = State::Closed;
                    self.timers = Timers::default();
                    self.loss_timers_stale = false;
                    self.events
                        .push_back(Event::Closed(CloseReason::Error(Error::Path(
                            "all paths failed",
                        ))));
                }
            }
        }
    }

    // ───────────────────────── internals: streams ─────────────────────────

    fn check_open(&self) -> Result<(), Error> {
        if matches!(self.state, State::Connected | State::Migrating) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    fn send_half(&mut self, id: StreamId) -> Result<&mut SendStream, Error> {
        self.streams
            .get_mut(&id.0)
            .and_then(|e| e.send.as_mut())
            .ok_or(Error::UnknownStream(id.0))
    }

    /// Per-space state held: (ACK spaces, our sequence counters, replay windows,
    /// closed streams waiting to retire).
    #[cfg(test)]
    pub(crate) fn space_state(&self) -> (usize, usize, usize, usize) {
        (
            self.acks.len(),
            self.next_seq.len(),
            self.replay.len(),
            self.retire_queue.len(),
        )
    }

    /// Out-of-order fragments held over all receive streams.
    #[cfg(test)]
    pub(crate) fn recv_fragments(&self) -> usize {
        self.streams
            .values()
            .filter_map(|e| e.recv.as_ref())
            .map(RecvStream::fragments)
            .sum()
    }

    /// Lowers the most distinct spaces the peer may use in one epoch.
    #[cfg(test)]
    pub(crate) fn set_space_limit(&mut self, n: usize) {
        self.space_limit = n;
    }

    /// True if our sequence counter of stream `id`'s space was retired.
    fn is_retired(&self, id: u32) -> bool {
        self.retired
            .get((id & 3) as usize)
            .is_some_and(|r| r.contains(u64::from(stream_index(id))))
    }

    /// Drops our sequence counters of closed streams once none of their packets is
    /// outstanding, and remembers the stream in a compact retired set.
    ///
    /// A closed stream is never sent in again (ids are never reused, I3), so its
    /// counter is not needed; a late acknowledgement of its space is ignored (it
    /// acknowledges what was acknowledged or declared lost already). The peer's
    /// direction of a space is forgotten by epoch instead ([`Session::forget_quiet_spaces`]).
    fn retire_spaces(&mut self) {
        for _ in 0..self.retire_queue.len() {
            let Some(id) = self.retire_queue.pop_front() else {
                break;
            };
            if self.sent_index.contains_key(&id) || self.streams.contains_key(&id) {
                self.retire_queue.push_back(id);
                continue;
            }
            self.next_seq.remove(&id);
            if let Some(r) = self.retired.get_mut((id & 3) as usize) {
                let i = u64::from(stream_index(id));
                r.insert(i..i + 1);
            }
        }
    }

    /// A peer epoch key was just dropped (the previous one retired, or an older one
    /// replaced when the opener followed a rekey): the ACK ranges and replay window
    /// of every space whose packets are all of epochs that can no longer be opened
    /// (and that owes no acknowledgement) are dropped. A later packet in such a space
    /// is of an epoch still open or newer and starts a fresh window that every replay
    /// of it will meet (I4). With at most `space_limit` spaces per peer epoch, the
    /// per-space state of the peer's direction stays bounded however many streams
    /// the session carries — also while the peer rekeys faster than every 3 PTOs,
    /// which keeps postponing the retirement of its previous key.
    fn forget_quiet_spaces(&mut self) {
        let oldest_open = self
            .opener
            .previous_epoch()
            .unwrap_or_else(|| self.opener.epoch())
            .0;
        let mut quiet = std::mem::take(&mut self.stale_buf);
        quiet.clear();
        quiet.extend(
            self.acks
                .iter()
                .filter(|(space, a)| {
                    **space != CONTROL_SPACE && a.newest < oldest_open && !a.pending
                })
                .map(|(space, _)| *space),
        );
        for &space in &quiet {
            self.acks.remove(&space);
            self.ack_pending.remove(&space);
            self.replay.remove(StreamId(space));
        }
        self.stale_buf = quiet;
    }

    fn maybe_remove_stream(&mut self, id: u32) {
        let done = self.streams.get(&id).is_some_and(|e| {
            e.send.as_ref().is_none_or(SendStream::is_done)
                && e.recv.as_ref().is_none_or(RecvStream::is_done)
        });
        if !done {
            return;
        }
        self.streams.remove(&id);
        self.send_active.remove(&id);
        self.ctl_active.remove(&id);
        self.retire_queue.push_back(id);
        if stream_initiator(id) != self.side {
            let k = kind_index(stream_dir(id));
            if let Some(m) = self.local_max_streams.get_mut(k) {
                *m = m.saturating_add(1);
            }
            if let Some(p) = self.max_streams_pending.get_mut(k) {
                *p = true;
            }
        }
    }

    // ───────────────────────── internals: transmit ─────────────────────────

    fn maybe_rekey(&mut self) -> Result<(), Error> {
        if !self.sealer.needs_rekey() {
            return Ok(());
        }
        let _span = tracing::debug_span!(
            "phantom.session.rekey",
            side = ?self.side,
            from = self.sealer.epoch().0
        )
        .entered();
        let epoch = self.sealer.rekey().map_err(|e| match e {
            phantom_crypto::Error::EpochSaturated => Error::Crypto("epoch saturated"),
            _ => Error::Crypto("rekey failed"),
        })?;
        self.stats.rekeys_local += 1;
        self.rekey_frame_pending = true;
        self.rekey_flag_pending = true;
        self.events.push_back(Event::Rekeyed { epoch, local: true });
        tracing::debug!(target: "phantom::session", epoch = epoch.0, "rekeyed send direction");
        Ok(())
    }

    fn payload_room(size: usize) -> usize {
        size - HEADER_LEN - TAG_LEN
    }

    /// PATH_CHALLENGE / PATH_RESPONSE on the path they belong to, within its
    /// anti-amplification budget (I7).
    fn send_path_packet(&mut self, now: Instant, buf: &mut [u8], size: usize) -> Option<Transmit> {
        let id = self
            .paths
            .iter()
            .find(|(_, p)| p.challenge.is_some() || !p.responses.is_empty())
            .map(|(&id, _)| id)?;
        let budget = self.registry.send_budget(PathId(id))?;
        let size = match budget {
            SendBudget::Unlimited => size,
            SendBudget::Limited(n) => size.min(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let min = HEADER_LEN + TAG_LEN + 33;
        if size < min {
            // Not enough budget yet: wait for more bytes from that address.
            return None;
        }
        let path = self.paths.get_mut(&id)?;
        let mut built = Built::new();
        let payload = buf.get_mut(HEADER_LEN..size - TAG_LEN)?;
        let mut w = Writer::new(payload);
        while let Some(token) = path.responses.front().copied() {
            let f = Frame::PathResponse(PathResponse { token });
            if f.encoded_len() > w.remaining() || f.encode(&mut w).is_err() {
                break;
            }
            path.responses.pop_front();
        }
        if let Some(token) = path.challenge {
            let f = Frame::PathChallenge(PathChallenge { token });
            if f.encoded_len() <= w.remaining() && f.encode(&mut w).is_ok() {
                path.challenge = None;
                built.record(Record::PathChallenge);
            }
        }
        built.len = w.written();
        if built.len == 0 {
            return None;
        }
        built.ack_eliciting = true;
        // The keep-alive deadline follows this packet only at the next update.
        self.flush_loss_timers();
        self.finish_packet(now, id, buf, &built, false)
    }

    fn send_close(&mut self, now: Instant, buf: &mut [u8], size: usize) -> Option<Transmit> {
        let info = self.close.as_ref()?;
        if !info.pending {
            return None;
        }
        let (code, application) = (info.code, info.application);
        let payload = buf.get_mut(HEADER_LEN..size - TAG_LEN)?;
        let mut w = Writer::new(payload);
        let room = w.remaining().saturating_sub(16);
        let reason = info
            .reason
            .get(..info.reason.len().min(room))
            .unwrap_or_default();
        Frame::Close(Close {
            error_code: code,
            application,
            reason,
        })
        .encode(&mut w)
        .ok()?;
        let mut built = Built::new();
        built.len = w.written();
        // The primary path if its anti-amplification budget allows the packet (I7: it
        // may have just moved to an address still being validated), else any path
        // that can take it; with none, the CLOSE waits for budget (or the close timer).
        let len = (HEADER_LEN + built.len + TAG_LEN) as u64;
        let id = std::iter::once(self.primary)
            .chain(self.paths.keys().copied())
            .find(|&p| self.paths.contains_key(&p) && self.registry.can_send(PathId(p), len))?;
        if let Some(info) = self.close.as_mut() {
            info.pending = false;
        }
        self.finish_packet(now, id, buf, &built, false)
    }

    fn path_views(&self, out: &mut Vec<PathView>) {
        out.clear();
        out.extend(
            self.paths
                .iter()
                .filter(|(id, _)| self.registry.is_validated(PathId(**id)))
                .map(|(&id, p)| PathView {
                    id: PathId(id),
                    srtt: p.recovery.rtt().smoothed(),
                    cwnd: p.recovery.window(),
                    in_flight: p.recovery.bytes_in_flight(),
                    healthy: !p.degraded,
                }),
        );
    }

    fn has_stream_data(&mut self) -> bool {
        if !self.redundant_queue.is_empty() || !self.dgram_out.is_empty() {
            return true;
        }
        let next = self.next_send_stream();
        self.send_stream_hint = Some(next);
        next.is_some()
    }

    /// The next stream to send from, round-robin after `rr_cursor` over
    /// `send_active`. Streams met on the way that have nothing to send, or wait
    /// for their own credit, leave the set; streams waiting only for session
    /// credit stay.
    fn next_send_stream(&mut self) -> Option<u32> {
        use std::ops::Bound::{Excluded, Unbounded};
        let credit = self.flow.send_credit();
        if self.send_active.len() == 1 {
            // One busy stream (bulk transfer): no range walk.
            let id = self.send_active.first().copied()?;
            return match self.streams.get(&id).and_then(|e| e.send.as_ref()) {
                Some(s) if s.can_send(credit) => Some(id),
                Some(s) if s.can_send(u64::MAX) => None,
                _ => {
                    self.send_active.remove(&id);
                    None
                }
            };
        }
        let mut stale = std::mem::take(&mut self.stale_buf);
        stale.clear();
        let mut found = None;
        let after = self
            .send_active
            .range((Excluded(self.rr_cursor), Unbounded));
        let wrapped = self.send_active.range(..=self.rr_cursor);
        for &id in after.chain(wrapped) {
            match self.streams.get(&id).and_then(|e| e.send.as_ref()) {
                Some(s) if s.can_send(credit) => {
                    found = Some(id);
                    break;
                }
                Some(s) if s.can_send(u64::MAX) => {}
                _ => stale.push(id),
            }
        }
        for id in &stale {
            self.send_active.remove(id);
        }
        self.stale_buf = stale;
        found
    }

    fn control_due(&self, now: Instant) -> bool {
        // (A pending REKEY frame only piggybacks: it never causes a packet by itself,
        // or a tiny rekey threshold would make every packet trigger another one.)
        self.ping_pending
            || self.flow.credit_pending
            || self.max_streams_pending.iter().any(|&p| p)
            // Acknowledge after every second ack-eliciting packet of the *session*, not
            // of one stream space: with many busy streams no single space may reach two,
            // and every ACK would wait for the delay timer (RFC 9000 §13.2.2 counts packets).
            || self.unacked_eliciting_total >= 2
            || (self.timers.get(Timer::AckDelay).is_none_or(|t| t <= now)
                && !self.ack_pending.is_empty())
            || !self.ctl_active.is_empty()
    }

    fn send_regular(&mut self, now: Instant, buf: &mut [u8], size: usize) -> Option<Transmit> {
        self.send_stream_hint = None;
        // A PTO probe takes precedence and ignores the congestion window.
        // (Searched only while some path may hold a probe; the flag clears once no
        // path does.)
        let probe = if self.probes_maybe {
            let found = self
                .paths
                .iter()
                .find(|(id, p)| p.probes > 0 && self.registry.is_validated(PathId(**id)))
                .map(|(&id, _)| id);
            if found.is_none() && self.paths.values().all(|p| p.probes == 0) {
                self.probes_maybe = false;
            }
            found
        } else {
            None
        };
        let mut allow_data = true;
        let path_id = if let Some(id) = probe {
            id
        } else {
            let mut chosen = None;
            let has_data = self.has_stream_data();
            if !has_data {
                self.mark_app_limited(size as u64);
            }
            if has_data && self.paths.len() == 1 {
                // One path: every scheduler mode picks it if it is validated and its
                // window has room (what `pick` does with one view), then asks its
                // pacer; no views, picks or second lookup.
                if let Some((&id, p)) = self.paths.iter_mut().next()
                    && self.registry.is_validated(PathId(id))
                    && p.recovery.has_room(size as u64)
                {
                    match p.recovery.pace(now, size as u64) {
                        None => chosen = Some(id),
                        Some(t) => {
                            self.timers.set(Timer::Pacing, Some(t));
                        }
                    }
                }
            } else if has_data {
                let mut picks = std::mem::take(&mut self.pick_buf);
                let mut views = std::mem::take(&mut self.views_buf);
                self.path_views(&mut views);
                pick(self.cfg.scheduler, &views, size as u64, &mut picks);
                self.views_buf = views;
                // Redundant mode: the first pick sends, the others get copies queued.
                let with_dup = picks
                    .iter()
                    .find(|p| self.redundant_queue.iter().any(|(q, _)| *q == p.0))
                    .or(picks.first())
                    .copied();
                if let Some(first) = with_dup {
                    let pid = first.0;
                    let wait = self
                        .paths
                        .get_mut(&pid)
                        .and_then(|p| p.recovery.pace(now, size as u64));
                    match wait {
                        None => chosen = Some(pid),
                        Some(t) => {
                            self.timers.set(Timer::Pacing, Some(t));
                        }
                    }
                }
                self.pick_buf = picks;
            }
            match chosen {
                Some(id) => id,
                None => {
                    if !self.control_due(now) {
                        return None;
                    }
                    allow_data = false;
                    self.control_path()?
                }
            }
        };
        let is_probe = probe == Some(path_id);
        if is_probe && self.paths.get(&path_id).is_some_and(|p| p.degraded) {
            allow_data = false;
        }
        // Built in place and handed on by reference (the record array is not moved).
        let mut built = Built::new();
        let payload = buf.get_mut(HEADER_LEN..HEADER_LEN + Self::payload_room(size))?;
        self.build_regular(now, path_id, payload, allow_data, is_probe, &mut built)?;
        if is_probe && let Some(p) = self.paths.get_mut(&path_id) {
            p.probes = p.probes.saturating_sub(1);
        }
        // (`finish_packet` takes a data packet's bytes from its path's pacer.)
        self.finish_packet(now, path_id, buf, &built, true)
    }

    /// Nothing to send: every path whose window has room for another packet is
    /// application-limited, so its rate samples of this flight cannot lower the
    /// bandwidth estimate (they measure the application, not the path).
    fn mark_app_limited(&mut self, mss: u64) {
        for p in self.paths.values_mut() {
            if p.recovery.has_room(mss) {
                p.recovery.on_app_limited();
            }
        }
    }

    fn build_regular(
        &mut self,
        now: Instant,
        path_id: u8,
        payload: &mut [u8],
        allow_data: bool,
        is_probe: bool,
        built: &mut Built,
    ) -> Option<()> {
        let mut w = Writer::new(payload);

        if is_probe && self.paths.get(&path_id).is_some_and(|p| p.degraded) {
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
        // (The scratch list is taken only when there is something to list.)
        let ack_due = !self.ack_pending.is_empty();
        let mut spaces = Vec::new();
        if ack_due {
            spaces = std::mem::take(&mut self.stale_buf);
            spaces.clear();
            spaces.extend(self.ack_pending.iter().copied());
        }
        for &space in &spaces {
            let Some(a) = self.acks.get_mut(&space) else {
                self.ack_pending.remove(&space);
                continue;
            };
            if !a.pending || a.received.is_empty() {
                a.pending = false;
                self.ack_pending.remove(&space);
                continue;
            }
            self.ack_ranges.clear();
            for r in a.received.iter().rev() {
                if r.end > r.start {
                    self.ack_ranges.push(r.start..=r.end - 1);
                }
            }
            let delay = a
                .largest_at
                .map_or(0, |t| now.saturating_duration_since(t).as_micros() as u64);
            let Ok(ack) = Ack::new(StreamId(space), delay, &self.ack_ranges) else {
                continue;
            };
            let f = Frame::Ack(ack);
            if f.encoded_len() + 64 > w.remaining() {
                break;
            }
            if f.encode(&mut w).is_ok() {
                a.pending = false;
                self.unacked_eliciting_total = self
                    .unacked_eliciting_total
                    .saturating_sub(std::mem::take(&mut a.unacked_eliciting));
                self.ack_pending.remove(&space);
            }
        }
        if ack_due {
            self.stale_buf = spaces;
        }
        if self.ack_pending.is_empty() {
            self.timers.set(Timer::AckDelay, None);
        }

        // 2. Control frames.
        if self.rekey_frame_pending {
            let f = Frame::Rekey(Rekey {
                epoch: self.sealer.epoch(),
            });
            if f.encoded_len() <= w.remaining() && f.encode(&mut w).is_ok() {
                self.rekey_frame_pending = false;
                built.ack_eliciting = true;
            }
        }
        if self.flow.credit_pending && !built.records_full() {
            let f = Frame::MaxData(MaxData {
                max: self.flow.recv_max,
            });
            if f.encoded_len() <= w.remaining() && f.encode(&mut w).is_ok() {
                self.flow.credit_pending = false;
                built.record(Record::MaxData);
                built.ack_eliciting = true;
            }
        }
        for k in 0..2u8 {
            if self.max_streams_pending.get(usize::from(k)) == Some(&true) && !built.records_full()
            {
                let kind = if k == 0 {
                    StreamKind::Bidi
                } else {
                    StreamKind::Uni
                };
                let max = self
                    .local_max_streams
                    .get(usize::from(k))
                    .copied()
                    .unwrap_or(0);
                let f = Frame::MaxStreams(MaxStreams { kind, max });
                if f.encoded_len() <= w.remaining() && f.encode(&mut w).is_ok() {
                    if let Some(p) = self.max_streams_pending.get_mut(usize::from(k)) {
                        *p = false;
                    }
                    built.record(Record::MaxStreams { kind: k });
                    built.ack_eliciting = true;
                }
            }
        }
        let ctl_due = !self.ctl_active.is_empty();
        let mut ctl = Vec::new();
        if ctl_due {
            ctl = std::mem::take(&mut self.stale_buf);
            ctl.clear();
            ctl.extend(self.ctl_active.iter().copied());
        }
        for &id in &ctl {
            if built.records_full() || w.remaining() < 32 {
                break;
            }
            let Some(e) = self.streams.get_mut(&id) else {
                self.ctl_active.remove(&id);
                continue;
            };
            if let Some(s) = e.send.as_mut()
                && s.reset_pending
                && let Some(code) = s.reset
            {
                let f = Frame::ResetStream(ResetStream {
                    stream_id: StreamId(id),
                    error_code: code,
                    final_size: s.final_size(),
                });
                if f.encode(&mut w).is_ok() {
                    s.reset_pending = false;
                    built.record(Record::ResetStream { id });
                    built.ack_eliciting = true;
                }
            }
            if let Some(r) = e.recv.as_mut() {
                if r.stop_pending
                    && let Some(code) = r.stop
                    && !built.records_full()
                {
                    let f = Frame::StopSending(StopSending {
                        stream_id: StreamId(id),
                        error_code: code,
                    });
                    if f.encode(&mut w).is_ok() {
                        r.stop_pending = false;
                        built.record(Record::StopSending { id });
                        built.ack_eliciting = true;
                    }
                }
                if r.credit_pending && !built.records_full() {
                    let f = Frame::MaxStreamData(MaxStreamData {
                        stream_id: StreamId(id),
                        max: r.max_data,
                    });
                    if f.encode(&mut w).is_ok() {
                        r.credit_pending = false;
                        built.record(Record::MaxStreamData { id });
                        built.ack_eliciting = true;
                    }
                }
            }
            let still = e.send.as_ref().is_some_and(|s| s.reset_pending)
                || e.recv
                    .as_ref()
                    .is_some_and(|r| r.credit_pending || r.stop_pending);
            if !still {
                self.ctl_active.remove(&id);
            }
        }
        if ctl_due {
            self.stale_buf = ctl;
        }

        // 3. Application data, only on a validated path (I7).
        if allow_data && self.registry.is_validated(PathId(path_id)) {
            while let Some(d) = self.dgram_out.front() {
                let f = Frame::Datagram(Datagram { data: d });
                if f.encoded_len() > w.remaining() {
                    break;
                }
                if f.encode(&mut w).is_ok() {
                    self.dgram_out.pop_front();
                    built.ack_eliciting = true;
                    built.has_data = true;
                }
            }
            self.write_stream_data(path_id, &mut w, built);
        }

        // RFC 9000 §13.2.4: a path that only carries ACKs is never acknowledged, so
        // a path dead towards the peer would go unnoticed (its ACKs lost, the peer
        // retransmitting what was received). An ACK-only packet becomes
        // ack-eliciting when nothing ack-eliciting left on its path for a smoothed
        // RTT (at least `max_ack_delay`): the path's PTO then finds a dead path.
        // Only while the acknowledgements owed are for more than PINGs and ACKs:
        // otherwise the peer's ACK of this PING would carry a PING too, and so on
        // (an endless ping-pong on an idle session, which would also never time out).
        // (The clock comparison last: packets with data skip it.)
        let stale_ping = !built.ack_eliciting
            && w.written() > 0
            && self.data_since_stale_ping
            && self.paths.get(&path_id).is_some_and(|p| {
                let every = p.recovery.rtt().smoothed().max(self.cfg.max_ack_delay);
                p.last_tx_eliciting
                    .is_none_or(|t| now.saturating_duration_since(t) >= every)
            });
        if (is_probe || self.ping_pending || stale_ping)
            && !built.ack_eliciting
            && Frame::Ping.encode(&mut w).is_ok()
        {
            built.ack_eliciting = true;
            if stale_ping {
                self.data_since_stale_ping = false;
            }
        }
        if built.ack_eliciting {
            self.ping_pending = false;
        }
        built.len = w.written();
        (built.len > 0).then_some(())
    }

    /// Adds STREAM frames of one stream (the packet's sequence space) to the packet.
    fn write_stream_data(&mut self, path_id: u8, w: &mut Writer<'_>, built: &mut Built) {
        const OVERHEAD: usize = 24;
        let hint = self.send_stream_hint.take();
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.len() < self.cfg.max_datagram_size {
            scratch.resize(self.cfg.max_datagram_size, 0);
        }
        // Redundant copies queued for this path come first.
        let dup = self.redundant_queue.iter().position(|(p, _)| *p == path_id);
        let mut space: Option<u32> = None;
        if let Some(i) = dup
            && let Some((
                _,
                Record::Stream {
                    id,
                    offset,
                    len,
                    fin,
                },
            )) = self.redundant_queue.remove(i)
            && let Some(s) = self.streams.get(&id).and_then(|e| e.send.as_ref())
            && w.remaining() > OVERHEAD + len as usize
            && let Some(data) = scratch.get_mut(..len as usize)
            && s.copy_out(offset, data)
        {
            let f = Frame::Stream(StreamFrame {
                stream_id: StreamId(id),
                offset,
                fin,
                data,
            });
            if f.encode(w).is_ok() {
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
                space = Some(id);
            }
        }
        if space.is_none() {
            // Round-robin over streams with sendable data.
            let next = match hint {
                Some(next) => next,
                None => self.next_send_stream(),
            };
            if let Some(id) = next {
                self.rr_cursor = id;
                space = Some(id);
                let mut guard = 0;
                loop {
                    guard += 1;
                    if guard > 16 || built.records_full() || w.remaining() <= OVERHEAD {
                        break;
                    }
                    let credit = self.flow.send_credit();
                    let max_len = w.remaining() - OVERHEAD;
                    let Some(s) = self.streams.get_mut(&id).and_then(|e| e.send.as_mut()) else {
                        break;
                    };
                    let Some(chunk) = s.next_chunk(max_len, credit) else {
                        break;
                    };
                    // (Always fits: a datagram is at most 65,527 bytes.)
                    let Ok(len) = u16::try_from(chunk.len) else {
                        s.on_lost(chunk.offset, chunk.len, chunk.fin);
                        break;
                    };
                    // Encode straight from the send buffer when the range is contiguous
                    // there (almost always); otherwise gather it into the scratch buffer.
                    let data: &[u8] = match s.contiguous(chunk.offset, chunk.len) {
                        Some(d) => d,
                        None => {
                            let Some(data) = scratch.get_mut(..chunk.len) else {
                                s.on_lost(chunk.offset, chunk.len, chunk.fin);
                                break;
                            };
                            if !s.copy_out(chunk.offset, data) {
                                s.on_lost(chunk.offset, chunk.len, chunk.fin);
                                break;
                            }
                            data
                        }
                    };
                    // Encoded as the STREAM frame itself (the same bytes as through
                    // `Frame`, without the enum's dispatch).
                    let f = StreamFrame {
                        stream_id: StreamId(id),
                        offset: chunk.offset,
                        fin: chunk.fin,
                        data,
                    };
                    if f.encode(w).is_err() {
                        s.on_lost(chunk.offset, chunk.len, chunk.fin);
                        break;
                    }
                    self.flow.sent = self.flow.sent.saturating_add(chunk.new_bytes);
                    let rec = Record::Stream {
                        id,
                        offset: chunk.offset,
                        len,
                        fin: chunk.fin,
                    };
                    built.record(rec);
                    built.ack_eliciting = true;
                    built.has_data = true;
                    self.stats.stream_bytes_sent += chunk.len as u64;
                    self.stats.stream_bytes_retransmitted +=
                        (chunk.len as u64).saturating_sub(chunk.new_bytes);
                    if self.cfg.scheduler == SchedulerMode::Redundant {
                        // A copy for every other usable path (the views of this
                        // packet's scheduling), also those whose window is full right
                        // now: each sends its copy once it has room, unless the data
                        // was acknowledged by then (`copy_out` fails).
                        let any_healthy = self.views_buf.iter().any(|v| v.healthy);
                        for v in &self.views_buf {
                            if v.id.0 != path_id
                                && (v.healthy || !any_healthy)
                                && self.redundant_queue.len() < 1024
                            {
                                self.redundant_queue.push_back((v.id.0, rec));
                            }
                        }
                    }
                }
            }
        }
        if let Some(id) = space {
            built.space = id;
        }
        self.scratch = scratch;
    }

    fn finish_packet(
        &mut self,
        now: Instant,
        path_id: u8,
        buf: &mut [u8],
        built: &Built,
        track: bool,
    ) -> Option<Transmit> {
        let space = built.space;
        // One search: the counter's position is kept for the increment below (a new
        // space's counter is inserted only once its first packet is sealed).
        let at = self.next_seq.index_of(&space);
        let seq = at
            .and_then(|i| self.next_seq.value_at(i))
            .copied()
            .unwrap_or(0);
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
        let rekey_flag = self.rekey_flag_pending;
        if rekey_flag {
            flags = flags | Flags::REKEY;
        }
        let header = Header {
            flags,
            path_id: PathId(path_id),
            epoch: self.sealer.epoch(),
            session_id: self.session_id,
            stream_id: StreamId(space),
            sequence: seq,
        };
        let total = HEADER_LEN + built.len + TAG_LEN;
        let out = buf.get_mut(..total)?;
        // I2: every packet is sealed; the header image is the associated data.
        let len = match self.sealer.seal_packet(&header, out, built.len) {
            Ok(n) => n,
            Err(e) => {
                let err = match e {
                    phantom_crypto::Error::LimitReached => Error::Crypto("confidentiality limit"),
                    phantom_crypto::Error::SequenceExhausted => Error::Crypto("sequence exhausted"),
                    _ => Error::Crypto("seal failed"),
                };
                // Give the frames' content back before closing.
                self.fatal(now, err);
                return None;
            }
        };
        match at.and_then(|i| self.next_seq.value_at_mut(i)) {
            Some(n) => *n = seq + 1,
            None => {
                self.next_seq.insert(space, seq + 1);
            }
        }
        if rekey_flag {
            self.rekey_flag_pending = false;
        }
        if self.registry.on_sent(PathId(path_id), len as u64).is_err() {
            // Budget was checked before building; a failure here means a bug.
            debug_assert!(false, "amplification budget exceeded after check");
        }
        let path = self.paths.get_mut(&path_id)?;
        if built.has_data {
            path.recovery.on_paced(len as u64);
        }
        path.bytes_sent += len as u64;
        path.answer_probe = false;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += len as u64;
        if built.ack_eliciting {
            self.last_tx_eliciting = now;
            path.last_tx_eliciting = Some(now);
        }
        if track && (built.ack_eliciting || built.nrec > 0) {
            let size = len as u64;
            let ppn = path.recovery.on_sent_records(
                now,
                size,
                built.ack_eliciting,
                space,
                seq,
                &built.records,
            );
            // The space's index is mostly there already (an inlined lookup); a new
            // one takes over the spare ring.
            let index = match self.sent_index.index_of(&space) {
                Some(i) => self.sent_index.value_at_mut(i),
                None => {
                    let spare = &mut self.spare_sent;
                    self.sent_index.get_or_insert_with(space, || SpaceSent {
                        base: 0,
                        slots: std::mem::take(spare),
                        live: 0,
                    })
                }
            };
            if let Some(index) = index {
                index.insert(seq, (path_id, ppn));
            }
        }
        Some(Transmit {
            path: PathId(path_id),
            src: path.local,
            dst: path.remote,
            len,
        })
    }

    // ───────────────────────── internals: close ─────────────────────────

    fn fatal(&mut self, now: Instant, e: Error) {
        if self.is_closed() {
            return;
        }
        tracing::warn!(target: "phantom::session", error = %e, "closing on fatal error");
        self.events.push_back(Event::Closed(CloseReason::Error(e)));
        let reason = e.to_string().into_bytes();
        self.start_closing(now, e.close_code(), false, reason);
    }

    fn start_closing(&mut self, now: Instant, code: u64, application: bool, reason: Vec<u8>) {
        let _span =
            tracing::info_span!("phantom.session.close", side = ?self.side, code, application)
                .entered();
        let pto = self.max_pto();
        self.state = State::Closing;
        self.timers = Timers::default();
        self.loss_timers_stale = false;
        self.timers.set(Timer::Close, Some(now + pto * 3));
        self.close = Some(CloseInfo {
            code,
            application,
            reason,
            resends_left: MAX_CLOSE_RESENDS,
            pending: true,
        });
    }
}

impl Path {
    fn new(
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        cfg: &Config,
        mss: u64,
    ) -> Result<Self, Error> {
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
            opened_by_probe: None,
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
}

#[cfg(test)]
mod space_sent_tests {
    use super::SpaceSent;

    #[test]
    fn ring_index_tracks_live_packets_across_holes() {
        let mut s = SpaceSent::default();
        s.insert(10, (0, 100));
        s.insert(13, (1, 101)); // 11 and 12 were not tracked
        s.insert(14, (0, 102));
        assert_eq!((s.base, s.slots.len(), s.live), (10, 5, 3));
        assert_eq!(s.remove(13), Some((1, 101)));
        assert_eq!(s.remove(13), None, "removed twice");
        assert_eq!(s.remove(12), None, "never tracked");
        assert_eq!(s.remove(9), None, "below the ring");
        assert_eq!(s.remove(10), Some((0, 100)));
        // The front is trimmed past the holes.
        assert_eq!((s.base, s.slots.len(), s.live), (14, 1, 1));
        assert_eq!(s.remove(14), Some((0, 102)));
        assert!(s.slots.is_empty() && s.live == 0);
        // An empty ring restarts at the next tracked sequence.
        s.insert(40, (2, 7));
        assert_eq!((s.base, s.live), (40, 1));
        assert_eq!(s.remove(40), Some((2, 7)));
    }
}
