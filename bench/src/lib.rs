//! Pieces shared by the benchmark programs (the harness and the SDK worker `sdk_noop`).

pub mod busy;
pub mod pause;
