//! The canonical algorithms of the Rust core (digests, manifests, idempotency keys, artifact
//! names, retry schedules), exported so that bindings compute them through the same code and
//! check them against `proto/vectors/`; plus the version, the worker runner's defaults and
//! logging set-up.

use std::ffi::c_char;
use std::time::Duration;

use leasehold::proto::Artifact;
use leasehold::{RetryPolicy, SplitMix64, artifact, idempotency};

use crate::error::{Failure, guard, lh_result};
use crate::mem::{Out, lh_bytes, lh_str, parse_json, slice, text};
use crate::worker::PolicyJson;

/// This library's version (static, NUL-terminated).
#[unsafe(no_mangle)]
pub extern "C" fn lh_version() -> lh_str {
    lh_str::from_static(concat!(env!("CARGO_PKG_VERSION"), "\0"))
}

/// The worker runner's defaults, decided once in the SDK core (`leasehold::defaults`): what a
/// skin uses for a setting its caller left unset.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub struct lh_defaults {
    /// Most leases held (and handlers running) at once.
    pub concurrency: u32,
    /// Lease length in milliseconds.
    pub lease_ttl_ms: u64,
    /// Longest HTTP long poll in milliseconds.
    pub poll_wait_ms: u64,
    /// On shutdown, how long running handlers get to finish, in milliseconds.
    pub drain_timeout_ms: u64,
    /// How long a cancelled handler gets to wind down, in milliseconds.
    pub cancel_grace_ms: u64,
}

/// The worker runner's defaults. Thread-safe; never fails.
#[unsafe(no_mangle)]
pub extern "C" fn lh_worker_defaults() -> lh_defaults {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    lh_defaults {
        concurrency: u32::try_from(leasehold::defaults::CONCURRENCY).unwrap_or(u32::MAX),
        lease_ttl_ms: ms(leasehold::defaults::LEASE_TTL),
        poll_wait_ms: ms(leasehold::defaults::POLL_WAIT),
        drain_timeout_ms: ms(leasehold::defaults::DRAIN_TIMEOUT),
        cancel_grace_ms: ms(leasehold::defaults::CANCEL_GRACE),
    }
}

/// `sha256:<64 lowercase hex>` of `len` bytes at `data`, into `*out`.
///
/// # Safety
/// `data` is valid for reads of `len` bytes (NULL if 0); `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_digest(data: *const u8, len: usize, out: *mut lh_bytes) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: per the contract.
        let data = unsafe { slice(data, len, "data") }?;
        out.write(lh_bytes::from_vec(
            artifact::digest_bytes(data).into_bytes(),
        ));
        Ok(())
    })
}

/// The RFC 8785 (JCS) canonical form of the JSON document at `json`, into `*out`.
///
/// # Safety
/// `json` is valid for reads of `len` bytes; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_canonical_json(
    json: *const c_char,
    len: usize,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: per the contract.
        let value: serde_json::Value = unsafe { parse_json(json, len, "json") }?;
        out.write(lh_bytes::from_vec(idempotency::canonical_json(&value)?));
        Ok(())
    })
}

/// The digest of an artifact manifest: `artifacts_json` is a JSON array of
/// `{"name", "digest", "size", "media_type"}` in any order. `LH_INVALID_ARGUMENT` on a bad or
/// repeated name.
///
/// # Safety
/// `artifacts_json` is valid for reads of `len` bytes; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_manifest_digest(
    artifacts_json: *const c_char,
    len: usize,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: per the contract.
        let artifacts: Vec<Artifact> =
            unsafe { parse_json(artifacts_json, len, "artifacts_json") }?;
        out.write(lh_bytes::from_vec(
            artifact::manifest_digest(&artifacts)?.into_bytes(),
        ));
        Ok(())
    })
}

/// The deterministic idempotency key (`leasehold-idem-v1`) of the JSON `payload` of `kind` on
/// `queue`, into `*out`.
///
/// # Safety
/// Each (pointer, length) pair is valid for reads; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lh_idempotency_key(
    queue: *const c_char,
    queue_len: usize,
    kind: *const c_char,
    kind_len: usize,
    payload_json: *const c_char,
    payload_len: usize,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let out = unsafe { Out::new(out, "out") }?;
        let queue = unsafe { text(queue, queue_len, "queue") }?;
        let kind = unsafe { text(kind, kind_len, "kind") }?;
        let payload: serde_json::Value =
            unsafe { parse_json(payload_json, payload_len, "payload_json") }?;
        out.write(lh_bytes::from_vec(
            idempotency::key_for(queue, kind, &payload)?.into_bytes(),
        ));
        Ok(())
    })
}

/// `LH_OK` when `name` (`len` bytes; may contain NUL) is a valid artifact name, else
/// `LH_INVALID_ARGUMENT` with the rule in the message.
///
/// # Safety
/// `name` is valid for reads of `len` bytes (NULL if 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_artifact_name_check(name: *const c_char, len: usize) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let name = unsafe { text(name, len, "name") }?;
        Ok(artifact::validate_name(name)?)
    })
}

/// The first `n` outputs of SplitMix64 seeded with `seed`, into `out[0..n]`.
///
/// # Safety
/// `out` is valid for writes of `n` values (NULL if `n` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_splitmix64(seed: u64, out: *mut u64, n: usize) -> lh_result {
    guard(|| {
        if n == 0 {
            return Ok(());
        }
        if out.is_null() {
            return Err(Failure::null("out"));
        }
        if n > isize::MAX as usize / 8 {
            return Err(Failure::invalid("n is too large"));
        }
        let mut rng = SplitMix64::new(seed);
        // SAFETY: non-NULL, and the caller promises `n` writable values.
        let out = unsafe { std::slice::from_raw_parts_mut(out, n) };
        for v in out {
            *v = rng.next_u64();
        }
        Ok(())
    })
}

/// The retry schedule (`leasehold-retry-v1`) of `policy_json` (`{"initial_ms", "multiplier",
/// "max_delay_ms", "max_attempts"}`) for a generator seeded with `seed`, as JSON:
/// `{"ceilings_ms": [...], "delays_ms": [...], "exhausted": bool}` for attempts 1 to
/// `max_attempts - 1` in order, `exhausted` telling that `max_attempts` itself gets no delay.
///
/// # Safety
/// `policy_json` is valid for reads of `len` bytes; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_retry_schedule(
    policy_json: *const c_char,
    len: usize,
    seed: u64,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: per the contract.
        let policy: PolicyJson = unsafe { parse_json(policy_json, len, "policy_json") }?;
        if policy.max_attempts > 1000 {
            return Err(Failure::invalid("max_attempts must be at most 1000"));
        }
        let policy = RetryPolicy::from(policy);
        let mut rng = SplitMix64::new(seed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let ceilings: Vec<u64> = (1..policy.max_attempts)
            .map(|a| ms(policy.ceiling(a)))
            .collect();
        let delays: Vec<Option<u64>> = (1..policy.max_attempts)
            .map(|a| policy.next_delay(a, &mut rng).map(ms))
            .collect();
        let exhausted = policy.next_delay(policy.max_attempts, &mut rng).is_none();
        let doc = serde_json::json!({
            "ceilings_ms": ceilings,
            "delays_ms": delays,
            "exhausted": exhausted,
        });
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| Failure::new(lh_result::LH_INTERNAL, e.to_string()))?;
        out.write(lh_bytes::from_vec(bytes));
        Ok(())
    })
}

/// Sends the library's logs (`tracing`) to stderr, filtered by `filter` (an `EnvFilter`
/// directive such as `"info"` or `"leasehold=debug"`; NULL or empty: the `LEASEHOLD_LOG`
/// environment variable, else `"warn"`). Only the first call in a process installs anything;
/// later ones return `LH_OK` and change nothing. Without it the library logs nothing.
///
/// # Safety
/// `filter` is NULL or valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_log_init(filter: *const c_char, len: usize) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let given = unsafe { crate::mem::opt_text(filter, len, "filter") }?;
        let directive = given
            .map(str::to_owned)
            .or_else(|| std::env::var("LEASEHOLD_LOG").ok())
            .unwrap_or_else(|| "warn".to_owned());
        let filter = tracing_subscriber::EnvFilter::try_new(&directive)
            .map_err(|e| Failure::invalid(format!("bad log filter {directive:?}: {e}")))?;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        Ok(())
    })
}
