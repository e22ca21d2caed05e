//! Pieces shared by the benchmark programs (the harness, the SDK worker `sdk_noop` and
//! `pause_cost`).

pub mod busy;
pub mod pause;
pub mod procstat;
