//! 0-RTT early data: the opening bytes of streams the application marks replay-safe.
//!
//! A resuming client may hand `phantom-handshake` up to
//! [`phantom_handshake::MAX_EARLY_DATA`] bytes that travel sealed in its ClientHello under
//! the ticket's early key. The handshake treats them as opaque; the session gives them
//! their meaning: a sequence of `phantom-wire` STREAM frames, each on a stream the client
//! will open (client-initiated, bidirectional or unidirectional, offset 0), in the order
//! the client opens them after the handshake.
//!
//! * The client builds the blob with [`EarlyData`], passes [`EarlyData::encode`] to the
//!   handshake, and after the handshake calls [`Session::replay_early_data`] with the same
//!   [`EarlyData`]: the session opens the same streams (same ids) and queues the same
//!   bytes, so they are sent again under the 1-RTT keys whether or not the server took
//!   the early copy. Nothing is lost when the server refuses 0-RTT.
//! * The server session applies accepted early data when it is built
//!   ([`Session::from_established`]): the streams open and become readable before any
//!   1-RTT packet arrives, and the 1-RTT copy is an ordinary duplicate that stream
//!   reassembly discards. The session is built when the handshake completes (the
//!   ClientFinished verified), which the client's first 1-RTT packets reach at the same
//!   time: early data is not yet read any earlier than 1-RTT data (PROTOCOL.md §5.9).
//!
//! Replay safety: the handshake accepts early data at most once per ticket (I10, a bounded
//! per-process store). Data that must never be processed twice — even by a cluster of
//! servers that do not share that store — does not belong here.
//!
//! [`Session::replay_early_data`]: crate::Session::replay_early_data
//! [`Session::from_established`]: crate::Session::from_established

use phantom_wire::StreamId;
use phantom_wire::Writer;
use phantom_wire::frame::{Frame, Stream as StreamFrame, encode_frames, frames_encoded_len};

use crate::error::Error;
use crate::stream::{Dir, Side, stream_id_for};

/// Most early-data bytes (encoded frames included) one ClientHello carries.
pub const MAX_EARLY_BYTES: usize = phantom_handshake::MAX_EARLY_DATA;

/// One replay-safe stream's opening bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct EarlyStream {
    /// The id the stream gets (the client's next stream of its kind).
    pub id: StreamId,
    /// Its direction.
    pub dir: Dir,
    /// Bytes from offset 0.
    pub data: Vec<u8>,
    /// The stream ends after `data`.
    pub fin: bool,
}

impl core::fmt::Debug for EarlyStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EarlyStream")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("len", &self.data.len())
            .field("fin", &self.fin)
            .finish()
    }
}

/// The client's early data: replay-safe streams opened before the session exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EarlyData {
    streams: Vec<EarlyStream>,
    next_index: [u32; 2],
}

fn kind(dir: Dir) -> usize {
    match dir {
        Dir::Bi => 0,
        Dir::Uni => 1,
    }
}

impl EarlyData {
    /// No early streams yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            streams: Vec::new(),
            next_index: [1, 1],
        }
    }

    /// Marks the client's next stream of `dir` replay-safe and gives it `data` (and the
    /// end of the stream if `fin`). Returns the id the stream will have in the session.
    ///
    /// # Errors
    /// [`Error::EarlyDataTooLarge`] if the encoded early data would exceed
    /// [`MAX_EARLY_BYTES`]; [`Error::StreamIdsExhausted`] never in practice.
    pub fn open_stream(&mut self, dir: Dir, data: &[u8], fin: bool) -> Result<StreamId, Error> {
        let k = kind(dir);
        let index = self.next_index.get(k).copied().unwrap_or(u32::MAX);
        let id = stream_id_for(Side::Client, dir, index).ok_or(Error::StreamIdsExhausted)?;
        let candidate = EarlyStream {
            id,
            dir,
            data: data.to_vec(),
            fin,
        };
        self.streams.push(candidate);
        if self.encoded_len() > MAX_EARLY_BYTES {
            self.streams.pop();
            return Err(Error::EarlyDataTooLarge);
        }
        if let Some(n) = self.next_index.get_mut(k) {
            *n = index.saturating_add(1);
        }
        Ok(id)
    }

    /// The replay-safe streams, in opening order.
    #[must_use]
    pub fn streams(&self) -> &[EarlyStream] {
        &self.streams
    }

    /// True if no stream was opened.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    fn frames(&self) -> Vec<Frame<'_>> {
        self.streams
            .iter()
            .map(|s| {
                Frame::Stream(StreamFrame {
                    stream_id: s.id,
                    offset: 0,
                    fin: s.fin,
                    data: &s.data,
                })
            })
            .collect()
    }

    /// Size of [`EarlyData::encode`]'s output.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        frames_encoded_len(&self.frames())
    }

    /// The blob to hand the handshake (`ClientConfig::early_data`).
    ///
    /// # Errors
    /// [`Error::EarlyDataTooLarge`] cannot happen for data built with
    /// [`EarlyData::open_stream`]; kept for an encoder failure.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let frames = self.frames();
        let mut buf = vec![0u8; frames_encoded_len(&frames)];
        encode_frames(&frames, &mut Writer::new(&mut buf)).map_err(|_| Error::EarlyDataTooLarge)?;
        Ok(buf)
    }
}
