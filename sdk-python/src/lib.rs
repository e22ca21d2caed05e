//! `leasehold._native`: the Rust worker SDK for Python (PyO3, abi3).
//!
//! Private to the `leasehold` package, which puts a typed, Pythonic API on top. Every bit of
//! protocol — claims, coalesced heartbeats, fencing, lease-loss cancellation, retries with
//! jitter, idempotency keys, artifact hashing, drain — runs in the Rust core on its own threads,
//! with the GIL released, so a busy Python thread cannot starve a lease.

mod algorithms;
mod client;
mod errors;
mod job;
mod runtime;
mod session;

use pyo3::prelude::*;

/// Sends the core's `tracing` output to stderr, filtered by `LEASEHOLD_LOG` (default `warn`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEASEHOLD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SDK_VERSION", session::SDK_VERSION)?;
    // The runner's defaults, decided once in the core (`leasehold::defaults`).
    m.add("DEFAULT_CONCURRENCY", leasehold::defaults::CONCURRENCY)?;
    m.add(
        "DEFAULT_LEASE_TTL",
        leasehold::defaults::LEASE_TTL.as_secs_f64(),
    )?;
    m.add(
        "DEFAULT_POLL_WAIT",
        leasehold::defaults::POLL_WAIT.as_secs_f64(),
    )?;
    m.add(
        "DEFAULT_DRAIN_TIMEOUT",
        leasehold::defaults::DRAIN_TIMEOUT.as_secs_f64(),
    )?;
    m.add(
        "DEFAULT_CANCEL_GRACE",
        leasehold::defaults::CANCEL_GRACE.as_secs_f64(),
    )?;
    m.add_class::<session::PySession>()?;
    m.add_class::<job::PyJob>()?;
    m.add_class::<job::PyArtifactWriter>()?;
    m.add_class::<client::PyClient>()?;
    m.add_function(wrap_pyfunction!(algorithms::canonical_json, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::idempotency_key, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::digest, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::manifest_digest, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::check_artifact_name, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::is_name, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::is_kind, m)?)?;
    m.add("NAME_RULE", leasehold::proto::names::NAME_RULE)?;
    m.add("KIND_RULE", leasehold::proto::names::KIND_RULE)?;
    m.add_function(wrap_pyfunction!(algorithms::splitmix64, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms::retry_schedule, m)?)?;
    Ok(())
}
