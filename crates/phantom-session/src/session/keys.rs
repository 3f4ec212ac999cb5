//! The key schedule: our sealer and the peer's opener, their epochs and the rekey
//! signals (the REKEY frame and the REKEY header flag) owed to the peer.

use phantom_crypto::{OpenedPacket, Opener, Sealer, Suite, TrafficSecret};
use phantom_wire::{ConnId, Epoch, Header, SeqLen, StreamId};

use crate::error::Error;
use crate::types::Config;

/// Both directions' packet protection.
pub(super) struct Keys {
    sealer: Sealer,
    opener: Opener,
    /// A REKEY frame announcing our new epoch is owed (piggybacked on a packet).
    rekey_frame_pending: bool,
    /// The next packet sealed is the first of a new epoch (REKEY header flag).
    rekey_flag_pending: bool,
}

impl Keys {
    /// Installs both directions' epoch-0 secrets.
    pub(super) fn new(
        suite: Suite,
        send: TrafficSecret,
        recv: TrafficSecret,
        cfg: &Config,
    ) -> Result<Self, Error> {
        let mut sealer = Sealer::new(suite, send).map_err(|_| Error::Crypto("sealer"))?;
        if let Some(n) = cfg.rekey_threshold {
            sealer.set_rekey_threshold(n);
        }
        if let Some(n) = cfg.seq_rekey_watermark {
            sealer.set_seq_rekey_watermark(n);
        }
        let opener = Opener::new(suite, recv).map_err(|_| Error::Crypto("opener"))?;
        Ok(Self {
            sealer,
            opener,
            rekey_frame_pending: false,
            rekey_flag_pending: false,
        })
    }

    /// Our sending epoch.
    pub(super) fn send_epoch(&self) -> Epoch {
        self.sealer.epoch()
    }

    /// The peer's current epoch.
    pub(super) fn recv_epoch(&self) -> Epoch {
        self.opener.epoch()
    }

    /// The oldest peer epoch whose key can still open packets.
    pub(super) fn oldest_open_epoch(&self) -> Epoch {
        self.opener
            .previous_epoch()
            .unwrap_or_else(|| self.opener.epoch())
    }

    /// Opens one of this session's packets in place (see [`Opener::open_session_packet`]);
    /// `largest` gives the largest authenticated sequence of a space.
    pub(super) fn open<'a>(
        &mut self,
        conn_id: &ConnId,
        datagram: &'a mut [u8],
        largest: impl FnOnce(StreamId) -> Option<u64>,
    ) -> Result<OpenedPacket<'a>, phantom_crypto::Error> {
        self.opener.open_session_packet(conn_id, datagram, largest)
    }

    /// How many sequence bytes our next packet of `stream` carries (see
    /// [`Sealer::seq_len`]).
    pub(super) fn seq_len(&self, stream: StreamId, seq: u64, largest_acked: Option<u64>) -> SeqLen {
        self.sealer.seq_len(stream, seq, largest_acked)
    }

    /// Drops the peer's previous epoch key.
    pub(super) fn retire_previous(&mut self) {
        self.opener.retire_previous();
    }

    /// See [`crate::Session::set_rekey_threshold`].
    pub(super) fn set_rekey_threshold(&mut self, n: u64) {
        self.sealer.set_rekey_threshold(n);
    }

    /// See [`crate::Session::set_seq_rekey_watermark`].
    pub(super) fn set_seq_rekey_watermark(&mut self, n: u64) {
        self.sealer.set_seq_rekey_watermark(n);
    }

    /// Lowers both directions' AEAD limits.
    pub(super) fn set_limits(&mut self, limits: phantom_crypto::Limits) {
        self.sealer.set_limits(limits);
        self.opener.set_limits(limits);
    }

    /// True if the sealer asks for a rekey (I5/I6).
    pub(super) fn needs_rekey(&self) -> bool {
        self.sealer.needs_rekey()
    }

    /// Rekeys our sending direction: the new epoch. A REKEY frame and the REKEY
    /// flag become owed.
    pub(super) fn rekey(&mut self) -> Result<Epoch, Error> {
        let epoch = self.sealer.rekey().map_err(|e| match e {
            phantom_crypto::Error::EpochSaturated => Error::Crypto("epoch saturated"),
            _ => Error::Crypto("rekey failed"),
        })?;
        self.rekey_frame_pending = true;
        self.rekey_flag_pending = true;
        Ok(epoch)
    }

    /// The epoch a REKEY frame should announce, while one is owed.
    pub(super) fn rekey_frame_due(&self) -> Option<Epoch> {
        self.rekey_frame_pending.then(|| self.sealer.epoch())
    }

    /// The owed REKEY frame went into a packet.
    pub(super) fn rekey_frame_sent(&mut self) {
        self.rekey_frame_pending = false;
    }

    /// True if the next packet is the first of a new epoch.
    pub(super) fn rekey_flag_due(&self) -> bool {
        self.rekey_flag_pending
    }

    /// Seals a packet (I2: the header image is the associated data); clears the
    /// REKEY flag once a packet carrying it is sealed.
    pub(super) fn seal(
        &mut self,
        header: &Header,
        out: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, Error> {
        let len = self
            .sealer
            .seal_packet(header, out, payload_len)
            .map_err(|e| match e {
                phantom_crypto::Error::LimitReached => Error::Crypto("confidentiality limit"),
                phantom_crypto::Error::SequenceExhausted => Error::Crypto("sequence exhausted"),
                _ => Error::Crypto("seal failed"),
            })?;
        self.rekey_flag_pending = false;
        Ok(len)
    }
}
