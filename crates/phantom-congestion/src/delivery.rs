//! Delivery-rate sampling, after draft-cheng-iccrg-delivery-rate-estimation.

use std::time::{Duration, Instant};

use crate::rate_of;

/// The connection's delivery state stamped on a packet when it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryState {
    /// Bytes delivered (acknowledged) on the path when the packet was sent.
    pub delivered: u64,
    /// When `delivered` last grew, as of the packet's send.
    pub delivered_time: Instant,
    /// Send time of the packet most recently acknowledged when this one was sent.
    pub first_sent_time: Instant,
    /// Whether the sender was application-limited when the packet was sent.
    pub is_app_limited: bool,
    /// Bytes in flight just after this packet was sent (BBRv2 `tx_in_flight`).
    pub tx_in_flight: u64,
    /// Bytes declared lost on the path when the packet was sent.
    pub lost: u64,
}

/// One delivery-rate sample, produced per ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSample {
    /// Total bytes delivered on the path after this ACK.
    pub delivered_total: u64,
    /// `delivered` stamped on the newest acknowledged packet (round counting).
    pub prior_delivered: u64,
    /// Bytes delivered over [`interval`](Self::interval).
    pub delivered: u64,
    /// `max(send_elapsed, ack_elapsed)`.
    pub interval: Duration,
    /// `delivered / interval` in bytes/s, `None` when the interval is zero or
    /// shorter than the minimum RTT (an ACK-compression artefact, per the draft).
    pub delivery_rate: Option<u64>,
    /// The newest acknowledged packet was sent while application-limited.
    pub is_app_limited: bool,
    /// Bytes in flight when the newest acknowledged packet was sent.
    pub tx_in_flight: u64,
    /// Bytes declared lost between that packet's send and this ACK.
    pub lost: u64,
}

impl RateSample {
    /// A sample carrying no information (what [`crate::AckEvent::new`] uses).
    #[must_use]
    pub const fn empty() -> Self {
        Self {
            delivered_total: 0,
            prior_delivered: 0,
            delivered: 0,
            interval: Duration::ZERO,
            delivery_rate: None,
            is_app_limited: true,
            tx_in_flight: 0,
            lost: 0,
        }
    }
}

/// Per-ACK accumulation: the newest acknowledged packet's stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    pn: u64,
    time_sent: Instant,
    acked_at: Instant,
    state: DeliveryState,
}

/// Connection-level delivery-rate state for one path.
///
/// [`crate::SentPackets`] owns one: it stamps every sent packet with
/// [`on_packet_sent`](Self::on_packet_sent), feeds every acknowledged packet to
/// [`on_packet_acked`](Self::on_packet_acked) and closes each ACK with
/// [`take_sample`](Self::take_sample).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryRateEstimator {
    delivered: u64,
    delivered_time: Option<Instant>,
    first_sent_time: Option<Instant>,
    /// `delivered` mark until which samples are app-limited; 0 = not app-limited.
    app_limited_until: u64,
    lost: u64,
    pending: Option<Pending>,
}

impl DeliveryRateEstimator {
    /// Total bytes delivered so far.
    #[must_use]
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Total bytes declared lost so far.
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Whether the estimator currently marks samples as application-limited.
    #[must_use]
    pub fn is_app_limited(&self) -> bool {
        self.app_limited_until != 0
    }

    /// Stamps a packet of `bytes` sent at `now`; `in_flight_before` excludes it.
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        in_flight_before: u64,
        bytes: u64,
    ) -> DeliveryState {
        if in_flight_before == 0 {
            self.first_sent_time = Some(now);
            self.delivered_time = Some(now);
        }
        DeliveryState {
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_sent_time: self.first_sent_time.unwrap_or(now),
            is_app_limited: self.app_limited_until != 0,
            tx_in_flight: in_flight_before.saturating_add(bytes),
            lost: self.lost,
        }
    }

    /// The sender has no data to fill the window: mark samples app-limited until
    /// everything now in flight is delivered.
    pub fn on_app_limited(&mut self, bytes_in_flight: u64) {
        self.app_limited_until = self.delivered.saturating_add(bytes_in_flight).max(1);
    }

    /// Packets totalling `bytes` were declared lost.
    pub fn on_packets_lost(&mut self, bytes: u64) {
        self.lost = self.lost.saturating_add(bytes);
    }

    /// Packet `pn`, sent at `time_sent` with `bytes` and stamps `state`, was
    /// acknowledged at `now`.
    pub fn on_packet_acked(
        &mut self,
        now: Instant,
        pn: u64,
        time_sent: Instant,
        bytes: u64,
        state: &DeliveryState,
    ) {
        self.delivered = self.delivered.saturating_add(bytes);
        self.delivered_time = Some(now);
        let newer = self.pending.is_none_or(|p| pn > p.pn);
        if newer {
            // The elapsed times are worked out in `take_sample`, for the newest
            // packet of the ACK only.
            self.pending = Some(Pending {
                pn,
                time_sent,
                acked_at: now,
                state: *state,
            });
            self.first_sent_time = Some(time_sent);
        }
    }

    /// Closes one ACK: returns the rate sample built from the newest packet it
    /// acknowledged, or `None` if it acknowledged nothing. `min_rtt` filters out
    /// compressed-ACK intervals.
    pub fn take_sample(&mut self, min_rtt: Option<Duration>) -> Option<RateSample> {
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        let p = self.pending.take()?;
        let send_elapsed = p
            .time_sent
            .saturating_duration_since(p.state.first_sent_time);
        let ack_elapsed = p.acked_at.saturating_duration_since(p.state.delivered_time);
        let interval = send_elapsed.max(ack_elapsed);
        let delivered = self.delivered.saturating_sub(p.state.delivered);
        let valid = !interval.is_zero() && min_rtt.is_none_or(|m| interval >= m);
        Some(RateSample {
            delivered_total: self.delivered,
            prior_delivered: p.state.delivered,
            delivered,
            interval,
            delivery_rate: if valid {
                rate_of(delivered, interval)
            } else {
                None
            },
            is_app_limited: p.state.is_app_limited,
            tx_in_flight: p.state.tx_in_flight,
            lost: self.lost.saturating_sub(p.state.lost),
        })
    }
}
