//! The stream table: stream halves, session flow control, stream limits, the
//! round-robin send cursor and the sets of streams with something to send.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use phantom_wire::frame::{
    MaxData, MaxStreamData, MaxStreams, ResetStream, StopSending, Stream as StreamFrame, StreamKind,
};
use phantom_wire::{Encode, Frame, StreamId, Writer};

use super::Built;
use crate::error::{Error, PeerViolation};
use crate::ranges::RangeSet;
use crate::recovery::{MAX_RECORDS, Record};
use crate::stream::{
    ConnFlow, Dir, RecvStream, SendStream, Side, stream_dir, stream_id_for, stream_index,
    stream_initiator,
};
use crate::types::{
    AppCode, Config, Event, INITIAL_MAX_STREAMS, INITIAL_SESSION_CREDIT, INITIAL_STREAM_CREDIT,
    Stats,
};
use crate::vecmap::VecMap;

/// A stream's two halves and its event flags.
#[derive(Debug)]
struct StreamEntry {
    send: Option<SendStream>,
    recv: Option<RecvStream>,
    readable_signalled: bool,
}

fn kind_index(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

/// One stream the packet builder sends from, as `next_send_stream` found it while
/// a path was chosen (nothing in between changes the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SendHint {
    /// Not asked for the packet being built.
    Unasked,
    /// No stream has data it may send.
    Nothing,
    /// This stream has.
    Stream(StreamId),
}

/// Every stream of the session.
pub(super) struct Streams {
    side: Side,
    /// Send buffer limit of a new stream.
    send_buffer: usize,
    /// Receive window of a new stream.
    recv_window: u64,
    /// Boxed so that inserting or removing a stream moves pointers, not entries.
    table: VecMap<StreamId, Box<StreamEntry>>,
    next_index: [u32; 2],
    opened_by_peer: [RangeSet; 2],
    local_max_streams: [u64; 2],
    max_streams_pending: [bool; 2],
    remote_max_streams: [u64; 2],
    flow: ConnFlow,
    rr_cursor: StreamId,
    /// Streams that may have data to send (unsent, lost, or a FIN): the only ones
    /// the packet builder looks at, so idle streams cost nothing per packet. A
    /// stream leaves when it has nothing left or waits for its own credit, and
    /// comes back on a write, a finish, a loss or a MAX_STREAM_DATA.
    send_active: BTreeSet<StreamId>,
    /// Streams with a RESET_STREAM, STOP_SENDING or MAX_STREAM_DATA to send.
    ctl_active: BTreeSet<StreamId>,
    /// Closed streams whose own sequence counters wait for their last packets to be
    /// acknowledged or lost; see [`Self::retire_closed`].
    closed: VecDeque<StreamId>,
    /// Scratch list of stream ids.
    list_buf: Vec<StreamId>,
}

impl Streams {
    pub(super) fn new(side: Side, cfg: &Config) -> Self {
        let mut flow = ConnFlow::new(INITIAL_SESSION_CREDIT, cfg.session_receive_window);
        flow.credit_pending = cfg.session_receive_window > INITIAL_SESSION_CREDIT;
        // As for streams: the implicit initial credit is the least we can enforce.
        flow.recv_max = flow.recv_max.max(INITIAL_SESSION_CREDIT);
        // The peer may open the protocol's initial number of streams before it hears
        // from us: that is the least we can enforce (as for credit).
        let max_streams = cfg.max_concurrent_streams.max(INITIAL_MAX_STREAMS);
        let extra_streams = max_streams > INITIAL_MAX_STREAMS;
        Self {
            side,
            send_buffer: cfg.stream_send_buffer,
            recv_window: cfg.stream_receive_window,
            table: VecMap::new(),
            next_index: [1, 1],
            opened_by_peer: [RangeSet::new(), RangeSet::new()],
            local_max_streams: [max_streams; 2],
            max_streams_pending: [extra_streams; 2],
            remote_max_streams: [INITIAL_MAX_STREAMS; 2],
            flow,
            rr_cursor: StreamId::CONTROL,
            send_active: BTreeSet::new(),
            ctl_active: BTreeSet::new(),
            closed: VecDeque::new(),
            list_buf: Vec::new(),
        }
    }

    /// Number of streams held.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// True if a sending stream still has unacknowledged data.
    pub(super) fn has_unacked_data(&self) -> bool {
        self.table.values().any(|e| {
            e.send
                .as_ref()
                .is_some_and(|s| !s.is_done() && s.write_end() > 0)
        })
    }

    /// True if no stream may have data to send.
    pub(super) fn nothing_to_send(&self) -> bool {
        self.send_active.is_empty()
    }

    /// True if a flow-control or stream control frame is owed.
    pub(super) fn control_due(&self) -> bool {
        self.flow.credit_pending
            || self.max_streams_pending.iter().any(|&p| p)
            || !self.ctl_active.is_empty()
    }

    // ── application commands ──

    /// Opens a stream of our own (I3: ids are never reused).
    pub(super) fn open(&mut self, dir: Dir) -> Result<StreamId, Error> {
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
        self.table.insert(
            id,
            Box::new(StreamEntry {
                send: Some(SendStream::new(INITIAL_STREAM_CREDIT, self.send_buffer)),
                recv,
                readable_signalled: false,
            }),
        );
        Ok(id)
    }

    fn send_half(&mut self, id: StreamId) -> Result<&mut SendStream, Error> {
        self.table
            .get_mut(&id)
            .and_then(|e| e.send.as_mut())
            .ok_or(Error::UnknownStream(id))
    }

    /// See [`crate::Session::write`].
    pub(super) fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, Error> {
        let n = self.send_half(id)?.write(data)?;
        if n > 0 {
            self.send_active.insert(id);
        }
        Ok(n)
    }

    /// See [`crate::Session::write_chunk`].
    pub(super) fn write_chunk(&mut self, id: StreamId, data: &mut Bytes) -> Result<usize, Error> {
        let n = self.send_half(id)?.write_bytes(data)?;
        if n > 0 {
            self.send_active.insert(id);
        }
        Ok(n)
    }

    /// See [`crate::Session::finish`].
    pub(super) fn finish(&mut self, id: StreamId) -> Result<(), Error> {
        self.send_half(id)?.finish()?;
        self.send_active.insert(id);
        Ok(())
    }

    /// See [`crate::Session::reset`].
    pub(super) fn reset(&mut self, id: StreamId, code: AppCode) -> Result<(), Error> {
        let s = self.send_half(id)?;
        s.reset(code);
        if s.reset_pending {
            self.ctl_active.insert(id);
        }
        Ok(())
    }

    /// See [`crate::Session::stop_sending`].
    pub(super) fn stop_sending(&mut self, id: StreamId, code: AppCode) -> Result<(), Error> {
        let r = self
            .table
            .get_mut(&id)
            .and_then(|e| e.recv.as_mut())
            .ok_or(Error::UnknownStream(id))?;
        if r.stop(code) {
            let released = r.take_released();
            self.flow.on_consumed(released);
            self.ctl_active.insert(id);
            // Its final size may be known already: then nothing more is expected.
            self.maybe_remove(id);
        }
        Ok(())
    }

    /// Reads from stream `id` through `op` (see [`crate::Session::read`]).
    pub(super) fn read_via(
        &mut self,
        id: StreamId,
        op: impl FnOnce(&mut RecvStream) -> Result<Option<usize>, Error>,
    ) -> Result<Option<usize>, Error> {
        let entry = self.table.get_mut(&id).ok_or(Error::UnknownStream(id))?;
        entry.readable_signalled = false;
        let r = entry.recv.as_mut().ok_or(Error::UnknownStream(id))?;
        let result = op(r);
        if r.credit_pending {
            self.ctl_active.insert(id);
        }
        if let Ok(Some(n)) = result {
            self.flow.on_consumed(n as u64);
        }
        self.maybe_remove(id);
        result
    }

    // ── the peer's frames ──

    /// A STREAM frame.
    pub(super) fn on_stream_frame(
        &mut self,
        s: &StreamFrame<'_>,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        let id = s.stream_id;
        let Some(entry) = self.peer_stream(id, true, events)? else {
            return Ok(());
        };
        let Some(recv) = entry.recv.as_mut() else {
            return Err(Error::PeerViolation(PeerViolation::StreamOnSendOnlyStream));
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
            self.maybe_remove(id);
        }
        if signal {
            events.push_back(Event::StreamReadable(id));
        }
        Ok(())
    }

    /// A RESET_STREAM frame.
    pub(super) fn on_reset_stream(
        &mut self,
        r: &ResetStream,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        let id = r.stream_id;
        if let Some(e) = self.peer_stream(id, true, events)?
            && let Some(recv) = e.recv.as_mut()
        {
            let grew = recv.on_reset(AppCode(r.error_code), r.final_size)?;
            let released = recv.take_released();
            let stopped = recv.stop.is_some();
            self.flow.on_received(grew)?;
            self.flow.on_consumed(released);
            if stopped {
                // Nobody reads a stopped stream: it is done now.
                self.maybe_remove(id);
            } else if let Some(e) = self.table.get_mut(&id)
                && !e.readable_signalled
            {
                e.readable_signalled = true;
                events.push_back(Event::StreamReadable(id));
            }
        }
        Ok(())
    }

    /// A STREAM_OPEN frame.
    pub(super) fn on_stream_open(
        &mut self,
        id: StreamId,
        kind: StreamKind,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        let dir = match kind {
            StreamKind::Bidi => Dir::Bi,
            StreamKind::Uni => Dir::Uni,
        };
        if stream_initiator(id) == self.side || stream_dir(id) != dir {
            return Err(Error::PeerViolation(PeerViolation::BadStreamOpen));
        }
        let _ = self.peer_stream(id, true, events)?;
        Ok(())
    }

    /// A MAX_DATA frame.
    pub(super) fn on_max_data(&mut self, max: u64) {
        self.flow.send_max = self.flow.send_max.max(max);
    }

    /// A MAX_STREAM_DATA frame.
    pub(super) fn on_max_stream_data(
        &mut self,
        id: StreamId,
        max: u64,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        // A grant can arrive before the new stream's first data (it is sent in the
        // same flight): like QUIC, it opens a peer-initiated stream implicitly.
        let mut writable = false;
        if let Some(e) = self.peer_stream(id, true, events)?
            && let Some(s) = e.send.as_mut()
        {
            s.max_data = s.max_data.max(max);
            writable = std::mem::take(&mut s.blocked);
            self.send_active.insert(id);
        }
        if writable {
            events.push_back(Event::StreamWritable(id));
        }
        Ok(())
    }

    /// A MAX_STREAMS frame.
    pub(super) fn on_max_streams(&mut self, kind: StreamKind, max: u64) {
        let k = match kind {
            StreamKind::Bidi => 0,
            StreamKind::Uni => 1,
        };
        if let Some(v) = self.remote_max_streams.get_mut(k) {
            *v = (*v).max(max);
        }
    }

    /// A STOP_SENDING frame.
    pub(super) fn on_stop_sending(
        &mut self,
        id: StreamId,
        code: AppCode,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        if let Some(e) = self.peer_stream(id, true, events)?
            && let Some(send) = e.send.as_mut()
        {
            send.reset(code);
            if send.reset_pending {
                self.ctl_active.insert(id);
            }
        }
        Ok(())
    }

    /// Checks that a packet's sequence space `space` (not the control space) belongs
    /// to a stream that exists or existed — one we opened, or one the peer opened or
    /// opens now — so that its per-space state is retired once the stream closes.
    pub(super) fn check_space(
        &mut self,
        space: StreamId,
        events: &mut VecDeque<Event>,
    ) -> Result<(), Error> {
        if stream_index(space) == 0 {
            // Index 0 is no stream of any kind (id 0 is the control space).
            return Err(Error::PeerViolation(PeerViolation::PacketInStreamIndexZero));
        }
        if stream_initiator(space) == self.side {
            let k = kind_index(stream_dir(space));
            let next = self.next_index.get(k).copied().unwrap_or(0);
            if stream_index(space) >= next {
                return Err(Error::PeerViolation(PeerViolation::PacketInUnopenedStream));
            }
            return Ok(());
        }
        self.peer_stream(space, true, events).map(|_| ())
    }

    /// The stream a peer frame refers to, opening a peer-initiated one if `open` and
    /// it is new. `Ok(None)` for a stream that existed and is finished (frames ignored).
    /// The lookup of an existing stream (twice per data packet: `check_space` and
    /// `on_stream_frame`) is inlined at the callers; the rest is
    /// [`Self::peer_stream_absent`].
    #[inline(always)]
    fn peer_stream(
        &mut self,
        id: StreamId,
        open: bool,
        events: &mut VecDeque<Event>,
    ) -> Result<Option<&mut StreamEntry>, Error> {
        if id == StreamId::CONTROL {
            return Err(Error::PeerViolation(
                PeerViolation::StreamFrameOnControlStream,
            ));
        }
        if let Some(i) = self.table.index_of(&id) {
            return Ok(self.table.value_at_mut(i).map(|e| &mut **e));
        }
        self.peer_stream_absent(id, open, events)
    }

    /// [`Self::peer_stream`] for an `id` (not 0) that is not in the stream map.
    fn peer_stream_absent(
        &mut self,
        id: StreamId,
        open: bool,
        events: &mut VecDeque<Event>,
    ) -> Result<Option<&mut StreamEntry>, Error> {
        let dir = stream_dir(id);
        let k = kind_index(dir);
        let index = stream_index(id);
        if stream_initiator(id) == self.side {
            // One of ours: either finished (ignore) or never opened (violation).
            let next = self.next_index.get(k).copied().unwrap_or(0);
            if index >= next {
                return Err(Error::PeerViolation(PeerViolation::FrameForUnopenedStream));
            }
            return Ok(None);
        }
        let opened = self
            .opened_by_peer
            .get_mut(k)
            .ok_or(Error::PeerViolation(PeerViolation::StreamKind))?;
        if opened.contains(u64::from(index)) || !open {
            return Ok(None);
        }
        if u64::from(index) > self.local_max_streams.get(k).copied().unwrap_or(0) {
            return Err(Error::PeerViolation(PeerViolation::StreamLimitExceeded));
        }
        opened.insert(u64::from(index)..u64::from(index) + 1);
        let send =
            (dir == Dir::Bi).then(|| SendStream::new(INITIAL_STREAM_CREDIT, self.send_buffer));
        let recv = self.new_recv();
        if recv.credit_pending {
            self.ctl_active.insert(id);
        }
        let recv = Some(recv);
        self.table.insert(
            id,
            Box::new(StreamEntry {
                send,
                recv,
                readable_signalled: false,
            }),
        );
        events.push_back(Event::StreamOpened { id, dir });
        Ok(self.table.get_mut(&id).map(|e| &mut **e))
    }

    fn new_recv(&self) -> RecvStream {
        let mut r = RecvStream::new(self.recv_window);
        r.credit_pending = self.recv_window > INITIAL_STREAM_CREDIT;
        // The peer may send up to the protocol's initial credit before it hears from
        // us, so that is the least we can enforce; a smaller configured window only
        // shapes later credit updates (credit is never withdrawn).
        r.max_data = r.max_data.max(INITIAL_STREAM_CREDIT);
        r
    }

    // ── acknowledgements and losses ──

    /// The stream records of the packets one ACK frame newly acknowledged, in
    /// acknowledgement order.
    pub(super) fn on_records_acked(&mut self, records: &[Record], events: &mut VecDeque<Event>) {
        // A run of STREAM records of one stream, each starting where the previous
        // ended (a bulk stream's packets, acknowledged in order), is acknowledged as
        // one range `(id, offset, end, fin)`: the send buffer ends in the same state
        // and the same events follow as record by record, with one stream lookup and
        // one buffer advance per run instead of per packet.
        let mut run: Option<(StreamId, u64, u64, bool)> = None;
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
                        self.on_stream_range_acked(done, events);
                    }
                }
                Record::ResetStream { id } => {
                    if let Some(done) = run.take() {
                        self.on_stream_range_acked(done, events);
                    }
                    if let Some(s) = self.table.get_mut(&id).and_then(|e| e.send.as_mut()) {
                        s.reset_acked = true;
                    }
                    self.maybe_remove(id);
                }
                _ => {}
            }
        }
        if let Some(done) = run {
            self.on_stream_range_acked(done, events);
        }
    }

    /// Stream `id`'s data `[offset, end)` (and its FIN if `fin`) was acknowledged.
    fn on_stream_range_acked(
        &mut self,
        (id, offset, end, fin): (StreamId, u64, u64, bool),
        events: &mut VecDeque<Event>,
    ) {
        let Some(s) = self.table.get_mut(&id).and_then(|e| e.send.as_mut()) else {
            return;
        };
        let len = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let freed = s.on_ack(offset, len, fin);
        if freed && s.blocked && s.room() > 0 {
            s.blocked = false;
            events.push_back(Event::StreamWritable(id));
        }
        if s.is_done() {
            events.push_back(Event::StreamFinished(id));
            self.maybe_remove(id);
        }
    }

    /// A lost packet's records go back to their senders' queues. Returns the
    /// stream bytes among them that were acknowledged already (delivered by
    /// another copy).
    pub(super) fn on_records_lost(&mut self, records: &[Record; MAX_RECORDS]) -> u64 {
        let mut already_acked = 0;
        for &r in records {
            match r {
                Record::Stream {
                    id,
                    offset,
                    len,
                    fin,
                } => {
                    if let Some(s) = self.table.get_mut(&id).and_then(|e| e.send.as_mut()) {
                        already_acked += s.on_lost(offset, len as usize, fin);
                        self.send_active.insert(id);
                    }
                }
                Record::ResetStream { id } => {
                    if let Some(s) = self.table.get_mut(&id).and_then(|e| e.send.as_mut())
                        && !s.reset_acked
                    {
                        s.reset_pending = true;
                        self.ctl_active.insert(id);
                    }
                }
                Record::StopSending { id } => {
                    if let Some(r) = self.table.get_mut(&id).and_then(|e| e.recv.as_mut())
                        && r.stop.is_some()
                    {
                        r.stop_pending = true;
                        self.ctl_active.insert(id);
                    }
                }
                Record::MaxData => self.flow.credit_pending = true,
                Record::MaxStreamData { id } => {
                    if let Some(r) = self.table.get_mut(&id).and_then(|e| e.recv.as_mut()) {
                        r.credit_pending = true;
                        self.ctl_active.insert(id);
                    }
                }
                Record::MaxStreams { kind } => {
                    if let Some(p) = self.max_streams_pending.get_mut(usize::from(kind)) {
                        *p = true;
                    }
                }
                // (Connection-id frames are the session's `ConnIds`' to repeat.)
                Record::None
                | Record::PathChallenge
                | Record::NewConnId { .. }
                | Record::RetireConnId { .. } => {}
            }
        }
        already_acked
    }

    // ── closing ──

    fn maybe_remove(&mut self, id: StreamId) {
        let done = self.table.get(&id).is_some_and(|e| {
            e.send.as_ref().is_none_or(SendStream::is_done)
                && e.recv.as_ref().is_none_or(RecvStream::is_done)
        });
        if !done {
            return;
        }
        self.table.remove(&id);
        self.send_active.remove(&id);
        self.ctl_active.remove(&id);
        self.closed.push_back(id);
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

    /// Hands every closed stream to `try_retire` (which retires its sequence space
    /// unless packets of it are outstanding); those it refuses are kept for later.
    pub(super) fn retire_closed(&mut self, mut try_retire: impl FnMut(StreamId) -> bool) {
        for _ in 0..self.closed.len() {
            let Some(id) = self.closed.pop_front() else {
                break;
            };
            if self.table.contains_key(&id) || !try_retire(id) {
                self.closed.push_back(id);
            }
        }
    }

    // ── sending ──

    /// The next stream to send from, round-robin after `rr_cursor` over
    /// `send_active`. Streams met on the way that have nothing to send, or wait
    /// for their own credit, leave the set; streams waiting only for session
    /// credit stay.
    pub(super) fn next_send_stream(&mut self) -> Option<StreamId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let credit = self.flow.send_credit();
        if self.send_active.len() == 1 {
            // One busy stream (bulk transfer): no range walk.
            let id = self.send_active.first().copied()?;
            return match self.table.get(&id).and_then(|e| e.send.as_ref()) {
                Some(s) if s.can_send(credit) => Some(id),
                Some(s) if s.can_send(u64::MAX) => None,
                _ => {
                    self.send_active.remove(&id);
                    None
                }
            };
        }
        let mut stale = std::mem::take(&mut self.list_buf);
        stale.clear();
        let mut found = None;
        let after = self
            .send_active
            .range((Excluded(self.rr_cursor), Unbounded));
        let wrapped = self.send_active.range(..=self.rr_cursor);
        for &id in after.chain(wrapped) {
            match self.table.get(&id).and_then(|e| e.send.as_ref()) {
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
        self.list_buf = stale;
        found
    }

    /// Writes the owed MAX_DATA and MAX_STREAMS frames.
    pub(super) fn write_flow_control(&mut self, w: &mut Writer<'_>, built: &mut Built) {
        if self.flow.credit_pending && !built.records_full() {
            let f = Frame::MaxData(MaxData {
                max: self.flow.recv_max,
            });
            if f.encoded_len() <= w.remaining() && f.encode(w).is_ok() {
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
                if f.encoded_len() <= w.remaining() && f.encode(w).is_ok() {
                    if let Some(p) = self.max_streams_pending.get_mut(usize::from(k)) {
                        *p = false;
                    }
                    built.record(Record::MaxStreams { kind: k });
                    built.ack_eliciting = true;
                }
            }
        }
    }

    /// Writes the owed RESET_STREAM, STOP_SENDING and MAX_STREAM_DATA frames.
    pub(super) fn write_stream_control(&mut self, w: &mut Writer<'_>, built: &mut Built) {
        let ctl_due = !self.ctl_active.is_empty();
        let mut ctl = Vec::new();
        if ctl_due {
            ctl = std::mem::take(&mut self.list_buf);
            ctl.clear();
            ctl.extend(self.ctl_active.iter().copied());
        }
        for &id in &ctl {
            if built.records_full() || w.remaining() < 32 {
                break;
            }
            let Some(e) = self.table.get_mut(&id) else {
                self.ctl_active.remove(&id);
                continue;
            };
            if !write_entry_control(id, e, w, built) {
                self.ctl_active.remove(&id);
            }
        }
        if ctl_due {
            self.list_buf = ctl;
        }
    }

    /// The sending half of stream `id`.
    pub(super) fn send_stream(&self, id: StreamId) -> Option<&SendStream> {
        self.table.get(&id).and_then(|e| e.send.as_ref())
    }

    /// Adds STREAM frames of stream `id` to the packet (at most 16, while records
    /// and room last), gathering a non-contiguous range in `scratch`; `copy` gets
    /// each record sent (redundant copies for other paths).
    pub(super) fn write_stream_frames(
        &mut self,
        id: StreamId,
        w: &mut Writer<'_>,
        built: &mut Built,
        scratch: &mut [u8],
        stats: &mut Stats,
        mut copy: impl FnMut(Record),
    ) {
        const OVERHEAD: usize = super::send::STREAM_OVERHEAD;
        self.rr_cursor = id;
        let mut guard = 0;
        loop {
            guard += 1;
            if guard > 16 || built.records_full() || w.remaining() <= OVERHEAD {
                break;
            }
            let credit = self.flow.send_credit();
            let max_len = w.remaining() - OVERHEAD;
            let Some(s) = self.table.get_mut(&id).and_then(|e| e.send.as_mut()) else {
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
                stream_id: id,
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
            stats.stream_bytes_sent += chunk.len as u64;
            stats.stream_bytes_retransmitted += (chunk.len as u64).saturating_sub(chunk.new_bytes);
            copy(rec);
        }
    }

    // ── test views ──

    /// `(streams that may have data to send, streams with a control frame to send)`.
    #[cfg(test)]
    pub(super) fn active_counts(&self) -> (usize, usize) {
        (self.send_active.len(), self.ctl_active.len())
    }

    /// Closed streams waiting to retire.
    #[cfg(test)]
    pub(super) fn closed_len(&self) -> usize {
        self.closed.len()
    }

    /// Out-of-order fragments held over all receive streams.
    #[cfg(test)]
    pub(super) fn recv_fragments(&self) -> usize {
        self.table
            .values()
            .filter_map(|e| e.recv.as_ref())
            .map(RecvStream::fragments)
            .sum()
    }
}

/// Writes stream `id`'s owed RESET_STREAM, STOP_SENDING and MAX_STREAM_DATA; true
/// if something is still owed afterwards.
fn write_entry_control(
    id: StreamId,
    e: &mut StreamEntry,
    w: &mut Writer<'_>,
    built: &mut Built,
) -> bool {
    if let Some(s) = e.send.as_mut()
        && s.reset_pending
        && let Some(code) = s.reset
    {
        let f = Frame::ResetStream(ResetStream {
            stream_id: id,
            error_code: code.0,
            final_size: s.final_size(),
        });
        if f.encode(w).is_ok() {
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
                stream_id: id,
                error_code: code.0,
            });
            if f.encode(w).is_ok() {
                r.stop_pending = false;
                built.record(Record::StopSending { id });
                built.ack_eliciting = true;
            }
        }
        if r.credit_pending && !built.records_full() {
            let f = Frame::MaxStreamData(MaxStreamData {
                stream_id: id,
                max: r.max_data,
            });
            if f.encode(w).is_ok() {
                r.credit_pending = false;
                built.record(Record::MaxStreamData { id });
                built.ack_eliciting = true;
            }
        }
    }
    e.send.as_ref().is_some_and(|s| s.reset_pending)
        || e.recv
            .as_ref()
            .is_some_and(|r| r.credit_pending || r.stop_pending)
}
