//! Rows and parameters the store suites build their cases from.

use chrono::{DateTime, Utc};
use leasehold_coordinator::store::{ClaimParams, NewJobRow, Outcome, OutcomeKind, Store};
use leasehold_coordinator::validate;
use leasehold_proto::{FailureInfo, Lease, NewJob};
use serde_json::json;

/// A job for `queue` of `kind`, payload `{"n": 1}`, validated as the API would.
pub fn new_job(queue: &str, kind: &str, now: DateTime<Utc>) -> NewJobRow {
    let job: NewJob =
        serde_json::from_value(json!({"queue": queue, "kind": kind, "payload": {"n": 1}})).unwrap();
    validate::new_job(job, "default", None, now).unwrap()
}

/// Enqueues one job of kind `k` in `queue` at `at`; its id.
pub async fn enqueue_one(store: &dyn Store, queue: &str, at: DateTime<Utc>) -> uuid::Uuid {
    store
        .enqueue(at, vec![new_job(queue, "k", at)])
        .await
        .unwrap()[0]
        .job
        .id
}

/// Claims one lease from `queue` at `at` (30 s lease); panics when none is granted.
pub async fn claim_one(store: &dyn Store, queue: &str, at: DateTime<Utc>) -> Lease {
    store
        .claim(at, &claim_params(queue, 1, 30_000))
        .await
        .unwrap()
        .leases
        .remove(0)
}

pub fn claim_params(queue: &str, max_jobs: u32, ttl_ms: u64) -> ClaimParams {
    ClaimParams {
        tenant: "default".into(),
        worker_id: "w1".into(),
        worker_version: Some("test/1".into()),
        queues: vec![queue.into()],
        max_jobs,
        lease_ttl_ms: ttl_ms,
        ungated: false,
        pool: None,
    }
}

pub fn complete(job_id: uuid::Uuid, token: i64) -> Outcome {
    Outcome {
        job_id,
        fencing_token: token,
        kind: OutcomeKind::Complete {
            result: json!({"ok": true}),
            artifacts: vec![],
        },
    }
}

pub fn fail(job_id: uuid::Uuid, token: i64, retryable: bool, retry_at: DateTime<Utc>) -> Outcome {
    Outcome {
        job_id,
        fencing_token: token,
        kind: OutcomeKind::Fail {
            error: FailureInfo {
                class: "Boom".into(),
                message: "it broke".into(),
                retryable,
            },
            retry_at,
        },
    }
}
