//! The crate's error type.

use phantom_wire::PathId;

use crate::replay::ReplayError;

/// Everything that can go wrong in `phantom-guard`.
///
/// Two families share this enum, as the style guide asks:
///
/// * **Peer faults** — [`Error::Replay`], [`Error::WrongResponse`], [`Error::PathFailed`]
///   on a late response, [`Error::NotValidating`] on a stray response. The session drops
///   the offending packet and counts it; none of them changes guard state.
/// * **Caller faults** — [`Error::InvalidConfig`], [`Error::TooManyPaths`],
///   [`Error::PathExists`], [`Error::UnknownPath`], [`Error::AmplificationLimit`].
///
/// Variants carry only small numbers and static strings, never challenge bytes (I8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The replay window refused a sequence number.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The path registry already holds its configured maximum of live paths.
    #[error("path registry is full ({max} paths)")]
    TooManyPaths {
        /// The configured maximum.
        max: usize,
    },
    /// A path with this id is already registered.
    #[error("path {0:?} is already registered")]
    PathExists(PathId),
    /// No path with this id is registered.
    #[error("path {0:?} is not registered")]
    UnknownPath(PathId),
    /// The path has failed (retries exhausted or idle timeout); it accepts nothing
    /// more, in particular no late validation response.
    #[error("path {0:?} has failed")]
    PathFailed(PathId),
    /// The path is already validated: there is nothing to do.
    #[error("path {0:?} is already validated")]
    AlreadyValidated(PathId),
    /// A validation response arrived for a path that has no challenge outstanding.
    #[error("path {0:?} has no outstanding challenge")]
    NotValidating(PathId),
    /// The validation response does not match the outstanding challenge.
    #[error("path validation response does not match")]
    WrongResponse,
    /// Sending this many bytes on an unvalidated path would exceed three times the
    /// bytes received on it (I7).
    #[error("anti-amplification limit on path {path:?}: {available} bytes available")]
    AmplificationLimit {
        /// The path.
        path: PathId,
        /// Bytes that may still be sent before more are received.
        available: u64,
    },
}
