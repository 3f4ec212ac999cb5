//! Bench-only crate behind `cargo xtask bench --compare`: measurement code (CPU clocks,
//! resident memory, medians, socket buffers and drops), Phantom's side of the comparison
//! (loopback bulk transfer, handshakes per second, memory per idle session) and the limit
//! pipe (the same AEAD over GSO/GRO loopback sockets with no protocol).
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

pub mod limit_pipe;
pub mod measure;
pub mod phantom_runs;
pub mod sockets;
