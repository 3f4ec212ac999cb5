//! I5: the epoch ratchet, checked exhaustively over the real `Sealer` and `Opener`.

use std::sync::OnceLock;

use phantom_model::epoch::{
    AUTHENTICATED_ADVANCE, CATCH_UP, CAUGHT_UP_ACROSS_WINDOW, NO_RETIRED_EPOCH, NO_WRAP,
    REFUSED_PAST_WINDOW, RatchetModel, RatchetMutation, SATURATED,
};
use phantom_model::{Outcome, run};

/// Depth of the window configuration: 17 rekeys, two sends, a delivery and a few
/// attacker and timer steps.
const WINDOW_DEPTH: usize = 20;
const SATURATION_DEPTH: usize = 10;

fn window() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| {
        run(
            "epoch ratchet (window)",
            RatchetModel::window(),
            WINDOW_DEPTH,
            &[],
        )
    })
}

fn saturation() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| {
        run(
            "epoch ratchet (saturation)",
            RatchetModel::saturation(),
            SATURATION_DEPTH,
            &[],
        )
    })
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_epoch_advances_only_on_authenticated_packets() {
    for o in [window(), saturation()] {
        assert!(o.unique_states > 1_000, "{}", o.line());
        assert_eq!(o.discovery(AUTHENTICATED_ADVANCE), None);
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_retired_epoch_is_never_accepted() {
    for o in [window(), saturation()] {
        assert_eq!(o.discovery(NO_RETIRED_EPOCH), None);
    }
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_receiver_catches_up_within_16_epochs_and_not_beyond() {
    let o = window();
    assert_eq!(o.discovery(CATCH_UP), None);
    // The window's edges are reached: a 16-epoch catch-up and a refused 17-epoch jump.
    assert!(o.discovery(CAUGHT_UP_ACROSS_WINDOW).is_some());
    assert!(o.discovery(REFUSED_PAST_WINDOW).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_no_epoch_wraps_at_saturation() {
    let o = saturation();
    assert!(o.discovery(SATURATED).is_some(), "saturation is reached");
    assert_eq!(o.discovery(NO_WRAP), None);
    assert_eq!(window().discovery(NO_WRAP), None);
}

fn mutated(
    base: RatchetModel,
    m: RatchetMutation,
    depth: usize,
    property: &'static str,
) -> Outcome {
    run(
        &format!("epoch ratchet, mutation {m:?}"),
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
fn i5_mutation_unauthenticated_bump_is_caught() {
    let o = mutated(
        RatchetModel::window(),
        RatchetMutation::UnauthenticatedBump,
        WINDOW_DEPTH,
        AUTHENTICATED_ADVANCE,
    );
    assert!(o.discovery(AUTHENTICATED_ADVANCE).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_mutation_grace_key_never_retired_is_caught() {
    let o = mutated(
        RatchetModel::window(),
        RatchetMutation::GraceNeverRetired,
        WINDOW_DEPTH,
        NO_RETIRED_EPOCH,
    );
    assert!(o.discovery(NO_RETIRED_EPOCH).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_mutation_narrow_catch_up_window_is_caught() {
    let o = mutated(
        RatchetModel::window(),
        RatchetMutation::NarrowCatchUp,
        WINDOW_DEPTH,
        CATCH_UP,
    );
    assert!(o.discovery(CATCH_UP).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i5_mutation_wrapping_rekey_is_caught() {
    let o = mutated(
        RatchetModel::saturation(),
        RatchetMutation::WrappingRekey,
        SATURATION_DEPTH,
        NO_WRAP,
    );
    assert!(o.discovery(NO_WRAP).is_some());
}
