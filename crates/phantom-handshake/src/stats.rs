//! Counters of the handshake server ([`crate::Server::stats`]).

/// Counters of what the server dropped, refused or completed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Datagrams whose integrity tag did not match (damaged on the way): dropped
    /// before parsing, not counted in `malformed`.
    pub damaged: u64,
    /// Retry datagrams sent.
    pub retries_sent: u64,
    /// ClientHello datagrams that would have been sent a Retry but do not carry the
    /// ClientHello's first fragment, which a Retry is bound to: not answered (the
    /// datagram with that fragment, sent in the same flight, gets the Retry).
    pub retries_withheld: u64,
    /// ClientHello datagrams that would have started a handshake but do not carry the
    /// ClientHello's first fragment (a spoofed fragment, or a later datagram that
    /// overtook the first): no state is created (the client's retransmission brings
    /// the first fragment again).
    pub hello_without_head: u64,
    /// Retry tokens refused, by reason (invalid: forged, foreign or for another
    /// address).
    pub tokens: CredentialStats,
    /// Resumption tickets refused (a refused ticket means a full handshake).
    pub tickets: CredentialStats,
    /// Early data (0-RTT) accepted and refused.
    pub early: EarlyDataStats,
    /// Half-open handshakes refused, evicted or timed out.
    pub half_open: HalfOpenStats,
    /// Handshakes that failed at the message level.
    pub failed: u64,
    /// ClientHellos refused with a Mismatch (no common version or suite); also counted
    /// in `failed`.
    pub mismatches: u64,
    /// Handshakes completed.
    pub completed: u64,
    /// ClientHellos that started a new handshake at an address that had a half-open
    /// one (a client's new connect from the same socket, or a spoofer's ClientHello
    /// from that address). The previous handshake is kept beside the new one as
    /// *superseded* until it completes or expires.
    pub restarted: u64,
    /// Handshakes completed by a superseded half-open handshake (a ClientHello from its
    /// address had started another one: a spoofer's, most likely).
    pub superseded_completed: u64,
    /// Times a queued datagram was held back by the anti-amplification limit.
    pub amplification_blocked: u64,
    /// ClientFinished messages that did not verify (forged, e.g. from a spoofed
    /// address): dropped, the half-open handshake kept. Counted per half-open
    /// handshake that refused it.
    pub finished_refused: u64,
    /// ML-KEM decapsulations of full-mode ClientFinished ciphertexts: at most one per
    /// datagram, however many half-open handshakes of its address it is tried against.
    pub finished_decapsulations: u64,
    /// X25519 agreements and ML-KEM decapsulations done to MAC a Mismatch refusal of a
    /// PDK ClientHello (one of each per refusal).
    pub mismatch_decapsulations: u64,
}

/// Credentials (retry tokens or resumption tickets) refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CredentialStats {
    /// Refused as invalid (forged, foreign, damaged or for another address).
    pub invalid: u64,
    /// Refused as expired.
    pub expired: u64,
}

/// What became of early data (0-RTT) offered with a valid ticket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EarlyDataStats {
    /// Early data accepted.
    pub accepted: u64,
    /// Early data refused because its ticket was already used for 0-RTT (I10).
    pub replayed: u64,
    /// Early data refused for another reason (too old, store full, disabled).
    pub refused: u64,
    /// Early data refused because its ticket was issued by another server instance
    /// (a fleet member, or this server before a restart): each instance's anti-replay
    /// store is its own, so only the issuer accepts 0-RTT; the ticket still resumes.
    pub other_instance: u64,
}

/// Half-open handshakes that were not admitted or did not last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HalfOpenStats {
    /// New peers refused because the half-open table was full.
    pub refused: u64,
    /// Unvalidated half-open handshakes dropped to make room for a client with a
    /// valid retry token while the table was full.
    pub evicted: u64,
    /// Half-open handshakes dropped on timeout.
    pub timed_out: u64,
}
