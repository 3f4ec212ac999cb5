//! Timers: one enum-indexed table of deadlines, the earliest of which
//! `poll_timeout` returns, and what happens when each expires.

use std::time::{Duration, Instant};

use super::Session;
use crate::fallback::FallbackAction;
use crate::types::{CloseReason, Event, State};

/// Indices into the timer table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    Idle = 0,
    KeepAlive = 1,
    LossDetection = 2,
    AckDelay = 3,
    Pacing = 4,
    PathValidation = 5,
    RetireKeys = 6,
    Close = 7,
    Fallback = 8,
}

const TIMER_COUNT: usize = 9;

/// One enum-indexed table of deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TimerTable([Option<Instant>; TIMER_COUNT]);

impl TimerTable {
    pub(super) fn set(&mut self, t: Timer, at: Option<Instant>) {
        if let Some(slot) = self.0.get_mut(t as usize) {
            *slot = at;
        }
    }
    pub(super) fn get(&self, t: Timer) -> Option<Instant> {
        self.0.get(t as usize).copied().flatten()
    }
    fn expired(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|d| d <= now)
    }
    fn earliest(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
}

/// The session's deadlines.
#[derive(Debug)]
pub(super) struct Timers {
    table: TimerTable,
    /// The loss, path-validation, fallback and keep-alive deadlines in `table` are
    /// out of date: packets were sent or received since they were last worked out.
    /// A burst of packets works them out once, when they are next read
    /// (`poll_timeout`, `handle_timeout`) or an input of theirs changes outside
    /// `poll_transmit`/`handle_datagram` (which mark them stale after every change).
    stale: bool,
    /// When an ack-eliciting packet last left (the keep-alive counts from there).
    last_tx_eliciting: Instant,
}

impl Timers {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            table: TimerTable::default(),
            stale: false,
            last_tx_eliciting: now,
        }
    }

    pub(super) fn set(&mut self, t: Timer, at: Option<Instant>) {
        self.table.set(t, at);
    }

    pub(super) fn get(&self, t: Timer) -> Option<Instant> {
        self.table.get(t)
    }

    /// Cancels every deadline (the session closes or drains).
    pub(super) fn cancel_all(&mut self) {
        self.table = TimerTable::default();
        self.stale = false;
    }

    /// Marks the loss-related deadlines out of date.
    pub(super) fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// An ack-eliciting packet left now.
    pub(super) fn on_eliciting_sent(&mut self, now: Instant) {
        self.last_tx_eliciting = now;
    }
}

impl Session {
    /// The earliest deadline, with the stale ones worked out.
    pub(super) fn earliest_deadline(&self) -> Option<Instant> {
        if self.timers.stale {
            let mut table = self.timers.table;
            self.loss_timers_into(&mut table);
            return table.earliest();
        }
        self.timers.table.earliest()
    }

    /// Handles expired timers (see [`Session::handle_timeout`]).
    pub(super) fn on_timeout(&mut self, now: Instant) {
        self.flush_loss_timers();
        if self.state == State::Closed {
            return;
        }
        if self.timers.table.expired(Timer::Close, now) {
            self.timers.cancel_all();
            self.state = State::Closed;
            return;
        }
        if matches!(self.state, State::Closing | State::Draining) {
            return;
        }
        if self.timers.table.expired(Timer::Idle, now) {
            tracing::info!(target: "phantom::session", "idle timeout");
            self.timers.cancel_all();
            self.state = State::Closed;
            self.events
                .push_back(Event::Closed(CloseReason::IdleTimeout));
            return;
        }
        let spaces = &mut self.spaces;
        self.streams.retire_closed(|id| spaces.try_retire(id));
        let table = &mut self.timers.table;
        if table.expired(Timer::RetireKeys, now) {
            table.set(Timer::RetireKeys, None);
            self.keys.retire_previous();
            self.forget_quiet_spaces();
        }
        let table = &mut self.timers.table;
        for t in [Timer::AckDelay, Timer::Pacing] {
            if table.expired(t, now) {
                table.set(t, None);
            }
        }
        if table.expired(Timer::KeepAlive, now) {
            table.set(Timer::KeepAlive, None);
            self.send.request_ping();
        }
        if self.timers.table.expired(Timer::Fallback, now) {
            let action = self.fallback.on_timeout(now);
            self.on_fallback_action(action);
        }
        if self.timers.table.expired(Timer::LossDetection, now) {
            self.on_loss_timer(now);
        }
        if self.timers.table.expired(Timer::PathValidation, now) {
            self.on_path_timer(now);
        }
        self.update_loss_timer();
    }

    pub(super) fn on_fallback_action(&mut self, action: FallbackAction) {
        if action == FallbackAction::None {
            return;
        }
        if action == FallbackAction::ProbeUdp {
            // The probe is an ordinary PING; the runtime sends it over UDP.
            self.send.request_ping();
        }
        tracing::info!(target: "phantom::session", ?action, "carrier fallback");
        self.events.push_back(Event::Fallback(action));
    }

    pub(super) fn update_loss_timer(&mut self) {
        let mut table = self.timers.table;
        self.loss_timers_into(&mut table);
        self.timers.table = table;
        self.timers.stale = false;
    }

    /// Brings the deadlines marked stale up to date (see `Timers::stale`).
    pub(super) fn flush_loss_timers(&mut self) {
        if self.timers.stale {
            self.update_loss_timer();
        }
    }

    /// Works out the loss, path-validation, fallback and keep-alive deadlines into
    /// `table`.
    fn loss_timers_into(&self, table: &mut TimerTable) {
        let mut earliest: Option<Instant> = None;
        for (id, p) in self.paths.iter() {
            // A path turns suspect only while another one is healthy (§5.6).
            let suspect = p.suspect_at().filter(|_| self.paths.others_healthy(id));
            let t = match (p.loss_timer(), suspect) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(t) = t {
                earliest = Some(earliest.map_or(t, |e| e.min(t)));
            }
        }
        table.set(Timer::LossDetection, earliest);
        let pv = self.paths.registry().next_timeout();
        table.set(Timer::PathValidation, pv);
        table.set(Timer::Fallback, Some(self.fallback.next_timeout()));
        if let Some(ka) = self.cfg.keep_alive
            && matches!(self.state, State::Connected | State::Migrating)
        {
            table.set(Timer::KeepAlive, Some(self.timers.last_tx_eliciting + ka));
        }
    }

    /// The largest PTO base over all paths.
    pub(super) fn max_pto(&self) -> Duration {
        self.paths
            .values()
            .map(super::paths::Path::pto_base)
            .max()
            .unwrap_or(Duration::from_millis(300))
    }

    pub(super) fn rearm_idle(&mut self, now: Instant) {
        self.timers
            .set(Timer::Idle, Some(now + self.cfg.idle_timeout));
    }
}
