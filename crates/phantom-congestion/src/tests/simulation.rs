//! Simulations on the virtual bottleneck link (`crate::sim`).
//!
//! Each controller is driven for a simulated minute (about 610k packets per BBR
//! run; the whole file takes well under a second of CPU in the dev profile).
//! The table for docs/PERFORMANCE.md is
//! `cargo run -p phantom-congestion --features sim --example sim --release`
//! or `cargo test -p phantom-congestion --release -- --ignored sim_table --nocapture`.
//!
//! Each scenario is a function of the seed of the link's loss process; the tests
//! run it at one seed, and `seed_sweep_simulation_scenarios` (release, `--ignored`,
//! run by `cargo xtask ci`) runs every scenario at [`SWEEP_SEEDS`] seeds and names
//! the seeds that fail.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::Duration;

use super::epoch;
use crate::sim::{self, SimConfig, SimReport};
use crate::{Algorithm, BbrMode, Phase};

const SECS: u64 = 60;

fn run(cfg: &SimConfig) -> SimReport {
    let r = sim::run(cfg, epoch()).unwrap();
    assert!(!r.truncated, "simulation hit its step bound");
    r
}

/// Seeds per scenario in the sweep (override with `PHANTOM_SWEEP_SEEDS`).
const SWEEP_SEEDS: u64 = 32;

/// BBR on the clean link, with a deep (8 BDP) queue so that the queue bound
/// is a real property, not the buffer size.
fn bbr_clean_at(seed: u64) -> SimReport {
    run(&SimConfig::standard(
        Algorithm::Bbr,
        0.0,
        8.0,
        Duration::from_secs(SECS),
        seed,
    ))
}

fn bbr_clean() -> &'static SimReport {
    static R: OnceLock<SimReport> = OnceLock::new();
    R.get_or_init(|| bbr_clean_at(1))
}

fn newreno_lossy_at(seed: u64) -> SimReport {
    run(&SimConfig::standard(
        Algorithm::NewReno,
        0.01,
        2.0,
        Duration::from_secs(SECS),
        seed,
    ))
}

fn newreno_lossy() -> &'static SimReport {
    static R: OnceLock<SimReport> = OnceLock::new();
    R.get_or_init(|| newreno_lossy_at(1))
}

#[test]
fn bbr_clean_link_reaches_90_percent_with_standing_queue_under_2_bdp() {
    assert_bbr_clean_link(bbr_clean());
}

fn assert_bbr_clean_link(r: &SimReport) {
    assert!(r.utilisation >= 0.90, "utilisation {:.3}", r.utilisation);
    assert!(
        r.max_queue_bytes < 2 * r.bdp_bytes,
        "max queue {} B, BDP {} B",
        r.max_queue_bytes,
        r.bdp_bytes
    );
    // Standing (mean) queue well under one BDP (40 ms).
    assert!(
        r.mean_queue_delay < Duration::from_millis(10),
        "mean queue {:?}",
        r.mean_queue_delay
    );
    assert_eq!(r.queue_drops, 0);
    let s = r.final_snapshot;
    let bw = s.bandwidth.unwrap();
    assert!(
        (11_000_000..=13_500_000).contains(&bw),
        "bandwidth estimate {bw}"
    );
    let min_rtt = s.min_rtt.unwrap();
    assert!(
        min_rtt >= Duration::from_millis(40) && min_rtt < Duration::from_millis(42),
        "{min_rtt:?}"
    );
    assert!(matches!(
        s.phase,
        Phase::Bbr(BbrMode::ProbeBw | BbrMode::ProbeRtt)
    ));
}

#[test]
fn bbr_probe_rtt_happens_about_every_10_seconds_for_about_200_ms() {
    assert_probe_rtt_cadence(bbr_clean());
}

fn assert_probe_rtt_cadence(r: &SimReport) {
    assert!(r.probe_rtt_starts.len() >= 2, "{:?}", r.probe_rtt_starts);
    let first = r.probe_rtt_starts[0];
    assert!(
        first >= Duration::from_secs(10) && first <= Duration::from_millis(11_500),
        "{first:?}"
    );
    for w in r.probe_rtt_starts.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_secs(10) && gap <= Duration::from_millis(11_500),
            "gap {gap:?}"
        );
    }
    for d in &r.probe_rtt_durations {
        assert!(
            *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400),
            "ProbeRTT lasted {d:?}"
        );
    }
}

#[test]
fn bbr_keeps_75_percent_at_1_percent_loss_while_newreno_collapses() {
    bbr_against_newreno_at_1_percent_loss(1, newreno_lossy());
}

fn bbr_against_newreno_at_1_percent_loss(seed: u64, reno: &SimReport) {
    let bbr = run(&SimConfig::standard(
        Algorithm::Bbr,
        0.01,
        2.0,
        Duration::from_secs(SECS),
        seed,
    ));
    assert!(bbr.random_drops > 1000);
    assert!(
        bbr.utilisation >= 0.75,
        "bbr utilisation {:.3}",
        bbr.utilisation
    );
    assert!(reno.random_drops > 0);
    assert!(
        reno.utilisation < 0.25,
        "newreno utilisation {:.3}",
        reno.utilisation
    );
    assert!(bbr.utilisation > 3.0 * reno.utilisation);
}

#[test]
fn loss_based_controllers_never_grow_the_window_in_recovery_on_a_lossy_link() {
    loss_based_controllers_in_recovery(3, newreno_lossy(), 10);
}

/// `seed` drives the CUBIC runs (`cubic_secs` simulated seconds each); `reno` is
/// the lossy NewReno run.
fn loss_based_controllers_in_recovery(seed: u64, reno: &SimReport, cubic_secs: u64) {
    assert!(reno.declared_lost > 50);
    assert_eq!(reno.recovery_growth_violations, 0);
    let cubic = run(&SimConfig::standard(
        Algorithm::Cubic,
        0.005,
        2.0,
        Duration::from_secs(cubic_secs),
        seed,
    ));
    assert!(cubic.declared_lost > 20);
    assert_eq!(cubic.recovery_growth_violations, 0);
    // CUBIC fills the clean link (a 2-BDP buffer keeps it busy through a 0.7 cut).
    let clean = run(&SimConfig::standard(
        Algorithm::Cubic,
        0.0,
        2.0,
        Duration::from_secs(cubic_secs),
        seed,
    ));
    assert!(clean.utilisation > 0.85, "{:.3}", clean.utilisation);
}

#[test]
fn pacer_never_lets_a_burst_exceed_its_bucket_in_simulation() {
    assert_pacer_within_bucket(bbr_clean());
}

fn assert_pacer_within_bucket(r: &SimReport) {
    assert!(
        r.max_pacer_excess <= 0,
        "pacer released {} bytes beyond burst + 1 ms of rate",
        r.max_pacer_excess
    );
}

#[test]
fn i9_simulation_is_deterministic_for_a_seed() {
    let cfg = SimConfig::standard(Algorithm::Bbr, 0.01, 2.0, Duration::from_secs(3), 42);
    let a = sim::run(&cfg, epoch()).unwrap();
    let b = sim::run(&cfg, epoch() + Duration::from_secs(1234)).unwrap();
    assert_eq!(a, b);
    let other = sim::run(&SimConfig { seed: 43, ..cfg }, epoch()).unwrap();
    assert_ne!(a.random_drops, other.random_drops);
}

/// The full table for docs/PERFORMANCE.md. Slow in the dev profile; run with
/// `cargo test -p phantom-congestion --release -- --ignored sim_table --nocapture`.
#[test]
#[ignore = "long: prints the one-minute simulation table"]
fn sim_table() {
    let table = sim::table(Duration::from_secs(60), 1, epoch()).unwrap();
    println!("{table}");
    assert_eq!(table.lines().count(), 2 + 12);
}

/// Runs `scenario` at every seed of `seeds`; returns the seeds at which it panicked
/// (its assertion message is printed by the panic hook, with the seed before it).
fn failing_seeds(name: &str, seeds: impl Iterator<Item = u64>, scenario: impl Fn(u64)) -> Vec<u64> {
    let mut failed = Vec::new();
    for seed in seeds {
        eprintln!("[sweep] {name} seed {seed}");
        if catch_unwind(AssertUnwindSafe(|| scenario(seed))).is_err() {
            failed.push(seed);
        }
    }
    failed
}

/// The seeds a sweep runs: `PHANTOM_SWEEP_SEEDS` of them (default [`SWEEP_SEEDS`]),
/// from `PHANTOM_SWEEP_FIRST` (default 1000, away from the fixed seeds above).
fn sweep_seeds() -> std::ops::Range<u64> {
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let first = var("PHANTOM_SWEEP_FIRST", 1000);
    first..first + var("PHANTOM_SWEEP_SEEDS", SWEEP_SEEDS)
}

/// Every scenario above at 32 seeds (release; `cargo xtask ci` runs it with a time
/// bound). Fails listing each scenario's failing seeds.
#[test]
#[ignore = "seed sweep: run in release with --ignored seed_sweep"]
fn seed_sweep_simulation_scenarios() {
    let mut report = Vec::new();
    let mut runs = 0;
    let mut check = |name: &str, scenario: &dyn Fn(u64)| {
        let seeds = sweep_seeds();
        runs += seeds.end - seeds.start;
        let failed = failing_seeds(name, seeds, scenario);
        if !failed.is_empty() {
            report.push(format!("{name}: seeds {failed:?}"));
        }
    };
    check("bbr_clean_link", &|seed| {
        let r = bbr_clean_at(seed);
        assert_bbr_clean_link(&r);
        assert_probe_rtt_cadence(&r);
        assert_pacer_within_bucket(&r);
    });
    check("bbr_against_newreno_at_1_percent_loss", &|seed| {
        bbr_against_newreno_at_1_percent_loss(seed, &newreno_lossy_at(seed));
    });
    check("loss_based_controllers_in_recovery", &|seed| {
        // 20 s of CUBIC rather than 10: at 0.5% loss 10 s hold 20 to 40 losses
        // (20 at seed 1008, one short of the `> 20` the scenario needs to mean
        // anything); 20 s double the sample without changing the property.
        loss_based_controllers_in_recovery(seed, &newreno_lossy_at(seed), 20);
    });
    eprintln!(
        "[sweep] {runs} scenario runs, {} scenarios failed",
        report.len()
    );
    assert!(report.is_empty(), "failing seeds:\n{}", report.join("\n"));
}
