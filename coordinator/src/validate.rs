//! Input rules shared by the handlers. Each failure is a 422 naming the field (or a 413 when a
//! part is too large), never a database error.

use chrono::{DateTime, Utc};
use leasehold_proto::{Artifact, ErrorCode, NewJob, names};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::store::NewJobRow;

/// Largest serialized payload, checkpoint, progress or result, in bytes.
pub const MAX_JSON_FIELD_BYTES: usize = 1024 * 1024;
/// Most jobs in one batch enqueue, leases in one claim or heartbeat.
pub const MAX_BATCH: usize = 1000;
/// Default attempts per job (River, Sidekiq and Faktory use 25 too).
pub const DEFAULT_MAX_ATTEMPTS: i32 = 25;

/// Queue and tenant names (`leasehold_proto::names`, the SDK checks the same rule).
pub fn name(field: &str, value: &str) -> ApiResult<()> {
    if names::is_name(value) {
        return Ok(());
    }
    Err(ApiError::validation(
        field,
        format!("{field} must be {}", names::NAME_RULE),
    ))
}

/// Job kinds (`leasehold_proto::names`).
pub fn kind(value: &str) -> ApiResult<()> {
    if names::is_kind(value) {
        return Ok(());
    }
    Err(ApiError::validation(
        "kind",
        format!("kind must be {}", names::KIND_RULE),
    ))
}

/// Free-form labels (idempotency key, correlation id, project, worker id;
/// `leasehold_proto::names`).
pub fn label(field: &str, value: &str) -> ApiResult<()> {
    if names::is_label(value) {
        return Ok(());
    }
    Err(ApiError::validation(
        field,
        format!("{field} must be {}", names::LABEL_RULE),
    ))
}

/// The names a job filter may hold (`GET /v1/jobs` and the bulk actions that take its filter):
/// 422 naming the first bad one.
pub fn job_filter(
    queue: Option<&str>,
    kind: Option<&str>,
    correlation_id: Option<&str>,
) -> ApiResult<()> {
    if let Some(q) = queue {
        name("queue", q)?;
    }
    if let Some(k) = kind {
        self::kind(k)?;
    }
    if let Some(c) = correlation_id {
        label("correlation_id", c)?;
    }
    Ok(())
}

/// Optional label.
pub fn opt_label(field: &str, value: &Option<String>) -> ApiResult<()> {
    value.as_deref().map_or(Ok(()), |v| label(field, v))
}

/// A JSON field's serialized size against [`MAX_JSON_FIELD_BYTES`] (413 when over).
pub fn json_size(field: &str, value: &serde_json::Value) -> ApiResult<()> {
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_JSON_FIELD_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{field} is {size} bytes; the limit is {MAX_JSON_FIELD_BYTES}"),
        )
        .with_details(serde_json::json!({"field": field, "limit": MAX_JSON_FIELD_BYTES})));
    }
    Ok(())
}

/// An integer within bounds.
pub fn range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> ApiResult<T> {
    if v < lo || v > hi {
        return Err(ApiError::validation(
            field,
            format!("{field} must be between {lo} and {hi}, got {v}"),
        ));
    }
    Ok(v)
}

/// A job's `timeout_ms` or a queue's `default_timeout_ms`: one second to seven days.
pub fn timeout(field: &str, ms: u64) -> ApiResult<u64> {
    if !(leasehold_proto::MIN_TIMEOUT_MS..=leasehold_proto::MAX_TIMEOUT_MS).contains(&ms) {
        return Err(ApiError::validation(
            field,
            format!(
                "{field} must be between {} (1 s) and {} (7 days) milliseconds, got {ms}",
                leasehold_proto::MIN_TIMEOUT_MS,
                leasehold_proto::MAX_TIMEOUT_MS
            ),
        ));
    }
    Ok(ms)
}

/// A span written as a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `15m`, `7d`), in
/// seconds; `None` when it is not one (or overflows). Retention windows and the time filters'
/// spans back from now both read theirs with it, each with its own bounds and message.
pub fn span_secs(raw: &str) -> Option<u64> {
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit())?);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `sha256:` of the RFC 8785 (JCS) canonical form of `value`.
pub fn jcs_digest(value: &serde_json::Value) -> String {
    let canonical = serde_json_canonicalizer::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    format!("sha256:{}", crate::blobs::hex(&digest))
}

/// Whether `s` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Artifact names: relative, `/`-separated, no `..` or empty segment, no leading `/`, no NUL.
pub fn artifact_name(name: &str) -> ApiResult<()> {
    let bad = name.is_empty()
        || name.len() > 1024
        || name.starts_with('/')
        || name.contains('\0')
        || name.contains('\\')
        || name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(ApiError::validation(
            "artifacts.name",
            format!(
                "artifact name {name:?} must be relative, '/'-separated, without '..', '.', \
                 empty segments, a leading '/', backslashes or NUL"
            ),
        ));
    }
    Ok(())
}

/// Validates a manifest and sorts it by name (the canonical order).
pub fn artifacts(mut list: Vec<Artifact>) -> ApiResult<Vec<Artifact>> {
    if list.len() > MAX_BATCH {
        return Err(ApiError::validation(
            "artifacts",
            "at most 1000 artifacts per job",
        ));
    }
    for a in &list {
        artifact_name(&a.name)?;
        if !is_digest(&a.digest) {
            return Err(ApiError::validation(
                "artifacts.digest",
                "artifact digest must be sha256:<64 lowercase hex>",
            ));
        }
        label("artifacts.media_type", &a.media_type)?;
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
    if list.windows(2).any(|w| w[0].name == w[1].name) {
        return Err(ApiError::validation(
            "artifacts.name",
            "artifact names must be unique",
        ));
    }
    Ok(list)
}

/// Turns a request job into a row, applying defaults. `header_key` is the `Idempotency-Key`
/// header (single enqueue only).
pub fn new_job(
    job: NewJob,
    default_tenant: &str,
    header_key: Option<String>,
    now: DateTime<Utc>,
) -> ApiResult<NewJobRow> {
    let tenant = job.tenant.unwrap_or_else(|| default_tenant.to_owned());
    name("tenant", &tenant)?;
    name("queue", &job.queue)?;
    kind(&job.kind)?;
    json_size("payload", &job.payload)?;
    let priority = range("priority", job.priority, -1000, 1000)?;
    let max_attempts = range(
        "max_attempts",
        job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
        1,
        1000,
    )?;
    let idempotency_key = match (job.idempotency_key, header_key) {
        (Some(body), Some(header)) if body != header => {
            return Err(ApiError::validation(
                "idempotency_key",
                "the Idempotency-Key header and the body's idempotency_key differ",
            ));
        }
        (body, header) => body.or(header),
    };
    opt_label("idempotency_key", &idempotency_key)?;
    opt_label("correlation_id", &job.correlation_id)?;
    opt_label("project", &job.project)?;
    if let Some(b) = &job.backoff {
        if !(b.multiplier.is_finite() && b.multiplier >= 1.0 && b.multiplier <= 100.0) {
            return Err(ApiError::validation(
                "backoff.multiplier",
                "multiplier must be within 1..=100",
            ));
        }
        range("backoff.initial_ms", b.initial_ms, 1, 86_400_000)?;
        range(
            "backoff.max_delay_ms",
            b.max_delay_ms,
            b.initial_ms,
            30 * 86_400_000,
        )?;
    }
    let timeout_ms = job
        .timeout_ms
        .map(|ms| timeout("timeout_ms", ms))
        .transpose()?;
    crate::flow::keys::check_job_keys(&job.limit_keys)?;
    let inputs_hash = jcs_digest(&job.payload);
    let id = Uuid::now_v7();
    Ok(NewJobRow {
        id,
        tenant,
        queue: job.queue,
        kind: job.kind,
        payload: job.payload,
        priority,
        max_attempts,
        run_at: job.run_at.unwrap_or(now),
        idempotency_key,
        // Without one, the job's own id: every event of this piece of work shares a correlation
        // id that can be handed on to other systems (a run's jobs get the run's, see runs.rs).
        correlation_id: job.correlation_id.or_else(|| Some(id.to_string())),
        project: job.project,
        run_id: None,
        inputs_hash,
        backoff: job.backoff,
        timeout_ms,
        limit_keys: job.limit_keys,
        state: leasehold_proto::JobState::Queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_and_reject() {
        assert!(name("queue", "emails.high:v2-x_y").is_ok());
        for bad in ["", "-x", "a b", "a'b", "a;DROP", &"a".repeat(129), "ü"] {
            assert!(name("queue", bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn spans_are_a_whole_number_and_a_unit() {
        for (raw, secs) in [
            ("0s", 0),
            ("90s", 90),
            ("15m", 900),
            ("24h", 86_400),
            ("7d", 604_800),
        ] {
            assert_eq!(span_secs(raw), Some(secs), "{raw}");
        }
        for bad in [
            "",
            "s",
            "5",
            "-5m",
            "1.5h",
            "5 m",
            "5M",
            "5w",
            "1d2h",
            &format!("{}d", u64::MAX),
        ] {
            assert_eq!(span_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn artifact_names() {
        for good in ["a", "dir/file.txt", "a/b/c..d"] {
            assert!(artifact_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", "a/../b", "..", "a//b", "a/./b", "nul\0", "a\\b", "a/",
        ] {
            assert!(artifact_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jcs_digest_is_key_order_independent() {
        let a = serde_json::json!({"b": 1, "a": [1, 2, {"y": true, "x": null}]});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":[1,2,{"x":null,"y":true}],"b":1}"#).unwrap_or_default();
        assert_eq!(jcs_digest(&a), jcs_digest(&b));
        assert!(is_digest(&jcs_digest(&a)));
        // sha256 of the canonical text `{}`.
        assert_eq!(
            jcs_digest(&serde_json::json!({})),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
