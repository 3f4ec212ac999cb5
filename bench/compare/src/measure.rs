//! Process CPU time, resident memory, medians and the one result row every runner returns.

use std::time::{Duration, Instant};

/// Linux reports `/proc/<pid>/stat` times in USER_HZ ticks, which is 100 on every
/// architecture Linux supports (the kernel's CLK_TCK as seen by user space).
const USER_HZ: u64 = 100;

/// CPU time (user + system) the whole process has used so far, from `/proc/self/stat`
/// (10 ms resolution). Both ends of a loopback run live in this process, so a difference of
/// two readings is the CPU cost of the sender, the receiver and the runtime together.
///
/// # Errors
/// A message if `/proc/self/stat` cannot be read or parsed (not Linux).
pub fn process_cpu() -> Result<Duration, String> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    parse_stat_cpu(&stat)
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat`.
///
/// # Errors
/// As [`process_cpu`].
pub fn thread_cpu() -> Result<Duration, String> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .map_err(|e| format!("/proc/thread-self/stat: {e}"))?;
    parse_stat_cpu(&stat)
}

/// Parses utime + stime (fields 14 and 15) out of a `/proc/<pid>/stat` line.
///
/// # Errors
/// A message if the line does not have those fields.
pub fn parse_stat_cpu(stat: &str) -> Result<Duration, String> {
    // The command name (field 2) is in parentheses and may contain spaces: count after it.
    let after = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .ok_or("no `)` in /proc/self/stat")?;
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th, stime (15) the 13th.
    let utime = fields.nth(11).and_then(|f| f.parse::<u64>().ok());
    let stime = fields.next().and_then(|f| f.parse::<u64>().ok());
    match (utime, stime) {
        (Some(u), Some(s)) => Ok(Duration::from_millis((u + s) * 1000 / USER_HZ)),
        _ => Err("utime/stime missing in /proc/self/stat".into()),
    }
}

/// Resident set size of this process (`VmRSS` of `/proc/self/status`), in bytes.
///
/// # Errors
/// A message if the file cannot be read or has no `VmRSS` line.
pub fn rss_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    parse_vm_rss(&status)
}

/// Parses the `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text into bytes.
///
/// # Errors
/// A message if there is no such line.
pub fn parse_vm_rss(status: &str) -> Result<u64, String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| "no VmRSS line in /proc/self/status".into())
}

/// Median of `xs` (mean of the middle two for an even count); `NaN` for none.
#[must_use]
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(f64::NAN),
        _ => match (v.get(n / 2 - 1), v.get(n / 2)) {
            (Some(a), Some(b)) => f64::midpoint(*a, *b),
            _ => f64::NAN,
        },
    }
}

/// Starts a wall-clock and process-CPU stopwatch.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: Instant,
    cpu: Duration,
    thread: Duration,
}

impl Stopwatch {
    /// Reads both clocks now.
    ///
    /// # Errors
    /// As [`process_cpu`].
    pub fn start() -> Result<Self, String> {
        Ok(Self {
            cpu: process_cpu()?,
            thread: thread_cpu()?,
            wall: Instant::now(),
        })
    }

    /// Wall time and process CPU time since [`Stopwatch::start`].
    ///
    /// # Errors
    /// As [`process_cpu`].
    pub fn stop(&self) -> Result<(Duration, Duration), String> {
        let wall = self.wall.elapsed();
        let cpu = process_cpu()?.saturating_sub(self.cpu);
        Ok((wall, cpu))
    }

    /// CPU time of the calling thread since [`Stopwatch::start`] (meaningful when it is the
    /// thread that started the watch and the only thread of a current-thread runtime).
    ///
    /// # Errors
    /// As [`thread_cpu`].
    pub fn thread(&self) -> Result<Duration, String> {
        Ok(thread_cpu()?.saturating_sub(self.thread))
    }
}

/// One bulk-transfer round of one implementation.
#[derive(Debug, Clone, Copy)]
pub struct BulkSample {
    /// Payload bytes the receiver counted.
    pub bytes: u64,
    /// Wall time from the first write to the receiver's answer.
    pub wall: Duration,
    /// Process CPU time over the same span (both ends, one process).
    pub cpu: Duration,
    /// UDP datagrams the sender sent, when the implementation reports it.
    pub datagrams: Option<u64>,
    /// CPU time of the thread that ran the sending side over the same span; the sender's
    /// own cost when the sender has a current-thread runtime of its own (split mode).
    pub sender_thread_cpu: Duration,
}

impl BulkSample {
    /// Goodput in bytes per second of wall time.
    #[must_use]
    pub fn goodput(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Payload bytes moved per second of process CPU time (both ends).
    #[must_use]
    pub fn bytes_per_cpu_sec(&self) -> f64 {
        self.bytes as f64 / self.cpu.as_secs_f64().max(1e-3)
    }

    /// Process CPU time per datagram sent (both ends), when known.
    #[must_use]
    pub fn cpu_per_datagram(&self) -> Option<Duration> {
        self.datagrams
            .filter(|d| *d > 0)
            .map(|d| self.cpu.div_f64(d as f64))
    }
}

/// Sorted handshake latencies with their wall time and CPU time.
#[derive(Debug, Clone)]
pub struct HandshakeSample {
    /// Per-handshake latency (connect call to established).
    pub latencies: Vec<Duration>,
    /// Wall time for all of them.
    pub wall: Duration,
    /// Process CPU time for all of them (client and server in one process).
    pub cpu: Duration,
}

impl HandshakeSample {
    /// Handshakes completed per second of wall time.
    #[must_use]
    pub fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Median handshake latency.
    #[must_use]
    pub fn median_latency(&self) -> Duration {
        let ms: Vec<f64> = self.latencies.iter().map(Duration::as_secs_f64).collect();
        Duration::from_secs_f64(median(&ms).max(0.0))
    }

    /// Process CPU time per handshake (both ends).
    #[must_use]
    pub fn cpu_per_handshake(&self) -> Duration {
        let n = u32::try_from(self.latencies.len().max(1)).unwrap_or(u32::MAX);
        self.cpu / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parse_reads_utime_and_stime_after_a_name_with_spaces() {
        let line = "1234 (my prog) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 99 1000 200";
        assert_eq!(parse_stat_cpu(line).unwrap(), Duration::from_millis(3000));
        assert!(parse_stat_cpu("1234 (x) S 1 2").is_err());
        assert!(parse_stat_cpu("garbage").is_err());
    }

    #[test]
    fn own_cpu_time_and_rss_are_readable_and_cpu_is_monotonic() {
        let a = process_cpu().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(process_cpu().unwrap() >= a);
        assert!(thread_cpu().unwrap() <= process_cpu().unwrap());
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn vm_rss_parse_converts_kib() {
        let s = "Name:\tx\nVmPeak:\t 10 kB\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_vm_rss(s).unwrap(), 2048 * 1024);
        assert!(parse_vm_rss("Name: x\n").is_err());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn sample_rates_divide_bytes_by_wall_and_cpu() {
        let s = BulkSample {
            bytes: 1_000_000,
            wall: Duration::from_millis(500),
            cpu: Duration::from_secs(1),
            datagrams: Some(1000),
            sender_thread_cpu: Duration::ZERO,
        };
        assert!((s.goodput() - 2_000_000.0).abs() < 1.0);
        assert!((s.bytes_per_cpu_sec() - 1_000_000.0).abs() < 1.0);
        assert_eq!(s.cpu_per_datagram(), Some(Duration::from_millis(1)));
    }
}
