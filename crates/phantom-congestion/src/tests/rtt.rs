//! RFC 9002 §5 RTT estimation against hand-computed numbers.

use std::time::Duration;

use super::epoch;
use crate::{GRANULARITY, INITIAL_RTT, RttEstimator};

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn rtt_initial_values_follow_rfc9002() {
    let rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    assert_eq!(rtt.smoothed(), ms(333));
    assert_eq!(rtt.var(), Duration::from_micros(166_500));
    assert_eq!(rtt.min_rtt(), None);
    // 333 + 4 * 166.5 = 999 ms, plus max_ack_delay.
    assert_eq!(rtt.pto_base(), ms(999 + 25));
}

#[test]
fn rtt_worked_sequence_matches_rfc9002_formulas() {
    let t = epoch();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    // First sample: smoothed = latest, rttvar = latest / 2.
    rtt.update(t, ms(100), ms(10));
    assert_eq!(rtt.min_rtt(), Some(ms(100)));
    assert_eq!(rtt.smoothed(), ms(100));
    assert_eq!(rtt.var(), ms(50));
    // 140 ms with 20 ms ack delay: adjusted 120; var = 3/4*50 + 1/4*20 = 42.5;
    // smoothed = 7/8*100 + 1/8*120 = 102.5.
    rtt.update(t, ms(140), ms(20));
    assert_eq!(rtt.var(), Duration::from_micros(42_500));
    assert_eq!(rtt.smoothed(), Duration::from_micros(102_500));
    assert_eq!(rtt.latest(), ms(140));
    // 110 ms with 30 ms ack delay: capped at 25, and 110 < 100 + 25, so no
    // adjustment: var = 3/4*42.5 + 1/4*7.5 = 33.75; smoothed = 7/8*102.5 + 110/8 = 103.4375.
    rtt.update(t, ms(110), ms(30));
    assert_eq!(rtt.var(), Duration::from_micros(33_750));
    assert_eq!(rtt.smoothed(), Duration::from_nanos(103_437_500));
    assert_eq!(rtt.min_rtt(), Some(ms(100)));
    // A lower sample moves min_rtt.
    rtt.update(t, ms(90), Duration::ZERO);
    assert_eq!(rtt.min_rtt(), Some(ms(90)));
    // PTO = smoothed + max(4 var, 1 ms) + max_ack_delay.
    assert_eq!(rtt.pto_base(), rtt.smoothed() + rtt.var() * 4 + ms(25));
    assert_eq!(rtt.pto(2), rtt.pto_base() * 4);
}

#[test]
fn rtt_loss_delay_is_nine_eighths_with_granularity_floor() {
    let t = epoch();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    rtt.update(t, ms(80), Duration::ZERO);
    assert_eq!(rtt.loss_delay(), ms(90));
    // latest above smoothed: the larger is used.
    rtt.update(t, ms(160), Duration::ZERO);
    assert_eq!(rtt.loss_delay(), rtt.latest() * 9 / 8);
    let mut tiny = RttEstimator::new(INITIAL_RTT, Duration::ZERO);
    tiny.update(t, Duration::from_micros(100), Duration::ZERO);
    assert_eq!(tiny.loss_delay(), GRANULARITY);
    assert_eq!(tiny.pto_base(), Duration::from_micros(100) + GRANULARITY);
}

#[test]
fn i1_absurd_peer_ack_delay_cannot_push_smoothed_below_min_or_overflow() {
    let t = epoch();
    let mut rtt = RttEstimator::new(INITIAL_RTT, ms(25));
    rtt.update(t, ms(50), Duration::ZERO);
    for _ in 0..100 {
        rtt.update(t, ms(60), Duration::MAX);
    }
    assert!(rtt.smoothed() >= ms(35), "{:?}", rtt.smoothed());
    let mut huge = RttEstimator::new(INITIAL_RTT, Duration::MAX);
    huge.update(t, Duration::MAX, Duration::MAX);
    huge.update(t, Duration::MAX, Duration::MAX);
    assert!(huge.pto(u32::MAX) <= Duration::from_secs(3600));
    assert!(t.checked_add(huge.pto(40)).is_some());
    assert!(huge.loss_delay() > Duration::ZERO);
}
