//! CPU clocks (ns), resident memory, medians, host description and the one result row
//! every runner returns.

use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

fn clock(id: ClockId) -> Duration {
    let t = clock_gettime(id);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// CPU time (user + system) the whole process has used so far, in nanoseconds:
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, the kernel's sum of every thread's own
/// scheduler clock (the per-thread `CLOCK_THREAD_CPUTIME_ID`s, dead threads included). Both
/// ends of a loopback run live in this process, so a difference of two readings is the CPU
/// cost of the sender, the receiver and the runtime's worker threads together.
///
/// # Errors
/// Never on Linux; the `Result` keeps the callers' shape.
pub fn process_cpu() -> Result<Duration, String> {
    Ok(clock(ClockId::ProcessCPUTime))
}

/// CPU time (user + system) of the calling thread in nanoseconds,
/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
///
/// # Errors
/// As [`process_cpu`].
pub fn thread_cpu() -> Result<Duration, String> {
    Ok(clock(ClockId::ThreadCPUTime))
}

/// The host CPU as every figure is printed with: model name, logical CPUs, and whether it
/// has AES-NI, VAES, VPCLMULQDQ, AVX2 and AVX-512F (from `/proc/cpuinfo`).
#[must_use]
pub fn host_cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    describe_cpu(
        &info,
        std::thread::available_parallelism().map_or(0, usize::from),
    )
}

/// [`host_cpu`] from a `/proc/cpuinfo` text and a CPU count.
#[must_use]
pub fn describe_cpu(cpuinfo: &str, cpus: usize) -> String {
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let model = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let list: Vec<String> = ["aes", "vaes", "vpclmulqdq", "avx2", "avx512f"]
        .iter()
        .map(|f| format!("{f} {}", if has(f) { "yes" } else { "no" }))
        .collect();
    format!("{model}, {cpus} CPUs, {}", list.join(", "))
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

/// Minimum, median and maximum of `xs` (`NaN`s ignored; all `NaN` for none).
#[must_use]
pub fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    let min = v.iter().copied().reduce(f64::min).unwrap_or(f64::NAN);
    let max = v.iter().copied().reduce(f64::max).unwrap_or(f64::NAN);
    (min, median(&v), max)
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
    /// Packets the sender declared lost (each implementation's own statistics).
    pub lost_packets: Option<u64>,
    /// Bytes the sender sent again: Phantom's retransmitted stream bytes, quinn's bytes
    /// declared lost (which it retransmits).
    pub retransmitted_bytes: Option<u64>,
    /// Datagrams the kernel dropped because a receive buffer was full, summed over both
    /// ends' sockets (`drops` of /proc/net/udp; the sockets are fresh each round).
    pub socket_drops: Option<u64>,
    /// Effective receive buffer of the receiving socket (`SO_RCVBUF` read back, bytes).
    pub rcvbuf: Option<usize>,
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
    fn cpu_description_names_model_and_the_aes_and_avx512_flags() {
        let info = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu aes avx2 vaes\n";
        assert_eq!(
            describe_cpu(info, 2),
            "Some CPU, 2 CPUs, aes yes, vaes yes, vpclmulqdq no, avx2 yes, avx512f no"
        );
        assert_eq!(
            describe_cpu("", 1),
            "unknown CPU, 1 CPUs, aes no, vaes no, vpclmulqdq no, avx2 no, avx512f no"
        );
    }

    #[test]
    fn own_cpu_time_and_rss_are_readable_and_cpu_is_monotonic() {
        let a = process_cpu().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        let b = process_cpu().unwrap();
        // Nanosecond clocks: five million multiply-adds take well over a microsecond.
        assert!(b > a + Duration::from_micros(1));
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
    fn spread_is_min_median_max_without_nans() {
        assert_eq!(spread(&[5.0, f64::NAN, 1.0, 3.0]), (1.0, 3.0, 5.0));
        assert!(spread(&[]).1.is_nan());
    }

    #[test]
    fn sample_rates_divide_bytes_by_wall_and_cpu() {
        let s = BulkSample {
            bytes: 1_000_000,
            wall: Duration::from_millis(500),
            cpu: Duration::from_secs(1),
            datagrams: Some(1000),
            sender_thread_cpu: Duration::ZERO,
            lost_packets: None,
            retransmitted_bytes: None,
            socket_drops: None,
            rcvbuf: None,
        };
        assert!((s.goodput() - 2_000_000.0).abs() < 1.0);
        assert!((s.bytes_per_cpu_sec() - 1_000_000.0).abs() < 1.0);
        assert_eq!(s.cpu_per_datagram(), Some(Duration::from_millis(1)));
    }
}
