//! Phantom congestion control: RTT estimation, loss detection, delivery-rate
//! sampling, a BBR-style controller, NewReno and CUBIC behind one object-safe
//! trait, and a token-bucket pacer, all sans-IO and std only.
//!
//! **What it owns.** Everything a path needs to decide *how much* and *when* to
//! send: the [`RttEstimator`] (RFC 9002 §5), the per-packet-number-space
//! [`SentPackets`] ledger with RFC 9002 §6 loss detection (packet threshold 3,
//! time threshold 9/8 RTT, 1 ms granularity, PTO, persistent congestion), the
//! [`DeliveryRateEstimator`] (draft-cheng-iccrg-delivery-rate-estimation), the
//! [`CongestionController`] trait with its three implementations ([`Bbr`],
//! [`Cubic`], [`NewReno`], chosen with [`Algorithm::build`]), the [`Pacer`], the
//! telemetry [`Snapshot`], and [`PathRecovery`], which bundles one of each for a
//! single path: the session runs one per path, and the simulator drives the same
//! type, so the simulation tests measure the pacer and recovery the transport
//! ships. With the `sim` feature it also exposes the `sim` module, a
//! deterministic discrete-event bottleneck-link model used by the tests and the
//! `sim` example.
//! It reads no clock (every `Instant` is handed in), does no I/O and spawns nothing.
//!
//! **Invariants upheld.** I9: every type here is a pure function of the calls it
//! receives, the `Instant`s it is handed and, for BBR's ProbeBW phase choice,
//! [`Config::seed`]; the simulator is seeded too, so a run is reproducible bit for
//! bit (tested by `i9_*`). State is per path and owned by the caller (the session
//! owns one [`PathRecovery`] per path): nothing is shared, nothing is locked, and
//! the pacer is updated from the controller in the same `&mut` call that fed it
//! the ACK, which removes the reference design's double-lock defect (the pacer
//! reading a rate from another update) by construction. I1: no function here
//! parses bytes, but ACK ranges and ACK delays come from the peer: they are
//! validated before any state changes ([`Error::InvalidAckRange`],
//! [`Error::AckedUnsentPacket`]), and all arithmetic on them saturates or is
//! checked, so no peer value can panic, overflow or make this crate allocate
//! beyond what the caller itself sent (tested by `i1_*`).
//!
//! # Units
//!
//! Sizes and windows are bytes (`u64`); rates are **bytes per second** (`u64`),
//! `None` meaning "unpaced".
//!
//! # Typical use (one path)
//!
//! ```
//! use std::time::{Duration, Instant};
//! use phantom_congestion::{Algorithm, Config, Error, PathRecovery, SendPermit};
//!
//! // `t0` comes from the runtime's clock; this crate never reads one.
//! fn one_round_trip(t0: Instant) -> Result<(), Error> {
//!     let mut path = PathRecovery::new(Algorithm::Bbr, &Config::default())?;
//!     let mut pn = 0;
//!     while let SendPermit::Now = path.poll_send(t0, 1200) {
//!         path.on_packet_sent(t0, pn, 1200, true)?;
//!         path.on_paced(1200);
//!         pn += 1;
//!     }
//!     let t1 = t0 + Duration::from_millis(40);
//!     let outcome = path.on_ack_received(t1, &[0..=1], Duration::ZERO)?;
//!     assert_eq!(outcome.acked.len(), 2);
//!     assert!(path.rtt().min_rtt().is_some());
//!     // Arm the runtime's loss/PTO timer at `path.timer()`, call
//!     // `path.on_timeout(now)` when it fires, and wake the sender at the
//!     // instant `poll_send` returns in `SendPermit::At`.
//!     Ok(())
//! }
//! # let _ = one_round_trip;
//! ```

mod bbr;
mod cubic;
mod delivery;
mod filter;
/// The `congestion_ops` fuzz target's body (fuzzing and tests only).
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod loss;
mod new_reno;
mod pacer;
mod path;
mod rtt;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

pub use bbr::{Bbr, BbrMode};
pub use cubic::Cubic;
pub use delivery::{DeliveryRateEstimator, DeliveryState, RateSample};
pub use loss::{AckOutcome, SentPacket, SentPackets, TimeoutOutcome};
pub use new_reno::NewReno;
pub use pacer::Pacer;
pub use path::{PathRecovery, SendPermit};
pub use rtt::{GRANULARITY, INITIAL_RTT, RttEstimator};

/// The one error type of this crate.
///
/// [`Error::InvalidConfig`] and [`Error::PacketNumberNotIncreasing`] are caller
/// faults. [`Error::InvalidAckRange`] and [`Error::AckedUnsentPacket`] are peer
/// faults (a protocol violation by the peer); the session decides whether to
/// drop the ACK or close. No variant carries more than small numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`Config`] parameter (or a simulator parameter) is out of range.
    #[error("invalid congestion configuration: {0}")]
    InvalidConfig(&'static str),
    /// [`SentPackets::on_packet_sent`] was given a packet number that does not
    /// exceed the largest one already sent in this space.
    #[error("packet number {pn} does not exceed the largest sent ({largest})")]
    PacketNumberNotIncreasing {
        /// The packet number offered.
        pn: u64,
        /// The largest packet number already recorded.
        largest: u64,
    },
    /// An ACK range whose start lies above its end.
    #[error("ack range {start}..={end} is inverted")]
    InvalidAckRange {
        /// First packet number of the range.
        start: u64,
        /// Last packet number of the range.
        end: u64,
    },
    /// The peer acknowledged a packet number that was never sent.
    #[error("peer acknowledged packet {pn}, which was never sent")]
    AckedUnsentPacket {
        /// The offending packet number.
        pn: u64,
    },
}

/// Parameters shared by every controller on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Maximum datagram size in bytes (the "MSS"); windows are counted in it.
    pub max_datagram_size: u64,
    /// Initial congestion window in packets (RFC 9002 suggests 10).
    pub initial_window_packets: u64,
    /// Minimum congestion window in packets (RFC 9002: 2; BBR uses 4 in ProbeRTT).
    pub minimum_window_packets: u64,
    /// RTT assumed before the first sample (RFC 9002: 333 ms).
    pub initial_rtt: Duration,
    /// The peer's `max_ack_delay` (RFC 9000 default: 25 ms).
    pub max_ack_delay: Duration,
    /// Seed for the one random choice a controller makes (BBR's ProbeBW phase
    /// offset). Fixed seed, fixed inputs: fixed outputs (I9).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_datagram_size: 1200,
            initial_window_packets: 10,
            minimum_window_packets: 2,
            initial_rtt: INITIAL_RTT,
            max_ack_delay: Duration::from_millis(25),
            seed: 0,
        }
    }
}

impl Config {
    /// Largest accepted `max_datagram_size` (a UDP payload cannot be larger).
    pub const MAX_DATAGRAM_SIZE: u64 = 65_527;

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_datagram_size < 64 || self.max_datagram_size > Self::MAX_DATAGRAM_SIZE {
            return Err(Error::InvalidConfig(
                "max_datagram_size must be in 64..=65527",
            ));
        }
        if self.initial_window_packets == 0 || self.initial_window_packets > 1000 {
            return Err(Error::InvalidConfig(
                "initial_window_packets must be in 1..=1000",
            ));
        }
        if self.minimum_window_packets == 0
            || self.minimum_window_packets > self.initial_window_packets
        {
            return Err(Error::InvalidConfig(
                "minimum_window_packets must be in 1..=initial_window_packets",
            ));
        }
        if self.initial_rtt.is_zero() || self.initial_rtt > Duration::from_secs(60) {
            return Err(Error::InvalidConfig("initial_rtt must be in (0, 60 s]"));
        }
        if self.max_ack_delay > Duration::from_secs(16) {
            return Err(Error::InvalidConfig("max_ack_delay must be at most 16 s"));
        }
        Ok(())
    }

    /// `initial_window_packets * max_datagram_size`.
    #[must_use]
    pub fn initial_window(&self) -> u64 {
        self.initial_window_packets
            .saturating_mul(self.max_datagram_size)
    }

    /// `minimum_window_packets * max_datagram_size`.
    #[must_use]
    pub fn minimum_window(&self) -> u64 {
        self.minimum_window_packets
            .saturating_mul(self.max_datagram_size)
    }
}

/// Which congestion controller a path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// The BBR-style model-based controller ([`Bbr`]), the default.
    #[default]
    Bbr,
    /// CUBIC, RFC 9438 ([`Cubic`]).
    Cubic,
    /// NewReno as in RFC 9002 §7 ([`NewReno`]).
    NewReno,
}

impl Algorithm {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Algorithm; 3] = [Algorithm::Bbr, Algorithm::Cubic, Algorithm::NewReno];

    /// Builds a fresh controller for one path.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `config` does not [`Config::validate`].
    pub fn build(self, config: &Config) -> Result<Box<dyn CongestionController>, Error> {
        config.validate()?;
        Ok(match self {
            Algorithm::Bbr => Box::new(Bbr::new(config)),
            Algorithm::Cubic => Box::new(Cubic::new(config)),
            Algorithm::NewReno => Box::new(NewReno::new(config)),
        })
    }

    /// Short lower-case name (`"bbr"`, `"cubic"`, `"newreno"`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Bbr => "bbr",
            Algorithm::Cubic => "cubic",
            Algorithm::NewReno => "newreno",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The coarse state a controller is in, for telemetry and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Loss-based: the window doubles every round trip.
    SlowStart,
    /// Loss-based: additive (NewReno) or cubic (CUBIC) growth.
    CongestionAvoidance,
    /// Loss-based: a congestion event is being recovered from; the window does not grow.
    Recovery,
    /// BBR: one of [`BbrMode`]; [`Snapshot::in_recovery`] says whether BBR is
    /// also in loss recovery.
    Bbr(BbrMode),
}

/// What one ACK frame taught the sender, as handed to [`CongestionController::on_ack`].
///
/// [`SentPackets::on_ack_received`] builds it ([`AckOutcome::ack_event`]); tests may
/// build one by hand with [`AckEvent::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckEvent {
    /// Bytes of in-flight packets newly acknowledged by this ACK.
    pub acked_bytes: u64,
    /// Send time of the newest packet this ACK newly acknowledged (recovery ends
    /// when a packet sent after the recovery started is acknowledged).
    pub largest_acked_sent_at: Instant,
    /// Bytes still in flight after removing the acknowledged and lost packets.
    pub bytes_in_flight: u64,
    /// The RTT sample this ACK produced, if any (RFC 9002 §5.1).
    pub rtt_sample: Option<Duration>,
    /// Delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation).
    pub rate: RateSample,
}

impl AckEvent {
    /// An ACK event with no delivery-rate information; `rate` is empty and marked
    /// application-limited, so no controller grows its window or takes a bandwidth
    /// sample from it. Set `rate.is_app_limited = false` for an ACK of packets sent
    /// with the window full.
    #[must_use]
    pub fn new(acked_bytes: u64, largest_acked_sent_at: Instant, bytes_in_flight: u64) -> Self {
        Self {
            acked_bytes,
            largest_acked_sent_at,
            bytes_in_flight,
            rtt_sample: None,
            rate: RateSample::empty(),
        }
    }
}

/// A telemetry snapshot of one path's congestion state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// Which controller produced it.
    pub algorithm: Algorithm,
    /// Its coarse state.
    pub phase: Phase,
    /// Whether a loss recovery episode is under way.
    pub in_recovery: bool,
    /// Estimated bottleneck bandwidth in bytes/s (BBR's max filter; the
    /// loss-based controllers report `cwnd / smoothed_rtt`). `None` before any sample.
    pub bandwidth: Option<u64>,
    /// Minimum RTT seen (BBR: within its 10 s window), `None` before any sample.
    pub min_rtt: Option<Duration>,
    /// Pacing rate in bytes/s, `None` if unpaced.
    pub pacing_rate: Option<u64>,
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// Bytes in flight as last reported to the controller.
    pub bytes_in_flight: u64,
    /// Slow-start threshold (loss-based controllers), `None` while infinite.
    pub ssthresh: Option<u64>,
    /// BBR's loss-derived bound on in-flight bytes (`inflight_hi`), `None` while unbounded.
    pub inflight_hi: Option<u64>,
}

/// A congestion controller for one path: object-safe, owned by the path, no locks.
///
/// # Call protocol
///
/// The caller (normally [`PathRecovery`]) calls, in this order for each ACK:
/// [`on_loss`](Self::on_loss) for the packets the ACK declared lost (if any), then
/// [`on_ack`](Self::on_ack). It calls [`on_sent`](Self::on_sent) for every
/// in-flight packet it sends and reads [`window`](Self::window) and
/// [`pacing_rate`](Self::pacing_rate) before sending.
pub trait CongestionController: fmt::Debug + Send {
    /// A packet of `bytes` was sent at `now`; `bytes_in_flight` includes it.
    fn on_sent(&mut self, now: Instant, bytes: u64, bytes_in_flight: u64);

    /// An ACK newly acknowledged `ack.acked_bytes`; `rtt` is the path's
    /// estimator, already updated with this ACK's sample.
    fn on_ack(&mut self, now: Instant, ack: &AckEvent, rtt: &RttEstimator);

    /// Packets totalling `bytes` were declared lost at `now`; `sent_at` is the
    /// send time of the newest of them. `persistent` is RFC 9002 §7.6
    /// persistent congestion.
    fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64, persistent: bool);

    /// Congestion window in bytes: send only while `bytes_in_flight < window()`.
    fn window(&self) -> u64;

    /// Pacing rate in bytes per second, `None` for unpaced.
    fn pacing_rate(&self) -> Option<u64>;

    /// Coarse state.
    fn phase(&self) -> Phase;

    /// Telemetry snapshot.
    fn snapshot(&self) -> Snapshot;

    /// Which algorithm this is.
    fn algorithm(&self) -> Algorithm;

    /// Clones the controller behind a new box (a path may be forked for probing).
    fn clone_box(&self) -> Box<dyn CongestionController>;
}

/// A shorter name for [`CongestionController`].
pub use CongestionController as Controller;

/// `bytes * 1e9 / nanos`, saturating: a rate in bytes/s from bytes over a duration.
pub(crate) fn rate_of(bytes: u64, over: Duration) -> Option<u64> {
    let nanos = over.as_nanos();
    if nanos == 0 {
        return None;
    }
    let r = u128::from(bytes).saturating_mul(1_000_000_000) / nanos;
    Some(u64::try_from(r).unwrap_or(u64::MAX))
}

/// The window state and RFC 9002 bookkeeping both loss-based controllers (NewReno,
/// CUBIC) share: slow start, recovery periods, persistent congestion, and the phase,
/// pacing rate and telemetry derived from them. Each controller adds only its
/// congestion-avoidance growth and its multiplicative decrease.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LossWindow {
    pub(crate) algorithm: Algorithm,
    pub(crate) mss: u64,
    pub(crate) min_window: u64,
    pub(crate) cwnd: u64,
    pub(crate) ssthresh: u64,
    /// When the current recovery period began (packets sent before it do not count).
    pub(crate) recovery_start: Option<Instant>,
    pub(crate) in_recovery: bool,
    pub(crate) bytes_in_flight: u64,
    pub(crate) smoothed_rtt: Option<Duration>,
    pub(crate) min_rtt: Option<Duration>,
}

impl LossWindow {
    /// Slow start with the configured initial window.
    pub(crate) fn new(algorithm: Algorithm, config: &Config) -> Self {
        Self {
            algorithm,
            mss: config.max_datagram_size,
            min_window: config.minimum_window(),
            cwnd: config.initial_window(),
            ssthresh: u64::MAX,
            recovery_start: None,
            in_recovery: false,
            bytes_in_flight: 0,
            smoothed_rtt: None,
            min_rtt: None,
        }
    }

    /// The shared part of an ACK: RTT telemetry, no growth for packets sent before
    /// the current recovery began (RFC 9002 §7.3.2) or while the sender was
    /// application-limited (§7.8), leaving recovery, slow start.
    /// True when the controller's congestion-avoidance rule decides the growth.
    pub(crate) fn on_ack(&mut self, ack: &AckEvent, rtt: &RttEstimator) -> bool {
        self.bytes_in_flight = ack.bytes_in_flight;
        if rtt.min_rtt().is_some() {
            self.smoothed_rtt = Some(rtt.smoothed());
            self.min_rtt = rtt.min_rtt();
        }
        if self
            .recovery_start
            .is_some_and(|start| ack.largest_acked_sent_at <= start)
        {
            return false;
        }
        self.in_recovery = false;
        // RFC 9002 §7.8: an under-used window (the application or flow control
        // limited the sender) says nothing about the path; it does not grow.
        if ack.rate.is_app_limited {
            return false;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(ack.acked_bytes);
            return false;
        }
        true
    }

    /// The shared part of a loss: true if it starts a new recovery period (one
    /// reduction per period, however many of its packets are lost); the caller then
    /// applies its decrease with [`LossWindow::reduce`].
    pub(crate) fn on_loss(&mut self, now: Instant, sent_at: Instant, bytes: u64) -> bool {
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(bytes);
        if self.recovery_start.is_none_or(|start| sent_at > start) {
            self.recovery_start = Some(now);
            self.in_recovery = true;
            return true;
        }
        false
    }

    /// Multiplicative decrease: `ssthresh = cwnd * factor` (at least the minimum
    /// window), and the window drops to it.
    pub(crate) fn reduce(&mut self, factor: f64) {
        self.ssthresh = scale(self.cwnd, factor).max(self.min_window);
        self.cwnd = self.ssthresh;
    }

    /// RFC 9002 §7.6.2: persistent congestion collapses the window to the minimum
    /// and leaves recovery.
    pub(crate) fn on_persistent_congestion(&mut self) {
        self.cwnd = self.min_window;
        self.recovery_start = None;
        self.in_recovery = false;
    }

    /// RFC 9002 §7.7: pace at `N * cwnd / smoothed_rtt` with N = 1.25.
    const PACING_N: f64 = 1.25;

    pub(crate) fn phase(&self) -> Phase {
        if self.in_recovery {
            Phase::Recovery
        } else if self.cwnd < self.ssthresh {
            Phase::SlowStart
        } else {
            Phase::CongestionAvoidance
        }
    }

    pub(crate) fn pacing_rate(&self) -> Option<u64> {
        rate_of(scale(self.cwnd, Self::PACING_N), self.smoothed_rtt?)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            algorithm: self.algorithm,
            phase: self.phase(),
            in_recovery: self.in_recovery,
            bandwidth: self.smoothed_rtt.and_then(|s| rate_of(self.cwnd, s)),
            min_rtt: self.min_rtt,
            pacing_rate: self.pacing_rate(),
            cwnd: self.cwnd,
            bytes_in_flight: self.bytes_in_flight,
            ssthresh: (self.ssthresh != u64::MAX).then_some(self.ssthresh),
            inflight_hi: None,
        }
    }
}

/// `rate * d` in bytes, saturating: the bytes a rate (bytes/s) delivers in `d`.
pub(crate) fn bytes_in(rate: u64, d: Duration) -> u64 {
    let b = u128::from(rate).saturating_mul(d.as_nanos()) / 1_000_000_000;
    u64::try_from(b).unwrap_or(u64::MAX)
}

/// Multiplies by a gain, saturating (gains are small positive constants).
pub(crate) fn scale(v: u64, gain: f64) -> u64 {
    // Float to int `as` saturates and maps NaN to 0; values stay far below 2^53
    // in practice, where the product is exact enough for a window.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let r = (v as f64 * gain) as u64;
    r
}
