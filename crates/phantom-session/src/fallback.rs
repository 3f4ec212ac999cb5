//! The carrier fallback state machine: when to move a session from UDP to a
//! TCP-carried transport, and when to probe UDP again and move back.
//!
//! It is pure: the session (or the runtime) feeds it observations with the time,
//! and asks which carrier to use. Moving carriers never loses stream data because
//! the session keeps its retransmission state; the runtime only changes how the
//! session's datagrams travel.

use std::time::{Duration, Instant};

/// The transport that carries the session's datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// Plain UDP datagrams.
    Udp,
    /// Length-prefixed datagrams over a TCP connection.
    Tcp,
}

/// Tuning of the fallback state machine.
#[derive(Debug, Clone, Copy)]
pub struct FallbackConfig {
    /// Consecutive probe timeouts on UDP with nothing received that mark UDP as failing.
    pub max_udp_ptos: u32,
    /// How long UDP may stay silent (no authenticated packet) before falling back.
    pub udp_silence: Duration,
    /// How long to stay on TCP before probing UDP again.
    pub probe_interval: Duration,
    /// How long a UDP probe may take before it is declared failed.
    pub probe_timeout: Duration,
    /// Upper bound of the probe interval after repeated failed probes (doubling back-off).
    pub max_probe_interval: Duration,
}

impl Default for FallbackConfig {
    fn default() -> Self {
        Self {
            max_udp_ptos: 4,
            // Longer than the default keep-alive interval, so an idle but healthy
            // session never looks silent.
            udp_silence: Duration::from_secs(25),
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(3),
            max_probe_interval: Duration::from_secs(600),
        }
    }
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackState {
    /// Using UDP; `ptos` consecutive probe timeouts since the last packet received.
    Udp {
        /// Consecutive PTOs without receiving anything.
        ptos: u32,
    },
    /// Using TCP; the next UDP probe is due at `next_probe`.
    Tcp {
        /// When to probe UDP next.
        next_probe: Instant,
    },
    /// Still using TCP, while a UDP probe is outstanding until `deadline`.
    ProbingUdp {
        /// When the probe is declared failed.
        deadline: Instant,
    },
}

/// What the runtime should do after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum FallbackAction {
    /// Nothing changes.
    None,
    /// Start carrying the session over TCP.
    SwitchToTcp,
    /// Send a UDP probe (e.g. a PING or PATH_CHALLENGE over UDP) while staying on TCP.
    ProbeUdp,
    /// UDP works again: move the session back to UDP.
    SwitchToUdp,
}

/// The fallback state machine.
#[derive(Debug, Clone)]
pub struct Fallback {
    cfg: FallbackConfig,
    state: FallbackState,
    last_udp_rx: Instant,
    interval: Duration,
}

impl Fallback {
    /// Starts on UDP at time `now`.
    #[must_use]
    pub fn new(cfg: FallbackConfig, now: Instant) -> Self {
        Self {
            cfg,
            state: FallbackState::Udp { ptos: 0 },
            last_udp_rx: now,
            interval: cfg.probe_interval,
        }
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> FallbackState {
        self.state
    }

    /// The carrier to send on now.
    #[must_use]
    pub fn carrier(&self) -> Carrier {
        match self.state {
            FallbackState::Udp { .. } => Carrier::Udp,
            FallbackState::Tcp { .. } | FallbackState::ProbingUdp { .. } => Carrier::Tcp,
        }
    }

    /// An authenticated packet arrived over UDP.
    pub fn on_udp_received(&mut self, now: Instant) -> FallbackAction {
        self.last_udp_rx = now;
        match self.state {
            FallbackState::Udp { .. } => {
                self.state = FallbackState::Udp { ptos: 0 };
                FallbackAction::None
            }
            FallbackState::ProbingUdp { .. } | FallbackState::Tcp { .. } => {
                self.interval = self.cfg.probe_interval;
                self.state = FallbackState::Udp { ptos: 0 };
                FallbackAction::SwitchToUdp
            }
        }
    }

    /// A probe timeout fired while on UDP.
    pub fn on_udp_pto(&mut self, now: Instant) -> FallbackAction {
        if let FallbackState::Udp { ptos } = self.state {
            let ptos = ptos.saturating_add(1);
            self.state = FallbackState::Udp { ptos };
            if ptos >= self.cfg.max_udp_ptos {
                return self.fall_back(now);
            }
        }
        FallbackAction::None
    }

    /// UDP is known to be blocked (e.g. the socket reported an error, or the
    /// handshake over UDP timed out).
    pub fn on_udp_blocked(&mut self, now: Instant) -> FallbackAction {
        match self.state {
            FallbackState::Udp { .. } => self.fall_back(now),
            FallbackState::ProbingUdp { .. } => self.probe_failed(now),
            FallbackState::Tcp { .. } => FallbackAction::None,
        }
    }

    /// Time passes: start probes, expire probes, notice UDP silence.
    pub fn on_timeout(&mut self, now: Instant) -> FallbackAction {
        match self.state {
            FallbackState::Udp { .. } => {
                if now.saturating_duration_since(self.last_udp_rx) >= self.cfg.udp_silence {
                    self.fall_back(now)
                } else {
                    FallbackAction::None
                }
            }
            FallbackState::Tcp { next_probe } if now >= next_probe => {
                self.state = FallbackState::ProbingUdp {
                    deadline: now + self.cfg.probe_timeout,
                };
                FallbackAction::ProbeUdp
            }
            FallbackState::ProbingUdp { deadline } if now >= deadline => self.probe_failed(now),
            _ => FallbackAction::None,
        }
    }

    /// The next instant at which [`Fallback::on_timeout`] may act.
    #[must_use]
    pub fn next_timeout(&self) -> Instant {
        match self.state {
            FallbackState::Udp { .. } => self.last_udp_rx + self.cfg.udp_silence,
            FallbackState::Tcp { next_probe } => next_probe,
            FallbackState::ProbingUdp { deadline } => deadline,
        }
    }

    fn fall_back(&mut self, now: Instant) -> FallbackAction {
        self.interval = self.cfg.probe_interval;
        self.state = FallbackState::Tcp {
            next_probe: now + self.interval,
        };
        FallbackAction::SwitchToTcp
    }

    fn probe_failed(&mut self, now: Instant) -> FallbackAction {
        self.interval = (self.interval * 2).min(self.cfg.max_probe_interval);
        self.state = FallbackState::Tcp {
            next_probe: now + self.interval,
        };
        FallbackAction::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FallbackConfig {
        FallbackConfig {
            max_udp_ptos: 3,
            udp_silence: Duration::from_secs(10),
            probe_interval: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(2),
            max_probe_interval: Duration::from_secs(120),
        }
    }

    #[test]
    fn falls_back_after_consecutive_ptos_and_not_before() {
        let t0 = crate::test_instant();
        let mut f = Fallback::new(cfg(), t0);
        assert_eq!(f.on_udp_pto(t0), FallbackAction::None);
        assert_eq!(f.on_udp_pto(t0), FallbackAction::None);
        // Receiving resets the count.
        assert_eq!(f.on_udp_received(t0), FallbackAction::None);
        assert_eq!(f.on_udp_pto(t0), FallbackAction::None);
        assert_eq!(f.on_udp_pto(t0), FallbackAction::None);
        assert_eq!(f.carrier(), Carrier::Udp);
        assert_eq!(f.on_udp_pto(t0), FallbackAction::SwitchToTcp);
        assert_eq!(f.carrier(), Carrier::Tcp);
    }

    #[test]
    fn falls_back_on_silence() {
        let t0 = crate::test_instant();
        let mut f = Fallback::new(cfg(), t0);
        assert_eq!(
            f.on_timeout(t0 + Duration::from_secs(9)),
            FallbackAction::None
        );
        assert_eq!(f.next_timeout(), t0 + Duration::from_secs(10));
        assert_eq!(
            f.on_timeout(t0 + Duration::from_secs(10)),
            FallbackAction::SwitchToTcp
        );
    }

    #[test]
    fn probes_udp_with_backoff_and_returns_when_it_works() {
        let t0 = crate::test_instant();
        let mut f = Fallback::new(cfg(), t0);
        assert_eq!(f.on_udp_blocked(t0), FallbackAction::SwitchToTcp);
        assert_eq!(
            f.on_timeout(t0 + Duration::from_secs(29)),
            FallbackAction::None
        );
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(f.on_timeout(t1), FallbackAction::ProbeUdp);
        assert_eq!(f.carrier(), Carrier::Tcp, "still on TCP while probing");
        // Probe times out: next probe after a doubled interval.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(f.on_timeout(t2), FallbackAction::None);
        assert_eq!(
            f.state(),
            FallbackState::Tcp {
                next_probe: t2 + Duration::from_secs(60)
            }
        );
        let t3 = t2 + Duration::from_secs(60);
        assert_eq!(f.on_timeout(t3), FallbackAction::ProbeUdp);
        assert_eq!(f.on_udp_received(t3), FallbackAction::SwitchToUdp);
        assert_eq!(f.carrier(), Carrier::Udp);
    }

    #[test]
    fn probe_backoff_is_capped() {
        let t0 = crate::test_instant();
        let mut f = Fallback::new(cfg(), t0);
        let _ = f.on_udp_blocked(t0);
        let mut now = t0;
        for _ in 0..10 {
            now = f.next_timeout();
            assert_eq!(f.on_timeout(now), FallbackAction::ProbeUdp);
            now = f.next_timeout();
            let _ = f.on_timeout(now);
        }
        assert!(f.next_timeout() <= now + Duration::from_secs(120));
    }
}
