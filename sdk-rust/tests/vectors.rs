//! The shared vectors in `proto/vectors/` (also loaded by the Python and Go SDKs) against this
//! crate's implementations.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use leasehold::proto::Artifact;
use leasehold::{RetryPolicy, SplitMix64, artifact, idempotency};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../proto/vectors")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn bytes_of(case: &Value) -> Vec<u8> {
    if let Some(s) = case["utf8"].as_str() {
        return s.as_bytes().to_vec();
    }
    let hex = case["hex"].as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn artifact_digests() {
    let v = load("artifact_digests.json");
    for case in v["cases"].as_array().unwrap() {
        let data = bytes_of(case);
        assert_eq!(data.len() as u64, case["size"].as_u64().unwrap());
        assert_eq!(
            artifact::digest_bytes(&data),
            case["digest"],
            "{}",
            case["name"]
        );
        // Streaming in odd-sized pieces gives the same digest.
        let mut s = artifact::Sha256Stream::new();
        for piece in data.chunks(7) {
            s.update(piece);
        }
        assert_eq!(s.finish(), case["digest"].as_str().unwrap());
    }
}

#[test]
fn manifest_digests() {
    let v = load("manifest_digests.json");
    for case in v["cases"].as_array().unwrap() {
        let artifacts: Vec<Artifact> = serde_json::from_value(case["artifacts"].clone()).unwrap();
        let sorted = artifact::manifest(&artifacts).unwrap();
        let canonical =
            idempotency::canonical_json(&serde_json::to_value(&sorted).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            case["canonical"].as_str().unwrap(),
            "{}",
            case["name"]
        );
        assert_eq!(
            artifact::manifest_digest(&artifacts).unwrap(),
            case["digest"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn artifact_names() {
    let v = load("artifact_names.json");
    for name in v["valid"].as_array().unwrap() {
        assert!(
            artifact::validate_name(name.as_str().unwrap()).is_ok(),
            "{name}"
        );
    }
    for name in v["invalid"].as_array().unwrap() {
        assert!(
            artifact::validate_name(name.as_str().unwrap()).is_err(),
            "{name}"
        );
    }
}

#[test]
fn idempotency_keys() {
    let v = load("idempotency_keys.json");
    assert_eq!(v["namespace"], idempotency::NAMESPACE.to_string());
    for case in v["cases"].as_array().unwrap() {
        let payload = &case["payload"];
        let canonical = idempotency::canonical_json(payload).unwrap();
        assert_eq!(
            String::from_utf8(canonical).unwrap(),
            case["canonical_payload"].as_str().unwrap()
        );
        let key = idempotency::key_for(
            case["queue"].as_str().unwrap(),
            case["kind"].as_str().unwrap(),
            payload,
        )
        .unwrap();
        assert_eq!(key, case["key"].as_str().unwrap(), "{case}");
    }
}

fn u64_of(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn retry_schedules() {
    let v = load("retry_schedules.json");
    assert_eq!(v["algorithm"], "leasehold-retry-v1");
    for stream in v["splitmix64"].as_array().unwrap() {
        let mut rng = SplitMix64::new(u64_of(&stream["seed"]));
        for out in stream["outputs"].as_array().unwrap() {
            assert_eq!(rng.next_u64(), u64_of(out));
        }
    }
    for case in v["cases"].as_array().unwrap() {
        let p = &case["policy"];
        let policy = RetryPolicy {
            initial: Duration::from_millis(p["initial_ms"].as_u64().unwrap()),
            multiplier: p["multiplier"].as_f64().unwrap(),
            max_delay: Duration::from_millis(p["max_delay_ms"].as_u64().unwrap()),
            max_attempts: u32::try_from(p["max_attempts"].as_u64().unwrap()).unwrap(),
        };
        let mut rng = SplitMix64::new(u64_of(&case["seed"]));
        let ceilings: Vec<u64> = (1..policy.max_attempts)
            .map(|a| u64::try_from(policy.ceiling(a).as_millis()).unwrap())
            .collect();
        let delays: Vec<u64> = (1..policy.max_attempts)
            .map(|a| u64::try_from(policy.next_delay(a, &mut rng).unwrap().as_millis()).unwrap())
            .collect();
        let want = |k: &str| -> Vec<u64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect()
        };
        assert_eq!(ceilings, want("ceilings_ms"), "{}", case["name"]);
        assert_eq!(delays, want("delays_ms"), "{}", case["name"]);
        assert_eq!(policy.next_delay(policy.max_attempts, &mut rng), None);
    }
}
