//! 0-RTT: replay-safe streams opened in the ClientHello, over a real hybrid handshake.

use phantom_handshake::{
    Client, ClientConfig, Established, HybridSigningKey, ResumptionTicket, Server, ServerConfig,
    ServerIdentity, Time,
};
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;

use super::harness::{Pair, SERVER, client_addr, public_addr};
use super::link::LinkConfig;
use crate::early::{EarlyData, MAX_EARLY_BYTES};
use crate::{Accepted, Config, Dir, Endpoint, Error, Event, Session, Side};

const UNIX: u64 = 1_750_000_000;

struct World {
    rng: ChaCha20Rng,
    server: Server,
    key: phantom_handshake::HybridVerifyingKey,
    now: std::time::Instant,
}

impl World {
    fn new(seed: u64) -> Self {
        Self::with_release_on_hello(seed, false)
    }

    /// A world whose server releases early data at ClientHello acceptance (`release`).
    fn with_release_on_hello(seed: u64, release: bool) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let signing = HybridSigningKey::generate(&mut rng);
        let identity = ServerIdentity::generate(&signing, &mut rng, UNIX + 86_400).unwrap();
        let mut config = ServerConfig::new(identity);
        config.release_early_data_on_hello = release;
        let server = Server::new(config, &mut rng);
        Self {
            rng,
            server,
            key: signing.verifying_key(),
            now: super::test_instant(),
        }
    }

    /// Runs one handshake; `replay_hello_first` delivers the ClientHello twice (an
    /// attacker's copy first), so the genuine one finds its early data already used.
    fn handshake(
        &mut self,
        cfg: ClientConfig,
        replay_hello_first: bool,
    ) -> (Established, Established) {
        let t = Time::new(self.now, UNIX + 5);
        let mut client = Client::new(cfg, &mut self.rng, t).unwrap();
        let c_pub = public_addr(1, 40000);
        let mut server_est = None;
        let mut first = true;
        for _ in 0..16 {
            let flight: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
            if first && replay_hello_first {
                let attacker = public_addr(9, 9999);
                for d in &flight {
                    let _ = self
                        .server
                        .handle_datagram(t, attacker, d, &mut self.rng, |_| false);
                }
                while self.server.poll_transmit().is_some() {}
            }
            first = false;
            for d in &flight {
                if let Some(e) = self
                    .server
                    .handle_datagram(t, c_pub, d, &mut self.rng, |_| false)
                    .unwrap()
                {
                    server_est = Some(e);
                }
            }
            while let Some(tx) = self.server.poll_transmit() {
                if tx.dst == c_pub {
                    let _ = client.handle(t, &tx.payload, &mut self.rng).unwrap();
                }
            }
            if client.is_complete() && server_est.is_some() {
                break;
            }
        }
        (client.into_established().unwrap(), *server_est.unwrap())
    }

    fn sessions(&self, c: Established, s: Established) -> (Session, Session) {
        let c = Session::from_established(
            Side::Client,
            Config::default(),
            c,
            self.now,
            client_addr(1),
            SERVER,
            [1; 32],
        )
        .unwrap();
        let s = Session::from_established(
            Side::Server,
            Config::default(),
            s,
            self.now,
            SERVER,
            public_addr(1, 40000),
            [2; 32],
        )
        .unwrap();
        (c, s)
    }

    /// A first session, only to obtain a ticket.
    fn ticket(&mut self) -> ResumptionTicket {
        let (c, s) = self.handshake(ClientConfig::new(self.key.clone()), false);
        let (mut c, _) = self.sessions(c, s);
        assert!(c.resumption_hint().is_some());
        c.take_resumption_ticket().unwrap()
    }

    fn resuming_config(&mut self, early: &EarlyData) -> ClientConfig {
        let mut cfg = ClientConfig::new(self.key.clone());
        cfg.ticket = Some(self.ticket());
        cfg.early_data = early.encode().unwrap();
        cfg
    }
}

fn read_all(s: &mut Session, id: phantom_wire::StreamId) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(id, &mut buf) {
            Ok(Some(0)) | Err(_) => return (out, false),
            Ok(Some(n)) => out.extend_from_slice(&buf[..n]),
            Ok(None) => return (out, true),
        }
    }
}

#[test]
fn i10_early_stream_data_is_readable_on_the_server_before_any_packet() {
    let mut w = World::new(70);
    let mut early = EarlyData::new();
    let req = early
        .open_stream(Dir::Bi, b"GET /index.html", true)
        .unwrap();
    let cfg = w.resuming_config(&early);
    let (c, s) = w.handshake(cfg, false);
    assert!(c.early_data_accepted && s.early_data_accepted);
    let (mut client, mut server) = w.sessions(c, s);
    assert!(client.is_resumed() && client.early_data_accepted());
    // No packet has been exchanged: the stream is already there and readable.
    let mut opened = false;
    while let Some(ev) = server.poll_event() {
        opened |= matches!(ev, Event::StreamOpened { id, dir: Dir::Bi } if id == req);
    }
    assert!(opened, "the early stream opened on the server");
    let (got, fin) = read_all(&mut server, req);
    assert_eq!(got, b"GET /index.html");
    assert!(fin);
    // The client re-sends it under 1-RTT keys; the server answers on the same stream.
    client.replay_early_data(&early).unwrap();
    server.write(req, b"200 OK").unwrap();
    server.finish(req).unwrap();
    let mut pair = Pair::from_sessions(70, w.now, client, server, LinkConfig::default());
    pair.drive(5_000, |p| {
        let mut b = [0u8; 64];
        matches!(p.client.read(req, &mut b), Ok(None))
    })
    .unwrap_or_else(|e| panic!("reply never arrived: {e:?}"));
    // The 1-RTT duplicate was absorbed: nothing more to read on the server.
    let (more, _) = read_all(&mut pair.server, req);
    assert!(more.is_empty(), "early bytes delivered twice: {more:?}");
}

/// A resumed handshake through a server [`Endpoint`] whose handshake releases early
/// data at ClientHello acceptance. After the ClientHello (and before the client even has
/// the server's answer, let alone sent its ClientFinished) `on_hello` runs with the
/// endpoint; then the handshake completes. Returns the two sessions.
fn resume_through_endpoint(
    seed: u64,
    early: &EarlyData,
    on_hello: impl FnOnce(&mut Endpoint, &Client),
) -> (Session, Session, std::time::Instant) {
    let mut w = World::with_release_on_hello(seed, true);
    let cfg = w.resuming_config(early);
    let World {
        mut rng,
        server,
        now,
        ..
    } = w;
    let t = Time::new(now, UNIX + 5);
    let c_pub = public_addr(1, 40000);
    let mut client = Client::new(cfg, &mut rng, t).unwrap();
    let mut ep = Endpoint::with_server(server, Config::default());
    let hello: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    for d in &hello {
        let r = ep.handle_handshake(t, SERVER, c_pub, d, &mut rng).unwrap();
        assert!(r.is_none(), "a ClientHello alone completes no handshake");
    }
    on_hello(&mut ep, &client);
    let mut accepted: Option<Accepted> = None;
    for _ in 0..16 {
        while let Some(tx) = ep.poll_handshake_transmit() {
            if tx.dst == c_pub {
                let _ = client.handle(t, &tx.payload, &mut rng);
            }
        }
        if client.is_complete() && accepted.is_some() {
            break;
        }
        let flight: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
        for d in &flight {
            if let Some(a) = ep.handle_handshake(t, SERVER, c_pub, d, &mut rng).unwrap() {
                accepted = Some(a);
            }
        }
    }
    let server = *accepted.expect("handshake completed").session;
    let client = Session::from_established(
        Side::Client,
        Config::default(),
        client.into_established().unwrap(),
        now,
        client_addr(1),
        SERVER,
        [1; 32],
    )
    .unwrap();
    (client, server, now)
}

/// The server's answer on `id` reaches the client exactly; the server reads nothing more.
fn answer_arrives(
    seed: u64,
    now: std::time::Instant,
    client: Session,
    mut server: Session,
    id: phantom_wire::StreamId,
) {
    server.write(id, b"200 OK").unwrap();
    server.finish(id).unwrap();
    let mut pair = Pair::from_sessions(seed, now, client, server, LinkConfig::default());
    let mut answer = Vec::new();
    pair.drive(5_000, |p| {
        let (chunk, fin) = read_all(&mut p.client, id);
        answer.extend_from_slice(&chunk);
        fin
    })
    .unwrap_or_else(|e| panic!("answer never arrived: {e:?}"));
    assert_eq!(answer, b"200 OK");
    let (more, _) = read_all(&mut pair.server, id);
    assert_eq!(more.len(), 0, "early bytes delivered twice");
}

#[test]
fn i10_server_reads_early_data_before_the_client_finished_arrives() {
    let mut early = EarlyData::new();
    let req = early.open_stream(Dir::Bi, b"GET /early", true).unwrap();
    let mut released = None;
    let (mut client, mut server, now) = resume_through_endpoint(74, &early, |ep, c| {
        // Only the ClientHello reached the server; the client has not completed.
        assert!(!c.is_complete());
        released = ep.poll_early_data();
        assert!(ep.poll_early_data().is_none(), "released twice");
        assert_eq!(ep.stats().early_released, 1);
    });
    let released = released.expect("early data released at ClientHello acceptance");
    assert!(released.is_replayable());
    assert_eq!(released.remote, public_addr(1, 40000));
    assert_eq!(released.session_id, server.session_id());
    assert_eq!(released.streams().len(), 1);
    let st = &released.streams()[0];
    assert_eq!((st.id, st.dir, st.fin), (req, Dir::Bi, true));
    assert_eq!(st.data, b"GET /early");
    assert!(server.early_data_accepted() && client.early_data_accepted());
    // The session opens the stream with the early bytes already read: the
    // application reads on from where they end (here, the end of the stream).
    let mut opened = 0;
    while let Some(ev) = server.poll_event() {
        opened += usize::from(matches!(ev, Event::StreamOpened { id, dir: Dir::Bi } if id == req));
    }
    assert_eq!(opened, 1);
    assert_eq!(read_all(&mut server, req), (Vec::new(), true));
    client.replay_early_data(&early).unwrap();
    answer_arrives(74, now, client, server, req);
}

#[test]
fn released_early_data_nobody_polled_is_read_from_the_stream() {
    let mut early = EarlyData::new();
    let req = early.open_stream(Dir::Bi, b"GET /late", false).unwrap();
    let (mut client, mut server, now) = resume_through_endpoint(75, &early, |ep, _| {
        assert_eq!(ep.stats().early_released, 1);
    });
    assert_eq!(read_all(&mut server, req), (b"GET /late".to_vec(), false));
    client.replay_early_data(&early).unwrap();
    answer_arrives(75, now, client, server, req);
}

#[test]
fn i10_refused_early_data_still_arrives_exactly_once_under_one_rtt_keys() {
    let mut w = World::new(71);
    let mut early = EarlyData::new();
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let id = early.open_stream(Dir::Uni, &payload, true).unwrap();
    let cfg = w.resuming_config(&early);
    // An attacker replays the ClientHello first: the genuine client's early data is
    // refused (at most once per ticket), the handshake still completes.
    let (c, s) = w.handshake(cfg, true);
    assert!(!c.early_data_accepted && !s.early_data_accepted);
    let (mut client, mut server) = w.sessions(c, s);
    while let Some(ev) = server.poll_event() {
        assert!(!matches!(ev, Event::StreamOpened { .. }), "{ev:?}");
    }
    client.replay_early_data(&early).unwrap();
    let mut pair = Pair::from_sessions(71, w.now, client, server, LinkConfig::default());
    let mut got = Vec::new();
    pair.drive(5_000, |p| {
        let (chunk, fin) = read_all(&mut p.server, id);
        got.extend_from_slice(&chunk);
        fin
    })
    .unwrap_or_else(|e| panic!("stream never completed: {e:?}"));
    assert_eq!(got, payload);
}

#[test]
fn early_data_is_bounded_and_streams_must_replay_in_order() {
    let mut early = EarlyData::new();
    assert_eq!(
        early.open_stream(Dir::Bi, &vec![0u8; MAX_EARLY_BYTES], false),
        Err(Error::EarlyDataTooLarge)
    );
    assert!(early.is_empty());
    early.open_stream(Dir::Bi, b"a", false).unwrap();
    early.open_stream(Dir::Bi, b"b", true).unwrap();
    assert!(early.encoded_len() <= MAX_EARLY_BYTES);
    let mut pair = Pair::new(72, Config::default(), LinkConfig::default());
    // A stream opened before the early ones would shift their ids.
    pair.client.open_stream(Dir::Bi).unwrap();
    assert!(matches!(
        pair.client.replay_early_data(&early),
        Err(Error::EarlyDataMismatch(_))
    ));
    assert!(matches!(
        pair.server.replay_early_data(&early),
        Err(Error::EarlyDataMismatch(_))
    ));
}

mod prop {
    use proptest::prelude::*;

    use super::super::harness::Pair;
    use super::super::link::LinkConfig;
    use crate::Config;
    use crate::early::EarlyData;
    use crate::{Dir, Event};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// I1: whatever an authenticated early-data blob holds, applying it never panics;
        /// anything but replay-safe stream openings changes nothing but a drop counter.
        #[test]
        fn i1_arbitrary_early_data_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut pair = Pair::new(80, Config::default(), LinkConfig::default());
            let now = pair.now;
            while pair.server.poll_event().is_some() {}
            let before = pair.server.stats().dropped.malformed;
            pair.server.apply_early_data(now, &blob);
            let opened = std::iter::from_fn(|| pair.server.poll_event())
                .any(|e| matches!(e, Event::StreamOpened { .. }));
            let replay_safe_openings = !blob.is_empty()
                && phantom_wire::parse_frames(&blob).all(|f| {
                    matches!(f, Ok(phantom_wire::Frame::Stream(s)) if s.offset == 0 && s.stream_id.0 & 1 == 0)
                });
            if !replay_safe_openings {
                prop_assert_eq!(pair.server.stats().dropped.malformed, before + 1);
                prop_assert!(!opened);
                prop_assert!(!pair.server.is_closed());
            }
        }

        /// Well-formed early data always opens its streams with its bytes.
        #[test]
        fn well_formed_early_data_opens_its_streams(data in proptest::collection::vec(any::<u8>(), 1..1000), fin: bool) {
            let mut pair = Pair::new(81, Config::default(), LinkConfig::default());
            let now = pair.now;
            while pair.server.poll_event().is_some() {}
            let mut early = EarlyData::new();
            let id = early.open_stream(Dir::Bi, &data, fin).unwrap();
            pair.server.apply_early_data(now, &early.encode().unwrap());
            let (got, end) = super::read_all(&mut pair.server, id);
            prop_assert_eq!(got, data);
            prop_assert_eq!(end, fin);
        }
    }
}
