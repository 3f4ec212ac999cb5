//! What a connection reports about itself: how its handshake went and its counters.
//! The lowest module of the crate (it uses nothing of the crate's own).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use phantom_crypto::Suite;
use phantom_session::Stats;

/// How a connection's handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeMode {
    /// A full handshake: the client verified the server's certificate (2 round trips
    /// before the client's first 1-RTT data).
    Full,
    /// The client already held the server's certificate (from an earlier connection on
    /// the same endpoint) and encapsulated to its static key in its first flight: a
    /// 1-RTT handshake without signature checks.
    Pdk,
    /// The client presented a resumption ticket (and may have sent 0-RTT data).
    Resumed,
}

impl HandshakeMode {
    /// The mode of a handshake that `resumed` a ticket or used `pdk`.
    pub(crate) fn new(resumed: bool, pdk: bool) -> Self {
        if resumed {
            Self::Resumed
        } else if pdk {
            Self::Pdk
        } else {
            Self::Full
        }
    }
}

impl std::fmt::Display for HandshakeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "full",
            Self::Pdk => "pdk",
            Self::Resumed => "resumed",
        })
    }
}

/// How a connection's handshake went: the negotiated suite and the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandshakeInfo {
    pub(crate) suite: Suite,
    pub(crate) mode: HandshakeMode,
}

/// A connection's counters ([`Stats`] of its session, reached through `Deref`) and
/// how its handshake went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The session's counters (bytes, packets, losses, retransmits, rekeys, RTT, ...).
    pub session: Stats,
    /// How the handshake went.
    pub handshake_mode: HandshakeMode,
    /// The negotiated AEAD suite.
    pub suite: Suite,
}

impl std::ops::Deref for ConnectionStats {
    type Target = Stats;

    fn deref(&self) -> &Stats {
        &self.session
    }
}

/// One worker of a server endpoint ([`crate::Endpoint::worker_stats`]): its socket in
/// the reuseport group, its driver and its handshake server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Sessions this worker's handshake server completed.
    pub sessions: u64,
    /// Sessions on this worker not yet drained.
    pub live_sessions: usize,
    /// Short packets whose connection id no session on this worker holds: on a
    /// steered group, datagrams the kernel sent to the wrong worker (or for sessions
    /// already gone, or forged).
    pub unknown_id_datagrams: u64,
    /// All datagrams this worker dropped before a session (unknown ids included).
    pub dropped_datagrams: u64,
}

/// An endpoint's (a worker's) counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Datagrams received for unknown sessions or that failed the handshake.
    pub(crate) dropped: u64,
    /// Short packets whose connection id no session here holds (a subset of
    /// `dropped`): on a worker of a steered group, what the kernel sent astray.
    pub(crate) unknown_ids: u64,
    /// Sessions the handshake server completed (accepted, or refused for a full
    /// backlog).
    pub(crate) established: u64,
}

/// The accept backlog, shared by the workers of one endpoint.
#[derive(Debug)]
pub(crate) struct Backlog {
    /// Most sessions waiting for `accept`.
    pub(crate) limit: usize,
    /// Sessions waiting for `accept` on every worker (`incoming.len()` is this
    /// worker's share).
    pub(crate) waiting: Arc<AtomicUsize>,
}
