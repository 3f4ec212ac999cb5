//! Bench-only crate behind `cargo xtask bench --compare`: measurement helpers (process CPU
//! time, resident memory, medians) and Phantom's side of the comparison (loopback bulk
//! transfer, handshakes per second, memory per idle session).
//!
//! The quinn and phantom-protocol runners live in `benches/compare/`, because those crates
//! are dev-dependencies of this crate only; this crate is excluded from the root workspace,
//! so ordinary builds, `cargo xtask ci` and `cargo deny` never compile or vet them. It upholds
//! no protocol invariant; it measures.

#![forbid(unsafe_code)]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads the wall clock"
)]

pub mod measure;
pub mod phantom_runs;
