//! The multipath scheduler: which validated path the next data packet goes on.
//!
//! It is a pure function of a snapshot of each candidate path, so each mode is
//! unit-tested without a network.

use std::time::Duration;

use phantom_wire::PathId;

/// How data is spread over the validated paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulerMode {
    /// Every packet on the validated path with the lowest smoothed RTT that has
    /// congestion-window room.
    #[default]
    LowLatency,
    /// Bandwidth aggregation: fill every path's congestion window, preferring the
    /// path with the most room relative to its estimated bandwidth.
    Aggregate,
    /// Every data packet is duplicated on all validated paths (each copy is a new
    /// packet with a fresh sequence number and nonce).
    Redundant,
    /// Use the primary (first validated, healthy) path only; switch to the next
    /// one when it fails.
    Failover,
}

/// What the scheduler needs to know about one candidate path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathView {
    pub(crate) id: PathId,
    pub(crate) srtt: Duration,
    pub(crate) cwnd: u64,
    pub(crate) in_flight: u64,
    /// Validated and not failed over (recent PTOs below the threshold).
    pub(crate) healthy: bool,
}

impl PathView {
    fn room(&self, size: u64) -> bool {
        self.in_flight.saturating_add(size) <= self.cwnd
    }
}

/// Picks the path(s) for the next data packet of `size` bytes. `paths` are the
/// validated paths in registration order. Returns the chosen ids: in redundant mode
/// every path that takes a copy; in aggregate mode every usable path with room, best
/// first (the session sends on the first whose pacer lets it send now, so a path
/// waiting for its pacer never holds back one that could send); otherwise one.
/// Empty when every usable path is window-limited.
pub(crate) fn pick(mode: SchedulerMode, paths: &[PathView], size: u64, out: &mut Vec<PathId>) {
    out.clear();
    let healthy = || paths.iter().filter(|p| p.healthy);
    // With no healthy path, fall back to any validated path (it may recover).
    let any_healthy = healthy().next().is_some();
    let usable = |p: &&PathView| p.healthy || !any_healthy;
    match mode {
        SchedulerMode::LowLatency => {
            if let Some(p) = paths
                .iter()
                .filter(usable)
                .filter(|p| p.room(size))
                .min_by_key(|p| p.srtt)
            {
                out.push(p.id);
            }
        }
        SchedulerMode::Aggregate => {
            // Largest free window share first; ties broken by lower RTT.
            out.extend(
                paths
                    .iter()
                    .filter(usable)
                    .filter(|p| p.room(size))
                    .map(|p| p.id),
            );
            let key = |id: &PathId| {
                paths.iter().find(|p| p.id == *id).map(|p| {
                    let share = p.in_flight.saturating_mul(1000) / p.cwnd.max(1);
                    (share, p.srtt)
                })
            };
            out.sort_by_key(key);
        }
        SchedulerMode::Redundant => {
            // Only send when every usable path has room, so no path starves the others.
            let chosen: Vec<&PathView> = paths.iter().filter(usable).collect();
            if !chosen.is_empty() && chosen.iter().any(|p| p.room(size)) {
                out.extend(chosen.iter().filter(|p| p.room(size)).map(|p| p.id));
            }
        }
        SchedulerMode::Failover => {
            if let Some(p) = paths.iter().find(usable)
                && p.room(size)
            {
                out.push(p.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u8, rtt_ms: u64, cwnd: u64, in_flight: u64, healthy: bool) -> PathView {
        PathView {
            id: PathId(id),
            srtt: Duration::from_millis(rtt_ms),
            cwnd,
            in_flight,
            healthy,
        }
    }

    #[test]
    fn low_latency_prefers_min_rtt_with_room() {
        let mut out = Vec::new();
        let paths = [view(0, 50, 10_000, 0, true), view(1, 20, 10_000, 0, true)];
        pick(SchedulerMode::LowLatency, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(1)]);
        let paths = [
            view(0, 50, 10_000, 0, true),
            view(1, 20, 10_000, 9_500, true),
        ];
        pick(SchedulerMode::LowLatency, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(0)]);
    }

    #[test]
    fn aggregate_fills_the_emptier_window() {
        let mut out = Vec::new();
        let paths = [
            view(0, 20, 10_000, 5_000, true),
            view(1, 50, 10_000, 1_000, true),
        ];
        pick(SchedulerMode::Aggregate, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(1), PathId(0)]);
        let paths = [
            view(0, 20, 10_000, 5_000, true),
            view(1, 50, 10_000, 9_000, true),
        ];
        pick(SchedulerMode::Aggregate, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(0)], "a full window is no candidate");
        let paths = [
            view(0, 20, 10_000, 9_000, true),
            view(1, 50, 10_000, 9_000, true),
        ];
        pick(SchedulerMode::Aggregate, &paths, 1200, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn redundant_uses_every_path() {
        let mut out = Vec::new();
        let paths = [view(0, 20, 10_000, 0, true), view(1, 50, 10_000, 0, true)];
        pick(SchedulerMode::Redundant, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(0), PathId(1)]);
    }

    #[test]
    fn failover_sticks_to_primary_until_it_is_unhealthy() {
        let mut out = Vec::new();
        let paths = [view(0, 80, 10_000, 0, true), view(1, 10, 10_000, 0, true)];
        pick(SchedulerMode::Failover, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(0)]);
        let paths = [view(0, 80, 10_000, 0, false), view(1, 10, 10_000, 0, true)];
        pick(SchedulerMode::Failover, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(1)]);
        // No healthy path: keep trying the primary.
        let paths = [view(0, 80, 10_000, 0, false), view(1, 10, 10_000, 0, false)];
        pick(SchedulerMode::Failover, &paths, 1200, &mut out);
        assert_eq!(out, vec![PathId(0)]);
    }
}
