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
//! agreement and downgrade resistance ([`handshake`]); I7 ([`path`]). Each property has a mutation switch
//! (a fault planted in the model's wrapper around the real types) and a test showing the
//! checker finds the counterexample, so no property holds vacuously.
//!
//! **How real types become model states.** stateright needs `Clone + Hash + Eq + Debug`
//! states; the real types hold secrets and are not `Clone`. A state therefore records the
//! operations each real object was given, and every transition rebuilds the objects by
//! replaying that log deterministically (seeded randomness, fixed keys computed once).
//! Where the observable state of a type is a complete description of it, states hash a
//! canonical projection of it, so that equal real states merge; each model says which.
//!
//! **What is abstracted.** See each model's doc.

pub mod check;
pub mod epoch;
pub mod handshake;
pub mod path;

pub use check::{Outcome, run};
