//! A BBR-style model-based controller: BBRv1's state machine (Startup, Drain,
//! ProbeBW, ProbeRTT) with BBRv1 loss recovery and BBRv2's loss-rate bound on
//! in-flight data (`inflight_hi`).

use std::time::{Duration, Instant};

use crate::filter::WindowedMax;
use crate::{
    AckEvent, Algorithm, Config, CongestionController, Phase, RttEstimator, Snapshot, bytes_in,
    rate_of, scale,
};

/// `2 / ln 2`: the smallest gain that doubles the delivery rate every round.
const HIGH_GAIN: f64 = 2.885;
/// Drain pacing gain, the inverse of the Startup gain.
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
/// Steady-state cwnd gain (headroom for delayed and aggregated ACKs).
const CWND_GAIN: f64 = 2.0;
/// ProbeBW pacing-gain cycle: probe up, drain the probe's queue, cruise.
const PACING_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Pace slightly below the estimate so a standing queue drains by itself.
const PACING_MARGIN: f64 = 0.99;
/// Bottleneck-bandwidth filter window, in round trips.
const BW_WINDOW_ROUNDS: u64 = 10;
/// Min-RTT filter window; its expiry triggers ProbeRTT.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// Time spent at the ProbeRTT window (plus one round trip).
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// Minimum window in packets (and the ProbeRTT window).
const MIN_CWND_PACKETS: u64 = 4;
/// Largest send quantum (bytes): one 64 KB GSO/TSO send.
const SEND_QUANTUM_MAX: u64 = 64 * 1024;
/// Startup ends when the bandwidth grew less than this over three rounds.
const FULL_BW_THRESH: f64 = 1.25;
const FULL_BW_COUNT: u32 = 3;
/// BBRv2: a flight losing more than this fraction is "too high".
const LOSS_THRESH: f64 = 0.02;
/// The probing gain of the ProbeBW cycle; `inflight_hi` never drops below
/// this many BDPs, so a probe stays possible under random loss.
const PROBE_UP_GAIN: f64 = 1.25;
/// Packets lost in a flight before Startup may end on loss.
const STARTUP_MIN_LOSS_PACKETS: u64 = 8;
/// Initial pacing RTT before any sample (as Linux, 1 ms: pace the initial window quickly).
const NO_RTT_PACING_RTT: Duration = Duration::from_millis(1);

/// BBR's state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BbrMode {
    /// Exponential search for the bottleneck bandwidth.
    Startup,
    /// Drain the queue Startup built.
    Drain,
    /// Steady state: cycle the pacing gain around the bandwidth estimate.
    ProbeBw,
    /// Shrink the window to 4 packets for about 200 ms to re-measure min RTT.
    ProbeRtt,
}

/// The path model: the bottleneck bandwidth (a windowed maximum over round
/// trips) and the minimum RTT with the time it was measured.
#[derive(Debug, Clone)]
struct PathModel {
    /// The window the model stands for before it has a sample.
    initial_cwnd: u64,
    bw: WindowedMax,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Option<Instant>,
}

impl PathModel {
    fn new(initial_cwnd: u64) -> Self {
        Self {
            initial_cwnd,
            bw: WindowedMax::new(BW_WINDOW_ROUNDS),
            min_rtt: None,
            min_rtt_stamp: None,
        }
    }

    /// The bottleneck-bandwidth estimate in bytes/s (0 before any sample).
    #[inline]
    fn bw(&self) -> u64 {
        self.bw.get()
    }

    /// `gain * btl_bw * min_rtt`, or the initial window before a model exists.
    #[inline]
    fn bdp(&self, gain: f64) -> u64 {
        let bw = self.bw.get();
        match self.min_rtt {
            Some(rtt) if bw > 0 => scale(bytes_in(bw, rtt), gain),
            _ => scale(self.initial_cwnd, gain),
        }
    }

    /// Feeds the ACK's delivery rate to the bandwidth filter (an app-limited
    /// sample only if it raises the estimate).
    #[inline]
    fn update_bw(&mut self, round: u64, ack: &AckEvent) {
        if let Some(rate) = ack.rate.delivery_rate
            && (!ack.rate.is_app_limited || rate >= self.bw.get())
        {
            self.bw.update(round, rate);
        }
    }

    /// Updates the min-RTT filter; returns whether it had expired.
    #[inline]
    fn update_min_rtt(&mut self, now: Instant, sample: Option<Duration>) -> bool {
        let expired = self
            .min_rtt_stamp
            .is_some_and(|s| now.saturating_duration_since(s) > MIN_RTT_WINDOW);
        if let Some(rtt) = sample
            && (self.min_rtt.is_none_or(|m| rtt < m) || expired)
        {
            self.min_rtt = Some(rtt);
            self.min_rtt_stamp = Some(now);
        }
        expired
    }
}

/// Round-trip counting: a round ends when a packet sent after the previous
/// round ended is acknowledged.
#[derive(Debug, Clone)]
struct Rounds {
    count: u64,
    /// Delivered bytes at which the next round starts.
    next_round_delivered: u64,
    /// This ACK started a new round.
    start: bool,
}

impl Rounds {
    #[inline]
    fn update(&mut self, ack: &AckEvent) {
        self.start = false;
        if ack.acked_bytes > 0 && ack.rate.prior_delivered >= self.next_round_delivered {
            self.next_round_delivered = ack.rate.delivered_total;
            self.count = self.count.saturating_add(1);
            self.start = true;
        }
    }

    /// The next round starts with the packets sent after this ACK.
    #[inline]
    fn restart(&mut self, ack: &AckEvent) {
        self.next_round_delivered = ack.rate.delivered_total;
    }
}

/// Startup's exit test: the pipe is full once the bandwidth grew less than
/// 25% over three rounds (or a lossy Startup flight says so).
#[derive(Debug, Clone)]
struct FullPipe {
    filled: bool,
    /// The bandwidth the next rounds have to beat by 25%.
    full_bw: u64,
    /// Rounds in a row that did not.
    full_bw_count: u32,
}

impl FullPipe {
    #[inline]
    fn check(&mut self, bw: u64, round_start: bool, ack: &AckEvent) {
        if self.filled || !round_start || ack.rate.is_app_limited {
            return;
        }
        if bw >= scale(self.full_bw, FULL_BW_THRESH) {
            self.full_bw = bw;
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count = self.full_bw_count.saturating_add(1);
        if self.full_bw_count >= FULL_BW_COUNT {
            self.filled = true;
        }
    }
}

/// The mode and the gains it sets, with ProbeBW's pacing-gain cycle.
#[derive(Debug, Clone)]
struct StateMachine {
    mode: BbrMode,
    pacing_gain: f64,
    cwnd_gain: f64,
    /// Position in [`PACING_GAINS`].
    cycle_index: usize,
    /// When the current cycle phase began.
    cycle_stamp: Option<Instant>,
    /// splitmix64 state for the random start of the cycle.
    rng: u64,
}

impl StateMachine {
    fn new(seed: u64) -> Self {
        Self {
            mode: BbrMode::Startup,
            pacing_gain: HIGH_GAIN,
            cwnd_gain: HIGH_GAIN,
            cycle_index: 0,
            cycle_stamp: None,
            rng: seed,
        }
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic given `Config::seed` (I9).
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn set_gains(&mut self) {
        (self.pacing_gain, self.cwnd_gain) = match self.mode {
            BbrMode::Startup => (HIGH_GAIN, HIGH_GAIN),
            BbrMode::Drain => (DRAIN_GAIN, HIGH_GAIN),
            BbrMode::ProbeBw => (
                PACING_GAINS.get(self.cycle_index).copied().unwrap_or(1.0),
                CWND_GAIN,
            ),
            BbrMode::ProbeRtt => (1.0, 1.0),
        };
    }

    /// Switches to `mode` (ProbeBW goes through [`Self::enter_probe_bw`]).
    fn enter(&mut self, mode: BbrMode) {
        self.mode = mode;
        self.set_gains();
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = BbrMode::ProbeBw;
        // Start in a random cruise phase (never straight into the drain phase).
        let span = (PACING_GAINS.len() - 2) as u64;
        self.cycle_index = 2 + usize::try_from(self.next_random() % span).unwrap_or(0);
        self.cycle_stamp = Some(now);
        self.set_gains();
    }

    fn advance_cycle(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % PACING_GAINS.len();
        self.cycle_stamp = Some(now);
        self.set_gains();
    }
}

/// What a ProbeRTT episode did on one ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeRttStep {
    /// Still draining, or holding the small window.
    Wait,
    /// In-flight data fell to the minimum window: the hold starts now.
    Drained,
    /// Held for 200 ms and a round: the episode is over.
    Done,
}

/// A ProbeRTT episode: drain to the minimum window, then hold it for
/// [`PROBE_RTT_DURATION`] and at least one round.
#[derive(Debug, Clone)]
struct ProbeRtt {
    /// When the hold ends (`None` while draining).
    done: Option<Instant>,
    /// A round ended during the hold.
    round_done: bool,
}

impl ProbeRtt {
    /// Starts an episode.
    fn start(&mut self) {
        self.done = None;
    }

    fn step(&mut self, now: Instant, drained: bool, round_start: bool) -> ProbeRttStep {
        match self.done {
            None => {
                if drained {
                    self.done = now.checked_add(PROBE_RTT_DURATION);
                    self.round_done = false;
                    return ProbeRttStep::Drained;
                }
            }
            Some(done) => {
                if round_start {
                    self.round_done = true;
                }
                if self.round_done && now >= done {
                    self.done = None;
                    return ProbeRttStep::Done;
                }
            }
        }
        ProbeRttStep::Wait
    }
}

/// BBRv1 loss recovery: packet conservation for one round after a lossy
/// flight, until a packet sent after the loss is acknowledged.
#[derive(Debug, Clone)]
struct Recovery {
    start: Option<Instant>,
    /// Packet conservation lasts until this round has passed.
    conservation_until_round: Option<u64>,
    /// Send time of the newest packet declared lost since the last ACK; the
    /// ACK's rate sample decides whether recovery starts.
    pending_loss_sent_at: Option<Instant>,
}

impl Recovery {
    #[inline]
    fn in_recovery(&self) -> bool {
        self.start.is_some()
    }

    #[inline]
    fn in_conservation(&self) -> bool {
        self.conservation_until_round.is_some()
    }

    /// Recovery (and one round of conservation) starts now.
    fn enter(&mut self, now: Instant, round: u64) {
        self.start = Some(now);
        self.conservation_until_round = Some(round);
    }

    /// Ends recovery once a packet sent after it started is acknowledged, and
    /// conservation once its round has passed; returns whether recovery ended.
    #[inline]
    fn update(&mut self, ack: &AckEvent, round: u64) -> bool {
        let mut ended = false;
        if let Some(start) = self.start
            && ack.largest_acked_sent_at > start
        {
            self.start = None;
            self.conservation_until_round = None;
            ended = true;
        }
        if self.conservation_until_round.is_some_and(|r| round > r) {
            self.conservation_until_round = None;
        }
        ended
    }

    /// Remembers a loss for the next ACK to judge.
    fn note_loss(&mut self, sent_at: Instant) {
        self.pending_loss_sent_at = Some(
            self.pending_loss_sent_at
                .map_or(sent_at, |t| t.max(sent_at)),
        );
    }
}

/// BBRv2's loss-derived bound on in-flight data (`inflight_hi`) and BBRv3's
/// slope for raising it again while probing.
#[derive(Debug, Clone)]
struct InflightBound {
    /// The bound (`u64::MAX`: none).
    hi: u64,
    /// The round of the last reaction to a lossy flight (one per round).
    last_reaction_round: Option<u64>,
    /// BBRv3 `bw_probe_up_rounds`: probe rounds since `inflight_hi` was last set;
    /// `inflight_hi` grows by `2^rounds` packets per round while the bound limits.
    probe_up_rounds: u32,
    /// BBRv3 `bw_probe_up_acks`: bytes acknowledged towards the next raise.
    probe_up_acks: u64,
    /// BBRv3 `probe_up_cnt`, in bytes: acknowledged bytes per one-packet raise.
    probe_up_cnt: u64,
}

impl InflightBound {
    fn new() -> Self {
        Self {
            hi: u64::MAX,
            last_reaction_round: None,
            probe_up_rounds: 0,
            probe_up_acks: 0,
            probe_up_cnt: u64::MAX,
        }
    }

    #[inline]
    fn get(&self) -> Option<u64> {
        (self.hi != u64::MAX).then_some(self.hi)
    }

    /// A lossy flight sets the bound to `hi`; the next probes raise it again
    /// starting from one packet per round (BBRv3 `bbr_start_bw_probe_refill`
    /// resets `bw_probe_up_rounds`, then `BBRRaiseInflightHiSlope`).
    fn set(&mut self, hi: u64, cwnd: u64, mss: u64) {
        self.hi = hi;
        self.probe_up_rounds = 0;
        self.probe_up_acks = 0;
        self.raise_slope(cwnd, mss);
    }

    /// BBRv3 `BBRRaiseInflightHiSlope` (draft-ietf-ccwg-bbr; Linux `tcp_bbr.c`
    /// `bbr_raise_inflight_hi_slope`): this round `inflight_hi` may grow by
    /// `2^probe_up_rounds` packets, i.e. one packet per `cwnd / 2^rounds` bytes
    /// acknowledged, and the next round twice that.
    fn raise_slope(&mut self, cwnd: u64, mss: u64) {
        self.probe_up_cnt = (cwnd >> self.probe_up_rounds).max(mss).max(1);
        self.probe_up_rounds = (self.probe_up_rounds + 1).min(30);
    }

    /// While probing up with the sender cwnd-limited: if the bound limits the
    /// window, raise it by one packet per `probe_up_cnt` bytes acknowledged,
    /// and steepen the slope each round.
    #[inline]
    fn probe_upward(&mut self, acked: u64, cwnd: u64, mss: u64, round_start: bool) {
        if self.hi == u64::MAX || cwnd < self.hi {
            return;
        }
        self.probe_up_acks = self.probe_up_acks.saturating_add(acked);
        if self.probe_up_acks >= self.probe_up_cnt {
            let delta = self.probe_up_acks / self.probe_up_cnt;
            self.probe_up_acks -= delta.saturating_mul(self.probe_up_cnt);
            self.hi = self.hi.saturating_add(delta.saturating_mul(mss));
        }
        if round_start {
            self.raise_slope(cwnd, mss);
        }
    }
}

/// BBR-style controller (see the module doc and the crate's PERFORMANCE notes).
///
/// Outputs: [`pacing_rate`](CongestionController::pacing_rate) `= gain * btl_bw`,
/// [`window`](CongestionController::window) `= cwnd_gain * btl_bw * min_rtt`,
/// bounded by `inflight_hi` once a probing flight lost more than 2%.
#[derive(Debug, Clone)]
pub struct Bbr {
    mss: u64,
    min_cwnd: u64,
    cwnd: u64,
    /// The window to restore after recovery or ProbeRTT.
    prior_cwnd: u64,
    pacing_rate: u64,
    has_seen_rtt: bool,
    bytes_in_flight: u64,
    /// Bytes acknowledged so far.
    delivered: u64,
    /// A loss was declared since the last ACK.
    loss_in_ack: bool,
    /// The sender filled the window since the last ACK (Linux `tcp_is_cwnd_limited`).
    cwnd_limited: bool,
    model: PathModel,
    rounds: Rounds,
    full_pipe: FullPipe,
    state: StateMachine,
    probe_rtt: ProbeRtt,
    recovery: Recovery,
    bound: InflightBound,
}

impl Bbr {
    /// A controller in Startup with the configured initial window.
    #[must_use]
    pub fn new(config: &Config) -> Self {
        let mss = config.max_datagram_size;
        let initial_cwnd = config.initial_window();
        let mut bbr = Self {
            mss,
            min_cwnd: MIN_CWND_PACKETS.saturating_mul(mss),
            cwnd: initial_cwnd,
            prior_cwnd: 0,
            pacing_rate: 0,
            has_seen_rtt: false,
            bytes_in_flight: 0,
            delivered: 0,
            loss_in_ack: false,
            cwnd_limited: false,
            model: PathModel::new(initial_cwnd),
            rounds: Rounds {
                count: 0,
                next_round_delivered: 0,
                start: false,
            },
            full_pipe: FullPipe {
                filled: false,
                full_bw: 0,
                full_bw_count: 0,
            },
            state: StateMachine::new(config.seed),
            probe_rtt: ProbeRtt {
                done: None,
                round_done: false,
            },
            recovery: Recovery {
                start: None,
                conservation_until_round: None,
                pending_loss_sent_at: None,
            },
            bound: InflightBound::new(),
        };
        bbr.init_pacing_rate(NO_RTT_PACING_RTT);
        bbr
    }

    /// The current mode.
    #[must_use]
    pub fn mode(&self) -> BbrMode {
        self.state.mode
    }

    /// Round trips counted so far (a round ends when a packet sent after the
    /// previous round ended is acknowledged).
    #[must_use]
    pub fn round_count(&self) -> u64 {
        self.rounds.count
    }

    /// The loss-derived bound on in-flight data, `None` until a flight lost
    /// more than 2% while probing.
    #[must_use]
    pub fn inflight_hi(&self) -> Option<u64> {
        self.bound.get()
    }

    /// The current pacing gain.
    #[must_use]
    pub fn pacing_gain(&self) -> f64 {
        self.state.pacing_gain
    }

    fn init_pacing_rate(&mut self, rtt: Duration) {
        let rate = rate_of(self.cwnd, rtt).unwrap_or(u64::MAX);
        self.pacing_rate = scale(rate, HIGH_GAIN).max(1);
    }

    /// Bytes the sender emits in one go at the pacing rate: about 1 ms of it (the
    /// pacing rate / 1024, as Linux's `bbr_tso_segs_goal`), at least two packets, at
    /// most 64 KB (one GSO/TSO send).
    fn send_quantum(&self) -> u64 {
        (self.pacing_rate / 1024).clamp(self.mss.saturating_mul(2), SEND_QUANTUM_MAX.max(self.mss))
    }

    fn cwnd_target(&self) -> u64 {
        // Headroom of three send quanta for ACK and send quantisation, as Linux's
        // `bbr_quantization_budget`: with batched sends (GSO) and ACKs arriving per
        // received batch, a window of BDP + 3 packets would stall the sender at low
        // RTTs (loopback, LAN) every round.
        self.model
            .bdp(self.state.cwnd_gain)
            .saturating_add(self.send_quantum().saturating_mul(3))
            .max(self.min_cwnd)
    }

    fn save_cwnd(&mut self) {
        if !self.recovery.in_recovery() && self.state.mode != BbrMode::ProbeRtt {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    fn update_recovery(&mut self, ack: &AckEvent) {
        if self.recovery.update(ack, self.rounds.count) {
            // A packet sent after the loss was acknowledged: recovery is over.
            self.cwnd = self.cwnd.max(self.prior_cwnd);
        }
    }

    /// BBRv2's signal: the flight the newest acknowledged packet belonged to
    /// lost more than 2% of its bytes.
    fn loss_too_high(ack: &AckEvent) -> bool {
        let rs = &ack.rate;
        rs.lost > 0 && rs.tx_in_flight > 0 && rs.lost > scale(rs.tx_in_flight, LOSS_THRESH)
    }

    /// Loss recovery (BBRv1's packet conservation for one round, then growth
    /// back to the target) starts only for losses of a flight that lost more
    /// than 2%: sparse random loss is noise to a model-based controller, and
    /// reacting to it would starve the bandwidth probes.
    fn check_recovery_entry(&mut self, now: Instant, ack: &AckEvent) {
        let Some(sent_at) = self.recovery.pending_loss_sent_at.take() else {
            return;
        };
        if !Self::loss_too_high(ack) || self.recovery.start.is_some_and(|start| sent_at <= start) {
            return;
        }
        self.save_cwnd();
        // Conservation lasts one full round, starting now.
        self.recovery.enter(now, self.rounds.count);
        self.rounds.restart(ack);
        // Never below what the model says the pipe holds at the current gain:
        // the excess that caused the loss is cut, the probe is not.
        self.cwnd = self
            .bytes_in_flight
            .saturating_add(ack.acked_bytes)
            .max(self.model.bdp(self.state.pacing_gain.max(1.0)))
            .max(self.min_cwnd);
    }

    /// BBRv2: if a flight sent while probing lost more than 2%, bound in-flight
    /// data (and end Startup or the bandwidth probe).
    fn check_loss_too_high(&mut self, now: Instant, ack: &AckEvent) {
        let round = self.rounds.count;
        if self.bound.last_reaction_round == Some(round) || !Self::loss_too_high(ack) {
            return;
        }
        let rs = &ack.rate;
        match self.state.mode {
            BbrMode::Startup if rs.lost >= self.mss.saturating_mul(STARTUP_MIN_LOSS_PACKETS) => {
                self.full_pipe.filled = true;
                let hi = self
                    .model
                    .bdp(1.0)
                    .max(self.bytes_in_flight)
                    .max(self.min_cwnd);
                self.bound.set(hi, self.cwnd, self.mss);
                self.bound.last_reaction_round = Some(round);
            }
            // Only packets sent during the probe tell whether the probe was too much.
            BbrMode::ProbeBw
                if self.state.pacing_gain > 1.0
                    && self
                        .state
                        .cycle_stamp
                        .is_some_and(|s| ack.largest_acked_sent_at >= s) =>
            {
                if !rs.is_app_limited {
                    let hi = rs
                        .tx_in_flight
                        .max(self.model.bdp(PROBE_UP_GAIN))
                        .max(self.min_cwnd);
                    self.bound.set(hi, self.cwnd, self.mss);
                }
                self.bound.last_reaction_round = Some(round);
                self.state.advance_cycle(now);
            }
            _ => {}
        }
    }

    fn check_drain(&mut self, now: Instant) {
        if self.state.mode == BbrMode::Startup && self.full_pipe.filled {
            self.state.enter(BbrMode::Drain);
        }
        if self.state.mode == BbrMode::Drain && self.bytes_in_flight <= self.model.bdp(1.0) {
            self.state.enter_probe_bw(now);
        }
    }

    fn update_cycle(&mut self, now: Instant) {
        if self.state.mode != BbrMode::ProbeBw {
            return;
        }
        let phase_len = self.model.min_rtt.unwrap_or(NO_RTT_PACING_RTT);
        let full_length = self
            .state
            .cycle_stamp
            .is_none_or(|s| now.saturating_duration_since(s) > phase_len);
        let gain = self.state.pacing_gain;
        let next = if gain > 1.0 {
            let cwnd_limited = self.bytes_in_flight.saturating_add(self.mss) >= self.cwnd;
            full_length
                && (self.loss_in_ack
                    || cwnd_limited
                    || self.bytes_in_flight >= self.model.bdp(gain))
        } else if gain < 1.0 {
            full_length || self.bytes_in_flight <= self.model.bdp(1.0)
        } else {
            full_length
        };
        if next {
            self.state.advance_cycle(now);
        }
    }

    fn check_probe_rtt(&mut self, now: Instant, expired: bool, ack: &AckEvent) {
        if self.state.mode != BbrMode::ProbeRtt && expired {
            self.save_cwnd();
            self.state.enter(BbrMode::ProbeRtt);
            self.probe_rtt.start();
        }
        if self.state.mode != BbrMode::ProbeRtt {
            return;
        }
        let drained = self.bytes_in_flight <= self.min_cwnd;
        match self.probe_rtt.step(now, drained, self.rounds.start) {
            ProbeRttStep::Wait => {}
            ProbeRttStep::Drained => self.rounds.restart(ack),
            ProbeRttStep::Done => {
                self.model.min_rtt_stamp = Some(now);
                self.cwnd = self.cwnd.max(self.prior_cwnd);
                if self.full_pipe.filled {
                    self.state.enter_probe_bw(now);
                } else {
                    self.state.enter(BbrMode::Startup);
                }
            }
        }
    }

    /// BBRv3 `BBRProbeInflightHiUpward`: while probing up and limited by the
    /// bound (the sender filled a window of `inflight_hi`), raise `inflight_hi`
    /// with an exponentially growing slope. Our probe phase lasts about one
    /// round (one min RTT), not BBRv3's multi-round ProbeBW_UP, so the slope
    /// carries over from one probe to the next and restarts only when a lossy
    /// probe sets the bound again. Without this a bound set during a loss
    /// burst, while the bandwidth estimate was falling, never grows back: the
    /// window stays at a few packets, the bandwidth filter forgets the link rate
    /// within ten (short) rounds and the model settles on what that window delivers.
    fn probe_inflight_hi_upward(&mut self, acked: u64) {
        if self.state.mode != BbrMode::ProbeBw
            || self.state.pacing_gain <= 1.0
            || !self.cwnd_limited
        {
            return;
        }
        self.bound
            .probe_upward(acked, self.cwnd, self.mss, self.rounds.start);
    }

    fn set_pacing_rate(&mut self, rtt_sample: Option<Duration>) {
        if !self.has_seen_rtt
            && let Some(rtt) = self.model.min_rtt.or(rtt_sample)
        {
            self.has_seen_rtt = true;
            self.init_pacing_rate(rtt.max(NO_RTT_PACING_RTT / 1000));
        }
        let bw = self.model.bw();
        if bw == 0 {
            return;
        }
        let rate = scale(bw, self.state.pacing_gain * PACING_MARGIN).max(1);
        if self.full_pipe.filled || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    fn set_cwnd(&mut self, acked: u64) {
        let target = self.cwnd_target();
        if self.recovery.in_conservation() {
            let floor = self.model.bdp(self.state.pacing_gain.max(1.0));
            self.cwnd = self
                .cwnd
                .max(self.bytes_in_flight.saturating_add(acked))
                .max(floor);
        } else if self.full_pipe.filled {
            self.cwnd = self.cwnd.saturating_add(acked).min(target);
        } else if self.cwnd < target || self.delivered < self.model.initial_cwnd {
            self.cwnd = self.cwnd.saturating_add(acked);
        }
        self.cwnd = self.cwnd.max(self.min_cwnd);
        if let Some(hi) = self.bound.get() {
            self.cwnd = self.cwnd.min(hi.max(self.min_cwnd));
        }
        if self.state.mode == BbrMode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.min_cwnd);
        }
    }
}

impl CongestionController for Bbr {
    fn on_sent(&mut self, _now: Instant, _bytes: u64, bytes_in_flight: u64) {
        self.bytes_in_flight = bytes_in_flight;
        // No room for another full packet: the window, not the sender, limits.
        if bytes_in_flight.saturating_add(self.mss) > self.cwnd {
            self.cwnd_limited = true;
        }
    }

    fn on_ack(&mut self, now: Instant, ack: &AckEvent, _rtt: &RttEstimator) {
        self.bytes_in_flight = ack.bytes_in_flight;
        self.delivered = self.delivered.saturating_add(ack.acked_bytes);
        self.rounds.update(ack);
        self.update_recovery(ack);
        self.check_recovery_entry(now, ack);
        self.model.update_bw(self.rounds.count, ack);
        self.check_loss_too_high(now, ack);
        self.full_pipe
            .check(self.model.bw(), self.rounds.start, ack);
        self.check_drain(now);
        self.update_cycle(now);
        let expired = self.model.update_min_rtt(now, ack.rtt_sample);
        self.check_probe_rtt(now, expired, ack);
        self.probe_inflight_hi_upward(ack.acked_bytes);
        self.set_pacing_rate(ack.rtt_sample);
        self.set_cwnd(ack.acked_bytes);
        self.loss_in_ack = false;
        self.cwnd_limited = false;
    }

    fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64, persistent: bool) {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(bytes);
        self.loss_in_ack = true;
        if persistent {
            // RFC 9002 §7.6.2: collapse to the minimum window; the model survives.
            self.save_cwnd();
            self.recovery.enter(now, self.rounds.count);
            self.cwnd = self.min_cwnd;
            self.recovery.pending_loss_sent_at = None;
            return;
        }
        // As BBRv1: an ACK releases at most what it acknowledged minus what
        // was lost; whether recovery starts is decided with the ACK's rate
        // sample (`check_recovery_entry`).
        self.cwnd = self.cwnd.saturating_sub(bytes).max(self.min_cwnd);
        self.recovery.note_loss(sent_at);
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn pacing_rate(&self) -> Option<u64> {
        Some(self.pacing_rate)
    }

    fn phase(&self) -> Phase {
        Phase::Bbr(self.state.mode)
    }

    fn snapshot(&self) -> Snapshot {
        let bw = self.model.bw();
        Snapshot {
            algorithm: Algorithm::Bbr,
            phase: self.phase(),
            in_recovery: self.recovery.in_recovery(),
            bandwidth: (bw > 0).then_some(bw),
            min_rtt: self.model.min_rtt,
            pacing_rate: Some(self.pacing_rate),
            cwnd: self.cwnd,
            bytes_in_flight: self.bytes_in_flight,
            ssthresh: None,
            inflight_hi: self.inflight_hi(),
        }
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::Bbr
    }

    fn clone_box(&self) -> Box<dyn CongestionController> {
        Box::new(self.clone())
    }
}
