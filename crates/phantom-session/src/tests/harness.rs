//! The deterministic in-memory `Pair` harness: a client and a server session joined
//! by seeded links, with NAT rebinding, capture and injection for attacker tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use phantom_crypto::{Suite, TrafficSecret};
use phantom_wire::{SessionId, StreamId};

use super::link::{Datagram, Link, LinkConfig};
use crate::fallback::Carrier;
use crate::{Config, Dir, Event, RxMeta, Session, SessionKeys, Side, Stats};

/// The server's address.
pub(crate) const SERVER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 443));

/// A client interface's private address.
pub(crate) fn client_addr(i: u8) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, i), 5000))
}

/// A public (post-NAT) address.
pub(crate) fn public_addr(i: u8, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, i), port))
}

/// The two directions' keys, as a handshake would hand them over.
pub(crate) fn keys(seed: u8) -> (SessionKeys, SessionKeys) {
    let c2s = [seed ^ 0x11; 32];
    let s2c = [seed ^ 0x22; 32];
    let sid = SessionId([seed ^ 0x33; 32]);
    let (client_id, server_id) = conn_ids(seed);
    let suite = Suite::Aes256Gcm;
    (
        SessionKeys {
            suite,
            session_id: sid,
            local_conn_id: client_id,
            peer_conn_id: server_id,
            peer_reset_token: [seed ^ 0x55; 16],
            send: TrafficSecret::from_bytes(c2s),
            recv: TrafficSecret::from_bytes(s2c),
        },
        SessionKeys {
            suite,
            session_id: sid,
            local_conn_id: server_id,
            peer_conn_id: client_id,
            peer_reset_token: [seed ^ 0x66; 16],
            send: TrafficSecret::from_bytes(s2c),
            recv: TrafficSecret::from_bytes(c2s),
        },
    )
}

/// The (client, server) connection ids of the pair built from `seed`: the client's
/// packets carry the server's, and the other way round.
pub(crate) fn conn_ids(seed: u8) -> (phantom_wire::ConnId, phantom_wire::ConnId) {
    (
        phantom_wire::ConnId::from_slice(&[seed ^ 0x44; 8]).unwrap(),
        phantom_wire::ConnId::from_slice(&[seed ^ 0x77; 8]).unwrap(),
    )
}

/// One client interface behind a NAT.
#[derive(Debug)]
pub(crate) struct Iface {
    pub(crate) public: SocketAddr,
    pub(crate) up: Link,
    pub(crate) down: Link,
}

/// A datagram seen arriving at an endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) to_server: bool,
    pub(crate) rx: RxMeta,
    pub(crate) data: Vec<u8>,
}

/// Client + server + network.
pub(crate) struct Pair {
    pub(crate) now: Instant,
    pub(crate) client: Session,
    pub(crate) server: Session,
    pub(crate) ifaces: BTreeMap<SocketAddr, Iface>,
    pub(crate) capture: Option<Vec<Captured>>,
    /// Every datagram emitted (true = by the client), if enabled.
    pub(crate) capture_sent: Option<Vec<(bool, Vec<u8>)>>,
    /// Hold back the next client->server datagram instead of delivering it.
    pub(crate) intercept_next_to_server: bool,
    pub(crate) intercepted: Option<Datagram>,
    /// The carrier deliveries are reported on (the test plays the runtime).
    pub(crate) carrier: Carrier,
    /// FNV-1a over every datagram emitted, with its time and sender (I9).
    pub(crate) transcript: u64,
    pub(crate) steps: u64,
    seed: u64,
    buf: Vec<u8>,
    start: Instant,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Pair {
    pub(crate) fn new(seed: u64, cfg: Config, link: LinkConfig) -> Self {
        Self::with_configs(seed, cfg.clone(), cfg, link)
    }

    pub(crate) fn with_configs(seed: u64, ccfg: Config, scfg: Config, link: LinkConfig) -> Self {
        let now = crate::test_instant();
        let (ck, sk) = keys(seed as u8);
        let c_priv = client_addr(1);
        let c_pub = public_addr(1, 40000);
        let mut cseed = [0u8; 32];
        cseed[..8].copy_from_slice(&seed.to_le_bytes());
        let mut sseed = cseed;
        sseed[31] = 1;
        let client = Session::from_secrets(Side::Client, ccfg, ck, now, c_priv, SERVER, cseed)
            .expect("client");
        let server = Session::from_secrets(Side::Server, scfg, sk, now, SERVER, c_pub, sseed)
            .expect("server");
        let mut pair = Self::from_sessions(seed, now, client, server, link);
        // The ids each side issues after the handshake, handed over without packets
        // (as if their NEW_CONN_ID frames had arrived), so the scenarios built on this
        // pair start as before ids rotated; `Pair::with_wire_conn_ids` sends them.
        Session::exchange_conn_ids_directly(&mut pair.client, &mut pair.server);
        pair
    }

    /// As [`Pair::new`], but the connection ids travel in NEW_CONN_ID frames.
    pub(crate) fn with_wire_conn_ids(seed: u64, cfg: Config, link: LinkConfig) -> Self {
        let now = crate::test_instant();
        let (ck, sk) = keys(seed as u8);
        let mut cseed = [0u8; 32];
        cseed[..8].copy_from_slice(&seed.to_le_bytes());
        let mut sseed = cseed;
        sseed[31] = 1;
        let c_pub = public_addr(1, 40000);
        let client = Session::from_secrets(
            Side::Client,
            cfg.clone(),
            ck,
            now,
            client_addr(1),
            SERVER,
            cseed,
        )
        .expect("client");
        let server = Session::from_secrets(Side::Server, cfg, sk, now, SERVER, c_pub, sseed)
            .expect("server");
        Self::from_sessions(seed, now, client, server, link)
    }

    /// A pair around existing sessions: the client at `client_addr(1)` behind a NAT
    /// as `public_addr(1, 40000)`, the server at [`SERVER`].
    pub(crate) fn from_sessions(
        seed: u64,
        now: Instant,
        client: Session,
        server: Session,
        link: LinkConfig,
    ) -> Self {
        let c_priv = client_addr(1);
        let c_pub = public_addr(1, 40000);
        let mut ifaces = BTreeMap::new();
        ifaces.insert(
            c_priv,
            Iface {
                public: c_pub,
                up: Link::new(link, seed.wrapping_mul(31).wrapping_add(1)),
                down: Link::new(link, seed.wrapping_mul(31).wrapping_add(2)),
            },
        );
        Self {
            now,
            client,
            server,
            ifaces,
            capture: None,
            capture_sent: None,
            intercept_next_to_server: false,
            intercepted: None,
            carrier: Carrier::Udp,
            transcript: 0xcbf2_9ce4_8422_2325,
            steps: 0,
            seed,
            buf: vec![0u8; 2048],
            start: now,
        }
    }

    /// Adds a client interface `private` (NAT'd to `public`) with its own links.
    pub(crate) fn add_iface(&mut self, private: SocketAddr, public: SocketAddr, link: LinkConfig) {
        let n = self.ifaces.len() as u64 + 1;
        self.ifaces.insert(
            private,
            Iface {
                public,
                up: Link::new(link, self.seed.wrapping_mul(97).wrapping_add(n * 2)),
                down: Link::new(link, self.seed.wrapping_mul(97).wrapping_add(n * 2 + 1)),
            },
        );
    }

    /// Elapsed simulated time.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Sends everything both endpoints have to send now.
    pub(crate) fn pump(&mut self) {
        for side in [true, false] {
            for _ in 0..10_000 {
                let ep = if side {
                    &mut self.client
                } else {
                    &mut self.server
                };
                let Some(t) = ep.poll_transmit(self.now, &mut self.buf) else {
                    break;
                };
                let data = self.buf[..t.len].to_vec();
                let micros = (self.now - self.start).as_micros() as u64;
                self.transcript = fnv(self.transcript, &[u8::from(side)]);
                self.transcript = fnv(self.transcript, &micros.to_le_bytes());
                self.transcript = fnv(self.transcript, &data);
                if let Some(c) = self.capture_sent.as_mut() {
                    c.push((side, data.clone()));
                }
                if side {
                    // Client -> NAT -> up link.
                    if let Some(iface) = self.ifaces.get_mut(&t.src) {
                        let d = Datagram {
                            src: iface.public,
                            dst: t.dst,
                            data,
                        };
                        iface.up.send(self.now, d);
                    }
                } else if let Some(iface) = self.ifaces.values_mut().find(|i| i.public == t.dst) {
                    // Server -> down link of the interface that currently owns `dst`.
                    let d = Datagram {
                        src: t.src,
                        dst: t.dst,
                        data,
                    };
                    iface.down.send(self.now, d);
                }
            }
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let mut t = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        for i in self.ifaces.values() {
            for l in [&i.up, &i.down] {
                if let Some(d) = l.next_delivery() {
                    t = Some(t.map_or(d, |x| x.min(d)));
                }
            }
        }
        t
    }

    /// One request/response round on a fresh bidirectional stream: the client sends
    /// 300 bytes tagged `tag` and a FIN, the server reads them all and answers "ok".
    pub(crate) fn request_response(&mut self, tag: u8) {
        let id = self.client.open_stream(Dir::Bi).expect("open");
        self.client.write(id, &[tag; 300]).expect("write");
        self.client.finish(id).expect("finish");
        let mut buf = [0u8; 1024];
        let (mut got, mut answered, mut back) = (0, false, 0);
        self.drive(100_000, |p| {
            loop {
                match p.server.read(id, &mut buf) {
                    Ok(Some(0)) | Err(_) => break,
                    Ok(Some(n)) => got += n,
                    Ok(None) => {
                        if !answered {
                            p.server.write(id, b"ok").expect("answer");
                            p.server.finish(id).expect("finish answer");
                            answered = true;
                        }
                        break;
                    }
                }
            }
            loop {
                match p.client.read(id, &mut buf) {
                    Ok(Some(0)) | Err(_) => break,
                    Ok(Some(n)) => back += n,
                    Ok(None) => return true,
                }
            }
            false
        })
        .expect("round finishes");
        assert_eq!((got, back), (300, 2), "round {tag}");
    }

    /// Re-injects every captured client -> server datagram (capture must be on) into
    /// the server; returns its stats before and after, and how many were injected.
    pub(crate) fn replay_captured_to_server(&mut self) -> (Stats, Stats, usize) {
        let captured: Vec<_> = self
            .capture
            .take()
            .expect("capture enabled")
            .into_iter()
            .filter(|c| c.to_server)
            .collect();
        let before = self.server.stats();
        for c in &captured {
            self.inject_to_server(c.rx.remote, &c.data);
        }
        (before, self.server.stats(), captured.len())
    }

    /// Takes the client interface `addr` down (both directions) or back up.
    pub(crate) fn set_iface_down(&mut self, addr: SocketAddr, down: bool) {
        if let Some(iface) = self.ifaces.get_mut(&addr) {
            iface.up.cfg.down = down;
            iface.down.cfg.down = down;
        }
    }

    /// Takes the interface at `addr` down at once, both directions, and drops
    /// whatever its links were still carrying.
    pub(crate) fn cut_iface(&mut self, addr: SocketAddr) {
        self.set_iface_down(addr, true);
        if let Some(iface) = self.ifaces.get_mut(&addr) {
            iface.up.purge();
            iface.down.purge();
        }
    }

    /// Sets the server -> client direction of every client interface down or back up
    /// (the client then hears nothing; its ACKs of forged packets cannot interfere).
    pub(crate) fn set_down_link(&mut self, down: bool) {
        for i in self.ifaces.values_mut() {
            i.down.cfg.down = down;
        }
    }

    /// Processes every event up to `t`, then moves the clock to `t` (the
    /// application acting at a time of its own choosing). At most `max_steps` steps.
    pub(crate) fn run_until(&mut self, t: Instant, max_steps: u64) {
        for _ in 0..max_steps {
            if self.next_event().is_none_or(|e| e > t) {
                break;
            }
            self.step();
        }
        self.now = self.now.max(t);
        self.pump();
    }

    /// Advances to the next event and processes it. Returns false if idle.
    pub(crate) fn step(&mut self) -> bool {
        self.steps += 1;
        self.pump();
        let Some(t) = self.next_event() else {
            return false;
        };
        if t > self.now {
            self.now = t;
        }
        let now = self.now;
        let privs: Vec<SocketAddr> = self.ifaces.keys().copied().collect();
        for p in privs {
            while let Some(mut d) = self.ifaces.get_mut(&p).and_then(|i| i.up.pop_due(now)) {
                if self.intercept_next_to_server {
                    self.intercept_next_to_server = false;
                    self.intercepted = Some(d);
                    continue;
                }
                let rx = RxMeta {
                    local: SERVER,
                    remote: d.src,
                    carrier: self.carrier,
                };
                if let Some(c) = self.capture.as_mut() {
                    c.push(Captured {
                        to_server: true,
                        rx,
                        data: d.data.clone(),
                    });
                }
                self.server.handle_datagram(now, rx, &mut d.data);
            }
            while let Some(mut d) = self.ifaces.get_mut(&p).and_then(|i| i.down.pop_due(now)) {
                // The NAT forwards only to the interface that still owns the address.
                if self.ifaces.get(&p).is_none_or(|i| i.public != d.dst) {
                    continue;
                }
                let rx = RxMeta {
                    local: p,
                    remote: d.src,
                    carrier: self.carrier,
                };
                if let Some(c) = self.capture.as_mut() {
                    c.push(Captured {
                        to_server: false,
                        rx,
                        data: d.data.clone(),
                    });
                }
                self.client.handle_datagram(now, rx, &mut d.data);
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        true
    }

    /// Steps until `done` holds, at most `max_steps` steps.
    pub(crate) fn drive(
        &mut self,
        max_steps: u64,
        mut done: impl FnMut(&mut Pair) -> bool,
    ) -> Result<(), String> {
        for _ in 0..max_steps {
            if done(self) {
                return Ok(());
            }
            if !self.step() {
                if done(self) {
                    return Ok(());
                }
                return Err(format!("idle before done at {:?}", self.elapsed()));
            }
        }
        Err(format!(
            "not done after {max_steps} steps ({:?} simulated)",
            self.elapsed()
        ))
    }

    /// Delivers `data` to the server right now, as if from `remote`.
    pub(crate) fn inject_to_server(&mut self, remote: SocketAddr, data: &[u8]) {
        let mut d = data.to_vec();
        let rx = RxMeta::udp(SERVER, remote);
        self.server.handle_datagram(self.now, rx, &mut d);
    }

    /// Drains both event queues.
    pub(crate) fn events(&mut self) -> (Vec<Event>, Vec<Event>) {
        let mut c = Vec::new();
        while let Some(e) = self.client.poll_event() {
            c.push(e);
        }
        let mut s = Vec::new();
        while let Some(e) = self.server.poll_event() {
            s.push(e);
        }
        (c, s)
    }
}

/// The byte at `offset` of test stream `s` (position-dependent, so any misplaced,
/// duplicated or lost byte is detected).
/// Asserts that `got` is exactly [`pattern`]`(seed, 0..)`.
pub(crate) fn assert_pattern(got: &[u8], seed: u64) {
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(seed, i as u64)),
        "bytes out of order or corrupted"
    );
}

pub(crate) fn pattern(s: u64, offset: u64) -> u8 {
    let x = offset
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(s.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    (x >> 56) as u8 ^ (offset as u8)
}

/// A bulk transfer driver: the client writes `streams` streams of `len` bytes each,
/// the server reads and checks every byte.
pub(crate) struct Transfer {
    pub(crate) len: u64,
    pub(crate) ids: Vec<StreamId>,
    written: Vec<u64>,
    pub(crate) finished: Vec<bool>,
    received: BTreeMap<StreamId, u64>,
    pub(crate) done_streams: BTreeSet<StreamId>,
    pub(crate) corrupt: u64,
    chunk: Vec<u8>,
    rbuf: Vec<u8>,
}

impl Transfer {
    pub(crate) fn start(pair: &mut Pair, streams: usize, len: u64) -> Self {
        let ids = (0..streams)
            .map(|_| pair.client.open_stream(Dir::Uni).expect("open"))
            .collect::<Vec<_>>();
        Self {
            len,
            written: vec![0; ids.len()],
            finished: vec![false; ids.len()],
            ids,
            received: BTreeMap::new(),
            done_streams: BTreeSet::new(),
            corrupt: 0,
            chunk: vec![0; 64 * 1024],
            rbuf: vec![0; 64 * 1024],
        }
    }

    fn stream_no(&self, id: StreamId) -> u64 {
        self.ids.iter().position(|x| *x == id).unwrap_or(usize::MAX) as u64
    }

    /// Writes and reads as much as possible; true when every stream was read to its end.
    pub(crate) fn poll(&mut self, pair: &mut Pair) -> bool {
        for i in 0..self.ids.len() {
            let id = self.ids[i];
            for _ in 0..64 {
                let off = self.written[i];
                if off >= self.len {
                    break;
                }
                let n = (self.len - off).min(self.chunk.len() as u64) as usize;
                for (k, b) in self.chunk[..n].iter_mut().enumerate() {
                    *b = pattern(i as u64, off + k as u64);
                }
                match pair.client.write(id, &self.chunk[..n]) {
                    Ok(w) => self.written[i] += w as u64,
                    Err(_) => break,
                }
            }
            if self.written[i] == self.len && !self.finished[i] {
                pair.client.finish(id).expect("finish");
                self.finished[i] = true;
            }
        }
        while let Some(ev) = pair.server.poll_event() {
            if let Event::StreamOpened { id, .. } = ev {
                self.received.entry(id).or_insert(0);
            }
        }
        let ids: Vec<StreamId> = self.received.keys().copied().collect();
        for id in ids {
            if self.done_streams.contains(&id) {
                continue;
            }
            let s = self.stream_no(id);
            for _ in 0..1024 {
                match pair.server.read(id, &mut self.rbuf) {
                    Ok(Some(0)) => break,
                    Ok(Some(n)) => {
                        let off = self.received[&id];
                        for (k, b) in self.rbuf[..n].iter().enumerate() {
                            if *b != pattern(s, off + k as u64) {
                                self.corrupt += 1;
                            }
                        }
                        *self.received.get_mut(&id).unwrap() += n as u64;
                    }
                    Ok(None) => {
                        self.done_streams.insert(id);
                        break;
                    }
                    Err(e) => panic!("read error {e}"),
                }
            }
        }
        self.done_streams.len() == self.ids.len()
    }

    /// Total bytes read by the server.
    pub(crate) fn received_total(&self) -> u64 {
        self.received.values().sum()
    }
}

/// A packet from the client in stream `stream`'s space with sequence `seq`, carrying
/// `frames`, sealed with `sealer` (the client's key of the pair built from `seed`): what
/// a misbehaving but authenticated peer can send.
pub(crate) fn forged_client_packet(
    sealer: &mut phantom_crypto::Sealer,
    seed: u8,
    stream: u32,
    seq: u64,
    frames: &[phantom_wire::Frame<'_>],
) -> Vec<u8> {
    use phantom_wire::{Encode, Epoch, Flags, Header, SeqLen, Writer};
    let (ck, _) = keys(seed);
    let header = Header {
        flags: Flags::ACK_ELICITING,
        epoch: Epoch(0),
        conn_id: ck.peer_conn_id,
        stream_id: StreamId(stream),
        sequence: seq,
        seq_len: SeqLen::FULL,
    };
    let hlen = header.len();
    let mut buf = vec![0u8; 1400];
    let n = {
        let mut w = Writer::new(&mut buf[hlen..]);
        for f in frames {
            f.encode(&mut w).unwrap();
        }
        // Zero bytes (PADDING) up to the header-protection sample.
        w.written().max(phantom_wire::min_packet_len(8) - hlen - 16)
    };
    let len = sealer.seal_packet(&header, &mut buf, n).unwrap();
    buf.truncate(len);
    buf
}

/// The header-protection key of the client's (`client`) or the server's direction of
/// the pair built from `seed`.
pub(crate) fn header_key(seed: u8, client: bool) -> phantom_crypto::HeaderKey {
    let secret = if client { seed ^ 0x11 } else { seed ^ 0x22 };
    phantom_crypto::HeaderKey::new(Suite::Aes256Gcm, &TrafficSecret::from_bytes([secret; 32]))
        .unwrap()
}

/// The header of a captured datagram as on the wire once unprotected: `client` names
/// the sender. The sequence is the truncated one.
pub(crate) fn wire_header(seed: u8, client: bool, d: &[u8]) -> phantom_wire::WireHeader {
    header_key(seed, client).unprotect(d, 8).unwrap().0
}

/// Rewrites the header of a captured datagram of `client`'s direction: `edit` gets the
/// unprotected header with its sequence expanded against `largest`, the result replaces
/// it (protection re-applied), the body is kept. What an attacker holding the
/// header-protection key could send; only the AEAD stands in the way.
pub(crate) fn rewrite_header(
    seed: u8,
    client: bool,
    d: &[u8],
    largest: Option<u64>,
    edit: impl FnOnce(&mut phantom_wire::Header),
) -> Vec<u8> {
    let w = wire_header(seed, client, d);
    let mut h = phantom_wire::Header {
        flags: w.flags,
        epoch: phantom_wire::Epoch(u32::from(w.epoch_low)),
        conn_id: w.conn_id,
        stream_id: w.stream_id,
        sequence: w.seq_len.expand(w.truncated, largest),
        seq_len: phantom_wire::SeqLen::FULL,
    };
    edit(&mut h);
    let mut out = vec![0u8; h.len()];
    h.write_image(&mut out).unwrap();
    out.extend_from_slice(&d[w.len..]);
    header_key(seed, client).protect(&mut out, 8).unwrap();
    out
}

/// Opens every captured datagram in order, as receivers that saw all of them would
/// (`true`: sent by the client): the full headers, sequences expanded.
pub(crate) fn open_captured(
    seed: u8,
    sent: &[(bool, Vec<u8>)],
) -> Vec<(bool, phantom_wire::Header)> {
    let mut c2s = phantom_crypto::Opener::new(
        Suite::Aes256Gcm,
        TrafficSecret::from_bytes([seed ^ 0x11; 32]),
    )
    .unwrap();
    let mut s2c = phantom_crypto::Opener::new(
        Suite::Aes256Gcm,
        TrafficSecret::from_bytes([seed ^ 0x22; 32]),
    )
    .unwrap();
    let mut largest: std::collections::BTreeMap<(bool, StreamId), u64> = Default::default();
    let mut out = Vec::new();
    for (side, d) in sent {
        let mut d = d.clone();
        let opener = if *side { &mut c2s } else { &mut s2c };
        let h = *opener
            .open_packet(&mut d, 8, |s| largest.get(&(*side, s)).copied())
            .unwrap()
            .header();
        let l = largest.entry((*side, h.stream_id)).or_insert(h.sequence);
        *l = (*l).max(h.sequence);
        out.push((*side, h));
    }
    out
}
