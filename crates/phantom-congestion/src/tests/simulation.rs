//! Simulations on the virtual bottleneck link (`crate::sim`).
//!
//! Each controller is driven for a simulated minute (about 610k packets per BBR
//! run; the whole file takes well under a second of CPU in the dev profile).
//! The table for docs/PERFORMANCE.md is
//! `cargo run -p phantom-congestion --features sim --example sim --release`
//! or `cargo test -p phantom-congestion --release -- --ignored sim_table --nocapture`.

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

/// BBR on the clean link, with a deep (8 BDP) queue so that the queue bound
/// is a real property, not the buffer size.
fn bbr_clean() -> &'static SimReport {
    static R: OnceLock<SimReport> = OnceLock::new();
    R.get_or_init(|| {
        run(&SimConfig::standard(
            Algorithm::Bbr,
            0.0,
            8.0,
            Duration::from_secs(SECS),
            1,
        ))
    })
}

fn newreno_lossy() -> &'static SimReport {
    static R: OnceLock<SimReport> = OnceLock::new();
    R.get_or_init(|| {
        run(&SimConfig::standard(
            Algorithm::NewReno,
            0.01,
            2.0,
            Duration::from_secs(SECS),
            1,
        ))
    })
}

#[test]
fn bbr_clean_link_reaches_90_percent_with_standing_queue_under_2_bdp() {
    let r = bbr_clean();
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
    let r = bbr_clean();
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
    let bbr = run(&SimConfig::standard(
        Algorithm::Bbr,
        0.01,
        2.0,
        Duration::from_secs(SECS),
        1,
    ));
    assert!(bbr.random_drops > 1000);
    assert!(
        bbr.utilisation >= 0.75,
        "bbr utilisation {:.3}",
        bbr.utilisation
    );
    let reno = newreno_lossy();
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
    let reno = newreno_lossy();
    assert!(reno.declared_lost > 50);
    assert_eq!(reno.recovery_growth_violations, 0);
    let cubic = run(&SimConfig::standard(
        Algorithm::Cubic,
        0.005,
        2.0,
        Duration::from_secs(10),
        3,
    ));
    assert!(cubic.declared_lost > 20);
    assert_eq!(cubic.recovery_growth_violations, 0);
    // CUBIC fills the clean link (a 2-BDP buffer keeps it busy through a 0.7 cut).
    let clean = run(&SimConfig::standard(
        Algorithm::Cubic,
        0.0,
        2.0,
        Duration::from_secs(10),
        3,
    ));
    assert!(clean.utilisation > 0.85, "{:.3}", clean.utilisation);
}

#[test]
fn pacer_never_lets_a_burst_exceed_its_bucket_in_simulation() {
    let r = bbr_clean();
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
