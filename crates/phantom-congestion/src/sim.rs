//! A deterministic discrete-event model of one bottleneck link, for testing
//! controllers in virtual time (enabled by the `sim` feature, always built for
//! this crate's tests).
//!
//! The model: a bulk sender that always has data, driving a [`PathRecovery`];
//! a bottleneck of `rate` bytes/s with a drop-tail queue of `queue_bytes`; an
//! independent random loss of `loss_rate` before the queue; `one_way_delay` in
//! each direction; a receiver that acknowledges every `ack_every` packets (at
//! once on a gap, else after at most `max_ack_delay`) with the four most recent
//! ACK ranges. Lost data is simply never delivered (the sender's data is
//! infinite), so delivered bytes are goodput. Everything is a pure function of
//! the [`SimConfig`] and the epoch `Instant` (I9): the loss process is a seeded
//! splitmix64, and events at the same instant are handled in a fixed order.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::{
    Algorithm, BbrMode, Config, Error, PathRecovery, Phase, SendPermit, Snapshot, bytes_in,
};

/// Most ACK ranges one simulated ACK carries.
const ACK_RANGES: usize = 4;
/// Most ranges the receiver remembers.
const RECEIVER_RANGES: usize = 32;

/// The bottleneck link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Bottleneck rate in bytes per second.
    pub rate: u64,
    /// One-way propagation delay (the base RTT is twice this).
    pub one_way_delay: Duration,
    /// Drop-tail queue capacity in bytes (the packet in service included).
    pub queue_bytes: u64,
    /// Independent random loss probability per packet, in `[0, 1]`.
    pub loss_rate: f64,
}

impl LinkConfig {
    /// The bandwidth-delay product in bytes.
    #[must_use]
    pub fn bdp(&self) -> u64 {
        bytes_in(self.rate, self.one_way_delay.saturating_mul(2))
    }
}

/// A time window of extra loss on the link (a loss burst, or with
/// `loss_rate` 1.0 an outage), to test how a controller recovers from one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Offset from the start of the run at which the window opens.
    pub start: Duration,
    /// How long it lasts.
    pub length: Duration,
    /// Independent loss probability per packet inside the window (on top of
    /// [`LinkConfig::loss_rate`]), in `[0, 1]`.
    pub loss_rate: f64,
}

/// One simulation run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// The controller under test.
    pub algorithm: Algorithm,
    /// The link.
    pub link: LinkConfig,
    /// Simulated time to run for.
    pub duration: Duration,
    /// Size of every data packet in bytes (also the controller's MSS).
    pub packet_size: u64,
    /// The receiver acknowledges every this many packets (at least 1).
    pub ack_every: u32,
    /// The receiver's maximum ACK delay.
    pub max_ack_delay: Duration,
    /// Queue statistics ignore the first `warmup` of the run (Startup).
    pub warmup: Duration,
    /// Seed for the link's loss process and the controller.
    pub seed: u64,
    /// An optional window of extra loss.
    pub impairment: Option<Impairment>,
    /// If set, [`SimReport::timeline`] records the bytes delivered in each
    /// consecutive bin of this length.
    pub timeline_bin: Option<Duration>,
}

impl SimConfig {
    /// A 100 Mbit/s, 40 ms RTT link with a queue of `queue_bdp` BDPs, 1200-byte
    /// packets, ACK every 2, 25 ms max ACK delay, 5 s warm-up.
    #[must_use]
    pub fn standard(
        algorithm: Algorithm,
        loss_rate: f64,
        queue_bdp: f64,
        duration: Duration,
        seed: u64,
    ) -> Self {
        let mut link = LinkConfig {
            rate: 12_500_000,
            one_way_delay: Duration::from_millis(20),
            queue_bytes: 0,
            loss_rate,
        };
        link.queue_bytes = crate::scale(link.bdp(), queue_bdp);
        Self {
            algorithm,
            link,
            duration,
            packet_size: 1200,
            ack_every: 2,
            max_ack_delay: Duration::from_millis(25),
            warmup: Duration::from_secs(5),
            seed,
            impairment: None,
            timeline_bin: None,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Bytes the receiver got (goodput).
    pub delivered_bytes: u64,
    /// `delivered_bytes / (rate * duration)`.
    pub utilisation: f64,
    /// Data packets sent.
    pub packets_sent: u64,
    /// Packets dropped by the random loss process (and the [`Impairment`]).
    pub random_drops: u64,
    /// Packets dropped by the full queue.
    pub queue_drops: u64,
    /// Packets the sender declared lost.
    pub declared_lost: u64,
    /// PTO probes sent.
    pub probes_sent: u64,
    /// Mean queueing delay per packet after the warm-up.
    pub mean_queue_delay: Duration,
    /// Largest queueing delay after the warm-up.
    pub max_queue_delay: Duration,
    /// Largest queueing delay over the whole run.
    pub max_queue_delay_overall: Duration,
    /// Largest queue occupancy in bytes after the warm-up.
    pub max_queue_bytes: u64,
    /// The link's bandwidth-delay product in bytes.
    pub bdp_bytes: u64,
    /// Offsets from the start at which BBR entered ProbeRTT.
    pub probe_rtt_starts: Vec<Duration>,
    /// How long each ProbeRTT episode lasted.
    pub probe_rtt_durations: Vec<Duration>,
    /// ACKs after which a loss-based controller's window grew although it was
    /// in recovery both before and after (must be zero).
    pub recovery_growth_violations: u64,
    /// Largest bytes released by the pacer in any 1 ms window, minus what its
    /// bucket allows (`burst + rate * 1 ms`); positive means a burst overran.
    pub max_pacer_excess: i64,
    /// Bytes delivered in each [`SimConfig::timeline_bin`] (empty without one).
    pub timeline: Vec<u64>,
    /// The controller's final snapshot.
    pub final_snapshot: Snapshot,
    /// Whether the run hit its event bound before the end (must be false).
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy)]
struct SimAck {
    ranges: [(u64, u64); ACK_RANGES],
    len: usize,
    ack_delay: Duration,
}

/// splitmix64.
#[derive(Debug, Clone, Copy)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits as a uniform float in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        u < p
    }
}

#[derive(Debug)]
struct Receiver {
    ranges: VecDeque<(u64, u64)>,
    pending: u32,
    largest_at: Option<Instant>,
    ack_timer: Option<Instant>,
}

impl Receiver {
    fn on_packet(&mut self, pn: u64) -> bool {
        let in_order = match self.ranges.back_mut() {
            Some(last) if last.1.checked_add(1) == Some(pn) => {
                last.1 = pn;
                true
            }
            Some(_) => {
                self.ranges.push_back((pn, pn));
                false
            }
            None => {
                self.ranges.push_back((pn, pn));
                pn == 0
            }
        };
        if self.ranges.len() > RECEIVER_RANGES {
            self.ranges.pop_front();
        }
        self.pending = self.pending.saturating_add(1);
        in_order
    }

    fn build_ack(&mut self, now: Instant) -> SimAck {
        let mut ack = SimAck {
            ranges: [(0, 0); ACK_RANGES],
            len: 0,
            ack_delay: Duration::ZERO,
        };
        for (slot, r) in ack.ranges.iter_mut().zip(self.ranges.iter().rev()) {
            *slot = *r;
            ack.len += 1;
        }
        ack.ack_delay = self
            .largest_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.pending = 0;
        self.ack_timer = None;
        ack
    }
}

/// Sliding 1 ms window over the pacer's releases.
#[derive(Debug, Default)]
struct BurstMeter {
    window: VecDeque<(Instant, u64)>,
    bytes: u64,
    max_excess: i64,
}

impl BurstMeter {
    fn on_sent(&mut self, now: Instant, bytes: u64, allowance: u64) {
        let window = Duration::from_millis(1);
        while let Some(&(t, b)) = self.window.front() {
            if now.saturating_duration_since(t) < window {
                break;
            }
            self.bytes = self.bytes.saturating_sub(b);
            self.window.pop_front();
        }
        self.window.push_back((now, bytes));
        self.bytes = self.bytes.saturating_add(bytes);
        let excess = i64::try_from(self.bytes).unwrap_or(i64::MAX)
            - i64::try_from(allowance).unwrap_or(i64::MAX);
        self.max_excess = self.max_excess.max(excess);
    }
}

fn min_time(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Checks the configuration [`run`] is given.
fn validate(config: &SimConfig) -> Result<(), Error> {
    let link = config.link;
    if link.rate == 0 || config.packet_size == 0 || config.ack_every == 0 {
        return Err(Error::InvalidConfig(
            "sim: rate, packet_size and ack_every must be positive",
        ));
    }
    if !(0.0..=1.0).contains(&link.loss_rate)
        || config
            .impairment
            .is_some_and(|i| !(0.0..=1.0).contains(&i.loss_rate))
    {
        return Err(Error::InvalidConfig("sim: loss_rate must be in [0, 1]"));
    }
    if config.timeline_bin.is_some_and(|b| b.is_zero()) {
        return Err(Error::InvalidConfig("sim: timeline_bin must be positive"));
    }
    Ok(())
}

/// The bottleneck (drop-tail queue and loss process) and the packets and
/// ACKs propagating in each direction.
#[derive(Debug)]
struct Link {
    config: LinkConfig,
    /// Serialisation time of one packet.
    tx_time: Duration,
    rng: Rng,
    /// The impairment window as instants, with its loss rate.
    impaired: Option<(Instant, Instant, f64)>,
    /// When the bottleneck finishes the last queued packet.
    free_at: Instant,
    /// Departure time and size of every queued packet.
    queue: VecDeque<(Instant, u64)>,
    queued_bytes: u64,
    /// Arrival time, packet number and size of packets in flight to the receiver.
    to_receiver: VecDeque<(Instant, u64, u64)>,
    /// ACKs in flight to the sender, with their arrival time.
    to_sender: VecDeque<(Instant, SimAck)>,
}

/// One run's state: the sender's path, the link, the receiver and what has
/// been measured so far.
#[derive(Debug)]
struct Sim<'a> {
    config: &'a SimConfig,
    epoch: Instant,
    warmup_end: Instant,
    now: Instant,
    path: PathRecovery,
    link: Link,
    receiver: Receiver,
    next_pn: u64,
    /// When the sender next wants to send (`None`: on the next ACK or timer).
    sender_wake: Option<Instant>,
    /// PTO probes still to send.
    probes_due: u32,
    burst_meter: BurstMeter,
    report: SimReport,
    queue_delay_sum: Duration,
    queue_delay_count: u32,
    /// When the current ProbeRTT episode began.
    probe_rtt_since: Option<Instant>,
}

impl<'a> Sim<'a> {
    fn new(config: &'a SimConfig, epoch: Instant) -> Result<Self, Error> {
        let link = config.link;
        let impaired = config
            .impairment
            .map(|i| (epoch + i.start, epoch + i.start + i.length, i.loss_rate));
        let cc_config = Config {
            max_datagram_size: config.packet_size,
            max_ack_delay: config.max_ack_delay,
            seed: config.seed,
            ..Config::default()
        };
        let path = PathRecovery::new(config.algorithm, &cc_config)?;
        let tx_time = Duration::from_nanos(
            u64::try_from(u128::from(config.packet_size) * 1_000_000_000 / u128::from(link.rate))
                .unwrap_or(u64::MAX),
        );
        let report = SimReport {
            delivered_bytes: 0,
            utilisation: 0.0,
            packets_sent: 0,
            random_drops: 0,
            queue_drops: 0,
            declared_lost: 0,
            probes_sent: 0,
            mean_queue_delay: Duration::ZERO,
            max_queue_delay: Duration::ZERO,
            max_queue_delay_overall: Duration::ZERO,
            max_queue_bytes: 0,
            bdp_bytes: link.bdp(),
            probe_rtt_starts: Vec::new(),
            probe_rtt_durations: Vec::new(),
            recovery_growth_violations: 0,
            max_pacer_excess: i64::MIN,
            timeline: Vec::new(),
            final_snapshot: path.snapshot(),
            truncated: false,
        };
        Ok(Self {
            config,
            epoch,
            warmup_end: epoch + config.warmup,
            now: epoch,
            path,
            link: Link {
                config: link,
                tx_time,
                rng: Rng(config.seed ^ 0x005E_ED0F_11AC),
                impaired,
                free_at: epoch,
                queue: VecDeque::new(),
                queued_bytes: 0,
                to_receiver: VecDeque::new(),
                to_sender: VecDeque::new(),
            },
            receiver: Receiver {
                ranges: VecDeque::new(),
                pending: 0,
                largest_at: None,
                ack_timer: None,
            },
            next_pn: 0,
            sender_wake: Some(epoch),
            probes_due: 0,
            burst_meter: BurstMeter::default(),
            report,
            queue_delay_sum: Duration::ZERO,
            queue_delay_count: 0,
            probe_rtt_since: None,
        })
    }

    /// The sender sends what its window, pacer and probes allow.
    fn send(&mut self) -> Result<(), Error> {
        let now = self.now;
        let mss = self.config.packet_size;
        self.sender_wake = None;
        let mut sent_now = 0;
        loop {
            let probe = self.probes_due > 0;
            let permit = if probe {
                SendPermit::Now
            } else {
                self.path.poll_send(now, mss)
            };
            match permit {
                SendPermit::Now => {}
                SendPermit::At(t) => {
                    self.sender_wake = Some(t);
                    break;
                }
                SendPermit::Blocked => break,
            }
            if probe {
                self.probes_due -= 1;
                self.report.probes_sent += 1;
            }
            let allowance = self.path.pacer().rate().map_or(u64::MAX, |r| {
                self.path
                    .pacer()
                    .capacity()
                    .saturating_add(bytes_in(r, Duration::from_millis(1)))
            });
            self.path.on_packet_sent(now, self.next_pn, mss, true)?;
            self.path.on_paced(mss);
            if !probe {
                self.burst_meter.on_sent(now, mss, allowance);
            }
            self.report.packets_sent += 1;
            self.enter_bottleneck();
            self.next_pn += 1;
            sent_now += 1;
            if sent_now >= 10_000 {
                self.sender_wake = Some(now);
                break;
            }
        }
        Ok(())
    }

    /// Packet `next_pn` enters the link: randomly lost, dropped by the full
    /// queue, or queued behind the packets ahead of it.
    fn enter_bottleneck(&mut self) {
        let now = self.now;
        let mss = self.config.packet_size;
        let link = &mut self.link;
        while let Some(&(t, b)) = link.queue.front() {
            if t > now {
                break;
            }
            link.queued_bytes = link.queued_bytes.saturating_sub(b);
            link.queue.pop_front();
        }
        let rng = &mut link.rng;
        let impaired_now = link
            .impaired
            .is_some_and(|(from, to, p)| now >= from && now < to && rng.chance(p));
        if link.rng.chance(link.config.loss_rate) || impaired_now {
            self.report.random_drops += 1;
        } else if link.queued_bytes.saturating_add(mss) > link.config.queue_bytes {
            self.report.queue_drops += 1;
        } else {
            let start = link.free_at.max(now);
            let depart = start + link.tx_time;
            link.free_at = depart;
            link.queue.push_back((depart, mss));
            link.queued_bytes += mss;
            let wait = start.saturating_duration_since(now);
            let report = &mut self.report;
            report.max_queue_delay_overall = report.max_queue_delay_overall.max(wait);
            if now >= self.warmup_end {
                report.max_queue_delay = report.max_queue_delay.max(wait);
                report.max_queue_bytes = report.max_queue_bytes.max(link.queued_bytes);
                self.queue_delay_sum += wait;
                self.queue_delay_count = self.queue_delay_count.saturating_add(1);
            }
            link.to_receiver
                .push_back((depart + link.config.one_way_delay, self.next_pn, mss));
        }
    }

    /// The time of the next event, if any.
    fn next_event(&self) -> Option<Instant> {
        let mut next = self.link.to_receiver.front().map(|e| e.0);
        next = min_time(next, self.link.to_sender.front().map(|e| e.0));
        next = min_time(next, self.receiver.ack_timer);
        next = min_time(next, self.sender_wake);
        min_time(next, self.path.timer())
    }

    /// ACKs reaching the sender.
    fn deliver_acks(&mut self) -> Result<(), Error> {
        let now = self.now;
        while self.link.to_sender.front().is_some_and(|e| e.0 <= now) {
            let Some((_, ack)) = self.link.to_sender.pop_front() else {
                break;
            };
            let mut ranges: [RangeInclusive<u64>; ACK_RANGES] = [0..=0, 0..=0, 0..=0, 0..=0];
            for (slot, r) in ranges.iter_mut().zip(ack.ranges.iter().take(ack.len)) {
                *slot = r.0..=r.1;
            }
            let before = self.path.controller().snapshot();
            let outcome = self.path.on_ack_received(
                now,
                ranges.get(..ack.len).unwrap_or(&[]),
                ack.ack_delay,
            )?;
            self.report.declared_lost += outcome.lost.len() as u64;
            let after = self.path.controller().snapshot();
            self.track_phases(&before, &after);
            self.sender_wake = Some(now);
        }
        Ok(())
    }

    /// Counts window growth inside recovery and records ProbeRTT episodes.
    fn track_phases(&mut self, before: &Snapshot, after: &Snapshot) {
        let now = self.now;
        if before.phase == Phase::Recovery
            && after.phase == Phase::Recovery
            && after.cwnd > before.cwnd
        {
            self.report.recovery_growth_violations += 1;
        }
        let was_probe_rtt = before.phase == Phase::Bbr(BbrMode::ProbeRtt);
        let is_probe_rtt = after.phase == Phase::Bbr(BbrMode::ProbeRtt);
        if is_probe_rtt && !was_probe_rtt {
            self.report
                .probe_rtt_starts
                .push(now.saturating_duration_since(self.epoch));
            self.probe_rtt_since = Some(now);
        } else if was_probe_rtt
            && !is_probe_rtt
            && let Some(since) = self.probe_rtt_since.take()
        {
            self.report
                .probe_rtt_durations
                .push(now.saturating_duration_since(since));
        }
    }

    /// Packets reaching the receiver, which acknowledges at once or arms its
    /// delayed-ACK timer.
    fn deliver_packets(&mut self) {
        let now = self.now;
        while self.link.to_receiver.front().is_some_and(|e| e.0 <= now) {
            let Some((_, pn, bytes)) = self.link.to_receiver.pop_front() else {
                break;
            };
            self.report.delivered_bytes += bytes;
            self.record_timeline(bytes);
            self.receiver.largest_at = Some(now);
            let in_order = self.receiver.on_packet(pn);
            if !in_order || self.receiver.pending >= self.config.ack_every {
                let ack = self.receiver.build_ack(now);
                self.link
                    .to_sender
                    .push_back((now + self.link.config.one_way_delay, ack));
            } else if self.receiver.ack_timer.is_none() {
                self.receiver.ack_timer = Some(now + self.config.max_ack_delay);
            }
        }
    }

    /// Adds `bytes` delivered now to the timeline bin they fall in.
    fn record_timeline(&mut self, bytes: u64) {
        let Some(bin) = self.config.timeline_bin else {
            return;
        };
        let i = self.now.saturating_duration_since(self.epoch).as_nanos() / bin.as_nanos();
        let i = usize::try_from(i).unwrap_or(usize::MAX);
        if i < (1 << 24) {
            if self.report.timeline.len() <= i {
                self.report.timeline.resize(i + 1, 0);
            }
            if let Some(b) = self.report.timeline.get_mut(i) {
                *b += bytes;
            }
        }
    }

    /// The receiver's delayed-ACK timer.
    fn on_ack_timer(&mut self) {
        let now = self.now;
        if self.receiver.ack_timer.is_some_and(|t| t <= now) {
            let ack = self.receiver.build_ack(now);
            self.link
                .to_sender
                .push_back((now + self.link.config.one_way_delay, ack));
        }
    }

    /// The sender's loss-detection timer.
    fn on_loss_timer(&mut self) {
        let now = self.now;
        if self.path.timer().is_some_and(|t| t <= now) {
            let outcome = self.path.on_timeout(now);
            self.report.declared_lost += outcome.lost.len() as u64;
            if outcome.send_probe {
                self.probes_due = 2;
            }
            self.sender_wake = Some(now);
        }
    }

    /// The report, with the means and the final snapshot filled in.
    fn finish(self) -> SimReport {
        let mut report = self.report;
        if self.queue_delay_count > 0 {
            report.mean_queue_delay = self.queue_delay_sum / self.queue_delay_count;
        }
        let capacity = bytes_in(self.link.config.rate, self.config.duration).max(1);
        #[allow(clippy::cast_precision_loss)]
        {
            report.utilisation = report.delivered_bytes as f64 / capacity as f64;
        }
        report.final_snapshot = self.path.snapshot();
        report
    }
}

/// Runs one simulation from `epoch` (any `Instant`; results depend only on the
/// configuration).
///
/// # Errors
/// [`Error::InvalidConfig`] for a zero rate, packet size or `ack_every`, or a
/// loss rate outside `[0, 1]`; any error from the path (none is expected).
pub fn run(config: &SimConfig, epoch: Instant) -> Result<SimReport, Error> {
    validate(config)?;
    let mut sim = Sim::new(config, epoch)?;
    let end = epoch + config.duration;
    // Every packet causes a bounded number of events; bound the loop by that.
    let packets_bound = bytes_in(config.link.rate, config.duration) / config.packet_size + 10_000;
    let max_steps = packets_bound.saturating_mul(8);
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > max_steps {
            sim.report.truncated = true;
            break;
        }
        if sim.sender_wake.is_some_and(|t| t <= sim.now) || sim.probes_due > 0 {
            sim.send()?;
        }
        let Some(next) = sim.next_event() else { break };
        if next > end {
            break;
        }
        sim.now = next.max(sim.now);
        sim.deliver_acks()?;
        sim.deliver_packets();
        sim.on_ack_timer();
        sim.on_loss_timer();
    }
    Ok(sim.finish())
}

/// Formats a duration as milliseconds with one decimal.
#[must_use]
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Runs the standard table (every algorithm x loss {0, 0.1%, 1%, 2%} on the
/// 100 Mbit/s, 40 ms link with a 2-BDP queue) and renders it as Markdown.
///
/// # Errors
/// As [`run`].
pub fn table(duration: Duration, seed: u64, epoch: Instant) -> Result<String, Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| controller | loss | utilisation | mean queue (ms) | max queue (ms) | max queue (BDP) | ProbeRTT entries |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for algorithm in Algorithm::ALL {
        for loss in [0.0, 0.001, 0.01, 0.02] {
            let cfg = SimConfig::standard(algorithm, loss, 2.0, duration, seed);
            let r = run(&cfg, epoch)?;
            #[allow(clippy::cast_precision_loss)]
            let max_bdp = r.max_queue_bytes as f64 / r.bdp_bytes.max(1) as f64;
            let _ = writeln!(
                out,
                "| {} | {:.1}% | {:.1}% | {} | {} | {:.2} | {} |",
                algorithm,
                loss * 100.0,
                r.utilisation * 100.0,
                ms(r.mean_queue_delay),
                ms(r.max_queue_delay),
                max_bdp,
                r.probe_rtt_starts.len()
            );
        }
    }
    Ok(out)
}
