//! The epoch ratchet: a real [`Sealer`] that rekeys, a real [`Opener`] with its
//! catch-up window ([`MAX_REKEY_CATCHUP`]) and grace key, and an attacker who replays,
//! reorders and drops genuine packets and injects packets of any epoch.
//!
//! **State.** The sealer and opener are not `Clone`, so a state records the operations
//! each was given (`sender_log`, `receiver_log`) and every transition rebuilds them by
//! replaying that log from the same starting secret (deterministic: HKDF and the AEAD
//! take no randomness). Hashing and equality use only a *canonical projection*: sender
//! (epoch, chain position, packets sent, saturated), receiver (epoch, previous epoch,
//! failed opens), the packets on the network by (epoch, sequence), the attacker's and
//! timer's budgets, the ghost grace epoch and the last receive. The projection is
//! complete for these types: an `Opener` is its suite, its epoch, that epoch's secret
//! (a function of the epoch on one chain), the previous epoch's key (a function of that
//! epoch), its failed-open count and its limits; a `Sealer` is likewise a function of its
//! chain position and of the sequences it sealed, which the projection holds. Two logs
//! with the same projection therefore stand for the same real state, and merging them
//! loses no behaviour.
//!
//! **Abstraction.** An injected packet is a well-formed header with the chosen epoch
//! and an all-zero ciphertext and tag: an attacker without the traffic secret cannot do
//! better than a guess, which the real AEAD rejects. The attacker's epoch is drawn from
//! the classes the opener distinguishes, relative to the receiver's current epoch `r`:
//! `r-2`, `r-1`, `r`, `r+1`, `r+16`, `r+17` and `u32::MAX` (older than the grace key,
//! the grace key, current, the two ends of the catch-up window, just past it, far past
//! it); every other epoch falls in one of these classes and the opener's code treats a
//! class alike.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use phantom_crypto::{HeaderKey, MAX_REKEY_CATCHUP, Opener, Sealer, Suite, TAG_LEN, TrafficSecret};
use phantom_wire::{ConnId, Epoch, Flags, Header, SeqLen, StreamId};
use stateright::{Model, Property};

/// A fault planted in the model's wrappers around the real types, so the checker can
/// show that each property detects the defect it guards against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatchetMutation {
    /// None: the real types as they are.
    None,
    /// The receiver ratchets to the epoch a packet claims (within the window) before
    /// authenticating it, as the reference design's `ratchet_to_epoch` did.
    UnauthenticatedBump,
    /// The receiver ignores the grace timer: the previous epoch's key is never retired.
    GraceNeverRetired,
    /// The receiver follows at most one epoch ahead instead of [`MAX_REKEY_CATCHUP`].
    NarrowCatchUp,
    /// The sender wraps to epoch 0 when the epoch saturates instead of refusing.
    WrappingRekey,
}

/// The model's configuration.
#[derive(Debug, Clone)]
pub struct RatchetModel {
    /// The epoch both sides start at (`u32::MAX - 3` explores saturation).
    pub start: u32,
    /// Most rekeys the sender performs.
    pub max_rekeys: u32,
    /// Most genuine packets the sender seals.
    pub max_sends: u8,
    /// Most packets the attacker injects.
    pub max_forgeries: u8,
    /// Most times the receiver's grace timer fires.
    pub max_retires: u8,
    /// The suite (both behave alike; one keeps the model small).
    pub suite: Suite,
    /// The planted fault.
    pub mutation: RatchetMutation,
}

impl RatchetModel {
    /// The configuration CI checks: 17 rekeys (one past the catch-up window), two
    /// genuine packets, one injection, one grace timer.
    #[must_use]
    pub fn window() -> Self {
        Self {
            start: 0,
            max_rekeys: MAX_REKEY_CATCHUP + 1,
            max_sends: 2,
            max_forgeries: 1,
            max_retires: 1,
            suite: Suite::ChaCha20Poly1305,
            mutation: RatchetMutation::None,
        }
    }

    /// Starting three epochs below `u32::MAX`, with rekeys past saturation.
    #[must_use]
    pub fn saturation() -> Self {
        Self {
            start: u32::MAX - 3,
            max_rekeys: 5,
            max_sends: 2,
            max_forgeries: 1,
            max_retires: 1,
            suite: Suite::ChaCha20Poly1305,
            mutation: RatchetMutation::None,
        }
    }

    /// The same configuration with `mutation` planted.
    #[must_use]
    pub fn with(mut self, mutation: RatchetMutation) -> Self {
        self.mutation = mutation;
        self
    }
}

/// One step of the system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RatchetAction {
    /// The sender rekeys.
    Rekey,
    /// The sender seals a packet at its current epoch; the network holds it.
    Send,
    /// The network (or the attacker, replaying) delivers genuine packet `n` to the
    /// receiver. Packets can be delivered in any order, any number of times, or never.
    Deliver(usize),
    /// The attacker injects a packet claiming this epoch.
    Forge(u32),
    /// The receiver's grace timer fires: the previous epoch's key is retired.
    Retire,
}

#[derive(Debug, Clone)]
enum SenderOp {
    Rekey,
    Send,
}

#[derive(Debug, Clone)]
enum ReceiverOp {
    Open(Arc<Vec<u8>>),
    Retire,
}

/// A genuine packet on the network.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Epoch it was sealed in.
    pub epoch: u32,
    /// Its sequence number.
    pub seq: u64,
    bytes: Arc<Vec<u8>>,
}

/// What the last receive did (for the properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    /// The epoch the packet claimed.
    pub claimed: u32,
    /// True for a packet the sender sealed; false for an injection.
    pub genuine: bool,
    /// True if the receiver accepted it.
    pub accepted: bool,
    /// The receiver's epoch before.
    pub epoch_before: u32,
    /// The ghost grace epoch before (the one epoch below the current one whose packets
    /// the specification still admits).
    pub grace_before: Option<u32>,
}

/// A state: the replay logs plus their canonical projection (see the module doc).
#[derive(Debug, Clone)]
pub struct RatchetState {
    sender_log: Vec<SenderOp>,
    receiver_log: Vec<ReceiverOp>,
    /// Sender's epoch.
    pub sender_epoch: u32,
    /// Rekeys done (chain position).
    pub rekeys: u32,
    /// True once a rekey was refused because the epoch saturated.
    pub saturated: bool,
    /// Genuine packets sealed.
    pub net: Vec<Sent>,
    /// Receiver's epoch.
    pub receiver_epoch: u32,
    /// Receiver's previous (grace) key epoch, as the opener reports it.
    pub receiver_previous: Option<u32>,
    /// Receiver's failed opens.
    pub failed_opens: u64,
    /// Injections so far.
    pub forgeries: u8,
    /// Grace-timer firings so far.
    pub retires: u8,
    /// Ghost: the epoch whose packets the specification still admits below the
    /// current one (set when the receiver advances, cleared by the grace timer).
    pub grace: Option<u32>,
    /// Ghost: false once any epoch, sender's or receiver's, went down.
    pub monotone: bool,
    /// The last receive, if the last action was one.
    pub last: Option<Received>,
}

impl RatchetState {
    fn key(&self) -> impl Hash + Eq + '_ {
        (
            (self.sender_epoch, self.rekeys, self.saturated),
            self.net
                .iter()
                .map(|s| (s.epoch, s.seq))
                .collect::<Vec<_>>(),
            (
                self.receiver_epoch,
                self.receiver_previous,
                self.failed_opens,
            ),
            (self.forgeries, self.retires, self.grace, self.monotone),
            self.last,
        )
    }
}

impl Hash for RatchetState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for RatchetState {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for RatchetState {}

const START_SECRET: [u8; 32] = [0x5a; 32];
/// The connection id of the modelled packets.
const CONN_ID: [u8; 8] = [0x11; 8];
/// The header length: byte 0, the 8-byte id, meta, a 1-byte stream id, the full sequence.
const HEADER_LEN: usize = 17;

/// The chain secret `steps` rekeys after the start.
fn chain_secret(steps: u32) -> Result<TrafficSecret, crate::Error> {
    let mut s = TrafficSecret::from_bytes(START_SECRET);
    for _ in 0..steps {
        s = s.next_epoch()?;
    }
    Ok(s)
}

fn header(epoch: u32, seq: u64) -> Result<Header, crate::Error> {
    Ok(Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(epoch),
        conn_id: ConnId::from_slice(&CONN_ID)?,
        stream_id: StreamId(1),
        sequence: seq,
        seq_len: SeqLen::FULL,
    })
}

/// The header-protection key of the modelled direction (from the epoch-0 secret, as
/// both ends derive it).
fn header_key(suite: Suite) -> Result<HeaderKey, crate::Error> {
    Ok(HeaderKey::new(suite, &chain_secret(0)?)?)
}

/// The sender as the model's wrapper drives it.
struct SenderBox {
    sealer: Sealer,
    steps: u32,
    saturated: bool,
    sent: u64,
}

impl RatchetModel {
    fn sender(&self, log: &[SenderOp]) -> Result<(SenderBox, Vec<Sent>), crate::Error> {
        let mut s = SenderBox {
            sealer: Sealer::at_epoch(self.suite, chain_secret(0)?, Epoch(self.start))?,
            steps: 0,
            saturated: false,
            sent: 0,
        };
        let mut net = Vec::new();
        for op in log {
            match op {
                SenderOp::Rekey => self.rekey(&mut s)?,
                SenderOp::Send => net.push(self.seal(&mut s)?),
            }
        }
        Ok((s, net))
    }

    fn rekey(&self, s: &mut SenderBox) -> Result<(), crate::Error> {
        match s.sealer.rekey() {
            Ok(_) => s.steps += 1,
            Err(phantom_crypto::Error::EpochSaturated) => {
                s.saturated = true;
                if self.mutation == RatchetMutation::WrappingRekey {
                    s.steps += 1;
                    let next = Epoch(s.sealer.epoch().0.wrapping_add(1));
                    s.sealer = Sealer::at_epoch(self.suite, chain_secret(s.steps)?, next)?
                        .with_header_secret(&chain_secret(0)?)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn seal(&self, s: &mut SenderBox) -> Result<Sent, crate::Error> {
        let epoch = s.sealer.epoch().0;
        let seq = s.sent;
        let payload = b"ratchet";
        let mut buf = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
        if let Some(body) = buf.get_mut(HEADER_LEN..HEADER_LEN + payload.len()) {
            body.copy_from_slice(payload);
        }
        let n = s
            .sealer
            .seal_packet(&header(epoch, seq)?, &mut buf, payload.len())?;
        buf.truncate(n);
        s.sent += 1;
        Ok(Sent {
            epoch,
            seq,
            bytes: Arc::new(buf),
        })
    }

    /// Rebuilds the receiver from its log; returns it with the result of the last op.
    fn receiver(&self, log: &[ReceiverOp]) -> Result<(Opener, bool), crate::Error> {
        let mut opener = Opener::at_epoch(self.suite, chain_secret(0)?, Epoch(self.start))?;
        let mut accepted = false;
        for op in log {
            accepted = false;
            match op {
                ReceiverOp::Open(bytes) => {
                    accepted = self.open(&mut opener, bytes)?;
                }
                ReceiverOp::Retire => {
                    if self.mutation != RatchetMutation::GraceNeverRetired {
                        opener.retire_previous();
                    }
                }
            }
        }
        Ok((opener, accepted))
    }

    fn open(&self, opener: &mut Opener, bytes: &[u8]) -> Result<bool, crate::Error> {
        let mut buf = bytes.to_vec();
        let (w, _) = header_key(self.suite)?.unprotect(&buf, CONN_ID.len())?;
        // The epoch the packet names, read as the opener reads it (5 bits on the wire).
        let Some(claimed) = Epoch::reconstruct(opener.epoch(), w.epoch_low) else {
            return Ok(opener
                .open_packet(&mut buf, CONN_ID.len(), |_| None)
                .is_ok());
        };
        let h = Header {
            epoch: claimed,
            ..header(claimed.0, w.truncated)?
        };
        let current = opener.epoch().0;
        let ahead = h.epoch.0.checked_sub(current).filter(|d| *d > 0);
        match self.mutation {
            RatchetMutation::NarrowCatchUp if ahead.is_some_and(|d| d > 1) => return Ok(false),
            RatchetMutation::UnauthenticatedBump => {
                if let Some(d) = ahead.filter(|d| *d <= MAX_REKEY_CATCHUP) {
                    // The planted defect: install the claimed epoch before the AEAD.
                    let steps = h.epoch.0.wrapping_sub(self.start);
                    debug_assert!(steps >= d);
                    *opener = Opener::at_epoch(self.suite, chain_secret(steps)?, h.epoch)?
                        .with_header_secret(&chain_secret(0)?)?;
                }
            }
            _ => {}
        }
        Ok(opener
            .open_packet(&mut buf, CONN_ID.len(), |_| None)
            .is_ok())
    }

    fn forge(suite: Suite, epoch: u32, n: u8) -> Result<Vec<u8>, crate::Error> {
        let mut buf = vec![0u8; HEADER_LEN + 8 + TAG_LEN];
        header(epoch, 1_000 + u64::from(n))?.write_image(&mut buf)?;
        // The forger knows the header-protection key (the strongest attacker): the
        // receiver reads the claimed epoch, and only the AEAD refuses the packet.
        header_key(suite)?.protect(&mut buf, CONN_ID.len())?;
        Ok(buf)
    }

    fn step(
        &self,
        last: &RatchetState,
        action: RatchetAction,
    ) -> Result<Option<RatchetState>, crate::Error> {
        let mut next = last.clone();
        next.last = None;
        match action {
            RatchetAction::Rekey | RatchetAction::Send => {
                next.sender_log.push(if action == RatchetAction::Rekey {
                    SenderOp::Rekey
                } else {
                    SenderOp::Send
                });
                let (s, net) = self.sender(&next.sender_log)?;
                if s.sealer.epoch().0 < next.sender_epoch {
                    next.monotone = false;
                }
                next.sender_epoch = s.sealer.epoch().0;
                next.rekeys = s.steps;
                next.saturated = s.saturated;
                next.net = net;
                return Ok(Some(next));
            }
            RatchetAction::Deliver(n) => {
                let p = next.net.get(n).cloned();
                let Some(p) = p else { return Ok(None) };
                next.receiver_log.push(ReceiverOp::Open(p.bytes));
            }
            RatchetAction::Forge(epoch) => {
                next.forgeries += 1;
                next.receiver_log
                    .push(ReceiverOp::Open(Arc::new(Self::forge(
                        self.suite,
                        epoch,
                        next.forgeries,
                    )?)));
            }
            RatchetAction::Retire => {
                next.retires += 1;
                next.grace = None;
                next.receiver_log.push(ReceiverOp::Retire);
            }
        }
        let (opener, accepted) = self.receiver(&next.receiver_log)?;
        let epoch = opener.epoch().0;
        if let RatchetAction::Deliver(_) | RatchetAction::Forge(_) = action {
            let claimed = match action {
                RatchetAction::Deliver(n) => next.net.get(n).map_or(0, |p| p.epoch),
                RatchetAction::Forge(e) => e,
                _ => 0,
            };
            next.last = Some(Received {
                claimed,
                genuine: matches!(action, RatchetAction::Deliver(_)),
                accepted,
                epoch_before: last.receiver_epoch,
                grace_before: last.grace,
            });
        }
        if epoch < last.receiver_epoch {
            next.monotone = false;
        }
        if epoch != last.receiver_epoch {
            next.grace = epoch.checked_sub(1);
        }
        next.receiver_epoch = epoch;
        next.receiver_previous = opener.previous_epoch().map(|e| e.0);
        next.failed_opens = opener.failed_opens();
        Ok(Some(next))
    }
}

impl Model for RatchetModel {
    type State = RatchetState;
    type Action = RatchetAction;

    fn init_states(&self) -> Vec<RatchetState> {
        vec![RatchetState {
            sender_log: Vec::new(),
            receiver_log: Vec::new(),
            sender_epoch: self.start,
            rekeys: 0,
            saturated: false,
            net: Vec::new(),
            receiver_epoch: self.start,
            receiver_previous: None,
            failed_opens: 0,
            forgeries: 0,
            retires: 0,
            grace: None,
            monotone: true,
            last: None,
        }]
    }

    fn actions(&self, s: &RatchetState, actions: &mut Vec<RatchetAction>) {
        if s.rekeys < self.max_rekeys && !s.saturated {
            actions.push(RatchetAction::Rekey);
        }
        if s.net.len() < usize::from(self.max_sends) {
            actions.push(RatchetAction::Send);
        }
        for n in 0..s.net.len() {
            actions.push(RatchetAction::Deliver(n));
        }
        if s.forgeries < self.max_forgeries {
            let r = s.receiver_epoch;
            let mut epochs: Vec<u32> = [
                r.checked_sub(2),
                r.checked_sub(1),
                Some(r),
                r.checked_add(1),
                r.checked_add(MAX_REKEY_CATCHUP),
                r.checked_add(MAX_REKEY_CATCHUP + 1),
                Some(u32::MAX),
            ]
            .into_iter()
            .flatten()
            .collect();
            epochs.sort_unstable();
            epochs.dedup();
            actions.extend(epochs.into_iter().map(RatchetAction::Forge));
        }
        if s.retires < self.max_retires && s.grace.is_some() {
            actions.push(RatchetAction::Retire);
        }
    }

    fn next_state(&self, last: &RatchetState, action: RatchetAction) -> Option<RatchetState> {
        // The real types never fail here; a failure would be a model bug, and dropping
        // the transition would hide it, so it is recorded as a broken invariant instead.
        match self.step(last, action) {
            Ok(s) => s,
            Err(_) => {
                let mut s = last.clone();
                s.monotone = false;
                Some(s)
            }
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(AUTHENTICATED_ADVANCE, |_, s: &RatchetState| match s.last {
                Some(l) if s.receiver_epoch != l.epoch_before => l.genuine && l.accepted,
                _ => true,
            }),
            Property::always(NO_RETIRED_EPOCH, |_, s: &RatchetState| match s.last {
                Some(l) if l.accepted => {
                    l.claimed >= l.epoch_before || l.grace_before == Some(l.claimed)
                }
                _ => true,
            }),
            Property::always(CATCH_UP, |_, s: &RatchetState| match s.last {
                Some(l) if l.genuine => {
                    let gap = l.claimed.saturating_sub(l.epoch_before);
                    gap == 0
                        || gap > MAX_REKEY_CATCHUP
                        || (l.accepted && s.receiver_epoch == l.claimed)
                }
                _ => true,
            }),
            Property::always(NO_WRAP, |_, s: &RatchetState| s.monotone),
            Property::sometimes(CAUGHT_UP_ACROSS_WINDOW, |_, s: &RatchetState| {
                s.last.is_some_and(|l| {
                    l.genuine && l.accepted && l.claimed == l.epoch_before + MAX_REKEY_CATCHUP
                })
            }),
            Property::sometimes(REFUSED_PAST_WINDOW, |_, s: &RatchetState| {
                s.last.is_some_and(|l| {
                    l.genuine
                        && !l.accepted
                        && l.claimed.checked_sub(l.epoch_before) == Some(MAX_REKEY_CATCHUP + 1)
                })
            }),
            Property::sometimes(SATURATED, |_, s: &RatchetState| s.saturated),
        ]
    }
}

/// `always`: the receiver's epoch changes only on a genuine packet that authenticated.
pub const AUTHENTICATED_ADVANCE: &str = "epoch advances only on authenticated packets";
/// `always`: an accepted packet is of the current epoch, a newer one, or the grace epoch
/// before its timer fired.
pub const NO_RETIRED_EPOCH: &str = "no retired epoch accepted";
/// `always`: a genuine packet 1..=16 epochs ahead is accepted and the receiver moves to
/// its epoch.
pub const CATCH_UP: &str = "catch-up within 16 epochs";
/// `always`: neither side's epoch ever goes down (no wrap).
pub const NO_WRAP: &str = "no epoch wraps";
/// `sometimes`: a 16-epoch catch-up happens (the window's edge is explored).
pub const CAUGHT_UP_ACROSS_WINDOW: &str = "caught up across 16 epochs";
/// `sometimes`: a genuine packet 17 epochs ahead is refused (the window is exact).
pub const REFUSED_PAST_WINDOW: &str = "refused 17 epochs ahead";
/// `sometimes`: the sender reached `Epoch::MAX` and a rekey was refused.
pub const SATURATED: &str = "sender saturated";
