//! The lossy-link scenarios at many seeds: each runs once per seed of the sweep
//! (release, `--ignored`, run by `cargo xtask ci` with a time bound), and a failure
//! names the scenario and its seeds, so a seed-dependent defect is found and can be
//! replayed alone (`PHANTOM_SWEEP_FIRST=<seed> PHANTOM_SWEEP_SEEDS=1`).

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::session_tests::{
    every_controller_over_a_lossy_link, one_stream_over_a_lossy_link,
    sixteen_streams_over_a_lossy_link, small_windows_over_a_lossy_link,
    unique_headers_over_a_lossy_link,
};

/// A scenario's name and its body at one seed.
type Scenario = (&'static str, fn(u64));

/// Seeds per scenario (override with `PHANTOM_SWEEP_SEEDS`).
const SWEEP_SEEDS: u64 = 32;

/// `PHANTOM_SWEEP_SEEDS` seeds (default [`SWEEP_SEEDS`]) from `PHANTOM_SWEEP_FIRST`
/// (default 1000, away from the tests' fixed seeds).
fn sweep_seeds() -> Range<u64> {
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let first = var("PHANTOM_SWEEP_FIRST", 1000);
    first..first + var("PHANTOM_SWEEP_SEEDS", SWEEP_SEEDS)
}

/// The seeds of `seeds` at which `scenario` panicked (the panic hook prints its
/// message after the seed's line).
fn failing_seeds(name: &str, seeds: Range<u64>, scenario: fn(u64)) -> Vec<u64> {
    let mut failed = Vec::new();
    for seed in seeds {
        eprintln!("[sweep] {name} seed {seed}");
        if catch_unwind(AssertUnwindSafe(|| scenario(seed))).is_err() {
            failed.push(seed);
        }
    }
    failed
}

#[test]
#[ignore = "seed sweep: run in release with --ignored seed_sweep"]
fn seed_sweep_lossy_link_scenarios() {
    let scenarios: [Scenario; 5] = [
        ("one_stream_over_a_lossy_link", one_stream_over_a_lossy_link),
        (
            "sixteen_streams_over_a_lossy_link",
            sixteen_streams_over_a_lossy_link,
        ),
        (
            "small_windows_over_a_lossy_link",
            small_windows_over_a_lossy_link,
        ),
        (
            "unique_headers_over_a_lossy_link",
            unique_headers_over_a_lossy_link,
        ),
        (
            "every_controller_over_a_lossy_link",
            every_controller_over_a_lossy_link,
        ),
    ];
    let mut report = Vec::new();
    let mut runs = 0;
    for (name, scenario) in scenarios {
        let seeds = sweep_seeds();
        runs += seeds.end - seeds.start;
        let failed = failing_seeds(name, seeds, scenario);
        if !failed.is_empty() {
            report.push(format!("{name}: seeds {failed:?}"));
        }
    }
    eprintln!(
        "[sweep] {runs} scenario runs, {} scenarios failed",
        report.len()
    );
    assert!(report.is_empty(), "failing seeds:\n{}", report.join("\n"));
}
