//! Phantom's sans-IO session: streams, reliability, flow control, multipath
//! scheduling, rekeying, migration, carrier fallback and close, driven by datagrams
//! and time handed in, producing datagrams, timer deadlines and events.
//!
//! **What it owns.** [`Session`] is the only crate that knows every layer: it seals
//! and opens packets with `phantom-crypto`'s `Sealer`/`Opener`, checks replays and
//! validates paths with `phantom-guard`, and frames everything with `phantom-wire`.
//! A packet is the protected short header (the peer's connection id, then masked
//! epoch bits, flags, stream id and truncated sequence) plus a sealed sequence of
//! frames. Every header names a *sequence space*: stream 0 is the control space (ACKs,
//! flow-control credit, path validation, CLOSE, PINGs), and a packet carrying STREAM
//! data uses its stream's own space; each space has one strictly increasing 48-bit
//! sequence counter shared by all paths, so `(stream, sequence)` — the nonce input
//! under one epoch's key — is never repeated. ACK frames acknowledge `(space, sequence)` ranges; loss detection
//! (RFC 9002 packet and time thresholds, PTO with back-off, persistent congestion) is
//! `phantom-congestion`'s `SentPackets` ledger, one per path over the per-path send
//! order, fed every ACK frame of a packet before it runs once; each path owns a
//! `phantom-congestion` `PathRecovery` (that ledger, a controller: BBR by default,
//! CUBIC or NewReno selectable; RTT and delivery-rate estimators and a token-bucket
//! pacer), the same code the congestion simulator drives. A lost
//! packet is never re-sealed: its *frames' content* (stream byte ranges, credits,
//! resets) goes back to the senders' queues and is re-sent in new packets under
//! fresh sequence numbers. The sans-IO call protocol is documented on [`Session`],
//! which delegates to parts that own their state (`session::{keys, spaces, streams,
//! paths, timers, ...}`, listed in docs/ARCHITECTURE.md);
//! [`fallback`] holds the pure UDP-to-TCP fallback state machine.
//!
//! **Invariants upheld.** I1: a datagram that does not authenticate changes nothing
//! but a drop counter, authenticated frame errors close the session, nothing panics
//! (fuzzed by `session_recv`). I2: every packet after the handshake, control packets
//! included, is AEAD-sealed with its header image as associated data. I3: sequence
//! counters only grow and exhaustion closes the session; stream ids are never reused;
//! retransmission re-sends data, never a nonce; the per-stream watermark forces a
//! rekey. I4: the replay window is consulted only after the AEAD verified, and no
//! payload is delivered twice. I5/I6: epochs move only by the sender's rekey and the
//! receiver's authenticated catch-up; the sender rekeys before the suite's
//! confidentiality limit and the integrity limit closes the session. I7: stream data
//! and datagrams travel only on validated paths; an unvalidated address gets at most
//! three times what it sent; a spoofed source does not move the session. I8: keys
//! never appear in `Debug`. I9: given the same inputs, times and RNG seed the session
//! emits the same bytes (`i9_same_seed_same_transcript`). I11: each side issues
//! rotating connection ids (NEW_CONN_ID / RETIRE_CONN_ID, docs/PROTOCOL.md §5.11);
//! each path sends with its own id of the peer's, a new path or a rebind takes an
//! unused one (or is refused), a removed path's id is retired, and the id and routing
//! tables stay bounded ([`ConnIdEvent`] feeds the [`Endpoint`]'s table).

mod cc;
pub mod early;
mod endpoint;
mod error;
pub mod fallback;
/// The `session_recv` fuzz target's body (fuzzing and tests only).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod ranges;
mod recovery;
mod scheduler;
mod session;
mod stream;
mod types;
mod vecmap;

#[cfg(test)]
mod tests;

pub use cc::CongestionSnapshot;
pub use endpoint::{
    Accepted, DatagramEvent, Endpoint, EndpointStats, MAX_RELEASED_EARLY, MAX_RESETS_PER_SECOND,
    SessionHandle,
};
pub use error::{Error, PeerViolation};
/// The congestion controller a path runs ([`Config::congestion`]).
pub use phantom_congestion::Algorithm as CongestionAlgorithm;
pub use scheduler::SchedulerMode;
pub use session::{
    ACTIVE_CONN_IDS, ConnIdEvent, ConnIdSource, MAX_PEER_CONN_IDS, MAX_PENDING_RETIRES,
    NO_UNUSED_CONN_ID, Session, SessionKeys,
};
pub use stream::{Dir, Side};
pub use types::*;

#[cfg(test)]
pub(crate) use tests::test_instant;
