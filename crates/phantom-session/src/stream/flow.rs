//! Session-level flow control.

use crate::error::{Error, PeerViolation};

/// Session-level flow control for both directions.
#[derive(Debug)]
pub(crate) struct ConnFlow {
    /// Peer's MAX_DATA.
    pub(crate) send_max: u64,
    /// Sum of highest offsets sent over all streams.
    pub(crate) sent: u64,
    /// Our advertised MAX_DATA.
    pub(crate) recv_max: u64,
    /// Sum of highest offsets received.
    received: u64,
    /// Bytes the application consumed.
    consumed: u64,
    window: u64,
    pub(crate) credit_pending: bool,
}

impl ConnFlow {
    pub(crate) fn new(send_max: u64, window: u64) -> Self {
        Self {
            send_max,
            sent: 0,
            recv_max: window,
            received: 0,
            consumed: 0,
            window,
            credit_pending: false,
        }
    }

    pub(crate) fn send_credit(&self) -> u64 {
        self.send_max.saturating_sub(self.sent)
    }

    pub(crate) fn on_received(&mut self, grew: u64) -> Result<(), Error> {
        self.received = self.received.saturating_add(grew);
        if self.received > self.recv_max {
            return Err(Error::PeerViolation(PeerViolation::SessionFlowControl));
        }
        Ok(())
    }

    pub(crate) fn on_consumed(&mut self, n: u64) {
        self.consumed = self.consumed.saturating_add(n);
        if self.recv_max.saturating_sub(self.consumed) < self.window / 2 {
            self.recv_max = self.consumed + self.window;
            self.credit_pending = true;
        }
    }
}
