//! One session and the wakers of the tasks waiting on it ([`ConnEntry`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::task::Waker;
use std::time::Instant;

use phantom_session::{CloseReason, Dir, Session};
use phantom_wire::StreamId;

use super::TcpCarrier;
use crate::error::ConnectionError;
use crate::stats::HandshakeInfo;

/// One session and the wakers of the tasks waiting on it.
///
/// Its fields are private to the state module: the endpoint state ([`Inner`](super::Inner)) fills them
/// as sessions emit events; connections and the carrier logic go through the
/// methods below.
#[derive(Debug)]
pub(crate) struct ConnEntry {
    pub(super) session: Session,
    pub(super) remote: SocketAddr,
    /// Live `Connection`/stream handles; the session is closed when this drops to 0.
    pub(super) handles: usize,
    pub(super) incoming_bi: VecDeque<StreamId>,
    pub(super) incoming_uni: VecDeque<StreamId>,
    pub(super) datagram_wakers: Vec<Waker>,
    /// Client: the first replay-safe (0-RTT) stream, until taken.
    pub(super) early_stream: Option<StreamId>,
    pub(super) accept_wakers: Vec<Waker>,
    pub(super) read_wakers: HashMap<StreamId, Waker>,
    pub(super) write_wakers: HashMap<StreamId, Waker>,
    pub(super) other_wakers: Vec<Waker>,
    pub(super) close_reason: Option<CloseReason>,
    pub(super) deadline: Option<Instant>,
    pub(super) unregistered: bool,
    /// Client side: the server's UDP address.
    pub(super) udp_remote: SocketAddr,
    /// Client side: the server's TCP fallback address.
    pub(super) tcp_remote: Option<SocketAddr>,
    /// Client side: the TCP carrier.
    pub(super) tcp: TcpCarrier,
    /// How the handshake went.
    pub(super) handshake: HandshakeInfo,
}

impl ConnEntry {
    pub(super) fn new(
        session: Session,
        remote: SocketAddr,
        handles: usize,
        handshake: HandshakeInfo,
    ) -> Self {
        Self {
            handshake,
            session,
            remote,
            udp_remote: remote,
            tcp_remote: None,
            tcp: TcpCarrier::Idle,
            handles,
            incoming_bi: VecDeque::new(),
            incoming_uni: VecDeque::new(),
            datagram_wakers: Vec::new(),
            early_stream: None,
            accept_wakers: Vec::new(),
            read_wakers: HashMap::new(),
            write_wakers: HashMap::new(),
            other_wakers: Vec::new(),
            close_reason: None,
            deadline: None,
            unregistered: false,
        }
    }

    /// The session.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// The session, for a command (the caller marks it dirty).
    pub(crate) fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The peer's address the session was established with.
    pub(crate) fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Client side: the server's UDP address.
    pub(crate) fn udp_remote(&self) -> SocketAddr {
        self.udp_remote
    }

    /// Client side: the server's TCP fallback address, if any.
    pub(crate) fn tcp_remote(&self) -> Option<SocketAddr> {
        self.tcp_remote
    }

    /// Client side: where the TCP carrier stands.
    pub(crate) fn tcp(&self) -> TcpCarrier {
        self.tcp
    }

    /// Client side: the TCP carrier moved on.
    pub(crate) fn set_tcp(&mut self, tcp: TcpCarrier) {
        self.tcp = tcp;
    }

    /// How the handshake went.
    pub(crate) fn handshake(&self) -> HandshakeInfo {
        self.handshake
    }

    /// Why the session closed, once it has.
    pub(crate) fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// Client: takes the first replay-safe (0-RTT) stream.
    pub(crate) fn take_early_stream(&mut self) -> Option<StreamId> {
        self.early_stream.take()
    }

    /// Takes the oldest stream of `dir` the peer opened and nobody accepted yet.
    pub(crate) fn pop_incoming(&mut self, dir: Dir) -> Option<StreamId> {
        match dir {
            Dir::Bi => self.incoming_bi.pop_front(),
            Dir::Uni => self.incoming_uni.pop_front(),
        }
    }

    /// Wakes `w` when the peer opens a stream (or the session closes).
    pub(crate) fn wait_accept(&mut self, w: &Waker) {
        self.accept_wakers.push(w.clone());
    }

    /// Wakes `w` when a datagram arrives (or the session closes).
    pub(crate) fn wait_datagram(&mut self, w: &Waker) {
        self.datagram_wakers.push(w.clone());
    }

    /// Wakes `w` when stream `id` is readable (or the session closes); replaces the
    /// stream's previous read waker.
    pub(crate) fn wait_readable(&mut self, id: StreamId, w: &Waker) {
        self.read_wakers.insert(id, w.clone());
    }

    /// Wakes `w` when stream `id` can take more data (or the session closes);
    /// replaces the stream's previous write waker.
    pub(crate) fn wait_writable(&mut self, id: StreamId, w: &Waker) {
        self.write_wakers.insert(id, w.clone());
    }

    /// Wakes `w` on any other change: stream credit, the peer's stream limit, the
    /// session closing.
    pub(crate) fn wait_other(&mut self, w: &Waker) {
        self.other_wakers.push(w.clone());
    }

    /// The error to report once the connection is closed.
    pub(crate) fn closed_error(&self) -> Option<ConnectionError> {
        self.close_reason
            .clone()
            .map(ConnectionError::from)
            .or_else(|| self.session.is_closed().then_some(ConnectionError::Reset))
    }

    pub(super) fn wake_writers(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.write_wakers.drain().map(|(_, w)| w));
        out.append(&mut self.other_wakers);
    }

    pub(super) fn wake_all(&mut self, out: &mut Vec<Waker>) {
        self.wake_writers(out);
        out.extend(self.read_wakers.drain().map(|(_, w)| w));
        out.append(&mut self.accept_wakers);
        out.append(&mut self.datagram_wakers);
    }
}
