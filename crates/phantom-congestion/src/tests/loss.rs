//! RFC 9002 §6 loss detection, §7.6 persistent congestion, delivery-rate sampling.

use std::time::{Duration, Instant};

use super::epoch;
use crate::{Error, INITIAL_RTT, RttEstimator, SentPackets};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn send(sp: &mut SentPackets, t: Instant, pns: std::ops::Range<u64>) {
    for pn in pns {
        sp.on_packet_sent(t, pn, 1000, true).unwrap();
    }
}

#[test]
fn loss_packet_threshold_is_three() {
    let t0 = epoch();
    let mut sp = SentPackets::new();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    send(&mut sp, t0, 0..6);
    let t1 = t0 + ms(50);
    // Acking 1..=2 leaves 0 two behind: not lost by count; time threshold
    // (9/8 * 50 ms) not reached either, so a loss timer is armed.
    let out = sp
        .on_ack_received(t1, &[1..=2], Duration::ZERO, &mut rtt)
        .unwrap();
    assert_eq!(out.acked, &[1, 2]);
    assert!(out.lost.is_empty());
    assert_eq!(sp.loss_detection_timer(&rtt), Some(t0 + rtt.loss_delay()));
    // Acking 3 puts 0 three behind the largest acknowledged: lost.
    let out = sp
        .on_ack_received(t1, &[3..=3], Duration::ZERO, &mut rtt)
        .unwrap();
    assert_eq!(out.lost.iter().map(|p| p.pn).collect::<Vec<_>>(), vec![0]);
    assert_eq!(out.lost_bytes, 1000);
    assert_eq!(sp.bytes_in_flight(), 2000);
    assert_eq!(sp.largest_acked(), Some(3));
}

#[test]
fn loss_time_threshold_is_nine_eighths_rtt() {
    let t0 = epoch();
    let mut sp = SentPackets::new();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    send(&mut sp, t0, 0..2);
    let t1 = t0 + ms(80);
    let out = sp
        .on_ack_received(t1, &[1..=1], Duration::ZERO, &mut rtt)
        .unwrap();
    assert!(out.lost.is_empty());
    // loss_delay = 9/8 * 80 ms = 90 ms after packet 0 was sent.
    let deadline = t0 + ms(90);
    assert_eq!(sp.loss_detection_timer(&rtt), Some(deadline));
    let early = sp.on_loss_detection_timeout(deadline - Duration::from_nanos(1), &rtt);
    assert!(early.lost.is_empty() && !early.send_probe);
    let fired = sp.on_loss_detection_timeout(deadline, &rtt);
    assert_eq!(fired.lost.len(), 1);
    assert_eq!(fired.lost_bytes, 1000);
    assert!(!fired.send_probe);
    assert_eq!(sp.bytes_in_flight(), 0);
    assert_eq!(sp.loss_detection_timer(&rtt), None);
}

#[test]
fn loss_pto_fires_after_last_ack_eliciting_and_backs_off() {
    let t0 = epoch();
    let mut sp = SentPackets::new();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    send(&mut sp, t0, 0..1);
    sp.on_ack_received(t0 + ms(100), &[0..=0], Duration::ZERO, &mut rtt)
        .unwrap();
    let t1 = t0 + ms(200);
    send(&mut sp, t1, 1..2);
    let pto = rtt.pto_base();
    assert_eq!(sp.loss_detection_timer(&rtt), Some(t1 + pto));
    let out = sp.on_loss_detection_timeout(t1 + pto, &rtt);
    assert!(out.send_probe && out.lost.is_empty());
    assert_eq!(sp.pto_count(), 1);
    assert_eq!(sp.loss_detection_timer(&rtt), Some(t1 + pto * 2));
    // A non-ack-eliciting packet does not arm anything.
    let mut quiet = SentPackets::new();
    quiet.on_packet_sent(t0, 0, 50, false).unwrap();
    assert_eq!(quiet.loss_detection_timer(&rtt), None);
    assert_eq!(quiet.bytes_in_flight(), 0);
}

#[test]
fn loss_persistent_congestion_needs_span_no_ack_between_and_prior_rtt_sample() {
    let t0 = epoch();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let mut sp = SentPackets::new();
    send(&mut sp, t0, 0..1);
    sp.on_ack_received(t0 + ms(50), &[0..=0], Duration::ZERO, &mut rtt)
        .unwrap();
    let span = rtt.persistent_congestion_duration();
    // Packets 1..=3 spread over more than the span, then 4 acked much later.
    let t1 = t0 + ms(60);
    sp.on_packet_sent(t1, 1, 1000, true).unwrap();
    sp.on_packet_sent(t1 + span / 2, 2, 1000, true).unwrap();
    sp.on_packet_sent(t1 + span + ms(1), 3, 1000, true).unwrap();
    let t2 = t1 + span * 2;
    sp.on_packet_sent(t2, 4, 1000, true).unwrap();
    let out = sp
        .on_ack_received(t2 + ms(50), &[4..=4], Duration::ZERO, &mut rtt)
        .unwrap();
    assert_eq!(out.lost.len(), 3);
    assert!(out.persistent_congestion);

    // Same, but packet 2 acknowledged in between: no persistent congestion.
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let mut sp = SentPackets::new();
    send(&mut sp, t0, 0..1);
    sp.on_ack_received(t0 + ms(50), &[0..=0], Duration::ZERO, &mut rtt)
        .unwrap();
    sp.on_packet_sent(t1, 1, 1000, true).unwrap();
    sp.on_packet_sent(t1 + span / 2, 2, 1000, true).unwrap();
    sp.on_packet_sent(t1 + span + ms(1), 3, 1000, true).unwrap();
    sp.on_packet_sent(t2, 4, 1000, true).unwrap();
    let out = sp
        .on_ack_received(t2 + ms(50), &[4..=4, 2..=2], Duration::ZERO, &mut rtt)
        .unwrap();
    assert_eq!(out.lost.len(), 2);
    assert!(!out.persistent_congestion);

    // No RTT sample before the losses: never persistent congestion.
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let mut sp = SentPackets::new();
    sp.on_packet_sent(t0, 0, 1000, true).unwrap();
    sp.on_packet_sent(t0 + ms(5000), 1, 1000, true).unwrap();
    sp.on_packet_sent(t0 + ms(10_000), 2, 1000, true).unwrap();
    let out = sp
        .on_ack_received(t0 + ms(10_050), &[2..=2], Duration::ZERO, &mut rtt)
        .unwrap();
    assert_eq!(out.lost.len(), 2);
    assert!(!out.persistent_congestion);
}

#[test]
fn i1_ack_of_unsent_packet_is_rejected_without_state_change() {
    let t0 = epoch();
    let mut sp = SentPackets::new();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    assert_eq!(
        sp.on_ack_received(t0, &[0..=0], Duration::ZERO, &mut rtt)
            .unwrap_err(),
        Error::AckedUnsentPacket { pn: 0 }
    );
    send(&mut sp, t0, 0..4);
    let before = (sp.bytes_in_flight(), sp.largest_acked(), rtt);
    // A valid range next to an invalid one: the whole ACK is refused.
    let err = sp
        .on_ack_received(
            t0 + ms(10),
            &[0..=1, 2..=u64::MAX],
            Duration::ZERO,
            &mut rtt,
        )
        .unwrap_err();
    assert_eq!(err, Error::AckedUnsentPacket { pn: u64::MAX });
    #[allow(clippy::reversed_empty_ranges)]
    let err = sp
        .on_ack_received(t0 + ms(10), &[0..=1, 3..=2], Duration::ZERO, &mut rtt)
        .unwrap_err();
    assert_eq!(err, Error::InvalidAckRange { start: 3, end: 2 });
    assert_eq!((sp.bytes_in_flight(), sp.largest_acked(), rtt), before);
    assert_eq!(sp.tracked(), 4);
}

#[test]
fn i1_duplicate_and_overlapping_ranges_ack_each_packet_once() {
    let t0 = epoch();
    let mut sp = SentPackets::new();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    send(&mut sp, t0, 0..10);
    let out = sp
        .on_ack_received(
            t0 + ms(30),
            &[0..=5, 3..=9, 0..=9, 4..=4],
            Duration::MAX,
            &mut rtt,
        )
        .unwrap();
    assert_eq!(out.acked.len(), 10);
    assert_eq!(out.acked_bytes, 10_000);
    assert_eq!(sp.bytes_in_flight(), 0);
    let again = sp
        .on_ack_received(t0 + ms(40), &[0..=9], Duration::ZERO, &mut rtt)
        .unwrap();
    assert!(again.acked.is_empty() && again.ack_event().is_none());
    assert_eq!(sp.tracked(), 0);
    // An empty ACK is a no-op.
    assert!(
        sp.on_ack_received(t0 + ms(50), &[], Duration::ZERO, &mut rtt)
            .unwrap()
            .acked
            .is_empty()
    );
}

#[test]
fn loss_packet_numbers_must_increase() {
    let t0 = epoch();
    let mut sp = SentPackets::new();
    sp.on_packet_sent(t0, 5, 100, true).unwrap();
    assert_eq!(
        sp.on_packet_sent(t0, 5, 100, true).unwrap_err(),
        Error::PacketNumberNotIncreasing { pn: 5, largest: 5 }
    );
    assert_eq!(sp.bytes_in_flight(), 100);
    // Gaps in packet numbers are fine.
    sp.on_packet_sent(t0, 9, 100, true).unwrap();
    assert_eq!(sp.largest_sent(), Some(9));
}

#[test]
fn delivery_rate_sample_measures_steady_sending_rate() {
    // Send one 1000-byte packet per ms (1 MB/s) for 200 ms; each is acked 50 ms later.
    let t0 = epoch();
    let mut sp = SentPackets::new();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let mut last_rate = None;
    for i in 0..200u64 {
        let now = t0 + ms(i);
        if i >= 50 {
            let pn = i - 50;
            let out = sp
                .on_ack_received(now, &[pn..=pn], Duration::ZERO, &mut rtt)
                .unwrap();
            let ev = out.ack_event().unwrap();
            assert_eq!(ev.rate.delivered_total, (pn + 1) * 1000);
            last_rate = ev.rate.delivery_rate.or(last_rate);
        }
        sp.on_packet_sent(now, i, 1000, true).unwrap();
    }
    let rate = last_rate.unwrap();
    assert!((950_000..=1_050_000).contains(&rate), "rate {rate}");
    assert!(!sp.delivery().is_app_limited());
    sp.on_app_limited();
    assert!(sp.delivery().is_app_limited());
}

/// A ledger after sending `n` packets (numbers `0, step, 2*step, …`) of mixed sizes
/// and kinds, one per millisecond.
fn ledger(t0: Instant, n: u64, step: u64) -> SentPackets {
    let mut sp = SentPackets::new();
    for i in 0..n {
        sp.on_packet_sent(t0 + ms(i), i * step, 900 + (i % 7) * 50, i % 5 != 4)
            .unwrap();
    }
    sp
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The packet-by-packet ACK (several frames' worth of packets, then one
    /// `finish_ack`) is the same algorithm as `on_ack_received` over the same
    /// ranges: same acked and lost packets, bytes, RTT sample and ledger state.
    #[test]
    fn batched_ack_matches_on_ack_received(
        n in 1u64..80,
        step in 1u64..3,
        raw in proptest::collection::vec((0u64..80, 0u64..6), 1..6),
        at in 0u64..400,
    ) {
        let t0 = epoch();
        let mut a = ledger(t0, n, step);
        let mut b = a.clone();
        let mut rtt_a = RttEstimator::new(INITIAL_RTT, ms(25));
        let mut rtt_b = rtt_a;
        let ranges: Vec<_> = raw
            .iter()
            .map(|&(s, len)| {
                let s = s.min(n - 1);
                (s * step)..=((s + len).min(n - 1) * step)
            })
            .collect();
        let largest = ranges.iter().map(|r| *r.end()).max().unwrap();
        let now = t0 + ms(at);
        let delay = ms(3);
        let whole = a.on_ack_received(now, &ranges, delay, &mut rtt_a).unwrap();
        let whole = (whole.acked.to_vec(), whole.lost.to_vec(), whole.acked_bytes,
            whole.lost_bytes, whole.rtt_sample, whole.persistent_congestion,
            whole.bytes_in_flight);
        for r in &ranges {
            for pn in r.clone() {
                b.on_packet_acked(now, pn, (pn == largest).then_some(delay));
            }
        }
        let batched = b.finish_ack(now, &mut rtt_b);
        let batched = (batched.acked.to_vec(), batched.lost.to_vec(), batched.acked_bytes,
            batched.lost_bytes, batched.rtt_sample, batched.persistent_congestion,
            batched.bytes_in_flight);
        proptest::prop_assert_eq!(whole, batched);
        proptest::prop_assert_eq!(rtt_a, rtt_b);
        proptest::prop_assert_eq!(a.largest_acked(), b.largest_acked());
        proptest::prop_assert_eq!(a.loss_detection_timer(&rtt_a), b.loss_detection_timer(&rtt_b));
        proptest::prop_assert_eq!(a.tracked(), b.tracked());
    }
}

#[test]
fn packet_acked_ignores_unknown_repeated_and_unsent_numbers() {
    let t0 = epoch();
    let mut sp = ledger(t0, 10, 2);
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let now = t0 + ms(30);
    assert!(
        sp.on_packet_acked(now, 3, None).is_none(),
        "never sent (odd)"
    );
    assert!(
        sp.on_packet_acked(now, 40, None).is_none(),
        "above the largest sent"
    );
    assert_eq!(
        sp.on_packet_acked(now, 4, Some(ms(1))).map(|p| p.pn),
        Some(4)
    );
    assert!(
        sp.on_packet_acked(now, 4, None).is_none(),
        "acknowledged twice"
    );
    let out = sp.finish_ack(now, &mut rtt);
    assert_eq!(out.acked.len(), 1);
    // The packet threshold counts numbers, not positions: 4 >= 0 + 3 condemns
    // packet 0; packet 2 (4 < 2 + 3) waits for the time threshold.
    assert_eq!(out.lost.iter().map(|p| p.pn).collect::<Vec<_>>(), vec![0]);
    assert_eq!(out.rtt_sample, Some(ms(28)));
    assert_eq!(sp.largest_acked(), Some(4));
    // A finish with nothing assembled reports nothing and keeps the ledger.
    let before = sp.tracked();
    let empty = sp.finish_ack(now, &mut rtt);
    assert!(empty.acked.is_empty() && empty.lost.is_empty() && empty.ack_event().is_none());
    assert_eq!(sp.tracked(), before);
}

#[test]
fn drain_outstanding_returns_what_is_in_flight_and_keeps_the_pto_count() {
    let t0 = epoch();
    let mut sp = ledger(t0, 6, 1);
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let now = t0 + ms(20);
    sp.on_packet_acked(now, 2, Some(Duration::ZERO));
    sp.finish_ack(now, &mut rtt);
    let pto_at = sp.loss_detection_timer(&rtt).unwrap();
    // Let loss timers fire until a PTO is counted.
    let mut t = pto_at;
    for _ in 0..4 {
        let _ = sp.on_loss_detection_timeout(t, &rtt);
        match sp.loss_detection_timer(&rtt) {
            Some(next) => t = next,
            None => break,
        }
    }
    let ptos = sp.pto_count();
    let left: Vec<u64> = sp.drain_outstanding().iter().map(|p| p.pn).collect();
    assert!(!left.is_empty());
    assert!(!left.contains(&2), "acknowledged packets are not re-sent");
    assert_eq!(sp.bytes_in_flight(), 0);
    assert_eq!(sp.ack_eliciting_in_flight(), 0);
    assert_eq!(sp.loss_detection_timer(&rtt), None);
    assert_eq!(sp.pto_count(), ptos);
    assert!(sp.drain_outstanding().is_empty());
    // Numbering continues after a drain.
    sp.on_packet_sent(now, 6, 1000, true).unwrap();
    assert_eq!(sp.bytes_in_flight(), 1000);
}

#[test]
fn pto_backoff_cap_bounds_the_probe_interval() {
    let t0 = epoch();
    let rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    let mut capped = SentPackets::new();
    capped.set_max_pto_backoff(2);
    let mut free = SentPackets::new();
    for sp in [&mut capped, &mut free] {
        sp.on_packet_sent(t0, 0, 1000, true).unwrap();
        for _ in 0..5 {
            let at = sp.loss_detection_timer(&rtt).unwrap();
            assert!(sp.on_loss_detection_timeout(at, &rtt).send_probe);
        }
        assert_eq!(sp.pto_count(), 5);
    }
    assert_eq!(capped.loss_detection_timer(&rtt), Some(t0 + rtt.pto(2)));
    assert_eq!(free.loss_detection_timer(&rtt), Some(t0 + rtt.pto(5)));
}
