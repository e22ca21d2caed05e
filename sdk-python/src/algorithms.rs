//! The cross-language algorithms (canonical JSON, idempotency keys, digests, artifact names,
//! retry schedules) exposed from the Rust core, so Python uses the very code the other SDKs use
//! and the shared vectors in `proto/vectors/` can check it.

use std::time::Duration;

use leasehold::proto::Artifact;
use leasehold::{RetryPolicy, SplitMix64};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{IntoPyResult, parse_json};

/// RFC 8785 (JCS) canonical text of a JSON text.
#[pyfunction]
pub(crate) fn canonical_json(value_json: &str) -> PyResult<String> {
    let bytes = leasehold::idempotency::canonical_json(&parse_json("value", value_json)?).py()?;
    String::from_utf8(bytes).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The deterministic idempotency key of `payload_json` of `kind` on `queue`.
#[pyfunction]
pub(crate) fn idempotency_key(queue: &str, kind: &str, payload_json: &str) -> PyResult<String> {
    leasehold::idempotency::key_for(queue, kind, &parse_json("payload", payload_json)?).py()
}

/// `sha256:<hex>` of `data` (hashed with the GIL released).
#[pyfunction]
pub(crate) fn digest(py: Python<'_>, data: &[u8]) -> String {
    py.detach(|| leasehold::artifact::digest_bytes(data))
}

/// Digest of a manifest given as a JSON array of `{name, digest, size, media_type}`.
#[pyfunction]
pub(crate) fn manifest_digest(artifacts_json: &str) -> PyResult<String> {
    let artifacts: Vec<Artifact> = serde_json::from_str(artifacts_json)
        .map_err(|e| PyValueError::new_err(format!("bad artifacts: {e}")))?;
    leasehold::artifact::manifest_digest(&artifacts).py()
}

/// Raises `ValueError` when `name` is not a valid artifact name.
#[pyfunction]
pub(crate) fn check_artifact_name(name: &str) -> PyResult<()> {
    leasehold::artifact::validate_name(name).py()
}

/// Whether `value` is a valid queue (or tenant) name: the rule the coordinator enforces
/// (`leasehold_proto::names`; its wording is `NAME_RULE`).
#[pyfunction]
pub(crate) fn is_name(value: &str) -> bool {
    leasehold::proto::names::is_name(value)
}

/// Whether `value` is a valid job kind (`leasehold_proto::names`; its wording is `KIND_RULE`).
#[pyfunction]
pub(crate) fn is_kind(value: &str) -> bool {
    leasehold::proto::names::is_kind(value)
}

/// The first `n` outputs of SplitMix64 seeded with `seed`.
#[pyfunction]
pub(crate) fn splitmix64(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.next_u64()).collect()
}

/// The retry schedule of a policy (`leasehold-retry-v1`): for attempts 1 to `max_attempts`-1,
/// the ceiling and the drawn delay in milliseconds, from one generator seeded with `seed`.
#[pyfunction]
pub(crate) fn retry_schedule(
    initial_ms: u64,
    multiplier: f64,
    max_delay_ms: u64,
    max_attempts: u32,
    seed: u64,
) -> (Vec<u64>, Vec<u64>) {
    let policy = RetryPolicy {
        initial: Duration::from_millis(initial_ms),
        multiplier,
        max_delay: Duration::from_millis(max_delay_ms),
        max_attempts,
    };
    let mut rng = SplitMix64::new(seed);
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut ceilings = Vec::new();
    let mut delays = Vec::new();
    let mut attempt = 1;
    while let Some(d) = policy.next_delay(attempt, &mut rng) {
        ceilings.push(ms(policy.ceiling(attempt)));
        delays.push(ms(d));
        attempt += 1;
    }
    (ceilings, delays)
}
