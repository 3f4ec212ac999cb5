//! Explicit-state models of Phantom's protocol state machines, checked exhaustively to
//! a stated depth with [`stateright`] under `cargo test --release -p phantom-model`
//! (and by `cargo xtask ci`, step `model`).
//!
//! **What it owns.** One model per state machine, each driving the implementation's own
//! sans-IO types wherever they can be driven, with an attacker that controls the
//! network: [`epoch`] runs the real `phantom_crypto::{Sealer, Opener}`; [`handshake`] runs
//! the real `phantom_handshake::{Client, Server}`; [`path`] runs the real
//! `phantom_guard::PathRegistry` under the session's path rules. Nothing depends
//! on this crate; it is not part of the runtime.
//!
//! **Invariants checked.** I5 ([`epoch`]); I10, I12 and server authentication,
//! agreement and downgrade resistance ([`handshake`]); I7 ([`path`]). Each property has
//! a mutation switch (a fault planted in the model's wrapper around the real types) and a
//! test showing the checker finds the counterexample, so no property holds vacuously.
//!
//! **How real types become model states.** stateright needs `Clone + Hash + Eq + Debug`
//! states; the real types hold secrets and are not `Clone` (and cloning secrets is not an
//! API worth adding for a model). Of the two ways to bridge that — a wrapper hashing a
//! canonical projection of the object, or a log of the inputs replayed from a seed — the
//! models use the log for rebuilding and pick the hash per model: a state records what
//! each real object was given, and every transition rebuilds the one object it touches by
//! replaying that log with a seeded RNG and the same clock, which reproduces it bit for
//! bit (I9). [`epoch`] hashes a projection of the sealer and opener that is complete for
//! those types (so equal real states merge); [`handshake`] and [`path`] hash the whole
//! logs, since their objects (reassembly buffers, half-open tables, outstanding
//! challenges) are not fully observable. Expensive set-up — long-term keys,
//! certificates, a resumption ticket — is computed once per process.
//!
//! **What is abstracted.** The handshake and epoch models run the real cryptography; the
//! attacker forges only what it can compute without the honest parties' secrets (its own
//! servers' answers, a hand-built unauthenticated Mismatch, packets with guessed tags).
//! The path model treats authentication symbolically (a datagram is authenticated iff
//! the client built it) and re-implements the session's path rules around the real
//! registry. The handshake network delivers whole flights, not single datagrams. Each
//! module's doc states its abstractions exactly; docs/SECURITY.md ("Model checking")
//! lists every property with its depth and the states explored.

pub mod check;
pub mod epoch;
mod error;
pub mod handshake;
pub mod path;

pub use check::{Outcome, run};
pub use error::Error;
