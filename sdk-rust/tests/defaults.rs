//! The runner's defaults are the ones `proto/conformance/worker_defaults.json` states (the
//! Python, C and Go suites check their skins against the same file).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use leasehold::{SessionConfig, defaults};
use serde_json::Value;

fn stated() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto/conformance/worker_defaults.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ms(v: &Value, key: &str) -> Duration {
    Duration::from_millis(v[key].as_u64().unwrap())
}

#[test]
fn the_core_defaults_are_the_stated_ones() {
    let v = stated();
    assert_eq!(
        defaults::CONCURRENCY as u64,
        v["concurrency"].as_u64().unwrap()
    );
    assert_eq!(defaults::LEASE_TTL, ms(&v, "lease_ttl_ms"));
    assert_eq!(defaults::POLL_WAIT, ms(&v, "poll_wait_ms"));
    assert_eq!(defaults::DRAIN_TIMEOUT, ms(&v, "drain_timeout_ms"));
    assert_eq!(defaults::CANCEL_GRACE, ms(&v, "cancel_grace_ms"));
}

#[test]
fn a_session_config_starts_from_them() {
    let v = stated();
    let cfg = SessionConfig::new("http://127.0.0.1:7070", ["q"]);
    assert_eq!(cfg.concurrency as u64, v["concurrency"].as_u64().unwrap());
    assert_eq!(cfg.lease_ttl, ms(&v, "lease_ttl_ms"));
    assert_eq!(cfg.poll_wait, ms(&v, "poll_wait_ms"));
}
