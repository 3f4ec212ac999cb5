//! Field codecs shared by the frame bodies: varints, stream ids, capped lengths,
//! tokens and type bytes.

use super::{FrameType, PATH_TOKEN_LEN};
use crate::codec::{Reader, Writer};
use crate::error::{Error, ensure};
use crate::header::StreamId;
use crate::varint::VarInt;

/// Encoded size of `v` as a varint (8 for values out of range, which fail to encode).
pub(super) fn varint_len(v: u64) -> usize {
    VarInt::try_from(v).map_or(8, VarInt::encoded_len)
}

pub(super) fn stream_id_len(id: StreamId) -> usize {
    VarInt::from_u32(id.0).encoded_len()
}

pub(super) fn read_u64(r: &mut Reader<'_>) -> Result<u64, Error> {
    Ok(r.varint_canonical()?.into_inner())
}

/// I3: a stream id is the varint of the full 32-bit value; anything wider is rejected,
/// never truncated.
pub(super) fn read_stream_id(r: &mut Reader<'_>) -> Result<StreamId, Error> {
    let v = read_u64(r)?;
    u32::try_from(v)
        .map(StreamId)
        .map_err(|_| Error::OutOfRange("stream id"))
}

pub(super) fn put_stream_id(w: &mut Writer<'_>, id: StreamId) -> Result<(), Error> {
    w.put_varint(VarInt::from_u32(id.0))
}

pub(super) fn read_capped(r: &mut Reader<'_>, max: u64, what: &'static str) -> Result<u64, Error> {
    let v = read_u64(r)?;
    ensure!(v <= max, Error::OutOfRange(what));
    Ok(v)
}

pub(super) fn put_capped(
    w: &mut Writer<'_>,
    v: u64,
    max: u64,
    what: &'static str,
) -> Result<(), Error> {
    ensure!(v <= max, Error::OutOfRange(what));
    w.put_varint_u64(v)
}

/// Reads a length varint capped at `max` and then exactly that many bytes. The cap
/// and the bytes present are both checked before any slice is taken (I1).
pub(super) fn read_len_prefixed<'a>(
    r: &mut Reader<'a>,
    max: usize,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    let len = read_u64(r)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= max)
        .ok_or(Error::OutOfRange(what))?;
    r.bytes(len)
}

pub(super) fn read_token(r: &mut Reader<'_>) -> Result<[u8; PATH_TOKEN_LEN], Error> {
    r.array::<PATH_TOKEN_LEN>().copied()
}

pub(super) fn read_type(r: &mut Reader<'_>) -> Result<FrameType, Error> {
    let code = read_u64(r)?;
    FrameType::from_code(code).ok_or(Error::UnknownFrame(code))
}

pub(super) fn expect_type(r: &mut Reader<'_>, want: FrameType) -> Result<(), Error> {
    ensure!(
        read_type(r)? == want,
        Error::Malformed("unexpected frame type")
    );
    Ok(())
}

pub(super) fn put_type(w: &mut Writer<'_>, t: FrameType) -> Result<(), Error> {
    w.put_u8(t as u8)
}
