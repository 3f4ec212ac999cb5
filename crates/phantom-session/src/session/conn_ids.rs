//! Rotating connection ids (docs/PROTOCOL.md §5.11, I11).
//!
//! [`ConnIds`] holds both halves of the id exchange:
//!
//! * **ours** — the ids we issued (sequence 0 in the handshake's Finished, the rest in
//!   NEW_CONN_ID frames), which the peer puts on the packets it sends us and which
//!   whoever routes our datagrams must know ([`ConnIdEvent`]). We keep
//!   [`ACTIVE_CONN_IDS`] of them active and issue a replacement for each one the peer
//!   retires.
//! * **the peer's** — the ids it issued us, each unused, in use on one path (or, after
//!   a NAT rebinding we could not avoid, on several), or retired. A path sends only
//!   with its own id; a path that is removed retires its id (RETIRE_CONN_ID), so the
//!   peer stops routing it and issues a replacement.
//!
//! Every table is bounded: at most [`ACTIVE_CONN_IDS`] of ours, at most
//! [`MAX_PEER_CONN_IDS`] of the peer's (more is a [`PeerViolation`]), one entry per
//! path, and at most [`MAX_PENDING_RETIRES`] RETIRE_CONN_ID frames owed.

use std::collections::VecDeque;
use std::sync::Arc;

use phantom_handshake::{ConnIdGenerator, IssuedConnId, ResetKey};
use phantom_wire::frame::{NewConnId, RESET_TOKEN_LEN, RetireConnId};
use phantom_wire::{ConnId, Encode as _, Frame, PathId, Writer};
use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, SeedableRng as _};

use super::Built;
use crate::error::{Error, PeerViolation};
use crate::recovery::Record;

/// Ids of ours the peer holds at once, the handshake's sequence 0 included.
pub const ACTIVE_CONN_IDS: usize = 4;
/// Most unretired ids the peer may have issued us at once; one more is a
/// [`PeerViolation::TooManyConnIds`].
pub const MAX_PEER_CONN_IDS: usize = 8;
/// Most RETIRE_CONN_ID frames owed at once; more is a
/// [`PeerViolation::TooManyConnIds`] (a peer forcing retirements faster than they
/// are acknowledged).
pub const MAX_PENDING_RETIRES: usize = 4 * MAX_PEER_CONN_IDS;

/// A change to the ids the peer's packets may carry: apply it to the routing table
/// ([`crate::Endpoint::add_conn_id`], [`crate::Endpoint::retire_conn_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnIdEvent {
    /// A new id of ours: route it to this session.
    Issued(ConnId),
    /// The peer retired this id of ours: stop routing it.
    Retired(ConnId),
}

/// Where the ids this end issues come from: the generator that chose its first id
/// (the handshake's) and, on a server, the key its reset tokens derive from.
#[derive(Clone, Debug)]
pub struct ConnIdSource {
    /// Chooses the bytes of every id this end issues (and fixes their length).
    pub generator: Arc<dyn ConnIdGenerator>,
    /// A server's static reset key (§5.10); `None`: random tokens (a client).
    pub reset_key: Option<ResetKey>,
}

impl Default for ConnIdSource {
    fn default() -> Self {
        Self {
            generator: Arc::new(phantom_handshake::RandomConnIds::default()),
            reset_key: None,
        }
    }
}

/// One of our ids.
#[derive(Debug, Clone, Copy)]
struct Local {
    seq: u64,
    id: IssuedConnId,
    /// A NEW_CONN_ID for it is owed (not sent yet, or lost).
    owed: bool,
}

/// One of the peer's ids, not retired.
#[derive(Debug, Clone, Copy)]
struct Peer {
    seq: u64,
    id: IssuedConnId,
}

/// Both halves of the connection-id exchange (see the module doc).
#[derive(Debug)]
pub(super) struct ConnIds {
    source: ConnIdSource,
    /// Seeds the ChaCha20 RNG of the next ids (I9); replaced from that RNG after each
    /// use. 32 bytes kept instead of the RNG's 320.
    seed: [u8; 32],
    local: Vec<Local>,
    next_local_seq: u64,
    peer: Vec<Peer>,
    /// The largest retire_prior_to the peer sent.
    peer_retire_prior_to: u64,
    /// One more than the largest sequence number the peer issued, and which of the 64
    /// below it arrived (bit `k`: sequence `seen_end - 1 - k`): a NEW_CONN_ID sent
    /// again after we retired its id must not bring the id back.
    seen_end: u64,
    seen_bits: u64,
    /// Which peer id (by sequence) each path sends with.
    by_path: Vec<(PathId, u64)>,
    /// RETIRE_CONN_ID frames owed.
    retires: VecDeque<u64>,
    events: VecDeque<ConnIdEvent>,
}

impl ConnIds {
    /// Our id0 and the peer's, as the handshake exchanged them; path 0 sends with the
    /// peer's. Issues our further ids at once.
    pub(super) fn new(
        source: ConnIdSource,
        seed: [u8; 32],
        local0: IssuedConnId,
        peer0: IssuedConnId,
    ) -> Self {
        let mut s = Self {
            source,
            seed,
            local: vec![Local {
                seq: 0,
                id: local0,
                owed: false,
            }],
            next_local_seq: 1,
            peer: vec![Peer { seq: 0, id: peer0 }],
            peer_retire_prior_to: 0,
            seen_end: 1,
            seen_bits: 1,
            by_path: vec![(PathId(0), 0)],
            retires: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.top_up();
        s
    }

    /// Issues ids until [`ACTIVE_CONN_IDS`] of ours are active.
    fn top_up(&mut self) {
        if self.local.len() >= ACTIVE_CONN_IDS {
            return;
        }
        let mut rng = ChaCha20Rng::from_seed(self.seed);
        while self.local.len() < ACTIVE_CONN_IDS {
            let gen_ = &*self.source.generator;
            let id = match &self.source.reset_key {
                Some(key) => IssuedConnId::draw_keyed(&mut rng, gen_, key),
                None => IssuedConnId::draw(&mut rng, gen_),
            };
            if self.local.iter().any(|l| l.id.id == id.id) {
                continue;
            }
            self.local.push(Local {
                seq: self.next_local_seq,
                id,
                owed: true,
            });
            self.next_local_seq += 1;
            self.events.push_back(ConnIdEvent::Issued(id.id));
        }
        rng.fill_bytes(&mut self.seed);
    }

    /// The ids of ours the peer may use.
    pub(super) fn local_ids(&self) -> Vec<ConnId> {
        self.local.iter().map(|l| l.id.id).collect()
    }

    /// The id of ours `datagram` carries, if it is an active one; else our first
    /// (the opener then refuses the datagram as another session's).
    pub(super) fn local_id_of(&self, datagram: &[u8]) -> ConnId {
        let first = self.local.first().map(|l| l.id.id);
        let len = first.map_or(8, |c| c.len());
        phantom_wire::peek_conn_id(datagram, len)
            .and_then(|b| self.local.iter().find(|l| l.id.id.as_bytes() == b))
            .map(|l| l.id.id)
            .or(first)
            .unwrap_or_else(|| ConnId::filled_with(len, |_| {}))
    }

    /// The next change to our routable ids.
    pub(super) fn poll_event(&mut self) -> Option<ConnIdEvent> {
        self.events.pop_front()
    }

    /// The peer id path `path` sends with (the first one's if the path has none, which
    /// only a bug can cause).
    pub(super) fn peer_id_for(&self, path: PathId) -> ConnId {
        let seq = self
            .by_path
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| *s);
        seq.and_then(|s| self.peer.iter().find(|p| p.seq == s))
            .or(self.peer.first())
            .map_or_else(|| ConnId::filled_with(8, |_| {}), |p| p.id.id)
    }

    /// The longest id the peer issued (the header length our packets can reach).
    pub(super) fn max_peer_len(&self) -> usize {
        self.peer.iter().map(|p| p.id.id.len()).max().unwrap_or(8)
    }

    /// Peer ids no path uses.
    pub(super) fn unused_peer_ids(&self) -> usize {
        self.peer
            .iter()
            .filter(|p| !self.by_path.iter().any(|(_, s)| *s == p.seq))
            .count()
    }

    /// Gives `path` an unused peer id (the lowest sequence).
    ///
    /// # Errors
    /// [`Error::Path`] if every peer id is in use: a new path would link to another.
    pub(super) fn assign_fresh(&mut self, path: PathId) -> Result<(), Error> {
        let seq = self
            .peer
            .iter()
            .map(|p| p.seq)
            .filter(|s| !self.by_path.iter().any(|(_, u)| u == s))
            .min()
            .ok_or(Error::Path(super::NO_UNUSED_CONN_ID))?;
        self.by_path.retain(|(p, _)| *p != path);
        self.by_path.push((path, seq));
        Ok(())
    }

    /// Path `path` moves to an unused peer id and its old one is retired (unless
    /// another path still uses it).
    ///
    /// # Errors
    /// [`Error::Path`] if none is unused: the path keeps its id.
    pub(super) fn switch_fresh(&mut self, path: PathId) -> Result<(), Error> {
        let old = self
            .by_path
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| *s);
        self.assign_fresh(path)?;
        if let Some(seq) = old
            && !self.by_path.iter().any(|(_, s)| *s == seq)
        {
            self.retire_peer(seq);
        }
        Ok(())
    }

    /// A path the peer's packets opened: a fresh id if one is unused, else the id of
    /// `like` (NAT rebinding the peer did not notice; linkable, §5.11).
    pub(super) fn assign_passive(&mut self, path: PathId, like: PathId) {
        if self.assign_fresh(path).is_ok() {
            return;
        }
        if let Some(&(_, seq)) = self.by_path.iter().find(|(p, _)| *p == like) {
            self.by_path.retain(|(p, _)| *p != path);
            self.by_path.push((path, seq));
        }
    }

    /// Path `path` is gone: its id is retired unless another path still uses it.
    pub(super) fn release(&mut self, path: PathId) {
        let Some(at) = self.by_path.iter().position(|(p, _)| *p == path) else {
            return;
        };
        let (_, seq) = self.by_path.swap_remove(at);
        if self.by_path.iter().any(|(_, s)| *s == seq) {
            return;
        }
        self.retire_peer(seq);
    }

    fn retire_peer(&mut self, seq: u64) {
        self.peer.retain(|p| p.seq != seq);
        if !self.retires.contains(&seq) {
            self.retires.push_back(seq);
        }
    }

    /// True if `tail` is the reset token of a peer id in use (constant time per
    /// token, §5.10): only ids our packets carry can be answered with a reset.
    pub(super) fn is_reset_token(&self, tail: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        let mut hit = subtle::Choice::from(0);
        for p in &self.peer {
            if self.by_path.iter().any(|(_, s)| *s == p.seq) {
                hit |= tail.ct_eq(&p.id.reset_token);
            }
        }
        bool::from(hit)
    }

    /// NEW_CONN_ID from the peer (authenticated).
    ///
    /// # Errors
    /// [`PeerViolation::TooManyConnIds`] beyond [`MAX_PEER_CONN_IDS`] active ids or
    /// [`MAX_PENDING_RETIRES`] owed retirements; [`PeerViolation::ConnIdReused`] if a
    /// sequence number comes back with another id.
    pub(super) fn on_new_conn_id(&mut self, f: &NewConnId) -> Result<(), Error> {
        let violation = |v| Err(Error::PeerViolation(v));
        if let Some(p) = self.peer.iter().find(|p| p.seq == f.seq) {
            return if p.id.id == f.id {
                Ok(())
            } else {
                violation(PeerViolation::ConnIdReused)
            };
        }
        if !self.mark_seen(f.seq) {
            // Sent again after we retired it (or too old to tell): never reused.
            return Ok(());
        }
        if f.seq < self.peer_retire_prior_to {
            // Already below what the peer retired: retire it at once.
            self.retire_peer(f.seq);
        } else if !self.peer.iter().any(|p| p.id.id == f.id) {
            self.peer.push(Peer {
                seq: f.seq,
                id: IssuedConnId {
                    id: f.id,
                    reset_token: f.reset_token,
                },
            });
        }
        if f.retire_prior_to > self.peer_retire_prior_to {
            self.peer_retire_prior_to = f.retire_prior_to;
            self.retire_below(f.retire_prior_to);
        }
        if self.peer.len() > MAX_PEER_CONN_IDS || self.retires.len() > MAX_PENDING_RETIRES {
            return violation(PeerViolation::TooManyConnIds);
        }
        Ok(())
    }

    /// Records that the peer's sequence number `seq` arrived; false if it had already
    /// arrived, or is more than 64 below the largest one (treated as arrived).
    fn mark_seen(&mut self, seq: u64) -> bool {
        if seq >= self.seen_end {
            let shift = seq - self.seen_end + 1;
            self.seen_bits = if shift >= 64 {
                0
            } else {
                self.seen_bits << shift
            };
            self.seen_bits |= 1;
            self.seen_end = seq + 1;
            return true;
        }
        let k = self.seen_end - 1 - seq;
        if k >= 64 || self.seen_bits & (1 << k) != 0 {
            return false;
        }
        self.seen_bits |= 1 << k;
        true
    }

    /// The peer asked us to retire its ids below `rpt`: paths using one move to an
    /// unused id (or keep theirs if none is left).
    fn retire_below(&mut self, rpt: u64) {
        let old: Vec<u64> = self
            .peer
            .iter()
            .map(|p| p.seq)
            .filter(|s| *s < rpt)
            .collect();
        for seq in old {
            let paths: Vec<PathId> = self
                .by_path
                .iter()
                .filter(|(_, s)| *s == seq)
                .map(|(p, _)| *p)
                .collect();
            let mut moved = true;
            for p in paths {
                let fresh = self
                    .peer
                    .iter()
                    .map(|x| x.seq)
                    .filter(|s| *s >= rpt && !self.by_path.iter().any(|(_, u)| u == s))
                    .min();
                match fresh {
                    Some(f) => {
                        self.by_path.retain(|(q, _)| *q != p);
                        self.by_path.push((p, f));
                    }
                    None => moved = false,
                }
            }
            if moved {
                self.retire_peer(seq);
            }
        }
    }

    /// RETIRE_CONN_ID from the peer (authenticated): stop routing the id and issue a
    /// replacement.
    ///
    /// # Errors
    /// [`PeerViolation::UnknownConnId`] for a sequence number we never issued.
    pub(super) fn on_retire_conn_id(&mut self, f: &RetireConnId) -> Result<(), Error> {
        if f.seq >= self.next_local_seq {
            return Err(Error::PeerViolation(PeerViolation::UnknownConnId));
        }
        if let Some(at) = self.local.iter().position(|l| l.seq == f.seq) {
            let gone = self.local.remove(at);
            self.events.push_back(ConnIdEvent::Retired(gone.id.id));
            self.top_up();
        }
        Ok(())
    }

    /// True if a NEW_CONN_ID or RETIRE_CONN_ID frame is owed.
    pub(super) fn frames_due(&self) -> bool {
        !self.retires.is_empty() || self.local.iter().any(|l| l.owed)
    }

    /// Writes the owed NEW_CONN_ID and RETIRE_CONN_ID frames that fit, recording each
    /// so a lost one is sent again.
    pub(super) fn write_frames(&mut self, w: &mut Writer<'_>, built: &mut Built) {
        for l in self.local.iter_mut().filter(|l| l.owed) {
            let f = Frame::NewConnId(NewConnId {
                seq: l.seq,
                retire_prior_to: 0,
                id: l.id.id,
                reset_token: l.id.reset_token,
            });
            if built.records_full() || f.encoded_len() > w.remaining() || f.encode(w).is_err() {
                return;
            }
            l.owed = false;
            built.ack_eliciting = true;
            built.record(Record::NewConnId { seq: l.seq });
        }
        while let Some(&seq) = self.retires.front() {
            let f = Frame::RetireConnId(RetireConnId { seq });
            if built.records_full() || f.encoded_len() > w.remaining() || f.encode(w).is_err() {
                return;
            }
            self.retires.pop_front();
            built.ack_eliciting = true;
            built.record(Record::RetireConnId { seq });
        }
    }

    /// A packet carrying these records was lost: owe its id frames again.
    pub(super) fn on_records_lost(&mut self, records: &[Record]) {
        for r in records {
            match *r {
                Record::NewConnId { seq } => {
                    if let Some(l) = self.local.iter_mut().find(|l| l.seq == seq) {
                        l.owed = true;
                    }
                }
                Record::RetireConnId { seq }
                    if !self.retires.contains(&seq) && self.retires.len() < MAX_PENDING_RETIRES =>
                {
                    self.retires.push_back(seq);
                }
                _ => {}
            }
        }
    }

    /// The NEW_CONN_ID frames owed, marked sent (test pairs hand them over directly).
    #[cfg(test)]
    pub(super) fn take_owed(&mut self) -> Vec<NewConnId> {
        let mut out = Vec::new();
        for l in self.local.iter_mut().filter(|l| l.owed) {
            l.owed = false;
            out.push(NewConnId {
                seq: l.seq,
                retire_prior_to: 0,
                id: l.id.id,
                reset_token: l.id.reset_token,
            });
        }
        out
    }

    /// Table sizes: (ours, the peer's, path assignments, retirements owed).
    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.local.len(),
            self.peer.len(),
            self.by_path.len(),
            self.retires.len(),
        )
    }
}

const _: () = assert!(RESET_TOKEN_LEN == phantom_handshake::RESET_TOKEN_LEN);
