//! What a connection reports about itself: how its handshake went and its counters.
//! The lowest module of the crate (it uses nothing of the crate's own).

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
