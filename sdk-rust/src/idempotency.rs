//! Idempotency keys.
//!
//! - [`key_for`]: a deterministic key for "this payload of this kind on this queue", so that two
//!   producers enqueueing the same thing get one job. Construction `leasehold-idem-v1`:
//!
//!   ```text
//!   name = UTF-8(queue) ‖ 0x0A ‖ UTF-8(kind) ‖ 0x0A ‖ JCS(payload)
//!   key  = UUIDv5(NAMESPACE, name), lower-case hyphenated
//!   NAMESPACE = efb6ee48-03ac-5ac1-b7fa-4e981203b76c
//!             = UUIDv5(NAMESPACE_URL, "urn:leasehold:idempotency:v1")
//!   ```
//!
//!   where JCS is RFC 8785 canonical JSON. `proto/vectors/idempotency_keys.json` pins examples.
//! - [`random_key`]: a fresh UUIDv4 for one logical enqueue call; the client reuses it on every
//!   retry of that call, so a network blip never makes two jobs.
//! - [`job_key`]: the key a handler sees as `ctx.idempotency_key()`: the job's own key if it was
//!   enqueued with one, else its id — stable across attempts either way.

use leasehold_proto::Job;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Namespace of [`key_for`]'s UUIDv5: `UUIDv5(NAMESPACE_URL, "urn:leasehold:idempotency:v1")`.
pub const NAMESPACE: Uuid = Uuid::from_u128(0xefb6ee48_03ac_5ac1_b7fa_4e981203b76c);

/// RFC 8785 (JCS) canonical form of `value`.
pub fn canonical_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json_canonicalizer::to_vec(value)
        .map_err(|e| Error::InvalidArgument(format!("cannot canonicalize JSON: {e}")))
}

/// The deterministic idempotency key of `payload` of `kind` on `queue` (`leasehold-idem-v1`).
pub fn key_for(queue: &str, kind: &str, payload: &serde_json::Value) -> Result<String> {
    let canonical = canonical_json(payload)?;
    let mut name = Vec::with_capacity(queue.len() + kind.len() + 2 + canonical.len());
    name.extend_from_slice(queue.as_bytes());
    name.push(b'\n');
    name.extend_from_slice(kind.as_bytes());
    name.push(b'\n');
    name.extend_from_slice(&canonical);
    Ok(Uuid::new_v5(&NAMESPACE, &name).hyphenated().to_string())
}

/// A fresh random key (UUIDv4) for one logical call.
pub fn random_key() -> String {
    Uuid::new_v4().hyphenated().to_string()
}

/// The key handlers see: the job's idempotency key, else its id (hyphenated).
pub fn job_key(job: &Job) -> String {
    job.idempotency_key
        .clone()
        .unwrap_or_else(|| job.id.hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_is_derived_as_documented() {
        assert_eq!(
            NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:leasehold:idempotency:v1")
        );
    }

    #[test]
    fn key_ignores_key_order_and_whitespace() -> Result<()> {
        let a = key_for("q", "k", &json!({"b": 1, "a": [1, 2]}))?;
        let b = key_for(
            "q",
            "k",
            &serde_json::from_str(r#"{ "a":[1,2], "b":1 }"#)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?,
        )?;
        assert_eq!(a, b);
        assert_ne!(a, key_for("q2", "k", &json!({"b": 1, "a": [1, 2]}))?);
        assert_ne!(a, key_for("q", "k2", &json!({"b": 1, "a": [1, 2]}))?);
        Ok(())
    }
}
