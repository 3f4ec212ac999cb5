//! Regression tests from the review of the chunked send buffer, application-limited
//! marking, failed-path probing and sequence-space retirement.

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

/// A bulk sender that keeps its send buffer full is never application-limited: with
/// NewReno and CUBIC the window grows well past the initial one on a clean link
/// (the session's application-limited marking must not fire between the
/// application's writes while the window is in use).
#[test]
fn loss_based_windows_grow_during_a_bulk_transfer() {
    use super::harness::Transfer;
    for alg in [
        phantom_congestion::Algorithm::NewReno,
        phantom_congestion::Algorithm::Cubic,
    ] {
        let cfg = Config {
            congestion: alg,
            ..Config::default()
        };
        let link = LinkConfig {
            rate_bps: 50_000_000,
            delay: Duration::from_millis(20),
            queue_bytes: 1 << 20,
            ..LinkConfig::default()
        };
        let mut pair = Pair::new(73, cfg, link);
        let initial = pair.client.paths()[0].congestion.cwnd;
        let mut t = Transfer::start(&mut pair, 1, 4 << 20);
        let mut max_cwnd = 0;
        pair.drive(400_000, |p| {
            max_cwnd = max_cwnd.max(p.client.paths()[0].congestion.cwnd);
            t.poll(p)
        })
        .unwrap();
        assert!(
            max_cwnd >= 8 * initial,
            "{alg}: window peaked at {max_cwnd} bytes (initial {initial})"
        );
    }
}

/// A two-path upload whose second path loses its server -> client direction midway
/// (the client's packets still arrive on it, and the client, whose packets there are
/// acknowledged through the other path, may keep using it): the server's
/// acknowledgements and credit must keep reaching the client, so the upload
/// finishes in about the time one path needs.
#[test]
fn upload_survives_a_path_that_only_fails_towards_the_client() {
    use super::harness::{Transfer, client_addr};
    use crate::SchedulerMode;
    let link = LinkConfig {
        rate_bps: 10_000_000,
        delay: Duration::from_millis(10),
        queue_bytes: 128 * 1024,
        ..LinkConfig::default()
    };
    let len = 4u64 << 20;
    let mut times = Vec::new();
    for cut in [false, true] {
        let mut pair =
            super::session_tests::two_path_pair(74, SchedulerMode::Aggregate, link, link);
        let start = pair.now;
        let mut t = Transfer::start(&mut pair, 1, len);
        let mut is_cut = false;
        pair.drive(2_000_000, |p| {
            if cut && !is_cut && t.received_total() > len / 8 {
                p.ifaces.get_mut(&client_addr(2)).unwrap().down.cfg.down = true;
                is_cut = true;
            }
            t.poll(p)
        })
        .unwrap();
        assert_eq!(t.received_total(), len);
        times.push(pair.now - start);
    }
    eprintln!(
        "upload: two paths {:?}, one path cut towards the client {:?}",
        times[0], times[1]
    );
    assert!(
        times[1] <= times[0] * 3,
        "two paths {:?}, one cut towards the client {:?}",
        times[0],
        times[1]
    );
}
