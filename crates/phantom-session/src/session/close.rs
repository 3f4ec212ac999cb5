//! Closing: a local close or a fatal error sends CLOSE (re-sent, bounded, while
//! the peer keeps sending) and the session drains for three PTOs.

use std::time::Instant;

use phantom_crypto::TAG_LEN;
use phantom_wire::frame::Close;
use phantom_wire::{Encode, Frame, Writer};

use super::timers::Timer;
use super::{Built, Session};
use crate::error::Error;
use crate::types::{AppCode, CloseCode, CloseReason, Event, State, Transmit};

/// Most CLOSE retransmissions while closing.
const MAX_CLOSE_RESENDS: u32 = 8;

/// The closing frame we keep re-sending while closing.
#[derive(Debug, Clone)]
pub(super) struct CloseInfo {
    code: CloseCode,
    reason: Vec<u8>,
    resends_left: u32,
    pending: bool,
}

impl CloseInfo {
    /// The peer sent a packet while we close: answer it with our CLOSE again
    /// (bounded).
    pub(super) fn on_peer_packet(&mut self) {
        if self.resends_left > 0 {
            self.resends_left -= 1;
            self.pending = true;
        }
    }
}

impl Session {
    /// See [`Session::close`].
    pub(super) fn close_locally(&mut self, now: Instant, code: AppCode, reason: &[u8]) {
        if self.is_closed() {
            return;
        }
        let reason = reason
            .get(..reason.len().min(phantom_wire::frame::MAX_CLOSE_REASON_LEN))
            .unwrap_or_default()
            .to_vec();
        self.events.push_back(Event::Closed(CloseReason::Local {
            code,
            reason: reason.clone(),
        }));
        self.start_closing(now, CloseCode::Application(code), reason);
    }

    /// Closes the session on a fatal error (a peer violation, a crypto limit).
    pub(super) fn fatal(&mut self, now: Instant, e: Error) {
        if self.is_closed() {
            return;
        }
        tracing::warn!(target: "phantom::session", error = %e, "closing on fatal error");
        self.events.push_back(Event::Closed(CloseReason::Error(e)));
        let reason = e.to_string().into_bytes();
        self.start_closing(now, CloseCode::Transport(e.close_code()), reason);
    }

    fn start_closing(&mut self, now: Instant, code: CloseCode, reason: Vec<u8>) {
        let (wire_code, application) = code.to_wire();
        let _span =
            tracing::info_span!("phantom.session.close", side = ?self.side, code = wire_code, application)
                .entered();
        let pto = self.max_pto();
        self.state = State::Closing;
        self.timers.cancel_all();
        self.timers.set(Timer::Close, Some(now + pto * 3));
        self.close = Some(CloseInfo {
            code,
            reason,
            resends_left: MAX_CLOSE_RESENDS,
            pending: true,
        });
    }

    /// The CLOSE packet, while one is owed.
    pub(super) fn send_close(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        size: usize,
    ) -> Option<Transmit> {
        let info = self.close.as_ref()?;
        if !info.pending {
            return None;
        }
        let (code, application) = info.code.to_wire();
        let payload = buf.get_mut(self.max_header_len()..size - TAG_LEN)?;
        let mut w = Writer::new(payload);
        let room = w.remaining().saturating_sub(16);
        let reason = info
            .reason
            .get(..info.reason.len().min(room))
            .unwrap_or_default();
        Frame::Close(Close {
            error_code: code,
            application,
            reason,
        })
        .encode(&mut w)
        .ok()?;
        let mut built = Built::new();
        built.len = w.written();
        // The primary path if its anti-amplification budget allows the packet (I7: it
        // may have just moved to an address still being validated), else any path
        // that can take it; with none, the CLOSE waits for budget (or the close timer).
        // (At most: the header may be shorter, the payload is padded to the sample.)
        let len = (self.max_header_len() + built.len + TAG_LEN)
            .max(phantom_wire::min_packet_len(self.conn_ids.max_peer_len()))
            as u64;
        let id = std::iter::once(self.paths.primary())
            .chain(self.paths.ids())
            .find(|&p| self.paths.contains(p) && self.paths.registry().can_send(p, len))?;
        if let Some(info) = self.close.as_mut() {
            info.pending = false;
        }
        self.finish_packet(now, id, buf, &built, false)
    }
}
