//! Per-space state (ACK state, replay windows) and its retirement: late retransmissions
//! into a closed stream's space, spaces of streams never opened, and a peer that rekeys
//! faster than the previous key retires.

use std::time::Duration;

use phantom_crypto::Sealer;
use phantom_wire::Frame;

use super::harness::{Pair, forged_client_packet, keys, public_addr};
use super::link::LinkConfig;
use crate::{Config, Dir, Event};

/// A PING packet from the client in sequence space `space`, sealed with the
/// client's key of the pair built from `seed` (a misbehaving but authenticated peer).
fn client_ping(sealer: &mut Sealer, seed: u8, space: u32) -> Vec<u8> {
    forged_client_packet(sealer, seed, space, 0, &[Frame::Ping])
}

/// The peer's ACKs of a stream's last packets are lost for a while (a reverse-path
/// outage of a few seconds) after the receiver read the whole stream and closed it.
/// When the path comes back the sender learns its data was lost and retransmits it
/// in the stream's space; the receiver must still acknowledge it, or the sender's
/// stream never completes (and its retransmissions are lost forever).
#[test]
fn late_retransmission_after_lost_acks_is_acknowledged_after_the_receiver_closed_the_stream() {
    let mut pair = Pair::new(71, Config::default(), LinkConfig::default());
    // Settle the handshake and an RTT estimate.
    let later = pair.now + Duration::from_millis(200);
    pair.run_until(later, 10_000);
    let id = pair.client.open_stream(Dir::Uni).unwrap();
    pair.client.write(id, &[7u8; 3000]).unwrap();
    pair.client.finish(id).unwrap();
    // The data reaches the server, but none of its ACKs make it back.
    pair.set_down_link(true);
    let mut buf = [0u8; 4096];
    let mut got = 0;
    pair.drive(10_000, |p| {
        loop {
            match p.server.read(id, &mut buf) {
                Ok(Some(0)) | Err(_) => return false,
                Ok(Some(n)) => got += n,
                Ok(None) => return true,
            }
        }
    })
    .unwrap();
    assert_eq!(got, 3000);
    // A 3 s outage of the reverse path, then it comes back.
    let later = pair.now + Duration::from_secs(3);
    pair.run_until(later, 100_000);
    assert!(pair.client.has_unacked_data());
    pair.set_down_link(false);
    let _ = pair.events();
    let mut finished = false;
    let deadline = pair.now + Duration::from_secs(10);
    pair.drive(100_000, |p| {
        while let Some(e) = p.client.poll_event() {
            finished |= matches!(e, Event::StreamFinished(s) if s == id);
        }
        finished || p.now >= deadline
    })
    .unwrap();
    let stats = pair.server.stats();
    assert!(
        finished && !pair.client.has_unacked_data(),
        "the client's stream never completed: {} packets refused as replays at the server, \
         client lost {} packets",
        stats.dropped.replayed,
        pair.client.stats().packets_lost
    );
}

/// An authenticated peer that sends packets in the sequence spaces of streams it
/// never opened (here: PINGs in 1,000 unidirectional spaces beyond its stream limit)
/// must not leave per-space state behind for good: such spaces never become a stream,
/// so nothing queues them for retirement, and the peer could grow the session's
/// memory without bound — what retiring closed streams' spaces set out to prevent.
#[test]
fn i1_packets_in_spaces_of_unopened_streams_leave_no_state_behind() {
    let seed = 72u8;
    let mut pair = Pair::new(u64::from(seed), Config::default(), LinkConfig::default());
    let later = pair.now + Duration::from_millis(200);
    pair.run_until(later, 10_000);
    let (ck, _) = keys(seed);
    let mut sealer = Sealer::new(ck.suite, ck.send).unwrap();
    let before = pair.server.space_state();
    // The honest client would object to the server's ACKs of packets it never sent:
    // the misbehaving peer is modelled by not letting it see them.
    pair.set_down_link(true);
    for index in 1000..2000u32 {
        // Client-initiated unidirectional stream ids: bit 0 clear, bit 1 set.
        let pkt = client_ping(&mut sealer, seed, (index << 2) | 2);
        pair.inject_to_server(public_addr(1, 40000), &pkt);
    }
    let later = pair.now + Duration::from_secs(12);
    pair.run_until(later, 100_000);
    let (acks, _, windows, _) = pair.server.space_state();
    assert!(
        pair.server.is_closed() || (acks <= before.0 + 2 && windows <= before.2 + 2),
        "the server holds {acks} ACK spaces and {windows} replay windows (before: {before:?}) closed {} stats {:?}",
        pair.server.is_closed(),
        pair.server.stats().dropped
    );
}

/// A peer that rekeys more often than every 3 PTOs (a small rekey threshold, or a
/// busy honest peer cycling through many short streams) must not postpone the
/// retirement of its previous key — and with it the forgetting of quiet spaces —
/// forever: the receiver's per-space state stays bounded *while* the session is busy.
#[test]
fn i1_per_space_state_stays_bounded_while_the_peer_rekeys_faster_than_3_pto() {
    let cfg = Config {
        rekey_threshold: Some(6),
        ..Config::default()
    };
    let mut pair = Pair::new(41, cfg, LinkConfig::default());
    let mut most = 0;
    for r in 0..300u64 {
        if r % 50 == 0 {
            pair.capture = Some(Vec::new());
        }
        pair.request_response(r as u8);
        let (acks, _, windows, _) = pair.server.space_state();
        most = most.max(acks.max(windows));
        // I4: replays of this round's packets (their keys still open) are refused.
        let sent: Vec<_> = pair.capture.as_ref().unwrap().clone();
        let before = pair.server.stats();
        for c in sent.iter().filter(|c| c.to_server) {
            pair.inject_to_server(c.rx.remote, &c.data);
        }
        let after = pair.server.stats();
        assert_eq!(after.packets_received, before.packets_received, "round {r}");
    }
    let st = pair.server.stats();
    assert!(st.rekeys_peer >= 40, "{st:?}");
    assert!(
        most <= 60,
        "server held per-space state of {most} spaces during a busy session \
         ({} peer rekeys over {:?})",
        st.rekeys_peer,
        pair.elapsed()
    );
    // And it settles once quiet.
    let later = pair.now + Duration::from_secs(12);
    pair.run_until(later, 100_000);
    let (acks, _, windows, _) = pair.server.space_state();
    assert!(acks <= 21 && windows <= 21, "{acks} {windows}");
    // I4: every captured client packet, replayed now, is refused.
    let _ = pair.events();
    let (before, after, injected) = pair.replay_captured_to_server();
    assert!(injected > 50);
    let refused = (after.dropped.replayed - before.dropped.replayed)
        + (after.dropped.unauthenticated - before.dropped.unauthenticated);
    assert_eq!(refused, injected as u64);
    assert_eq!(after.packets_received, before.packets_received);
}
