//! The congestion snapshot type.
//!
//! The controllers (BBR, CUBIC, NewReno) and the token-bucket pacer are
//! `phantom-congestion`'s, bundled per path in its `PathRecovery`, which each path
//! owns (through [`crate::recovery::PathRecovery`]), so there is no lock and one
//! update per ACK: the pacer is set from the same controller state in the same
//! call that fed it the ACK (fixing the reference design's double-lock read).

/// Snapshot of a path's congestion state for telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CongestionSnapshot {
    /// Congestion window in bytes.
    pub cwnd: u64,
    /// Bytes in flight.
    pub in_flight: u64,
    /// Slow-start threshold in bytes (`u64::MAX` until the first loss).
    pub ssthresh: u64,
    /// Pacing rate in bytes per second.
    pub pacing_rate: u64,
    /// Delivery-rate estimate in bytes per second (bytes acked per smoothed RTT).
    pub bandwidth: u64,
}
