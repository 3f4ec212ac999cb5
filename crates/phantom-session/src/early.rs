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
//! * The server gets accepted early data when the ClientHello is accepted, a round trip
//!   before the handshake completes: with the handshake's
//!   `release_early_data_on_hello`, [`crate::Endpoint::poll_early_data`] hands out a
//!   [`ReleasedEarlyData`] (the handshake checked its AEAD, the ticket age and the
//!   anti-replay store first, I10). When the handshake completes, the session opens the
//!   same streams with those bytes already read, so the application continues each
//!   stream where the early bytes end (and answers on it); early data nobody polled by
//!   then is applied unread instead. Without the setting the early data travels in the
//!   `Established` and the session applies it when it is built
//!   ([`Session::from_established`]), which is when the client's first 1-RTT packets
//!   arrive too. Either way the 1-RTT copy is an ordinary duplicate that stream
//!   reassembly discards.
//!
//! What becomes faster (PROTOCOL.md §5.9): the server application reads the request
//! one round trip sooner and works on its answer while the client's second flight is
//! on the way; the answer itself still leaves only once the ClientFinished verified
//! (the server's traffic keys depend on it: there is no 0.5-RTT data).
//!
//! Replay safety: the handshake accepts early data at most once per ticket (I10, a bounded
//! per-process store), but released early data is **replayable**: servers that do not
//! share that store may each release the same bytes once, and a handshake whose early
//! data was released may still fail (as TLS 1.3 0-RTT data). Data that must never be
//! processed twice does not belong here.
//!
//! [`Session::replay_early_data`]: crate::Session::replay_early_data
//! [`Session::from_established`]: crate::Session::from_established

use std::net::SocketAddr;

use phantom_wire::frame::{Frame, Stream as StreamFrame, encode_frames, frames_encoded_len};
use phantom_wire::{SessionId, StreamId, Writer, parse_frames};

use crate::error::Error;
use crate::stream::{Dir, Side, stream_dir, stream_id_for, stream_initiator};

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

impl EarlyData {
    /// The early data a server received, decoded from its blob. `None` unless the blob
    /// is a non-empty sequence of STREAM frames at offset 0 on client-initiated streams
    /// (the only early data the session applies).
    #[must_use]
    pub fn decode(blob: &[u8]) -> Option<Self> {
        let mut streams = Vec::new();
        for f in parse_frames(blob) {
            match f {
                Ok(Frame::Stream(st))
                    if st.offset == 0 && stream_initiator(st.stream_id) == Side::Client =>
                {
                    streams.push(EarlyStream {
                        id: st.stream_id,
                        dir: stream_dir(st.stream_id),
                        data: st.data.to_vec(),
                        fin: st.fin,
                    });
                }
                _ => return None,
            }
        }
        (!streams.is_empty()).then_some(Self {
            streams,
            next_index: [u32::MAX, u32::MAX],
        })
    }
}

/// Early data handed to the server application when the ClientHello carrying it was
/// accepted, before the handshake completes ([`crate::Endpoint::poll_early_data`]).
///
/// # Replay
/// Its AEAD, the ticket-age window and the anti-replay store were checked (I10), but it
/// is **replayable**: servers that do not share the anti-replay store may each release
/// it once, and the handshake it belongs to may still fail (then no session follows;
/// the client may send the same request again). Act on it only if doing so twice is
/// harmless (an idempotent read), as with TLS 1.3 0-RTT data.
#[derive(Debug, Clone)]
pub struct ReleasedEarlyData {
    /// The client's address (not validated yet).
    pub remote: SocketAddr,
    /// The session id the session gets if the handshake completes.
    pub session_id: SessionId,
    /// The replay-safe streams and their opening bytes.
    pub data: EarlyData,
}

impl ReleasedEarlyData {
    /// Always true: released early data may be a replay (see the type's doc).
    #[must_use]
    pub const fn is_replayable(&self) -> bool {
        true
    }

    /// The replay-safe streams, in opening order.
    #[must_use]
    pub fn streams(&self) -> &[EarlyStream] {
        self.data.streams()
    }
}
