//! Regression tests from the second review of per-space state bounded by epoch and
//! of ACK-only packets carrying a PING.

use std::time::Duration;

use super::harness::Pair;
use super::link::LinkConfig;
use crate::{CloseReason, Config, Event};

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

/// Packets each side sends over `secs` of an idle session after one round.
fn idle_packets(keep_alive: Option<Duration>, secs: u64) -> (u64, u64) {
    let cfg = Config {
        keep_alive,
        idle_timeout: Duration::from_secs(600),
        ..Config::default()
    };
    let mut pair = Pair::new(43, cfg, LinkConfig::default());
    pair.request_response(1);
    let later = pair.now + Duration::from_secs(1);
    pair.run_until(later, 100_000);
    let (c0, s0) = (
        pair.client.stats().packets_sent,
        pair.server.stats().packets_sent,
    );
    let later = pair.now + Duration::from_secs(secs);
    pair.run_until(later, 1_000_000);
    (
        pair.client.stats().packets_sent - c0,
        pair.server.stats().packets_sent - s0,
    )
}

/// An idle session stays quiet: an ACK-only packet carrying a PING must not be
/// answered by an ACK that carries a PING again (an endless ping-pong).
#[test]
fn idle_session_does_not_ping_pong() {
    let (c, s) = idle_packets(None, 60);
    assert!(
        c + s <= 4,
        "idle 60 s without keep-alive: client {c}, server {s} packets"
    );
    let (c, s) = idle_packets(Some(Duration::from_secs(5)), 60);
    eprintln!("idle 60 s with 5 s keep-alive: client {c}, server {s} packets");
    // Each side: one PING every 5 s and the acknowledgement of the peer's.
    assert!(
        c + s <= 4 * 13 + 4,
        "idle 60 s with 5 s keep-alive: client {c}, server {s}"
    );
}

/// Without keep-alive, an idle session whose peer is still there closes after the
/// idle timeout on both sides (nothing on the wire keeps it alive).
#[test]
fn idle_session_without_keep_alive_times_out_on_both_sides() {
    let cfg = Config {
        keep_alive: None,
        idle_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut pair = Pair::new(44, cfg, LinkConfig::default());
    pair.request_response(1);
    let _ = pair.events();
    let later = pair.now + Duration::from_secs(15);
    pair.run_until(later, 1_000_000);
    let (c, s) = pair.events();
    for (side, ev) in [("client", &c), ("server", &s)] {
        assert!(
            ev.iter()
                .any(|e| matches!(e, Event::Closed(CloseReason::IdleTimeout))),
            "{side} did not time out: {ev:?}"
        );
    }
}

/// With keep-alive, an idle session outlives its idle timeout on both sides.
#[test]
fn idle_session_with_keep_alive_stays_open() {
    let cfg = Config {
        keep_alive: Some(Duration::from_secs(3)),
        idle_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    let mut pair = Pair::new(45, cfg, LinkConfig::default());
    pair.request_response(1);
    let _ = pair.events();
    let later = pair.now + Duration::from_secs(60);
    pair.run_until(later, 1_000_000);
    let (c, s) = pair.events();
    for (side, ev) in [("client", &c), ("server", &s)] {
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Closed(_))),
            "{side} closed: {ev:?}"
        );
    }
    assert!(!pair.client.is_closed() && !pair.server.is_closed());
}
