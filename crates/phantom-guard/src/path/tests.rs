use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use phantom_wire::PathId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::{
    AMPLIFICATION_FACTOR, CHALLENGE_LEN, Challenge, FailReason, PathConfig, PathEvent,
    PathRegistry, PathState, SendBudget,
};
use crate::Error;

#[expect(
    clippy::disallowed_methods,
    reason = "tests need one arbitrary time origin"
)]
fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// 100 ms first wait, 2 retransmissions, 10 s idle timeout, 4 paths.
fn config() -> PathConfig {
    PathConfig {
        max_paths: 4,
        challenge_timeout: ms(100),
        max_retransmits: 2,
        idle_timeout: Duration::from_secs(10),
    }
}

fn registry() -> PathRegistry {
    PathRegistry::new(config()).unwrap()
}

const P1: PathId = PathId(1);

fn flipped(c: &Challenge) -> [u8; CHALLENGE_LEN] {
    let mut b = *c.as_bytes();
    b[CHALLENGE_LEN - 1] ^= 0x01;
    b
}

#[test]
fn default_config_is_valid_and_bounded() {
    let c = PathConfig::default();
    assert_eq!(c.validate(), Ok(()));
    assert_eq!(c.max_paths, 8);
    let reg = PathRegistry::new(c).unwrap();
    assert!(reg.is_empty());
    assert_eq!(reg.config(), &c);
}

#[test]
fn config_out_of_range_is_refused() {
    let bad = [
        PathConfig {
            max_paths: 0,
            ..config()
        },
        PathConfig {
            max_paths: 257,
            ..config()
        },
        PathConfig {
            challenge_timeout: Duration::ZERO,
            ..config()
        },
        PathConfig {
            max_retransmits: super::MAX_CHALLENGE_RETRANSMITS + 1,
            ..config()
        },
        PathConfig {
            idle_timeout: Duration::ZERO,
            ..config()
        },
    ];
    for c in bad {
        assert!(
            matches!(PathRegistry::new(c), Err(Error::InvalidConfig(_))),
            "{c:?}"
        );
    }
}

#[test]
fn unvalidated_validating_validated() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    assert_eq!(reg.state(P1), Some(PathState::Unvalidated));
    assert!(!reg.is_validated(P1));
    let c = reg.issue_challenge(P1, now, &mut rng(1)).unwrap();
    assert_eq!(reg.state(P1), Some(PathState::Validating));
    assert_eq!(reg.verify_response(P1, now + ms(30), c.as_bytes()), Ok(()));
    assert_eq!(reg.state(P1), Some(PathState::Validated));
    assert!(reg.is_validated(P1));
    assert_eq!(reg.validated_paths().collect::<Vec<_>>(), vec![P1]);
    assert_eq!(reg.remote(P1), Some(addr(1)));
    // Nothing is pending any more but the idle timer.
    assert_eq!(reg.next_timeout(), Some(now + Duration::from_secs(10)));
    assert_eq!(reg.poll_retransmit(now + ms(500)), None);
}

#[test]
fn i7_wrong_response_does_not_validate() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    reg.on_received(P1, 100).unwrap();
    let c = reg.issue_challenge(P1, now, &mut rng(1)).unwrap();
    let before = reg.info(P1);
    let timeout_before = reg.next_timeout();
    for wrong in [flipped(&c), [0u8; CHALLENGE_LEN], [0xff; CHALLENGE_LEN]] {
        assert_eq!(
            reg.verify_response(P1, now + ms(10), &wrong),
            Err(Error::WrongResponse)
        );
        assert_eq!(reg.info(P1), before, "a wrong response changed the path");
        assert_eq!(reg.next_timeout(), timeout_before);
        assert!(!reg.is_validated(P1));
        assert_eq!(reg.send_budget(P1), Some(SendBudget::Limited(300)));
    }
    // The right response still works afterwards.
    assert_eq!(reg.verify_response(P1, now + ms(20), c.as_bytes()), Ok(()));
}

#[test]
fn i7_unvalidated_path_gets_at_most_three_times_received() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    // Nothing received: nothing may be sent.
    assert!(!reg.can_send(P1, 1));
    assert!(reg.can_send(P1, 0));
    assert_eq!(
        reg.on_sent(P1, 1),
        Err(Error::AmplificationLimit {
            path: P1,
            available: 0
        })
    );
    reg.on_received(P1, 100).unwrap();
    assert!(reg.can_send(P1, 300));
    assert!(!reg.can_send(P1, 301));
    assert_eq!(
        reg.on_sent(P1, 301),
        Err(Error::AmplificationLimit {
            path: P1,
            available: 300
        })
    );
    reg.on_sent(P1, 200).unwrap();
    assert_eq!(reg.send_budget(P1), Some(SendBudget::Limited(100)));
    reg.on_sent(P1, 100).unwrap();
    assert!(!reg.can_send(P1, 1));
    let info = reg.info(P1).unwrap();
    assert_eq!(info.bytes_sent, 300);
    assert_eq!(info.bytes_received, 100);
    assert!(info.bytes_sent <= AMPLIFICATION_FACTOR * info.bytes_received);
    // Validating keeps the limit.
    let c = reg.issue_challenge(P1, now, &mut rng(2)).unwrap();
    assert!(!reg.can_send(P1, 1));
    reg.on_received(P1, 10).unwrap();
    assert_eq!(reg.send_budget(P1), Some(SendBudget::Limited(30)));
    // Validated: unlimited.
    reg.verify_response(P1, now, c.as_bytes()).unwrap();
    assert_eq!(reg.send_budget(P1), Some(SendBudget::Unlimited));
    assert!(reg.can_send(P1, u64::MAX));
    reg.on_sent(P1, 1_000_000).unwrap();
}

#[test]
fn i7_amplification_budget_saturates_instead_of_overflowing() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    reg.on_received(P1, u64::MAX).unwrap();
    reg.on_received(P1, u64::MAX).unwrap();
    assert_eq!(reg.info(P1).unwrap().bytes_received, u64::MAX);
    assert!(reg.can_send(P1, u64::MAX));
    reg.on_sent(P1, u64::MAX).unwrap();
    assert!(!reg.can_send(P1, 1));
    assert!(reg.on_sent(P1, 1).is_err());
}

#[test]
fn i7_only_validated_paths_carry_application_data() {
    let now = t0();
    let mut reg = registry();
    reg.insert_validated(PathId(0), addr(1), now).unwrap();
    reg.insert(P1, addr(2), now).unwrap();
    reg.insert(PathId(2), addr(3), now).unwrap();
    assert!(reg.is_validated(PathId(0)));
    assert!(!reg.is_validated(P1));
    assert!(!reg.is_validated(PathId(7)));
    let c = reg.issue_challenge(PathId(2), now, &mut rng(3)).unwrap();
    reg.verify_response(PathId(2), now, c.as_bytes()).unwrap();
    assert_eq!(
        reg.validated_paths().collect::<Vec<_>>(),
        vec![PathId(0), PathId(2)]
    );
}

#[test]
fn retransmits_with_exponential_backoff_then_fails() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    let c = reg.issue_challenge(P1, now, &mut rng(4)).unwrap();
    assert_eq!(reg.next_timeout(), Some(now + ms(100)));
    assert_eq!(reg.poll_retransmit(now + ms(99)), None);
    // First retransmission after 100 ms, with the same bytes.
    assert_eq!(
        reg.poll_retransmit(now + ms(100)),
        Some(PathEvent::Retransmit {
            path: P1,
            challenge: c.clone()
        })
    );
    assert_eq!(reg.poll_retransmit(now + ms(100)), None);
    // Then 200 ms later, then 400 ms later the path fails.
    assert_eq!(reg.next_timeout(), Some(now + ms(300)));
    assert_eq!(reg.poll_retransmit(now + ms(299)), None);
    assert!(matches!(
        reg.poll_retransmit(now + ms(300)),
        Some(PathEvent::Retransmit { path: P1, .. })
    ));
    assert_eq!(reg.next_timeout(), Some(now + ms(700)));
    assert_eq!(reg.poll_retransmit(now + ms(699)), None);
    assert_eq!(reg.state(P1), Some(PathState::Validating));
    assert_eq!(
        reg.poll_retransmit(now + ms(700)),
        Some(PathEvent::Failed {
            path: P1,
            reason: FailReason::RetriesExhausted
        })
    );
    assert_eq!(
        reg.state(P1),
        Some(PathState::Failed(FailReason::RetriesExhausted))
    );
    // Reported once only.
    assert_eq!(reg.poll_retransmit(now + ms(700)), None);
    assert_eq!(reg.sweep(now + ms(700)), None);
    assert_eq!(reg.next_timeout(), None);
}

#[test]
fn response_to_a_retransmitted_challenge_validates() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    let c = reg.issue_challenge(P1, now, &mut rng(5)).unwrap();
    let Some(PathEvent::Retransmit { challenge, .. }) = reg.poll_retransmit(now + ms(100)) else {
        panic!("expected a retransmission");
    };
    assert_eq!(challenge, c);
    assert_eq!(reg.verify_response(P1, now + ms(250), c.as_bytes()), Ok(()));
    assert_eq!(reg.state(P1), Some(PathState::Validated));
}

#[test]
fn late_response_after_failure_is_refused() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    let c = reg.issue_challenge(P1, now, &mut rng(6)).unwrap();
    assert!(reg.poll_retransmit(now + ms(100)).is_some());
    assert!(reg.poll_retransmit(now + ms(300)).is_some());
    assert!(matches!(
        reg.poll_retransmit(now + ms(700)),
        Some(PathEvent::Failed { .. })
    ));
    assert_eq!(
        reg.verify_response(P1, now + ms(701), c.as_bytes()),
        Err(Error::PathFailed(P1))
    );
    assert!(!reg.is_validated(P1));
}

#[test]
fn late_response_is_refused_even_without_polling() {
    // The final deadline passed but nobody polled: the outcome is the same (I9).
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    let c = reg.issue_challenge(P1, now, &mut rng(7)).unwrap();
    assert!(reg.poll_retransmit(now + ms(100)).is_some());
    assert!(reg.poll_retransmit(now + ms(300)).is_some());
    assert_eq!(
        reg.verify_response(P1, now + ms(700), c.as_bytes()),
        Err(Error::PathFailed(P1))
    );
    // The failure is still reported, once.
    assert_eq!(
        reg.sweep(now + ms(700)),
        Some(PathEvent::Failed {
            path: P1,
            reason: FailReason::RetriesExhausted
        })
    );
    assert_eq!(reg.sweep(now + ms(700)), None);
    assert_eq!(reg.poll_retransmit(now + ms(700)), None);
}

#[test]
fn idle_paths_fail_on_sweep() {
    let now = t0();
    let mut reg = PathRegistry::new(PathConfig {
        max_retransmits: 16,
        challenge_timeout: Duration::from_secs(60),
        ..config()
    })
    .unwrap();
    reg.insert_validated(PathId(0), addr(1), now).unwrap();
    reg.insert(P1, addr(2), now).unwrap();
    reg.insert(PathId(2), addr(3), now).unwrap();
    reg.insert(PathId(3), addr(4), now).unwrap();
    let _ = reg.issue_challenge(PathId(2), now, &mut rng(8)).unwrap();
    // Path 3 stays alive.
    reg.mark_seen(PathId(3), now + ms(9_000)).unwrap();
    assert_eq!(reg.sweep(now + ms(9_999)), None);
    let t = now + Duration::from_secs(10);
    let mut failed = Vec::new();
    while let Some(ev) = reg.sweep(t) {
        failed.push(ev);
    }
    let idle = |p| PathEvent::Failed {
        path: p,
        reason: FailReason::IdleTimeout,
    };
    assert_eq!(failed, vec![idle(PathId(0)), idle(P1), idle(PathId(2))]);
    for p in [PathId(0), P1, PathId(2)] {
        assert_eq!(
            reg.state(p),
            Some(PathState::Failed(FailReason::IdleTimeout))
        );
    }
    assert_eq!(reg.state(PathId(3)), Some(PathState::Unvalidated));
    assert_eq!(reg.next_timeout(), Some(now + ms(19_000)));
    assert_eq!(reg.validated_paths().count(), 0);
}

#[test]
fn failed_path_accepts_nothing() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    reg.on_received(P1, 1000).unwrap();
    let later = now + Duration::from_secs(10);
    assert!(reg.sweep(later).is_some());
    assert_eq!(reg.mark_seen(P1, later), Err(Error::PathFailed(P1)));
    assert_eq!(
        reg.issue_challenge(P1, later, &mut rng(9)).map(|_| ()),
        Err(Error::PathFailed(P1))
    );
    assert_eq!(reg.on_received(P1, 1), Err(Error::PathFailed(P1)));
    assert!(!reg.can_send(P1, 1));
    assert!(!reg.can_send(P1, 0));
    assert_eq!(reg.send_budget(P1), Some(SendBudget::Limited(0)));
    assert_eq!(reg.on_sent(P1, 1), Err(Error::PathFailed(P1)));
    assert_eq!(
        reg.verify_response(P1, later, &[0; CHALLENGE_LEN]),
        Err(Error::PathFailed(P1))
    );
    // To probe the address again, remove and register anew.
    assert!(reg.remove(P1));
    reg.insert(P1, addr(1), later).unwrap();
    assert_eq!(reg.state(P1), Some(PathState::Unvalidated));
    assert_eq!(reg.info(P1).unwrap().bytes_received, 0);
}

#[test]
fn mark_seen_on_time_keeps_a_path_alive_and_late_does_not_revive() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    for s in 1..=5 {
        reg.mark_seen(P1, now + Duration::from_secs(9 * s)).unwrap();
    }
    // Time going backwards is ignored.
    reg.mark_seen(P1, now).unwrap();
    assert_eq!(
        reg.info(P1).unwrap().last_seen,
        now + Duration::from_secs(45)
    );
    assert_eq!(reg.sweep(now + Duration::from_secs(54)), None);
    // Seen again only after the idle timeout: too late.
    assert_eq!(
        reg.mark_seen(P1, now + Duration::from_secs(55)),
        Err(Error::PathFailed(P1))
    );
}

#[test]
fn i7_on_authenticated_is_on_received_then_mark_seen() {
    // The same script through the two calls and through the combined one: every
    // result, budget, state and last-seen time agrees, across idle expiry (bytes of
    // the packet that finds the path expired still count) and a failed path.
    let now = t0();
    let (mut a, mut b) = (registry(), registry());
    for r in [&mut a, &mut b] {
        r.insert(P1, addr(1), now).unwrap();
    }
    let steps = [(0u64, 100u64), (9, 50), (5, 10), (18, 7), (19, 3), (40, 1)];
    for (secs, bytes) in steps {
        let at = now + Duration::from_secs(secs);
        let two = a.on_received(P1, bytes).and_then(|()| a.mark_seen(P1, at));
        let one = b.on_authenticated(P1, bytes, at);
        assert_eq!(one, two, "at {secs} s");
        assert_eq!(b.send_budget(P1), a.send_budget(P1), "at {secs} s");
        assert_eq!(b.state(P1), a.state(P1), "at {secs} s");
        assert_eq!(b.info(P1), a.info(P1), "at {secs} s");
    }
    assert!(matches!(b.state(P1), Some(PathState::Failed(_))));
    assert_eq!(
        b.on_authenticated(PathId(9), 1, now),
        Err(Error::UnknownPath(PathId(9)))
    );
    // A validated path, with bursts at one instant (the shortcut), time going
    // backwards, and silence past the idle timeout.
    let p2 = PathId(2);
    for r in [&mut a, &mut b] {
        r.insert_validated(p2, addr(2), now).unwrap();
    }
    let steps = [0u64, 0, 0, 4, 4, 2, 13, 13, 23, 23, 34, 34];
    for (k, secs) in steps.into_iter().enumerate() {
        let at = now + Duration::from_secs(secs);
        let bytes = 100 + k as u64;
        let two = a.on_received(p2, bytes).and_then(|()| a.mark_seen(p2, at));
        let one = b.on_authenticated(p2, bytes, at);
        assert_eq!(one, two, "validated, step {k}");
        assert_eq!(b.state(p2), a.state(p2), "validated, step {k}");
        assert_eq!(b.info(p2), a.info(p2), "validated, step {k}");
    }
    assert!(matches!(b.state(p2), Some(PathState::Failed(_))));
}

#[test]
fn registry_is_bounded_and_evicts_failed_paths() {
    let now = t0();
    let mut reg = PathRegistry::new(PathConfig {
        max_paths: 2,
        ..config()
    })
    .unwrap();
    reg.insert(PathId(0), addr(1), now).unwrap();
    reg.insert(PathId(1), addr(2), now + ms(5_000)).unwrap();
    assert_eq!(
        reg.insert(PathId(2), addr(3), now),
        Err(Error::TooManyPaths { max: 2 })
    );
    assert_eq!(
        reg.insert_validated(PathId(2), addr(3), now),
        Err(Error::TooManyPaths { max: 2 })
    );
    assert_eq!(reg.len(), 2);
    // Path 0 goes silent and fails; its slot is reused.
    let later = now + Duration::from_secs(10);
    assert!(reg.sweep(later).is_some());
    reg.insert(PathId(2), addr(3), later).unwrap();
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.state(PathId(0)), None);
    assert_eq!(reg.state(PathId(1)), Some(PathState::Unvalidated));
    assert_eq!(reg.state(PathId(2)), Some(PathState::Unvalidated));
}

#[test]
fn misuse_errors() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    assert_eq!(reg.insert(P1, addr(9), now), Err(Error::PathExists(P1)));
    assert_eq!(reg.remote(P1), Some(addr(1)));
    let unknown = PathId(200);
    assert_eq!(
        reg.mark_seen(unknown, now),
        Err(Error::UnknownPath(unknown))
    );
    assert_eq!(
        reg.on_received(unknown, 1),
        Err(Error::UnknownPath(unknown))
    );
    assert_eq!(reg.on_sent(unknown, 1), Err(Error::UnknownPath(unknown)));
    assert!(!reg.can_send(unknown, 0));
    assert_eq!(reg.send_budget(unknown), None);
    assert_eq!(
        reg.verify_response(unknown, now, &[0; CHALLENGE_LEN]),
        Err(Error::UnknownPath(unknown))
    );
    assert!(reg.issue_challenge(unknown, now, &mut rng(1)).is_err());
    assert!(!reg.remove(unknown));
    assert_eq!(reg.state(unknown), None);
    // A response with no challenge outstanding.
    assert_eq!(
        reg.verify_response(P1, now, &[0; CHALLENGE_LEN]),
        Err(Error::NotValidating(P1))
    );
    // Validated paths need no challenge.
    reg.insert_validated(PathId(0), addr(2), now).unwrap();
    assert_eq!(
        reg.issue_challenge(PathId(0), now, &mut rng(1)).map(|_| ()),
        Err(Error::AlreadyValidated(PathId(0)))
    );
    assert_eq!(
        reg.verify_response(PathId(0), now, &[0; CHALLENGE_LEN]),
        Err(Error::AlreadyValidated(PathId(0)))
    );
}

#[test]
fn reissued_challenge_replaces_the_old_one() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    let mut r = rng(10);
    let old = reg.issue_challenge(P1, now, &mut r).unwrap();
    assert!(reg.poll_retransmit(now + ms(100)).is_some());
    let new = reg.issue_challenge(P1, now + ms(150), &mut r).unwrap();
    assert_ne!(old, new);
    // The retry budget restarted with the new challenge.
    assert_eq!(reg.next_timeout(), Some(now + ms(250)));
    assert_eq!(
        reg.verify_response(P1, now + ms(160), old.as_bytes()),
        Err(Error::WrongResponse)
    );
    assert_eq!(
        reg.verify_response(P1, now + ms(170), new.as_bytes()),
        Ok(())
    );
}

#[test]
fn i9_same_seed_same_challenges() {
    let run = |seed: u64| {
        let now = t0();
        let mut reg = registry();
        let mut r = rng(seed);
        let mut out = Vec::new();
        for id in 0..4 {
            reg.insert(PathId(id), addr(1), now).unwrap();
            out.push(
                *reg.issue_challenge(PathId(id), now, &mut r)
                    .unwrap()
                    .as_bytes(),
            );
        }
        out
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a, run(43));
    // Four distinct challenges, none trivially zero.
    for (i, c) in a.iter().enumerate() {
        assert_ne!(c, &[0u8; CHALLENGE_LEN]);
        assert!(a.iter().skip(i + 1).all(|d| d != c));
    }
}

#[test]
fn i9_event_sequence_is_independent_of_poll_frequency() {
    // One registry polled every millisecond, one polled only at the end: the same
    // final states (expiry is applied lazily, at the time handed in).
    let now = t0();
    let build = || {
        let mut reg = registry();
        reg.insert(P1, addr(1), now).unwrap();
        reg.insert(PathId(2), addr(2), now).unwrap();
        let _ = reg.issue_challenge(P1, now, &mut rng(11)).unwrap();
        reg
    };
    let mut often = build();
    let mut rarely = build();
    let end = now + Duration::from_secs(11);
    let mut t = now;
    while t < end {
        while often.poll_retransmit(t).is_some() {}
        while often.sweep(t).is_some() {}
        t += ms(1);
    }
    while often.poll_retransmit(end).is_some() {}
    while often.sweep(end).is_some() {}
    while rarely.sweep(end).is_some() {}
    while rarely.poll_retransmit(end).is_some() {}
    for p in [P1, PathId(2)] {
        assert!(matches!(often.state(p), Some(PathState::Failed(_))));
    }
    assert_eq!(
        often.state(PathId(2)),
        Some(PathState::Failed(FailReason::IdleTimeout))
    );
    assert_eq!(
        often.state(PathId(2)),
        rarely.state(PathId(2)),
        "idle expiry depends on polling"
    );
    assert_eq!(
        often.state(P1),
        Some(PathState::Failed(FailReason::RetriesExhausted))
    );
}

#[test]
fn i8_challenge_debug_is_redacted() {
    let now = t0();
    let mut reg = registry();
    reg.insert(P1, addr(1), now).unwrap();
    let c = reg.issue_challenge(P1, now, &mut rng(12)).unwrap();
    let hex: String = c.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    for text in [
        format!("{c:?}"),
        format!("{reg:?}"),
        format!(
            "{:?}",
            PathEvent::Retransmit {
                path: P1,
                challenge: c.clone()
            }
        ),
    ] {
        assert!(!text.contains(&hex[..8]), "{text}");
        assert!(
            !text.contains(&format!("{:?}", c.as_bytes())[1..12]),
            "{text}"
        );
    }
    assert_eq!(format!("{c:?}"), "Challenge(<redacted>)");
    assert!(c.matches(c.as_bytes()));
    assert!(!c.matches(&flipped(&c)));
    assert_eq!(Challenge::from_bytes(*c.as_bytes()), c);
}

#[test]
fn errors_display_without_secrets() {
    let e = Error::AmplificationLimit {
        path: P1,
        available: 7,
    };
    assert_eq!(
        e.to_string(),
        "anti-amplification limit on path PathId(1): 7 bytes available"
    );
    assert_eq!(
        Error::WrongResponse.to_string(),
        "path validation response does not match"
    );
}
