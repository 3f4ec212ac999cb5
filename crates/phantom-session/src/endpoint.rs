//! The endpoint above sessions: it routes a received datagram by the destination
//! connection id in its header (any id a session issued and did not retire) to a
//! [`SessionHandle`], or says it belongs to the handshake; on a server it
//! also runs the server side of handshakes ([`Endpoint::with_server`],
//! [`Endpoint::handle_handshake`]) and turns each completed one into a registered
//! [`Session`].
//!
//! The runtime owns the established [`Session`]s (indexed by handle, so it can drive
//! each one from its own task or lock); the endpoint keeps the id-to-handle map and
//! the handshake server. Routing looks at the cleartext bytes only (byte 0 and the
//! connection id); the session then authenticates the datagram itself (I1, I2). All the
//! ids an endpoint issues have one length, its generator's `id_len()` (8 bytes,
//! [`phantom_wire::DEFAULT_CONN_ID_LEN`], unless configured: [`Endpoint::with_server`]
//! takes it from the server's generator, a client sets it with
//! [`Endpoint::set_conn_id_len`]), so it knows where the id of a short packet ends.
//! The ids of a session change while it lives (docs/PROTOCOL.md §5.11): whoever owns
//! the sessions applies each [`crate::ConnIdEvent`] with [`Endpoint::add_conn_id`] and
//! [`Endpoint::retire_conn_id`], so the table holds exactly the live sessions' active
//! ids (bounded by [`crate::ACTIVE_CONN_IDS`] per session).
//!
//! A server endpoint also holds the early data the handshake released at ClientHello
//! acceptance (`ServerConfig::release_early_data_on_hello`) until its handshake
//! completes: the application polls it ([`Endpoint::poll_early_data`]) a round trip
//! before the session exists, and the session built at completion continues those
//! streams after the bytes the application already has (PROTOCOL.md §5.9).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use phantom_handshake::{Server, Time, Transmit as HandshakeTransmit};
use phantom_wire::{ConnId, DEFAULT_CONN_ID_LEN, SessionId};
use rand::{CryptoRng, Rng};

use crate::early::{EarlyData, ReleasedEarlyData};
use crate::session::{ConnIdSource, Session};
use crate::stream::Side;
use crate::types::Config;

/// Most released early data held for handshakes that have not completed (the oldest
/// goes first; the client re-sends it under 1-RTT keys anyway).
pub const MAX_RELEASED_EARLY: usize = 1024;

/// An opaque index the runtime uses to find a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(pub u64);

/// Where a received datagram should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum DatagramEvent {
    /// To this session's `handle_datagram`.
    Session(SessionHandle),
    /// A handshake datagram (first byte `phantom_wire::HANDSHAKE_MARKER`): hand it to the
    /// handshake server (a new peer, or a peer still in the handshake).
    Handshake,
    /// Neither a handshake datagram nor a protected packet for a live session (unknown
    /// connection id, or malformed): drop it (counted).
    Unknown,
}

/// Routing counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams routed to a session.
    pub routed: u64,
    /// Datagrams handed to the handshake.
    pub handshake: u64,
    /// Datagrams dropped: unknown connection ids and malformed packets.
    pub unknown: u64,
    /// Early data released at ClientHello acceptance ([`Endpoint::poll_early_data`]).
    pub early_released: u64,
    /// Released early data that was not replay-safe stream openings (ignored).
    pub early_malformed: u64,
    /// Stateless resets built ([`Endpoint::stateless_reset`]).
    pub resets: u64,
    /// Short packets for the first connection id of a handshake still waiting for its
    /// ClientFinished (it was lost or overtaken): dropped without a reset, the client
    /// sends them again once the session stands.
    pub before_finished: u64,
}

/// Early data released at ClientHello acceptance, held until its handshake completes.
#[derive(Debug)]
struct Held {
    at: Instant,
    /// The application took it: the session continues after these bytes.
    polled: bool,
    early: ReleasedEarlyData,
}

/// Most stateless resets an endpoint sends per second: a flood of packets for unknown
/// ids gets a bounded answer rate.
pub const MAX_RESETS_PER_SECOND: u32 = 64;

/// The handshake server an endpoint runs, with the tuning of accepted sessions.
#[derive(Debug)]
struct Acceptor {
    server: Server,
    session_cfg: Config,
    /// Released early data by arrival (bounded by [`MAX_RELEASED_EARLY`]).
    held: VecDeque<Held>,
}

impl Acceptor {
    /// Moves the early data the handshake released into `held`; drops what waited
    /// longer than a handshake may take.
    fn take_released(&mut self, now: Instant, stats: &mut EndpointStats) {
        while let Some(r) = self.server.poll_early_data() {
            let Some(data) = EarlyData::decode(&r.data) else {
                stats.early_malformed += 1;
                continue;
            };
            stats.early_released += 1;
            if self.held.len() >= MAX_RELEASED_EARLY {
                self.held.pop_front();
            }
            self.held.push_back(Held {
                at: now,
                polled: false,
                early: ReleasedEarlyData {
                    remote: r.from,
                    session_id: r.session_id,
                    data,
                },
            });
        }
        self.expire_held(now);
    }

    /// Drops held early data whose handshake can no longer complete (it is older than
    /// the handshake timeout).
    fn expire_held(&mut self, now: Instant) {
        let keep = self.server.handshake_timeout();
        self.held
            .retain(|h| now.saturating_duration_since(h.at) < keep);
    }

    /// When the oldest held early data expires.
    fn held_deadline(&self) -> Option<Instant> {
        let first = self.held.front()?;
        first.at.checked_add(self.server.handshake_timeout())
    }

    /// Takes the held early data of the handshake that established `id`.
    fn take_held(&mut self, id: &SessionId) -> Option<Held> {
        let i = self.held.iter().position(|h| h.early.session_id == *id)?;
        self.held.remove(i)
    }
}

/// The connection-id router (and, on a server, the handshake acceptor).
#[derive(Debug, Default)]
pub struct Endpoint {
    /// Live sessions by their handshake session id (which the handshake server keeps
    /// unique).
    by_id: BTreeMap<SessionId, SessionHandle>,
    /// Every connection id a live session issued and did not retire.
    by_conn_id: BTreeMap<ConnId, SessionHandle>,
    next: u64,
    stats: EndpointStats,
    acceptor: Option<Acceptor>,
    /// The current second of the reset rate limit and the resets sent in it.
    resets: (Option<Instant>, u32),
    /// Length of the ids this endpoint issues (0: [`DEFAULT_CONN_ID_LEN`]).
    id_len: usize,
}

/// A session the handshake server just established, already registered under `handle`.
#[derive(Debug)]
pub struct Accepted {
    /// Its routing handle.
    pub handle: SessionHandle,
    /// The connected server-side session (early data, if any, already applied).
    pub session: Box<Session>,
    /// The AEAD suite the handshake negotiated.
    pub suite: phantom_crypto::Suite,
    /// True if the handshake was a 1-RTT PDK one ([`phantom_handshake::Established::pdk`]).
    pub pdk: bool,
}

impl Endpoint {
    /// An empty router (a client, or a server whose caller runs the handshakes).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A server endpoint: it runs `server` for every handshake datagram handed to
    /// [`Endpoint::handle_handshake`] and builds accepted sessions with `session_cfg`.
    ///
    /// The sessions issue their later connection ids with the server's generator and
    /// reset key (`session_cfg.conn_ids` is replaced by them), and the endpoint parses
    /// headers with the generator's id length.
    #[must_use]
    pub fn with_server(server: Server, mut session_cfg: Config) -> Self {
        let (generator, reset_key) = server.conn_id_source();
        let id_len = generator.id_len();
        session_cfg.conn_ids = ConnIdSource {
            generator: generator.clone(),
            reset_key: Some(reset_key.clone()),
        };
        Self {
            id_len,
            acceptor: Some(Acceptor {
                server,
                session_cfg,
                held: VecDeque::new(),
            }),
            ..Self::default()
        }
    }

    /// Sets the length of the connection ids this endpoint's sessions issue (a client:
    /// its generator's `id_len()`); headers are parsed with it.
    pub fn set_conn_id_len(&mut self, len: usize) {
        self.id_len = len;
    }

    /// The length of the connection ids this endpoint parses headers with.
    #[must_use]
    pub fn conn_id_len(&self) -> usize {
        if self.id_len == 0 {
            DEFAULT_CONN_ID_LEN
        } else {
            self.id_len
        }
    }

    /// How many connection ids route to a session (the routing table's size).
    #[must_use]
    pub fn routed_conn_ids(&self) -> usize {
        self.by_conn_id.len()
    }

    /// True if this endpoint accepts handshakes.
    #[must_use]
    pub fn is_server(&self) -> bool {
        self.acceptor.is_some()
    }

    /// The handshake server (key rotation, statistics), if this is a server endpoint.
    pub fn server_mut(&mut self) -> Option<&mut Server> {
        self.acceptor.as_mut().map(|a| &mut a.server)
    }

    /// Runs the handshake server on a datagram [`Endpoint::route`] called
    /// [`DatagramEvent::Handshake`], received on `local` from `remote`. Returns the new
    /// session when this datagram completed a handshake (registered; its id never
    /// collides with a live session's). Send what [`Endpoint::poll_handshake_transmit`]
    /// gives afterwards.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] on a client endpoint; the handshake's refusal
    /// (`crate::Error::Handshake`) for a datagram it dropped or a handshake it failed —
    /// the endpoint stays usable either way; a session that cannot be built from valid
    /// keys (`InvalidConfig`, `Crypto`, `Path`).
    pub fn handle_handshake<R: Rng + CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        local: SocketAddr,
        remote: SocketAddr,
        datagram: &[u8],
        rng: &mut R,
    ) -> Result<Option<Accepted>, crate::Error> {
        let by_id = &self.by_id;
        let acceptor = self
            .acceptor
            .as_mut()
            .ok_or(crate::Error::InvalidConfig("not a server endpoint"))?;
        let est = acceptor
            .server
            .handle_datagram(now, remote, datagram, rng, |id| by_id.contains_key(id));
        acceptor.take_released(now.instant, &mut self.stats);
        let Some(est) = est.map_err(crate::Error::Handshake)? else {
            return Ok(None);
        };
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let (suite, pdk) = (est.suite, est.pdk);
        let held = acceptor.take_held(&est.session_id);
        let mut session = Session::from_established(
            Side::Server,
            acceptor.session_cfg.clone(),
            *est,
            now.instant,
            local,
            remote,
            seed,
        )?;
        if let Some(h) = held {
            session.apply_released_early_data(now.instant, &h.early.data, h.polled);
        }
        let handle = self.insert(session.session_id(), &session.local_conn_ids());
        Ok(Some(Accepted {
            handle,
            session: Box::new(session),
            suite,
            pdk,
        }))
    }

    /// Server: the next early data released when its ClientHello was accepted (the
    /// handshake server needs `release_early_data_on_hello`), before the handshake
    /// completes: a round trip before [`Endpoint::handle_handshake`] returns the
    /// session. **Replayable** ([`ReleasedEarlyData`]).
    ///
    /// Once polled, the bytes count as delivered: the session built when the handshake
    /// completes opens those streams with them already read, so reading continues (and
    /// the answer is written) on the same streams. Early data not polled by then is
    /// applied unread, as without the setting. Held data is dropped when its handshake
    /// cannot complete any more (the handshake timeout) or beyond
    /// [`MAX_RELEASED_EARLY`] waiting handshakes.
    pub fn poll_early_data(&mut self) -> Option<ReleasedEarlyData> {
        let held = self
            .acceptor
            .as_mut()?
            .held
            .iter_mut()
            .find(|h| !h.polled)?;
        held.polled = true;
        Some(held.early.clone())
    }

    /// True while polled early data waits for the handshake that establishes `id`.
    #[must_use]
    pub fn awaits_handshake(&self, id: &SessionId) -> bool {
        self.acceptor
            .as_ref()
            .is_some_and(|a| a.held.iter().any(|h| h.polled && h.early.session_id == *id))
    }

    /// The next handshake datagram to send (server endpoints).
    pub fn poll_handshake_transmit(&mut self) -> Option<HandshakeTransmit> {
        self.acceptor.as_mut()?.server.poll_transmit()
    }

    /// When [`Endpoint::handle_handshake_timeout`] should run next.
    #[must_use]
    pub fn poll_handshake_timeout(&self) -> Option<Instant> {
        let a = self.acceptor.as_ref()?;
        match (a.server.poll_timeout(), a.held_deadline()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }

    /// Runs the handshake server's retransmission and expiry timers.
    pub fn handle_handshake_timeout(&mut self, now: Time) {
        if let Some(a) = self.acceptor.as_mut() {
            a.server.handle_timeout(now);
            a.expire_held(now.instant);
        }
    }

    /// Registers an established session under its session id and the connection ids it
    /// issued; returns its handle (never reused).
    pub fn insert(&mut self, id: SessionId, conn_ids: &[ConnId]) -> SessionHandle {
        let h = SessionHandle(self.next);
        self.next = self.next.saturating_add(1);
        self.by_id.insert(id, h);
        for c in conn_ids {
            self.by_conn_id.insert(*c, h);
        }
        h
    }

    /// Routes `conn_id` (newly issued by the session of `handle`) to that session too.
    /// An id that already routes to another session keeps routing there.
    pub fn add_conn_id(&mut self, handle: SessionHandle, conn_id: ConnId) {
        self.by_conn_id.entry(conn_id).or_insert(handle);
    }

    /// Stops routing `conn_id` (retired).
    pub fn retire_conn_id(&mut self, conn_id: &ConnId) {
        self.by_conn_id.remove(conn_id);
    }

    /// True if `conn_id` routes to a live session (a new id is drawn again on a hit).
    #[must_use]
    pub fn has_conn_id(&self, conn_id: &ConnId) -> bool {
        self.by_conn_id.contains_key(conn_id)
    }

    /// Forgets a session (drained or dropped) and every connection id of it.
    pub fn remove(&mut self, id: &SessionId) -> Option<SessionHandle> {
        let h = self.by_id.remove(id)?;
        self.by_conn_id.retain(|_, v| *v != h);
        Some(h)
    }

    /// True if `id` is in use (the handshake server redraws colliding ids).
    #[must_use]
    pub fn is_live(&self, id: &SessionId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Number of registered sessions.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True if no session is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Routing counters.
    #[must_use]
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// A server endpoint's answer to `datagram`, a short packet from `remote` that
    /// [`Endpoint::route`] found no session for (a server restarted and lost the
    /// session): a stateless reset (docs/PROTOCOL.md §5.10) — byte 0 of the short form,
    /// random bytes, and the reset token of the packet's connection id under the
    /// server's static reset key, one byte shorter than the trigger. `None` for a client
    /// endpoint, a datagram that is not a short packet or is no longer than the shortest
    /// short packet (so a reset never answers a reset: no loops), a packet for the
    /// first id of a handshake of `remote` that waits for its ClientFinished (the
    /// session is being made, not lost: counted in [`EndpointStats::before_finished`]),
    /// or beyond [`MAX_RESETS_PER_SECOND`].
    pub fn stateless_reset<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        datagram: &[u8],
        rng: &mut R,
    ) -> Option<Vec<u8>> {
        let server = &self.acceptor.as_ref()?.server;
        let len = self.conn_id_len();
        let id = phantom_wire::peek_conn_id(datagram, len)?;
        if datagram.len() <= phantom_wire::min_packet_len(len) {
            return None;
        }
        if server.awaits_finished(remote, id) {
            self.stats.before_finished += 1;
            return None;
        }
        let (start, sent) = self.resets;
        let sent = match start {
            Some(s) if now.saturating_duration_since(s) < std::time::Duration::from_secs(1) => sent,
            _ => {
                self.resets.0 = Some(now);
                0
            }
        };
        if sent >= MAX_RESETS_PER_SECOND {
            return None;
        }
        self.resets.1 = sent + 1;
        let token = server.reset_token(id);
        let mut out = vec![0u8; datagram.len() - 1];
        rng.fill_bytes(&mut out);
        if let Some(b0) = out.first_mut() {
            *b0 = phantom_wire::SHORT_FORM | (*b0 & phantom_wire::PROTECTED_BITS);
        }
        let at = out.len().checked_sub(token.len())?;
        out.get_mut(at..)?.copy_from_slice(&token);
        self.stats.resets += 1;
        Some(out)
    }

    /// Decides where `datagram` goes. Never panics, whatever the bytes.
    pub fn route(&mut self, datagram: &[u8]) -> DatagramEvent {
        // Demultiplex on the first byte (docs/PROTOCOL.md): a handshake datagram starts
        // with HANDSHAKE_MARKER, a short packet with 0b01, then our connection id.
        if datagram.first() == Some(&phantom_wire::HANDSHAKE_MARKER) {
            self.stats.handshake += 1;
            return DatagramEvent::Handshake;
        }
        let found = phantom_wire::peek_conn_id(datagram, self.conn_id_len())
            .and_then(|id| ConnId::from_slice(id).ok())
            .and_then(|id| self.by_conn_id.get(&id).copied());
        match found {
            Some(handle) => {
                self.stats.routed += 1;
                DatagramEvent::Session(handle)
            }
            None => {
                self.stats.unknown += 1;
                DatagramEvent::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(b: u8) -> ConnId {
        ConnId::from_slice(&[b; DEFAULT_CONN_ID_LEN]).unwrap()
    }

    fn packet(id: u8, first: u8) -> Vec<u8> {
        let mut v = vec![first];
        v.extend_from_slice(&[id; DEFAULT_CONN_ID_LEN]);
        v.extend_from_slice(&[0u8; 32]);
        v
    }

    #[test]
    fn routes_by_conn_id_and_never_reuses_handles() {
        let mut ep = Endpoint::new();
        let a = ep.insert(SessionId([1; 32]), &[cid(1)]);
        let b = ep.insert(SessionId([2; 32]), &[cid(2)]);
        assert_ne!(a, b);
        assert_eq!(ep.route(&packet(2, 0x40)), DatagramEvent::Session(b));
        assert_eq!(ep.route(&packet(3, 0x40)), DatagramEvent::Unknown);
        // Only the short form routes (0b01 in the high bits); garbage is dropped.
        assert_eq!(ep.route(&packet(1, 0x80)), DatagramEvent::Unknown);
        assert_eq!(ep.route(&[0x00, 0x01, 0x02]), DatagramEvent::Unknown);
        // A handshake datagram is recognised by its first byte alone, even when its
        // next bytes would parse as something else.
        assert_eq!(
            ep.route(&[phantom_wire::HANDSHAKE_MARKER, 0x01, 0x00]),
            DatagramEvent::Handshake
        );
        // Any issued id routes; a retired one no longer does.
        ep.add_conn_id(b, cid(9));
        assert_eq!(ep.route(&packet(9, 0x7f)), DatagramEvent::Session(b));
        ep.retire_conn_id(&cid(9));
        assert_eq!(ep.route(&packet(9, 0x40)), DatagramEvent::Unknown);
        ep.remove(&SessionId([1; 32]));
        assert_eq!(ep.route(&packet(1, 0x40)), DatagramEvent::Unknown);
        assert!(!ep.has_conn_id(&cid(1)));
        let c = ep.insert(SessionId([1; 32]), &[cid(1)]);
        assert!(c != a && c != b);
        assert_eq!(
            ep.stats(),
            EndpointStats {
                routed: 2,
                handshake: 1,
                unknown: 5,
                early_released: 0,
                early_malformed: 0,
                resets: 0,
                before_finished: 0,
            }
        );
    }
}
