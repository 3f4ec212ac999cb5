//! The error a model's replay can meet.

/// Why rebuilding a real object from a state's log failed. The real types never fail on
/// the inputs the models give them; a model that meets one of these records the state as
/// broken (every `always` property of that model then fails), so it cannot go unnoticed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The packet-protection layer refused an operation.
    #[error("packet protection: {0}")]
    Crypto(#[from] phantom_crypto::Error),
    /// The handshake refused an operation outside a delivery (set-up, completion).
    #[error("handshake: {0}")]
    Handshake(#[from] phantom_handshake::Error),
    /// The path registry refused its set-up.
    #[error("path registry: {0}")]
    Guard(#[from] phantom_guard::Error),
    /// A header did not encode or parse.
    #[error("wire: {0}")]
    Wire(#[from] phantom_wire::Error),
}
