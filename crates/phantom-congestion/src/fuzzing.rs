//! The `congestion_ops` fuzz target's body: an arbitrary sequence of send, ACK, loss
//! and idle events fed to all three controllers at once, with NewReno checked against
//! a reference model of RFC 9002 §7 written out here on its own.
//!
//! The driver keeps the sender side consistent (a packet is acknowledged or lost at
//! most once, in-flight bytes are what was sent minus what left, time only moves
//! forward); everything else (sizes, gaps, which packets an ACK covers, RTT samples,
//! app-limited marks, persistent congestion) is chosen by the input.
//!
//! Checked after every event, for every controller: no panic or arithmetic overflow
//! (the fuzz build has debug assertions), the window is at least the controller's
//! floor (the configured minimum for NewReno and CUBIC, `min(minimum, 4 packets)`
//! for BBR), the snapshot agrees with the getters, and NewReno's window and slow-start
//! threshold equal the model's.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::{AckEvent, Algorithm, Config, CongestionController, RateSample, RttEstimator, rate_of};

/// At most this many events are decoded from one input.
const MAX_EVENTS: usize = 2048;

/// RFC 9002 §7 NewReno, as plainly as it can be written.
struct ModelNewReno {
    mss: u64,
    min_window: u64,
    cwnd: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    acked_in_ca: u64,
}

impl ModelNewReno {
    fn new(config: &Config) -> Self {
        Self {
            mss: config.max_datagram_size,
            min_window: config.minimum_window(),
            cwnd: config.initial_window(),
            ssthresh: u64::MAX,
            recovery_start: None,
            acked_in_ca: 0,
        }
    }

    fn on_ack(&mut self, acked: u64, largest_sent_at: Instant, app_limited: bool) {
        // §7.3.2: packets sent before recovery began do not grow the window.
        if self.recovery_start.is_some_and(|s| largest_sent_at <= s) {
            return;
        }
        // §7.8: an under-used window does not grow.
        if app_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(acked);
            return;
        }
        self.acked_in_ca = self.acked_in_ca.saturating_add(acked);
        if self.acked_in_ca >= self.cwnd {
            self.acked_in_ca -= self.cwnd;
            self.cwnd = self.cwnd.saturating_add(self.mss);
        }
    }

    fn on_loss(&mut self, now: Instant, sent_at: Instant, persistent: bool) {
        if self.recovery_start.is_none_or(|s| sent_at > s) {
            self.recovery_start = Some(now);
            self.ssthresh = (self.cwnd / 2).max(self.min_window);
            self.cwnd = self.ssthresh;
            self.acked_in_ca = 0;
        }
        if persistent {
            self.cwnd = self.min_window;
            self.recovery_start = None;
        }
    }
}

/// One packet in flight, as the driver remembers it.
struct Sent {
    at: Instant,
    bytes: u64,
    delivered_at_send: u64,
    in_flight_at_send: u64,
    lost_at_send: u64,
}

/// A byte cursor that yields zeros once the input is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
}

/// The fuzz body (see the module doc). Returns the number of events applied.
///
/// # Panics
/// When an invariant above does not hold: that is the finding.
pub fn congestion_ops(origin: Instant, data: &[u8]) -> usize {
    let mut input = Bytes(data);
    let config = Config {
        max_datagram_size: 64 + u64::from(input.u16() % 1437),
        initial_window_packets: 1 + u64::from(input.u8() % 32),
        minimum_window_packets: 1 + u64::from(input.u8() % 8),
        initial_rtt: Duration::from_millis(1 + u64::from(input.u16())),
        max_ack_delay: Duration::from_millis(u64::from(input.u8())),
        seed: u64::from(input.u16()),
    };
    if config.validate().is_err() {
        return 0;
    }
    let mut controllers: Vec<Box<dyn CongestionController>> = Vec::new();
    for algorithm in Algorithm::ALL {
        match algorithm.build(&config) {
            Ok(c) => controllers.push(c),
            Err(_) => return 0,
        }
    }
    let mut run = OpsRun {
        mss: config.max_datagram_size,
        model: ModelNewReno::new(&config),
        rtt: RttEstimator::new(config.initial_rtt, config.max_ack_delay),
        controllers,
        now: origin,
        flight: VecDeque::new(),
        in_flight: 0,
        delivered: 0,
        lost_total: 0,
    };
    let mut events = 0;
    while !input.0.is_empty() && events < MAX_EVENTS {
        events += 1;
        let op = input.u8();
        run.now += Duration::from_micros(u64::from(input.u16()) * u64::from(op >> 4 | 1));
        match op % 4 {
            0 => run.send(op, &mut input),
            1 => run.ack(op, &mut input),
            2 => run.lose(op),
            // Idle: a long gap.
            _ => run.now += Duration::from_millis(u64::from(input.u16())),
        }
        check(&run.controllers, &config, &run.model);
    }
    events
}

/// The state of one `congestion_ops` run: the controllers under test, the model,
/// and the flight they all see.
struct OpsRun {
    mss: u64,
    model: ModelNewReno,
    rtt: RttEstimator,
    controllers: Vec<Box<dyn CongestionController>>,
    now: Instant,
    flight: VecDeque<Sent>,
    in_flight: u64,
    delivered: u64,
    lost_total: u64,
}

impl OpsRun {
    /// Sends up to 16 packets back to back.
    fn send(&mut self, op: u8, input: &mut Bytes<'_>) {
        for _ in 0..=(op >> 4) {
            let bytes = 1 + u64::from(input.u16()) % self.mss;
            self.in_flight += bytes;
            self.flight.push_back(Sent {
                at: self.now,
                bytes,
                delivered_at_send: self.delivered,
                in_flight_at_send: self.in_flight,
                lost_at_send: self.lost_total,
            });
            for c in &mut self.controllers {
                c.on_sent(self.now, bytes, self.in_flight);
            }
        }
    }

    /// Acknowledges the oldest 1..=16 packets.
    fn ack(&mut self, op: u8, input: &mut Bytes<'_>) {
        let now = self.now;
        let count = 1 + usize::from(op >> 4);
        let app_limited = input.u8() & 1 == 1;
        let ack_delay = Duration::from_micros(u64::from(input.u8()) * 100);
        let mut acked = 0u64;
        let mut newest: Option<Sent> = None;
        for _ in 0..count {
            let Some(p) = self.flight.pop_front() else {
                break;
            };
            acked += p.bytes;
            newest = Some(p);
        }
        let Some(newest) = newest else { return };
        self.in_flight -= acked;
        self.delivered += acked;
        let sample = now.saturating_duration_since(newest.at);
        if !sample.is_zero() {
            self.rtt.update(now, sample, ack_delay);
        }
        let interval = sample.max(Duration::from_micros(1));
        let delivered = self.delivered;
        let ack = AckEvent {
            acked_bytes: acked,
            largest_acked_sent_at: newest.at,
            bytes_in_flight: self.in_flight,
            rtt_sample: (!sample.is_zero()).then_some(sample),
            rate: RateSample {
                delivered_total: delivered,
                prior_delivered: newest.delivered_at_send,
                delivered: delivered - newest.delivered_at_send,
                interval,
                delivery_rate: rate_of(delivered - newest.delivered_at_send, interval),
                is_app_limited: app_limited,
                tx_in_flight: newest.in_flight_at_send,
                lost: self.lost_total - newest.lost_at_send,
            },
        };
        for c in &mut self.controllers {
            c.on_ack(now, &ack, &self.rtt);
        }
        self.model.on_ack(acked, newest.at, app_limited);
    }

    /// Declares the oldest 1..=8 packets lost; bit 7 marks persistent congestion.
    fn lose(&mut self, op: u8) {
        let count = 1 + usize::from((op >> 4) & 7);
        let persistent = op & 0x80 != 0;
        let mut bytes = 0u64;
        let mut newest = None;
        for _ in 0..count {
            let Some(p) = self.flight.pop_front() else {
                break;
            };
            bytes += p.bytes;
            newest = Some(p.at);
        }
        let Some(sent_at) = newest else { return };
        self.in_flight -= bytes;
        self.lost_total += bytes;
        for c in &mut self.controllers {
            c.on_loss(self.now, sent_at, bytes, persistent);
        }
        self.model.on_loss(self.now, sent_at, persistent);
    }
}

fn check(controllers: &[Box<dyn CongestionController>], config: &Config, model: &ModelNewReno) {
    let mss = config.max_datagram_size;
    for c in controllers {
        let floor = match c.algorithm() {
            Algorithm::Bbr => config.minimum_window().min(4 * mss),
            Algorithm::Cubic | Algorithm::NewReno => config.minimum_window(),
        };
        let window = c.window();
        assert!(
            window >= floor,
            "{}: window {window} below {floor}",
            c.algorithm()
        );
        let snap = c.snapshot();
        assert_eq!(snap.cwnd, window, "{}: snapshot window", c.algorithm());
        assert_eq!(
            snap.pacing_rate,
            c.pacing_rate(),
            "{}: snapshot pacing",
            c.algorithm()
        );
        assert_eq!(snap.algorithm, c.algorithm());
        if c.algorithm() == Algorithm::NewReno {
            assert_eq!(window, model.cwnd, "NewReno window differs from the model");
            assert_eq!(
                snap.ssthresh,
                (model.ssthresh != u64::MAX).then_some(model.ssthresh),
                "NewReno ssthresh differs from the model"
            );
        }
    }
}
