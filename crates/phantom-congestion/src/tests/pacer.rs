//! Token-bucket pacer.

use std::time::Duration;

use super::epoch;
use crate::Pacer;

/// splitmix64 for randomized schedules.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn pacer_unlimited_until_given_a_rate() {
    let t = epoch();
    let mut p = Pacer::new(1200);
    assert_eq!(p.rate(), None);
    for _ in 0..1000 {
        assert_eq!(p.delay(t, 65_000), None);
        p.on_sent(65_000);
    }
}

#[test]
fn pacer_spreads_bursts() {
    let t0 = epoch();
    let mut p = Pacer::new(1000);
    p.set_rate(100_000, Duration::from_millis(100), 1000);
    // rate = 1.25 MB/s; capacity = 16 packets (cwnd/4 = 25_000 clamped to 16_000).
    let mut sent = 0;
    while p.delay(t0, 1000).is_none() {
        p.on_sent(1000);
        sent += 1;
        assert!(sent < 100);
    }
    let next = p.delay(t0, 1000).unwrap();
    assert!(next > t0 && next <= t0 + Duration::from_millis(1));
}

#[test]
fn pacer_refills_rate_times_elapsed_and_nothing_at_the_same_instant() {
    let t0 = epoch();
    let mut p = Pacer::new(1000);
    p.set_rate_bps(1_000_000, 1_000_000, 1000); // 1 MB/s, capacity 16_000
    assert_eq!(p.delay(t0, 1000), None);
    p.on_sent(10_000);
    assert_eq!(p.tokens(), 0);
    assert!(p.delay(t0, 1000).is_some(), "no refill at the same instant");
    // 3 ms at 1 MB/s = 3000 bytes.
    assert_eq!(p.delay(t0 + Duration::from_millis(3), 3000), None);
    assert_eq!(p.tokens(), 3000);
    // A huge rate takes the u128 path and saturates at the capacity, which at
    // such a rate is the 64-packet ceiling.
    p.set_rate_bps(u64::MAX / 2, 1_000_000, 1000);
    assert_eq!(p.delay(t0 + Duration::from_secs(10), 1000), None);
    assert_eq!(p.tokens(), 64_000);
}

#[test]
fn pacer_bucket_holds_two_milliseconds_of_a_fast_rate_within_bounds() {
    let mut p = Pacer::new(1000);
    // 10 MB/s: 2 ms = 20_000 bytes, more than a quarter of a 40_000-byte window.
    p.set_rate_bps(10_000_000, 40_000, 1000);
    assert_eq!(p.capacity(), 20_000);
    // 1 MB/s: 2 ms = 2_000 bytes; the quarter window (10_000) wins.
    p.set_rate_bps(1_000_000, 40_000, 1000);
    assert_eq!(p.capacity(), 10_000);
    // 1 GB/s: 2 ms = 2 MB, capped at 64 packets.
    p.set_rate_bps(1_000_000_000, 40_000, 1000);
    assert_eq!(p.capacity(), 64_000);
}

#[test]
fn pacer_waits_for_a_millisecond_of_tokens_once_dry_and_keeps_the_average_rate() {
    let t0 = epoch();
    let mut p = Pacer::new(1000);
    // 20 MB/s: capacity 40 packets (2 ms), refill quantum 20 packets (1 ms).
    p.set_rate_bps(20_000_000, 1_000_000, 1000);
    assert_eq!(p.capacity(), 40_000);
    // Drain the initial bucket.
    let mut t = t0;
    while p.delay(t, 1000).is_none() {
        p.on_sent(1000);
    }
    // Dry: the wait is for 20_000 tokens (1 ms), not for one packet's 50 us.
    let wake = p.delay(t, 1000).unwrap();
    assert_eq!(wake, t + Duration::from_millis(1));
    // An earlier wake-up (an ACK arriving) with one packet's worth of tokens
    // still waits for the quantum: no packet trickles out alone.
    t += Duration::from_micros(100);
    assert_eq!(p.delay(t, 1000), Some(t0 + Duration::from_millis(1)));
    // At the deadline the quantum goes out as one batch, then the pacer waits again.
    let mut batch = 0;
    while p.delay(wake, 1000).is_none() {
        p.on_sent(1000);
        batch += 1;
    }
    assert_eq!(batch, 20);
    // Over a long run the average rate is the configured one: the 100 ms from
    // `wake` at 20 MB/s release 2 MB (plus at most one bucket).
    let mut now = wake;
    let end = wake + Duration::from_millis(100);
    let mut bytes = batch * 1000;
    for _ in 0..100_000 {
        if now >= end {
            break;
        }
        match p.delay(now, 1000) {
            None => {
                p.on_sent(1000);
                bytes += 1000;
            }
            Some(at) => now = at.min(end),
        }
    }
    assert!(
        (1_990_000..=2_000_000 + 40_000).contains(&bytes),
        "{bytes} bytes in 100 ms"
    );
}

#[test]
fn pacer_never_releases_more_than_bucket_plus_rate_times_interval() {
    let t0 = epoch();
    let mut seed = 7u64;
    let mss = 1200;
    for _case in 0..16 {
        let rate = 10_000 + next(&mut seed) % 2_000_000;
        let cwnd = 2 * mss + next(&mut seed) % 120_000;
        let mut p = Pacer::new(mss);
        p.set_rate_bps(rate, cwnd, mss);
        let bucket = p.capacity();
        let mut now = t0;
        let mut log: Vec<(std::time::Instant, u64)> = Vec::new();
        // Start from a bucket refilled at this rate (the initial ten packets are
        // the unpaced start's).
        assert_eq!(p.delay(now, 1), None);
        now += Duration::from_secs(10);
        assert_eq!(p.delay(now, 1), None);
        assert!(p.tokens() <= bucket);
        for _ in 0..200 {
            now += Duration::from_nanos(next(&mut seed) % 2_000_000);
            let size = 100 + next(&mut seed) % 1100;
            // Greedy sender: sends whenever the pacer allows.
            while p.delay(now, size).is_none() {
                p.on_sent(size);
                log.push((now, size));
                assert!(p.tokens() <= bucket);
            }
            assert!(p.tokens() <= bucket);
        }
        // Every window [t_i, t_j]: released <= bucket + rate * (t_j - t_i) (+1 byte rounding).
        for i in 0..log.len() {
            let mut sum = 0u64;
            for j in i..log.len() {
                sum += log[j].1;
                let span = log[j].0 - log[i].0;
                let allowed =
                    bucket + (u128::from(rate) * span.as_nanos() / 1_000_000_000) as u64 + 1;
                assert!(
                    sum <= allowed,
                    "rate {rate} bucket {bucket}: {sum} > {allowed} over {span:?}"
                );
            }
        }
        assert!(!log.is_empty());
    }
}
