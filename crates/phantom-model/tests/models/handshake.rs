//! I1, I10, I12 and server authentication: the real handshake under a network attacker.

use std::sync::OnceLock;

use phantom_model::handshake::{
    AGREEMENT, BOTH_COMPLETE, COMPLETES, EARLY_DATA_DELIVERED, EARLY_DATA_ONCE, HandshakeModel,
    HandshakeMutation, NO_DOWNGRADE, PINNED_SERVER_ONLY, REFUSED_BY_MISMATCH, RETRY_FOLLOWED,
};
use phantom_model::{Outcome, run};

use super::base;

/// Attacker steps in the safety configurations.
const ATTACKER_STEPS: u8 = 2;
/// Depth in actions: three honest deliveries (ClientHello, server flight,
/// ClientFinished) plus the attacker's steps.
const DEPTH: usize = 3 + ATTACKER_STEPS as usize;
/// Liveness: flights the network may lose.
const DROPS: u8 = 2;
const LOSSY_DEPTH: usize = 24;

fn attacked() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| {
        run(
            "handshake (attacker)",
            HandshakeModel::attacked(ATTACKER_STEPS, base()),
            DEPTH,
            &[],
        )
    })
}

fn early() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| {
        run(
            "handshake (0-RTT, attacker)",
            HandshakeModel::early(ATTACKER_STEPS, base()),
            DEPTH,
            &[],
        )
    })
}

/// Full mode: four honest deliveries (ClientHello, ServerHello, ClientFinished,
/// ServerFinished) plus the attacker's steps.
const FULL_DEPTH: usize = 4 + ATTACKER_STEPS as usize;

fn full() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| {
        run(
            "handshake (full mode, attacker)",
            HandshakeModel::full(ATTACKER_STEPS, base()),
            FULL_DEPTH,
            &[],
        )
    })
}

fn lossy() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| {
        run(
            "handshake (lossy network)",
            HandshakeModel::lossy(DROPS, base()),
            LOSSY_DEPTH,
            &[],
        )
    })
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn handshake_client_completes_only_with_the_pinned_server() {
    for o in [attacked(), early(), full()] {
        assert!(o.discovery(BOTH_COMPLETE).is_some(), "{}", o.line());
        assert_eq!(o.discovery(PINNED_SERVER_ONLY), None);
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn handshake_both_ends_agree_on_suite_version_and_session_id() {
    for o in [attacked(), early(), full()] {
        assert_eq!(o.discovery(AGREEMENT), None);
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn handshake_retry_or_mismatch_never_downgrades() {
    let o = attacked();
    assert!(
        o.discovery(REFUSED_BY_MISMATCH).is_some(),
        "a forged Mismatch is explored"
    );
    assert!(
        o.discovery(RETRY_FOLLOWED).is_some(),
        "a forged Retry is explored"
    );
    assert_eq!(o.discovery(NO_DOWNGRADE), None);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i10_early_data_is_delivered_at_most_once_per_ticket() {
    let o = early();
    assert!(o.discovery(EARLY_DATA_DELIVERED).is_some());
    assert_eq!(o.discovery(EARLY_DATA_ONCE), None);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i12_handshake_completes_over_a_lossy_network() {
    let o = lossy();
    assert!(o.discovery(BOTH_COMPLETE).is_some());
    assert_eq!(o.discovery(COMPLETES), None);
}

fn mutated(
    base: HandshakeModel,
    m: HandshakeMutation,
    depth: usize,
    property: &'static str,
) -> Outcome {
    run(
        &format!("handshake, mutation {m:?}"),
        base.with(m),
        depth,
        &[property],
    )
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn handshake_mutation_client_accepts_unpinned_key_is_caught() {
    let o = mutated(
        HandshakeModel::attacked(ATTACKER_STEPS, base()),
        HandshakeMutation::UnpinnedKey,
        DEPTH,
        PINNED_SERVER_ONLY,
    );
    assert!(o.discovery(PINNED_SERVER_ONLY).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn handshake_mutation_fallback_after_mismatch_is_caught() {
    let o = mutated(
        HandshakeModel::attacked(ATTACKER_STEPS, base()),
        HandshakeMutation::FallbackOnMismatch,
        DEPTH,
        NO_DOWNGRADE,
    );
    assert!(o.discovery(NO_DOWNGRADE).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn handshake_mutation_client_assumes_its_preferred_suite_is_caught() {
    let o = mutated(
        HandshakeModel::attacked(0, base()),
        HandshakeMutation::ClientAssumesPreferredSuite,
        3,
        AGREEMENT,
    );
    assert!(o.discovery(AGREEMENT).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i10_mutation_restart_forgets_anti_replay_is_caught() {
    let o = mutated(
        HandshakeModel::early(ATTACKER_STEPS, base()),
        HandshakeMutation::RestartForgetsAntiReplay,
        DEPTH,
        EARLY_DATA_ONCE,
    );
    assert!(o.discovery(EARLY_DATA_ONCE).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i12_mutation_no_retransmission_is_caught() {
    let o = mutated(
        HandshakeModel::lossy(1, base()),
        HandshakeMutation::NoRetransmission,
        LOSSY_DEPTH,
        COMPLETES,
    );
    assert!(o.discovery(COMPLETES).is_some());
}
