//! Stream ids: which end opened a stream, which way it carries data, and its
//! per-(initiator, direction) index.
//!
//! Layout of a [`StreamId`]: bit 0 = initiator (0 client, 1 server), bit 1 =
//! unidirectional, the remaining 30 bits a per-(initiator, direction) index
//! starting at 1, so that id 0 stays the control stream and ids are never reused (I3).

use phantom_wire::StreamId;

/// Which way a stream carries data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Both peers send and receive.
    Bi,
    /// Only the opener sends.
    Uni,
}

/// Which end of the session we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that initiated the handshake.
    Client,
    /// The end that accepted it.
    Server,
}

impl Side {
    /// The other side.
    #[must_use]
    pub const fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Bit 0 of an id: set when the server opened the stream.
const SERVER_BIT: u32 = 1;
/// Bit 1 of an id: set when the stream is unidirectional.
const UNI_BIT: u32 = 2;
/// Bits below the index.
const INDEX_SHIFT: u32 = 2;

/// The id of the `index`-th stream `side` opens in direction `dir`; `None` for
/// index 0 (the control stream's place) and for indexes that do not fit in 30 bits.
pub(crate) fn stream_id_for(side: Side, dir: Dir, index: u32) -> Option<StreamId> {
    if index == 0 || index >= 1 << (32 - INDEX_SHIFT) {
        return None;
    }
    let s = match side {
        Side::Client => 0,
        Side::Server => SERVER_BIT,
    };
    let d = match dir {
        Dir::Bi => 0,
        Dir::Uni => UNI_BIT,
    };
    Some(StreamId((index << INDEX_SHIFT) | d | s))
}

/// The side that opened a (non-control) stream.
pub(crate) fn stream_initiator(id: StreamId) -> Side {
    if id.0 & SERVER_BIT == 0 {
        Side::Client
    } else {
        Side::Server
    }
}

/// The direction of a stream.
pub(crate) fn stream_dir(id: StreamId) -> Dir {
    if id.0 & UNI_BIT == 0 {
        Dir::Bi
    } else {
        Dir::Uni
    }
}

/// The per-(initiator, direction) index of a stream.
pub(crate) fn stream_index(id: StreamId) -> u32 {
    id.0 >> INDEX_SHIFT
}

/// The stream's (initiator, direction) kind, `0..4`: the id's bits below the index.
pub(crate) fn stream_kind(id: StreamId) -> usize {
    (id.0 & (SERVER_BIT | UNI_BIT)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_never_repeat_and_skip_control() {
        let mut seen = std::collections::BTreeSet::new();
        for side in [Side::Client, Side::Server] {
            for dir in [Dir::Bi, Dir::Uni] {
                assert_eq!(stream_id_for(side, dir, 0), None);
                assert_eq!(stream_id_for(side, dir, 1 << 30), None);
                for i in 1..100 {
                    let id = stream_id_for(side, dir, i).unwrap();
                    assert_ne!(id, StreamId::CONTROL);
                    assert_eq!(stream_initiator(id), side);
                    assert_eq!(stream_dir(id), dir);
                    assert_eq!(stream_index(id), i);
                    assert!(seen.insert(id));
                }
            }
        }
    }

    #[test]
    fn i3_stream_id_layout_is_initiator_direction_index() {
        assert_eq!(stream_id_for(Side::Client, Dir::Bi, 1), Some(StreamId(4)));
        assert_eq!(stream_id_for(Side::Server, Dir::Bi, 1), Some(StreamId(5)));
        assert_eq!(stream_id_for(Side::Client, Dir::Uni, 1), Some(StreamId(6)));
        assert_eq!(stream_id_for(Side::Server, Dir::Uni, 2), Some(StreamId(11)));
        assert_eq!(
            stream_id_for(Side::Server, Dir::Uni, (1 << 30) - 1),
            Some(StreamId::MAX)
        );
        let id = StreamId(0x8000_0003);
        assert_eq!(
            (stream_initiator(id), stream_dir(id), stream_index(id)),
            (Side::Server, Dir::Uni, 0x2000_0000)
        );
        assert_eq!(stream_index(StreamId::CONTROL), 0);
        assert_eq!(stream_kind(id), 3);
    }
}
