//! Stream ids: which end opened a stream, which way it carries data, and its
//! per-(initiator, direction) index.

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

/// Stream-id layout: bit 0 = initiator (0 client, 1 server), bit 1 = unidirectional,
/// the remaining 30 bits a per-(initiator, direction) index starting at 1, so that
/// id 0 stays the control stream and ids are never reused (I3).
pub(crate) fn stream_id_for(side: Side, dir: Dir, index: u32) -> Option<u32> {
    if index == 0 || index >= 1 << 30 {
        return None;
    }
    let s = match side {
        Side::Client => 0,
        Side::Server => 1,
    };
    let d = match dir {
        Dir::Bi => 0,
        Dir::Uni => 2,
    };
    Some((index << 2) | d | s)
}

/// The initiator of a (non-control) stream id.
pub(crate) fn stream_initiator(id: u32) -> Side {
    if id & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    }
}

/// The direction of a stream id.
pub(crate) fn stream_dir(id: u32) -> Dir {
    if id & 2 == 0 { Dir::Bi } else { Dir::Uni }
}

/// The per-(initiator, direction) index of a stream id.
pub(crate) fn stream_index(id: u32) -> u32 {
    id >> 2
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
                    assert_ne!(id, 0);
                    assert_eq!(stream_initiator(id), side);
                    assert_eq!(stream_dir(id), dir);
                    assert_eq!(stream_index(id), i);
                    assert!(seen.insert(id));
                }
            }
        }
    }
}
