//! The bulk tables: one row per run as it happens, then min / median / max per
//! implementation, condition and mode, and the ratios.

use std::time::Duration;

use phantom_compare::measure::{BulkSample, spread};

use crate::{Cond, Impl, Round};

fn per_dgram(cpu: Duration, s: &BulkSample) -> Option<Duration> {
    s.datagrams
        .filter(|d| *d > 0)
        .map(|d| cpu.div_f64(d as f64))
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The CPU a run's MB/CPU-s is computed from: the process (shared) or the sender thread
/// (split).
fn rate_cpu(r: &Round) -> Duration {
    if r.split {
        r.s.sender_thread_cpu
    } else {
        r.s.cpu
    }
}

fn mb_per_cpu(r: &Round) -> f64 {
    r.s.bytes as f64 / rate_cpu(r).as_secs_f64().max(1e-6) / 1e6
}

fn us_per_dgram(r: &Round) -> f64 {
    per_dgram(rate_cpu(r), &r.s).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

fn goodput(r: &Round) -> f64 {
    r.s.goodput() / 1e6
}

/// Column titles of [`print_round`].
pub(crate) fn round_header() {
    println!(
        "{:<20} {:<16} {:>6} {:>5} {:>9} {:>7} {:>8} {:>7} {:>9} {:>8} {:>6} {:>8} {:>6} {:>6} {:>7}",
        "implementation",
        "condition",
        "mode",
        "round",
        "MB/s",
        "CPU s",
        "sender s",
        "recv s",
        "MB/CPU-s",
        "us/dgram",
        "lost",
        "retx KB",
        "drops",
        "snmp",
        "rcvbuf"
    );
}

/// One run's row.
pub(crate) fn print_round(r: &Round) {
    let s = &r.s;
    let (sender, recv) = if r.split {
        (
            format!("{:.3}", s.sender_thread_cpu.as_secs_f64()),
            format!("{:.3}", r.receiver_cpu.as_secs_f64()),
        )
    } else {
        ("-".into(), "-".into())
    };
    println!(
        "{:<20} {:<16} {:>6} {:>5} {:>9.1} {:>7.3} {:>8} {:>7} {:>9.1} {:>8.2} {:>6} {:>8} {:>6} {:>6} {:>7}",
        r.imp.name(),
        cond_label(r),
        if r.split { "split" } else { "shared" },
        r.round,
        goodput(r),
        s.cpu.as_secs_f64(),
        sender,
        recv,
        mb_per_cpu(r),
        us_per_dgram(r),
        opt(s.lost_packets),
        opt(s.retransmitted_bytes.map(|b| b / 1000)),
        opt(s.socket_drops),
        opt(r.snmp_drops),
        opt(s.rcvbuf.map(|b| b / 1024)),
    );
}

fn cond_label(r: &Round) -> String {
    match r.imp {
        Impl::PhantomProtocol => "own".into(),
        Impl::Limit => format!("-/{}", r.cond.buffers.label()),
        _ => r.cond.label(),
    }
}

fn fmt3((a, b, c): (f64, f64, f64), prec: usize) -> String {
    let f = |x: f64| {
        if x.is_nan() {
            "-".to_string()
        } else {
            format!("{x:.prec$}")
        }
    };
    format!("{} / {} / {}", f(a), f(b), f(c))
}

/// Runs of one implementation, condition and mode, in round order.
fn select(rounds: &[Round], imp: Impl, cond: Cond, split: bool) -> Vec<&Round> {
    let limit_like = |r: &Round| match imp {
        Impl::Limit => r.cond.buffers == cond.buffers,
        Impl::PhantomProtocol => true,
        _ => r.cond == cond,
    };
    let mut v: Vec<&Round> = rounds
        .iter()
        .filter(|r| r.imp == imp && r.split == split && limit_like(r))
        .collect();
    v.sort_by_key(|r| r.round);
    v
}

/// Per-round ratios a/b of `f`, paired by round number.
fn paired(a: &[&Round], b: &[&Round], f: fn(&Round) -> f64) -> (f64, f64, f64) {
    let ratios: Vec<f64> = a
        .iter()
        .filter_map(|x| b.iter().find(|y| y.round == x.round).map(|y| f(x) / f(y)))
        .collect();
    spread(&ratios)
}

/// The summary tables after every run is done.
pub(crate) fn summary(rounds: &[Round], n: usize, seed: u64, backend: &str, host: &str) {
    println!(
        "\nbulk summary: min / median / max over {n} rounds (seed {seed}); phantom backend {backend}"
    );
    println!("{host}");
    println!(
        "{:<20} {:<16} {:>6} {:>6} {:>24} {:>24} {:>9} {:>7} {:>7}",
        "implementation",
        "condition",
        "mode",
        "dgram",
        "MB/s",
        "MB/CPU-s",
        "us/dgram",
        "lost",
        "drops"
    );
    let mut keys: Vec<(Impl, Cond, bool)> = Vec::new();
    for r in rounds {
        let k = (r.imp, r.cond, r.split);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.sort_by_key(|(i, c, s)| (c.label(), *i as u8, *s));
    for &(imp, cond, split) in &keys {
        let v = select(rounds, imp, cond, split);
        let col = |f: fn(&Round) -> f64| spread(&v.iter().map(|r| f(r)).collect::<Vec<_>>());
        let lost: u64 = v.iter().filter_map(|r| r.s.lost_packets).sum();
        let drops: u64 = v.iter().filter_map(|r| r.s.socket_drops).sum();
        let label = v.first().map_or_else(|| cond.label(), |r| cond_label(r));
        println!(
            "{:<20} {:<16} {:>6} {:>6} {:>24} {:>24} {:>9.2} {:>7} {:>7}",
            imp.name(),
            label,
            if split { "split" } else { "shared" },
            imp.datagram(),
            fmt3(col(goodput), 1),
            fmt3(col(mb_per_cpu), 1),
            col(us_per_dgram).1,
            lost,
            drops,
        );
    }
    println!("\nratios, paired by round (min / median / max); {host}");
    let mut conds: Vec<Cond> = keys
        .iter()
        .filter(|k| k.0 == Impl::Phantom)
        .map(|k| k.1)
        .collect();
    conds.dedup();
    for cond in conds {
        for split in [false, true] {
            let ph = select(rounds, Impl::Phantom, cond, split);
            let qu = select(rounds, Impl::Quinn, cond, split);
            if ph.is_empty() {
                continue;
            }
            let mode = if split { "split" } else { "shared" };
            if !qu.is_empty() {
                println!(
                    "phantom / quinn      {:<16} {mode:>6}: goodput {}x, bytes per CPU-second {}x",
                    cond.label(),
                    fmt3(paired(&ph, &qu, goodput), 3),
                    fmt3(paired(&ph, &qu, mb_per_cpu), 3),
                );
            }
            let lim = select(rounds, Impl::Limit, cond, true);
            if split && !lim.is_empty() {
                println!(
                    "phantom / limit pipe {:<16} {mode:>6}: goodput {}, bytes per sender CPU-second {}",
                    cond.label(),
                    fmt3(paired(&ph, &lim, goodput), 3),
                    fmt3(paired(&ph, &lim, mb_per_cpu), 3),
                );
            }
        }
    }
}
