//! Token-bucket pacer.

use std::time::Duration;

use super::epoch;
use crate::{Error, Pacer};

/// splitmix64 for randomized schedules.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn pacer_unlimited_by_default() {
    let t = epoch();
    let mut p = Pacer::default();
    assert_eq!(p.rate(), None);
    for _ in 0..1000 {
        assert_eq!(p.poll(t, 65_000), Ok(()));
        p.on_sent(t, 65_000);
    }
}

#[test]
fn pacer_rejects_zero_rate_or_burst() {
    assert!(matches!(Pacer::new(0, 10), Err(Error::InvalidConfig(_))));
    assert!(matches!(Pacer::new(10, 0), Err(Error::InvalidConfig(_))));
}

#[test]
fn pacer_says_exactly_when_the_next_packet_may_go() {
    let t = epoch();
    // 1 MB/s, bucket 3000 bytes: three 1000-byte packets at once, then one per ms.
    let mut p = Pacer::new(1_000_000, 3000).unwrap();
    for _ in 0..3 {
        assert_eq!(p.poll(t, 1000), Ok(()));
        p.on_sent(t, 1000);
    }
    let when = p.poll(t, 1000).unwrap_err();
    assert_eq!(when, t + Duration::from_millis(1));
    assert_eq!(p.delay_until(t, 1000), Some(when));
    assert_eq!(p.poll(when - Duration::from_nanos(1), 1000).ok(), None);
    assert_eq!(p.poll(when, 1000), Ok(()));
    // Idle for a long time: the bucket holds at most `burst`.
    let later = t + Duration::from_secs(10);
    assert_eq!(p.available(later), 3000);
    // Rate change keeps accrued tokens up to the new, smaller bucket.
    p.set_rate(later, Some(2_000_000), 1500);
    assert_eq!(p.available(later), 1500);
    // A packet bigger than the bucket may go when it is full, and empties it.
    assert_eq!(p.poll(later, 9000), Ok(()));
    p.on_sent(later, 9000);
    assert_eq!(p.available(later), 0);
    // Back to unlimited.
    p.set_rate(later, None, 1);
    assert_eq!(p.poll(later, 1_000_000), Ok(()));
}

#[test]
fn pacer_never_releases_more_than_burst_plus_rate_times_interval() {
    let t0 = epoch();
    let mut seed = 7u64;
    for _case in 0..16 {
        let rate = 10_000 + next(&mut seed) % 2_000_000;
        let burst = 1200 + next(&mut seed) % 30_000;
        let mut p = Pacer::new(rate, burst).unwrap();
        let mut now = t0;
        let mut log: Vec<(std::time::Instant, u64)> = Vec::new();
        for _ in 0..200 {
            now += Duration::from_nanos(next(&mut seed) % 2_000_000);
            let size = 100 + next(&mut seed) % 1100;
            // Greedy sender: sends whenever the pacer allows.
            while p.poll(now, size).is_ok() {
                p.on_sent(now, size);
                log.push((now, size));
                assert!(p.available(now) <= burst);
            }
            assert!(p.available(now) <= burst);
        }
        // Every window [t_i, t_j]: released <= burst + rate * (t_j - t_i) (+1 byte rounding).
        for i in 0..log.len() {
            let mut sum = 0u64;
            for j in i..log.len() {
                sum += log[j].1;
                let span = log[j].0 - log[i].0;
                let allowed =
                    burst + (u128::from(rate) * span.as_nanos() / 1_000_000_000) as u64 + 1;
                assert!(
                    sum <= allowed,
                    "rate {rate} burst {burst}: {sum} > {allowed} over {span:?}"
                );
            }
        }
        assert!(!log.is_empty());
    }
}
