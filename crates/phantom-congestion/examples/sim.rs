//! Prints the congestion-control simulation table (controller x loss rate on a
//! 100 Mbit/s, 40 ms RTT link with a 2-BDP drop-tail queue).
//!
//! Run: `cargo run -p phantom-congestion --features sim --example sim --release [SECONDS] [SEED]`
//! (defaults: 60 simulated seconds, seed 1).

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    // The simulator runs in virtual time; any base instant will do.
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    match phantom_congestion::sim::table(Duration::from_secs(secs), seed, epoch) {
        Ok(table) => {
            println!(
                "100 Mbit/s bottleneck, 40 ms RTT, 2-BDP drop-tail queue, 1200-byte packets, ACK every 2, {secs} s simulated, seed {seed}\n"
            );
            print!("{table}");
        }
        Err(e) => {
            eprintln!("sim failed: {e}");
            std::process::exit(1);
        }
    }
}
