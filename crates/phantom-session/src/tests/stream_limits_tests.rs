//! Receive-side stream state a misbehaving but authenticated peer can grow, session-level
//! flow control on streams whose data is discarded (reset by the peer, stopped by us),
//! and stream limits.

use std::time::Duration;

use phantom_crypto::Sealer;
use phantom_wire::{Frame, StreamId, frame::Stream};

use super::harness::{Pair, forged_client_packet, keys, public_addr};
use super::link::LinkConfig;
use crate::{AppCode, CloseReason, Config, Dir, Error, Event};

/// A connected pair 200 ms in, the client's sealer for forging its packets, and the
/// server -> client direction down (the honest client cannot interfere).
fn forging_pair(seed: u8) -> (Pair, Sealer) {
    let mut pair = Pair::new(u64::from(seed), Config::default(), LinkConfig::default());
    let later = pair.now + Duration::from_millis(200);
    pair.run_until(later, 10_000);
    let (ck, _) = keys(seed);
    let sealer = Sealer::new(ck.suite, ck.send).unwrap();
    pair.set_down_link(true);
    (pair, sealer)
}

/// A peer that sends a stream's bytes as one-byte STREAM frames with a one-byte gap
/// between each (offsets 1, 3, 5, ...) stays inside the stream's flow-control window
/// but makes the receiver hold one out-of-order fragment — an allocation plus a map
/// entry in the chunk map and another in the received-range set, ~100 bytes — per
/// byte of data: two orders of magnitude more memory than the window it advertised,
/// per stream (I1). The receiver must refuse such fragmentation (a protocol
/// violation no honest sender comes near) instead of holding it.
#[test]
fn i1_one_byte_fragments_with_gaps_cannot_make_the_receiver_hold_one_entry_per_byte() {
    let seed = 91u8;
    let (mut pair, mut sealer) = forging_pair(seed);
    // A client-initiated unidirectional stream the honest client never opened.
    let stream = (7u32 << 2) | 2;
    let byte = [0xAB_u8];
    let fragments = 20_000u64;
    let per_packet = 100u64;
    let mut most = 0usize;
    for p in 0..fragments / per_packet {
        let frames: Vec<Frame<'_>> = (0..per_packet)
            .map(|i| {
                Frame::Stream(Stream {
                    stream_id: StreamId(stream),
                    offset: 2 * (p * per_packet + i) + 1,
                    fin: false,
                    data: &byte,
                })
            })
            .collect();
        let pkt = forged_client_packet(&mut sealer, seed, stream, p, &frames);
        pair.inject_to_server(public_addr(1, 40000), &pkt);
        most = most.max(pair.server.recv_fragments());
        if pair.server.is_closed() {
            break;
        }
    }
    // A 1 MiB window allows at most 4096 disjoint ranges per stream.
    assert!(
        most <= 4096,
        "the server held {most} out-of-order fragments of one stream ({} bytes of data)",
        most
    );
    assert!(
        pair.server.is_closed(),
        "the fragmenting peer was not refused"
    );
    let (_, server_events) = pair.events();
    assert!(
        server_events.iter().any(|e| matches!(
            e,
            Event::Closed(CloseReason::Error(Error::PeerViolation(_)))
        )),
        "{server_events:?}"
    );
}

/// The same gaps filled by an honest sender's retransmissions: a window's worth of
/// reordering in full-size frames (every other frame held back, then sent) is
/// accepted and delivered intact — the fragment limit never hits honest traffic.
#[test]
fn i1_fragment_limit_leaves_heavily_reordered_full_size_frames_alone() {
    let seed = 92u8;
    let (mut pair, mut sealer) = forging_pair(seed);
    let stream = (7u32 << 2) | 2;
    let chunk = 1000usize;
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let n = data.len() / chunk;
    let mut seq = 0;
    // Odd chunks first (every one out of order), then the even ones.
    for pass in [1, 0] {
        for k in (pass..n).step_by(2) {
            let f = Frame::Stream(Stream {
                stream_id: StreamId(stream),
                offset: (k * chunk) as u64,
                fin: false,
                data: &data[k * chunk..(k + 1) * chunk],
            });
            let pkt = forged_client_packet(&mut sealer, seed, stream, seq, &[f]);
            seq += 1;
            pair.inject_to_server(public_addr(1, 40000), &pkt);
            assert!(!pair.server.is_closed(), "closed at chunk {k} pass {pass}");
        }
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pair.server.read(StreamId(stream), &mut buf).unwrap() {
            Some(0) | None => break,
            Some(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    assert_eq!(got.len(), n * chunk);
    assert_eq!(&got[..], &data[..n * chunk]);
}

/// Session-level credit must come back for stream bytes that will never be read:
/// those of a stream the peer reset and those discarded after we asked the peer to
/// stop. Otherwise every reset stream permanently eats its received bytes out of the
/// session window, and after a window's worth of them the session stalls for good.
#[test]
fn discarded_stream_bytes_return_session_credit() {
    let cfg = Config {
        session_receive_window: 1024 * 1024,
        stream_receive_window: 256 * 1024,
        ..Config::default()
    };
    let mut pair = Pair::new(93, cfg, LinkConfig::default());
    let later = pair.now + Duration::from_millis(200);
    pair.run_until(later, 10_000);
    let payload = vec![5u8; 200 * 1024];
    // Eight streams of 200 KiB each, 1.6 MiB in all, through a 1 MiB session window;
    // once the server holds a stream's bytes, the client resets it (even rounds) or
    // the server's application asks the client to stop (odd rounds). Nothing is read.
    for round in 0..8 {
        let id = pair.client.open_stream(Dir::Uni).unwrap();
        assert_eq!(pair.client.write(id, &payload).unwrap(), payload.len());
        pair.pump();
        let later = pair.now + Duration::from_secs(2);
        pair.run_until(later, 1_000_000);
        let mut buf = [0u8; 16];
        if round % 2 == 0 {
            pair.client.reset(id, 9).unwrap();
        } else {
            pair.server.stop_sending(id, 7).unwrap_or_else(|e| {
                panic!("round {round}: the stream never reached the server ({e:?})")
            });
        }
        pair.pump();
        let later = pair.now + Duration::from_millis(500);
        pair.run_until(later, 1_000_000);
        let r = pair.server.read(id, &mut buf);
        if round % 2 == 0 {
            assert!(
                matches!(r, Err(Error::Reset(AppCode(9)))),
                "round {round}: {r:?}"
            );
        } else {
            // Stopped, then reset by the client in answer: done and forgotten.
            assert!(
                matches!(r, Err(Error::UnknownStream(_))),
                "round {round}: {r:?}"
            );
        }
    }
    // A last stream still gets through.
    let id = pair.client.open_stream(Dir::Uni).unwrap();
    let mut written = 0;
    let mut got = 0;
    let mut done = false;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = pair.now + Duration::from_secs(20);
    pair.drive(1_000_000, |p| {
        if written < payload.len()
            && let Ok(n) = p.client.write(id, &payload[written..])
        {
            written += n;
            if written == payload.len() {
                p.client.finish(id).unwrap();
            }
        }
        while let Ok(r) = p.server.read(id, &mut buf) {
            match r {
                Some(0) => break,
                Some(n) => got += n,
                None => {
                    done = true;
                    break;
                }
            }
        }
        done || p.now >= deadline
    })
    .unwrap();
    assert!(
        done && got == payload.len(),
        "the session stalled: {got} of {} bytes of a fresh stream arrived",
        payload.len()
    );
}

/// An application that stops streams it does not want (a server refusing uploads:
/// `stop_sending`, or the runtime dropping a `RecvStream` early) must get their
/// stream slots back once the peer's final size is known (its FIN or RESET_STREAM) —
/// whether or not it reads again. Before, a stopped stream whose FIN had arrived was
/// never finished (nobody reads it to the end), never removed, and its slot never
/// returned: after a stream limit's worth of refused uploads the peer could open no
/// stream at all.
#[test]
fn stopped_streams_give_their_slots_back_once_the_final_size_is_known() {
    let mut pair = Pair::new(94, Config::default(), LinkConfig::default());
    let later = pair.now + Duration::from_millis(200);
    pair.run_until(later, 10_000);
    let mut opened = 0;
    for round in 0..3 {
        let mut ids = Vec::new();
        while let Ok(id) = pair.client.open_stream(Dir::Uni) {
            pair.client.write(id, &[3u8; 100]).unwrap();
            pair.client.finish(id).unwrap();
            ids.push(id);
            if ids.len() == 100 {
                break;
            }
        }
        assert_eq!(
            ids.len(),
            100,
            "round {round}: the client could open only {} streams after {opened} \
             stopped ones: their slots were never given back",
            ids.len()
        );
        opened += ids.len();
        pair.pump();
        let later = pair.now + Duration::from_millis(500);
        pair.run_until(later, 1_000_000);
        // The server refuses every upload without reading it.
        for &id in &ids {
            pair.server.stop_sending(id, 5).unwrap();
        }
        pair.pump();
        let later = pair.now + Duration::from_millis(500);
        pair.run_until(later, 1_000_000);
        assert!(!pair.server.is_closed() && !pair.client.is_closed());
    }
}

/// A receiver configured with fewer concurrent streams than the protocol's initial
/// limit (`INITIAL_MAX_STREAMS`, which the peer may use before it hears anything)
/// must not hold the peer to the smaller number: the peer cannot know it. Before, a
/// server with `max_concurrent_streams: 4` closed the session of an honest client
/// that opened a fifth stream ("stream limit exceeded").
#[test]
fn a_small_configured_stream_limit_does_not_kill_an_honest_peer() {
    let scfg = Config {
        max_concurrent_streams: 4,
        ..Config::default()
    };
    let mut pair = Pair::with_configs(95, Config::default(), scfg, LinkConfig::default());
    let later = pair.now + Duration::from_millis(200);
    pair.run_until(later, 10_000);
    for _ in 0..10 {
        let id = pair.client.open_stream(Dir::Uni).unwrap();
        pair.client.write(id, b"hello").unwrap();
        pair.client.finish(id).unwrap();
    }
    pair.pump();
    let later = pair.now + Duration::from_millis(500);
    pair.run_until(later, 1_000_000);
    let (_, server_events) = pair.events();
    assert!(
        !pair.server.is_closed(),
        "an honest client was refused: {server_events:?}"
    );
}
