//! Unreliable datagrams queued in both directions.

use std::collections::VecDeque;

/// The outgoing and received datagram queues.
#[derive(Debug, Default)]
pub(super) struct Datagrams {
    outgoing: VecDeque<Vec<u8>>,
    received: VecDeque<Vec<u8>>,
}

impl Datagrams {
    /// Datagrams waiting to be sent.
    pub(super) fn queued(&self) -> usize {
        self.outgoing.len()
    }

    /// True if a datagram waits to be sent.
    pub(super) fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub(super) fn queue(&mut self, data: Vec<u8>) {
        self.outgoing.push_back(data);
    }

    /// The oldest datagram waiting to be sent.
    pub(super) fn front(&self) -> Option<&[u8]> {
        self.outgoing.front().map(Vec::as_slice)
    }

    /// The oldest datagram was sent.
    pub(super) fn pop_sent(&mut self) {
        self.outgoing.pop_front();
    }

    /// Keeps a received datagram, dropping the oldest beyond `limit`.
    pub(super) fn on_received(&mut self, data: &[u8], limit: usize) {
        if self.received.len() >= limit {
            self.received.pop_front();
        }
        self.received.push_back(data.to_vec());
    }

    /// The oldest received datagram.
    pub(super) fn take_received(&mut self) -> Option<Vec<u8>> {
        self.received.pop_front()
    }
}
