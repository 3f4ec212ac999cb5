//! What the handshake leaves to the session: its last flight, re-sent while the
//! peer shows it was lost, and the resumption facts.

use std::collections::VecDeque;

/// Resumption facts from the handshake.
#[derive(Default)]
struct Resumption {
    ticket: Option<phantom_handshake::ResumptionTicket>,
    resumed: bool,
    early_accepted: bool,
}

/// The handshake's last flight, re-sent (raw, it is a handshake datagram) when a
/// handshake retransmission from the peer shows it was lost, until the peer's first
/// protected packet authenticates.
pub(super) struct HandshakeTail {
    flight: Vec<Vec<u8>>,
    resend: VecDeque<Vec<u8>>,
    resends_left: u32,
    peer_confirmed: bool,
    /// What the handshake said about resumption (client: the new ticket).
    resumption: Resumption,
}

impl HandshakeTail {
    pub(super) fn new() -> Self {
        Self {
            flight: Vec::new(),
            resend: VecDeque::new(),
            resends_left: 8,
            peer_confirmed: false,
            resumption: Resumption::default(),
        }
    }

    /// Keeps what the handshake said about resumption.
    pub(super) fn set_resumption(
        &mut self,
        ticket: Option<phantom_handshake::ResumptionTicket>,
        resumed: bool,
        early_accepted: bool,
    ) {
        self.resumption = Resumption {
            ticket,
            resumed,
            early_accepted,
        };
    }

    /// Takes the resumption ticket the server issued.
    pub(super) fn take_ticket(&mut self) -> Option<phantom_handshake::ResumptionTicket> {
        self.resumption.ticket.take()
    }

    /// What the ticket offers, while it has not been taken.
    pub(super) fn ticket_hint(&self) -> Option<phantom_handshake::ResumptionHint> {
        self.resumption
            .ticket
            .as_ref()
            .map(phantom_handshake::ResumptionTicket::hint)
    }

    /// True if the session resumed an earlier one.
    pub(super) fn resumed(&self) -> bool {
        self.resumption.resumed
    }

    /// True if the server accepted the client's early data.
    pub(super) fn early_accepted(&self) -> bool {
        self.resumption.early_accepted
    }

    /// Keeps the handshake's last flight.
    pub(super) fn set_flight(&mut self, flight: Vec<Vec<u8>>) {
        self.flight = flight;
    }

    /// True while a retransmitted handshake datagram may mean our flight was lost.
    pub(super) fn awaits_peer(&self) -> bool {
        !self.peer_confirmed && !self.flight.is_empty()
    }

    /// The peer retransmitted its handshake: queue our flight again (bounded).
    pub(super) fn on_peer_retransmit(&mut self) {
        if self.resends_left > 0 && self.resend.is_empty() {
            self.resends_left -= 1;
            self.resend.extend(self.flight.iter().cloned());
        }
    }

    /// A protected packet of the peer authenticated: the flight is no longer needed.
    pub(super) fn on_protected_packet(&mut self) {
        if !self.peer_confirmed {
            self.peer_confirmed = true;
            self.flight.clear();
            self.resend.clear();
        }
    }

    /// The next flight datagram to re-send.
    pub(super) fn next_resend(&mut self) -> Option<Vec<u8>> {
        self.resend.pop_front()
    }
}
