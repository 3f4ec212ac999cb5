//! Session tests over the deterministic in-memory network.

/// An arbitrary time origin for tests (the session itself never reads the clock).
#[expect(
    clippy::disallowed_methods,
    reason = "tests need an arbitrary time origin"
)]
pub(crate) fn test_instant() -> std::time::Instant {
    std::time::Instant::now()
}

mod carrier_tests;
mod conn_id_tests;
mod early;
mod failover_tests;
pub(crate) mod harness;
mod idle_tests;
pub(crate) mod link;
mod path_id_tests;
mod seed_sweep_tests;
mod sequence_space_tests;
mod session_tests;
mod stream_limits_tests;
mod transfer_tests;
