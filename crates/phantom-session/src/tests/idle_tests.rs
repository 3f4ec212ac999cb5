//! Idle sessions: no PING ping-pong, idle timeout without keep-alive, keep-alive
//! holding a session open.

use std::time::Duration;

use super::harness::Pair;
use super::link::LinkConfig;
use crate::{CloseReason, Config, Event};

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
