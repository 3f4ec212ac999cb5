//! I7: path validation and anti-amplification over the real `PathRegistry`.

use std::sync::OnceLock;

use phantom_model::path::{
    AMPLIFICATION, DATA_ONLY_VALIDATED, MIGRATED, NO_SPOOFED_MIGRATION, PathModel, PathMutation,
    SECOND_PATH_VALIDATED, VICTIM_CHALLENGED,
};
use phantom_model::{Outcome, run};

use super::base;

/// Depth in actions: a migration with validation and data (migrate, send, deliver,
/// challenge, deliver the response, send data) plus a second path and the attacker.
const DEPTH: usize = 10;

fn checked() -> &'static Outcome {
    static O: OnceLock<Outcome> = OnceLock::new();
    O.get_or_init(|| run("path validation", PathModel::new(base()), DEPTH, &[]))
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i7_application_data_only_on_validated_paths() {
    let o = checked();
    assert!(o.discovery(MIGRATED).is_some(), "{}", o.line());
    assert!(o.discovery(SECOND_PATH_VALIDATED).is_some());
    assert_eq!(o.discovery(DATA_ONLY_VALIDATED), None);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i7_unvalidated_address_gets_at_most_3x() {
    let o = checked();
    assert!(o.discovery(VICTIM_CHALLENGED).is_some());
    assert_eq!(o.discovery(AMPLIFICATION), None);
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i7_spoofed_migration_never_moves_traffic_to_the_victim() {
    assert_eq!(checked().discovery(NO_SPOOFED_MIGRATION), None);
}

fn mutated(m: PathMutation, property: &'static str) -> Outcome {
    run(
        &format!("path validation, mutation {m:?}"),
        PathModel::new(base()).with(m),
        DEPTH,
        &[property],
    )
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i7_mutation_skip_path_validation_is_caught() {
    let o = mutated(PathMutation::SkipValidation, DATA_ONLY_VALIDATED);
    assert!(o.discovery(DATA_ONLY_VALIDATED).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i7_mutation_ignore_amplification_budget_is_caught() {
    let o = mutated(PathMutation::IgnoreAmplification, AMPLIFICATION);
    assert!(o.discovery(AMPLIFICATION).is_some());
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "exhaustive; run in release by `cargo xtask ci`"
)]
fn i7_mutation_migrate_before_validation_is_caught() {
    let o = mutated(PathMutation::MigrateBeforeValidation, NO_SPOOFED_MIGRATION);
    assert!(o.discovery(NO_SPOOFED_MIGRATION).is_some());
}
