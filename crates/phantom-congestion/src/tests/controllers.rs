//! Controller shape tests (s2n `recovery/simulation.rs` style: a table of
//! rounds with losses at chosen rounds), the trait and factory, the filter.

use std::time::{Duration, Instant};

use super::epoch;
use crate::filter::WindowedMax;
use crate::{
    AckEvent, Algorithm, Bbr, BbrMode, Config, CongestionController, Cubic, Error, INITIAL_RTT,
    NewReno, Phase, RttEstimator,
};

const MSS: u64 = 1200;
const RTT: Duration = Duration::from_millis(50);

/// One simulated round trip: a window's worth of packets is sent at the start
/// of the round and acknowledged (one ACK per packet) at its end, except that
/// `lose` packets of it are declared lost first.
#[derive(Debug, Clone, Copy)]
struct Round {
    lose: u64,
}

#[derive(Debug)]
struct Trace {
    windows: Vec<u64>,
    phases: Vec<Phase>,
    /// Number of ACKs at which the window grew while in recovery before and after.
    grew_in_recovery: u32,
}

/// An ACK of packets sent while the sender was filling its window (not
/// application-limited), with no delivery-rate sample.
fn window_ack(acked: u64, sent_at: Instant, in_flight: u64) -> AckEvent {
    let mut ack = AckEvent::new(acked, sent_at, in_flight);
    ack.rate.is_app_limited = false;
    ack
}

/// Drives a loss-based controller through `rounds`.
fn drive(cc: &mut dyn CongestionController, t0: Instant, rounds: &[Round]) -> Trace {
    let mut rtt = RttEstimator::new(INITIAL_RTT, Duration::ZERO);
    let mut trace = Trace {
        windows: Vec::new(),
        phases: Vec::new(),
        grew_in_recovery: 0,
    };
    let mut now = t0;
    for round in rounds {
        // Each round's packets leave just after the previous round's ACKs.
        now += Duration::from_micros(1);
        let sent_at = now;
        let packets = (cc.window() / MSS).max(1);
        for i in 0..packets {
            cc.on_sent(now, MSS, (i + 1) * MSS);
        }
        now += RTT;
        rtt.update(now, RTT, Duration::ZERO);
        let mut in_flight = packets * MSS;
        if round.lose > 0 {
            in_flight -= round.lose * MSS;
            cc.on_loss(now, sent_at, round.lose * MSS, false);
        }
        for _ in 0..packets.saturating_sub(round.lose) {
            in_flight -= MSS;
            let before = (cc.phase(), cc.window());
            cc.on_ack(now, &window_ack(MSS, sent_at, in_flight), &rtt);
            if before.0 == Phase::Recovery
                && cc.phase() == Phase::Recovery
                && cc.window() > before.1
            {
                trace.grew_in_recovery += 1;
            }
        }
        trace.windows.push(cc.window());
        trace.phases.push(cc.phase());
    }
    trace
}

fn rounds(n: usize, losses: &[(usize, u64)]) -> Vec<Round> {
    (0..n)
        .map(|i| Round {
            lose: losses.iter().find(|(r, _)| *r == i).map_or(0, |(_, l)| *l),
        })
        .collect()
}

#[test]
fn newreno_slow_start_doubles_then_halves_on_loss_and_never_grows_in_recovery() {
    let config = Config {
        max_datagram_size: MSS,
        ..Config::default()
    };
    let mut cc = NewReno::new(&config);
    assert_eq!(cc.window(), 10 * MSS);
    assert_eq!(cc.phase(), Phase::SlowStart);
    let t = drive(&mut cc, epoch(), &rounds(12, &[(4, 1), (9, 2)]));
    // Rounds 0..=3: doubling.
    assert_eq!(t.windows[..4], [20 * MSS, 40 * MSS, 80 * MSS, 160 * MSS]);
    // Round 4: the loss halves 160 -> 80 and the round's ACKs (all sent before
    // recovery began) do not grow it.
    assert_eq!(t.windows[4], 80 * MSS);
    assert_eq!(t.phases[4], Phase::Recovery);
    // Round 5 exits recovery and grows by about one MSS per round thereafter.
    assert_eq!(t.phases[5], Phase::CongestionAvoidance);
    for w in t.windows[5..9].windows(2) {
        assert!(w[1] > w[0] && w[1] - w[0] <= 2 * MSS, "{w:?}");
    }
    // Round 9: two losses in one round are one congestion event: one halving.
    assert_eq!(t.windows[9], t.windows[8] / 2);
    assert_eq!(t.grew_in_recovery, 0);
}

#[test]
fn newreno_persistent_congestion_collapses_to_minimum_window() {
    let config = Config::default();
    let mut cc = NewReno::new(&config);
    let t0 = epoch();
    cc.on_loss(t0 + RTT, t0, MSS, true);
    assert_eq!(cc.window(), config.minimum_window());
    assert_eq!(cc.phase(), Phase::SlowStart);
    // A loss of a packet sent before an earlier recovery does not cut again.
    let mut cc = NewReno::new(&config);
    cc.on_loss(t0 + RTT * 2, t0 + RTT, MSS, false);
    let w = cc.window();
    cc.on_loss(t0 + RTT * 3, t0, MSS, false);
    assert_eq!(cc.window(), w);
}

#[test]
fn cubic_reduces_by_0_7_never_grows_in_recovery_and_regrows_toward_w_max() {
    let config = Config {
        max_datagram_size: MSS,
        ..Config::default()
    };
    let mut cc = Cubic::new(&config);
    let t = drive(&mut cc, epoch(), &rounds(140, &[(4, 1), (130, 1)]));
    assert_eq!(t.windows[3], 160 * MSS);
    // beta_cubic = 0.7.
    assert_eq!(t.windows[4], 112 * MSS);
    assert_eq!(t.phases[4], Phase::Recovery);
    assert_eq!(t.grew_in_recovery, 0);
    // Congestion avoidance regrows toward W_max = 160 MSS along the concave
    // cubic: K = cbrt(48 / 0.4) = 4.9 s, about 99 rounds of 50 ms.
    assert!(t.windows[5] > t.windows[4]);
    let near = t
        .windows
        .iter()
        .skip(5)
        .position(|w| *w >= 155 * MSS)
        .unwrap()
        + 5;
    assert!(
        (40..100).contains(&near),
        "reached 155 MSS at round {near}: {:?}",
        t.windows
    );
    let early = t.windows[15] - t.windows[5];
    let late = t.windows[near + 10] - t.windows[near];
    // ... and then probes beyond it (convex region) before the next event.
    assert!(t.windows[129] > 170 * MSS);
    assert!(early > late, "concave: early {early} late {late}");
    // Second event: again x0.7 of the window at the time.
    assert_eq!(t.windows[130], (t.windows[129] as f64 * 0.7) as u64);
    assert_eq!(t.phases[130], Phase::Recovery);
}

/// RFC 9002 §7.8: while the sender does not fill the window (the application or
/// flow control limits it), the loss-based windows do not grow — neither in slow
/// start nor in congestion avoidance — and grow again once ACKs are of packets
/// sent with the window full.
#[test]
fn loss_based_windows_do_not_grow_while_application_limited() {
    let config = Config::default();
    let t0 = epoch();
    let rtt = RttEstimator::new(RTT, Duration::ZERO);
    for alg in [Algorithm::NewReno, Algorithm::Cubic] {
        for congestion_avoidance in [false, true] {
            let mut cc = alg.build(&config).unwrap();
            if congestion_avoidance {
                cc.on_loss(t0, t0, MSS, false);
                cc.on_ack(t0 + RTT, &window_ack(MSS, t0 + RTT, 0), &rtt);
            }
            let start = cc.window();
            let mut now = t0 + RTT * 2;
            for _ in 0..200 {
                now += Duration::from_millis(1);
                cc.on_ack(now, &AckEvent::new(MSS, now, 0), &rtt);
            }
            assert_eq!(
                cc.window(),
                start,
                "{alg:?} (congestion avoidance: {congestion_avoidance}) grew while app-limited"
            );
            for _ in 0..200 {
                now += Duration::from_millis(1);
                cc.on_ack(now, &window_ack(MSS, now, 0), &rtt);
            }
            assert!(
                cc.window() > start,
                "{alg:?} (congestion avoidance: {congestion_avoidance}) did not grow with a full window"
            );
        }
    }
}

/// RFC 9438 §5.8: a CUBIC sender that spent ten seconds application-limited in
/// congestion avoidance resumes on the curve where it left it: the same full-window
/// ACKs afterwards give the same window as for a sender that never paused.
#[test]
fn cubic_curve_does_not_advance_while_application_limited() {
    let config = Config::default();
    let t0 = epoch();
    let rtt = RttEstimator::new(RTT, Duration::ZERO);
    let start = |cc: &mut Cubic| {
        cc.on_ack(t0, &window_ack(40 * MSS, t0, 0), &rtt);
        cc.on_loss(t0 + RTT, t0, MSS, false);
        cc.on_ack(t0 + RTT * 2, &window_ack(MSS, t0 + RTT * 2, 0), &rtt);
    };
    let (mut paused, mut steady) = (Cubic::new(&config), Cubic::new(&config));
    start(&mut paused);
    start(&mut steady);
    let pause = Duration::from_secs(10);
    let mut now = t0 + RTT * 2;
    for _ in 0..1000 {
        now += pause / 1000;
        paused.on_ack(now, &AckEvent::new(MSS, now, 0), &rtt);
    }
    assert_eq!(paused.window(), steady.window(), "grew while app-limited");
    for i in 1..=300u32 {
        let t = t0 + RTT * 2 + Duration::from_millis(5) * i;
        steady.on_ack(t, &window_ack(MSS, t, 0), &rtt);
        paused.on_ack(t + pause, &window_ack(MSS, t + pause, 0), &rtt);
    }
    let (p, s) = (paused.window() as f64, steady.window() as f64);
    assert!(
        (p - s).abs() <= s * 0.02,
        "after the pause: {p} bytes, without it: {s} bytes"
    );
}

#[test]
fn cubic_fast_convergence_lowers_w_max_when_window_shrank() {
    let config = Config::default();
    let mut cc = Cubic::new(&config);
    let t0 = epoch();
    let rtt = RttEstimator::new(RTT, Duration::ZERO);
    // Grow to 100 packets in slow start, lose: W_max = 100 MSS.
    cc.on_ack(t0, &window_ack(90 * config.max_datagram_size, t0, 0), &rtt);
    cc.on_loss(t0 + RTT, t0, 1200, false);
    assert_eq!(cc.w_max(), 100 * 1200);
    // Lose again right after recovery (window 70 < W_max 100): W_max = 70 * 0.85.
    cc.on_ack(t0 + RTT * 2, &window_ack(1200, t0 + RTT * 2, 0), &rtt);
    let w = cc.window();
    cc.on_loss(t0 + RTT * 3, t0 + RTT * 2, 1200, false);
    assert_eq!(cc.w_max(), (w as f64 * 0.85) as u64);
}

#[test]
fn controllers_are_object_safe_and_built_by_algorithm() {
    let config = Config::default();
    let mut all: Vec<Box<dyn CongestionController>> = Algorithm::ALL
        .iter()
        .map(|a| a.build(&config).unwrap())
        .collect();
    for (cc, alg) in all.iter_mut().zip(Algorithm::ALL) {
        assert_eq!(cc.algorithm(), alg);
        assert_eq!(cc.window(), config.initial_window());
        let copy = cc.clone_box();
        assert_eq!(copy.snapshot(), cc.snapshot());
        assert_eq!(cc.snapshot().algorithm, alg);
        assert!(!alg.to_string().is_empty());
    }
    assert_eq!(all[0].phase(), Phase::Bbr(BbrMode::Startup));
    assert!(all[0].pacing_rate().is_some());
    assert_eq!(all[2].pacing_rate(), None);
}

#[test]
fn config_validation_rejects_out_of_range_values() {
    let ok = Config::default();
    assert_eq!(ok.validate(), Ok(()));
    for bad in [
        Config {
            max_datagram_size: 10,
            ..ok
        },
        Config {
            max_datagram_size: 70_000,
            ..ok
        },
        Config {
            initial_window_packets: 0,
            ..ok
        },
        Config {
            minimum_window_packets: 0,
            ..ok
        },
        Config {
            minimum_window_packets: 11,
            ..ok
        },
        Config {
            initial_rtt: Duration::ZERO,
            ..ok
        },
        Config {
            max_ack_delay: Duration::from_secs(100),
            ..ok
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::InvalidConfig(_))),
            "{bad:?}"
        );
        assert!(Algorithm::Bbr.build(&bad).is_err());
        assert!(crate::PathRecovery::new(Algorithm::Cubic, &bad).is_err());
    }
}

#[test]
fn windowed_max_filter_forgets_samples_older_than_its_window() {
    let mut f = WindowedMax::new(10);
    assert_eq!(f.update(0, 100), 100);
    for t in 1..=10 {
        assert_eq!(f.update(t, 50), 100);
    }
    // Round 11: the 100 sample is more than 10 rounds old.
    assert_eq!(f.update(11, 40), 50);
    assert_eq!(f.update(12, 200), 200);
    assert_eq!(f.get(), 200);
    // Monotonically decreasing samples: the max tracks the window.
    let mut g = WindowedMax::new(10);
    for t in 0..100u64 {
        let v = 1000 - t;
        let m = g.update(t, v);
        assert!(m >= v && m <= v + 10 + 1, "t {t} m {m}");
    }
}

#[test]
fn bbr_loss_in_startup_below_two_percent_does_not_end_startup() {
    let config = Config::default();
    let mut bbr = Bbr::new(&config);
    let t0 = epoch();
    let rtt = RttEstimator::new(RTT, Duration::ZERO);
    bbr.on_loss(t0 + RTT, t0, 1200, false);
    let mut ack = AckEvent::new(1200, t0, 10_000);
    ack.rate.tx_in_flight = 120_000;
    ack.rate.lost = 1200;
    ack.rate.is_app_limited = false;
    bbr.on_ack(t0 + RTT, &ack, &rtt);
    assert_eq!(bbr.mode(), BbrMode::Startup);
    assert!(!bbr.snapshot().in_recovery);
    assert_eq!(bbr.inflight_hi(), None);
    // 10% of a flight lost (and at least 8 packets): Startup ends, inflight is bounded.
    bbr.on_loss(t0 + RTT * 2, t0 + RTT, 12 * 1200, false);
    ack.rate.lost = 12_000;
    ack.rate.delivered_total = 20_000;
    ack.rate.prior_delivered = 10_000;
    bbr.on_ack(t0 + RTT * 2, &ack, &rtt);
    assert_ne!(bbr.mode(), BbrMode::Startup);
    assert!(bbr.inflight_hi().is_some());
    assert!(bbr.snapshot().in_recovery);
}

#[test]
fn path_recovery_gates_on_window_then_pacer_and_tracks_pacing_rate() {
    use crate::{PathRecovery, SendPermit};
    let t0 = epoch();
    let config = Config::default();
    for alg in Algorithm::ALL {
        let mut path = PathRecovery::new(alg, &config).unwrap();
        let mut pn = 0;
        let mut now = t0;
        // Fill the initial window, waiting for the pacer where it says so.
        for _ in 0..1000 {
            match path.poll_send(now, 1200) {
                SendPermit::Now => {
                    path.on_packet_sent(now, pn, 1200, true).unwrap();
                    pn += 1;
                }
                SendPermit::At(t) => {
                    assert!(t > now);
                    now = t;
                }
                SendPermit::Blocked => break,
            }
        }
        assert_eq!(pn, 10, "{alg}");
        assert_eq!(path.bytes_in_flight(), 12_000);
        assert!(path.timer().is_some());
        let later = now + RTT;
        let out = path
            .on_ack_received(later, &[0..=9], Duration::from_millis(1))
            .unwrap();
        assert_eq!(out.acked.len(), 10);
        assert_eq!(path.bytes_in_flight(), 0);
        assert_eq!(path.timer(), None);
        // The pacer now runs at exactly the controller's rate (no stale copy).
        assert_eq!(
            path.pacer().rate(),
            path.controller().pacing_rate(),
            "{alg}"
        );
        assert!(path.pacer().rate().is_some());
        let snap = path.snapshot();
        assert_eq!(snap.algorithm, alg);
        assert!(snap.cwnd > config.initial_window());
        assert!(snap.min_rtt.is_some());
        let copy = path.clone();
        assert_eq!(copy.snapshot(), snap);
    }
}
