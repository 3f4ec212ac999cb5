//! NEW_CONN_ID (`0x13`) and RETIRE_CONN_ID (`0x14`): the connection ids an endpoint
//! issues after the handshake, and their retirement (docs/PROTOCOL.md §2.2, §5.11).

use super::{FrameType, expect_type, put_type, read_u64, varint_len};
use crate::codec::{Decode, Encode, Reader, Writer};
use crate::error::{Error, ensure};
use crate::header::{ConnId, MAX_CONN_ID_LEN, MIN_CONN_ID_LEN};

/// Length of a stateless-reset token.
pub const RESET_TOKEN_LEN: usize = 16;

/// NEW_CONN_ID (`0x13`): a connection id the sender issues, with its sequence number
/// and stateless-reset token; every id of the sender below `retire_prior_to` must be
/// retired. Debug shows the id, never the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewConnId {
    /// The id's sequence number (the first id, sent in the handshake, is 0).
    pub seq: u64,
    /// The receiver retires every id of the sender with a smaller sequence number;
    /// at most `seq`.
    pub retire_prior_to: u64,
    /// The id (4..=20 bytes).
    pub id: ConnId,
    /// The stateless-reset token of `id`.
    pub reset_token: [u8; RESET_TOKEN_LEN],
}

impl core::fmt::Debug for NewConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NewConnId")
            .field("seq", &self.seq)
            .field("retire_prior_to", &self.retire_prior_to)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewConnId {
    pub(super) fn body_len(&self) -> usize {
        varint_len(self.seq)
            + varint_len(self.retire_prior_to)
            + 1
            + self.id.len()
            + RESET_TOKEN_LEN
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        let seq = read_u64(r)?;
        let retire_prior_to = read_u64(r)?;
        ensure!(
            retire_prior_to <= seq,
            Error::Malformed("retire_prior_to above the sequence")
        );
        let len = usize::from(r.u8()?);
        ensure!(
            (MIN_CONN_ID_LEN..=MAX_CONN_ID_LEN).contains(&len),
            Error::OutOfRange("connection id length")
        );
        let id = ConnId::from_slice(r.bytes(len)?)?;
        let reset_token = *r.array::<RESET_TOKEN_LEN>()?;
        Ok(Self {
            seq,
            retire_prior_to,
            id,
            reset_token,
        })
    }

    pub(super) fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        ensure!(
            self.retire_prior_to <= self.seq,
            Error::Malformed("retire_prior_to above the sequence")
        );
        w.put_varint_u64(self.seq)?;
        w.put_varint_u64(self.retire_prior_to)?;
        w.put_u8(self.id.len() as u8)?;
        w.put_slice(self.id.as_bytes())?;
        w.put_slice(&self.reset_token)
    }
}
frame_codec!(NewConnId, FrameType::NewConnId);

/// RETIRE_CONN_ID (`0x14`): the sender no longer uses the receiver's connection id of
/// sequence number `seq`; the receiver stops routing it and issues a replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetireConnId {
    /// Sequence number of the retired id.
    pub seq: u64,
}

impl RetireConnId {
    pub(super) fn body_len(&self) -> usize {
        varint_len(self.seq)
    }

    pub(super) fn decode_body(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Self { seq: read_u64(r)? })
    }

    pub(super) fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.put_varint_u64(self.seq)
    }
}
frame_codec!(RetireConnId, FrameType::RetireConnId);
