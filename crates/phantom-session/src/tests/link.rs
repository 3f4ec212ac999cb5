//! A seeded, deterministic link model: serialisation rate, propagation delay,
//! drop-tail queue, random loss, duplication and reordering.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// Fault and capacity knobs of one direction of a link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkConfig {
    /// Bits per second; 0 = unlimited.
    pub(crate) rate_bps: u64,
    /// One-way propagation delay.
    pub(crate) delay: Duration,
    /// Probability a datagram is dropped.
    pub(crate) loss: f64,
    /// Probability a datagram is delivered twice.
    pub(crate) dup: f64,
    /// Probability a datagram is held back by up to `reorder_by`.
    pub(crate) reorder: f64,
    /// Extra delay of reordered datagrams.
    pub(crate) reorder_by: Duration,
    /// Each datagram's propagation delay is drawn uniformly from `delay ± jitter`;
    /// datagrams still arrive in the order they left (a jittery path, not a
    /// reordering one). Zero draws nothing from the generator.
    pub(crate) jitter: Duration,
    /// Queue limit in bytes (drop-tail) when rate-limited.
    pub(crate) queue_bytes: u64,
    /// Link is down: everything is dropped.
    pub(crate) down: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            rate_bps: 0,
            delay: Duration::from_millis(10),
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            reorder_by: Duration::from_millis(5),
            jitter: Duration::ZERO,
            queue_bytes: 256 * 1024,
            down: false,
        }
    }
}

/// A datagram in flight.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// One direction of a link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) cfg: LinkConfig,
    rng: ChaCha8Rng,
    busy_until: Option<Instant>,
    /// (deliver_at, tie-break counter) -> datagram
    queue: BTreeMap<(Instant, u64), Datagram>,
    counter: u64,
    /// When the last datagram is due (jitter keeps the order).
    last_at: Option<Instant>,
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
}

impl Link {
    pub(crate) fn new(cfg: LinkConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            busy_until: None,
            queue: BTreeMap::new(),
            counter: 0,
            last_at: None,
            delivered: 0,
            dropped: 0,
        }
    }

    pub(crate) fn send(&mut self, now: Instant, d: Datagram) {
        if self.cfg.down || self.rng.random_bool(self.cfg.loss.clamp(0.0, 1.0)) {
            self.dropped += 1;
            return;
        }
        let mut depart = now;
        if self.cfg.rate_bps > 0 {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            let backlog = start.saturating_duration_since(now);
            let backlog_bytes =
                backlog.as_nanos() * u128::from(self.cfg.rate_bps) / 8 / 1_000_000_000;
            if backlog_bytes > u128::from(self.cfg.queue_bytes) {
                self.dropped += 1;
                return;
            }
            let tx =
                Duration::from_nanos((d.data.len() as u64 * 8 * 1_000_000_000) / self.cfg.rate_bps);
            depart = start + tx;
            self.busy_until = Some(depart);
        }
        let mut at = depart + self.cfg.delay;
        if !self.cfg.jitter.is_zero() {
            let j = self.cfg.jitter.as_micros() as i64;
            let d = self.rng.random_range(-j..=j);
            at = if d < 0 {
                at - Duration::from_micros(d.unsigned_abs())
            } else {
                at + Duration::from_micros(d.unsigned_abs())
            };
            at = at.max(self.last_at.unwrap_or(at)).max(depart);
            self.last_at = Some(at);
        }
        if self.rng.random_bool(self.cfg.reorder.clamp(0.0, 1.0)) {
            let extra = self.cfg.reorder_by.as_micros() as u64;
            at += Duration::from_micros(self.rng.random_range(1..=extra.max(1)));
        }
        if self.rng.random_bool(self.cfg.dup.clamp(0.0, 1.0)) {
            let later = at + Duration::from_micros(self.rng.random_range(0..2000));
            self.push(later, d.clone());
        }
        self.push(at, d);
    }

    fn push(&mut self, at: Instant, d: Datagram) {
        self.counter += 1;
        self.queue.insert((at, self.counter), d);
    }

    /// Drops every datagram still on the link (a path that goes dead loses what
    /// it was carrying too).
    pub(crate) fn purge(&mut self) {
        self.dropped += self.queue.len() as u64;
        self.queue.clear();
        self.busy_until = None;
    }

    pub(crate) fn next_delivery(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        let (&key, _) = self.queue.iter().next()?;
        if key.0 > now {
            return None;
        }
        self.delivered += 1;
        self.queue.remove(&key)
    }
}
