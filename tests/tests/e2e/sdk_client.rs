//! The Rust SDK's client against a real coordinator process: what its callers must be able to
//! tell apart.
#![allow(clippy::unwrap_used, missing_docs)]

use anyhow::Result;
use leasehold::proto::ErrorCode;
use leasehold::{Client, Error, JobSpec};
use leasehold_testkit::Coordinator;
use serde_json::json;

/// A key reused for the same work replays the first job; reused for other work it is an error
/// naming what differs, never a silent replay of the old job.
#[tokio::test]
async fn a_reused_idempotency_key_for_other_work_is_an_error() -> Result<()> {
    let coord = Coordinator::spawn(None).await?;
    let client = Client::new(&coord.url)?;
    let spec = |payload| JobSpec::new("k", payload).queue("q").idempotency_key("K");
    let first = client.enqueue(spec(json!({"n": 1}))).await?;
    let again = client.enqueue(spec(json!({"n": 1}))).await?;
    assert!(again.replayed && again.job.id == first.job.id);
    match client.enqueue(spec(json!({"n": 2}))).await {
        Err(Error::Api {
            status: 409,
            code: ErrorCode::IdempotencyConflict,
            details,
            ..
        }) => {
            assert_eq!(details["differs"], json!(["payload"]));
            assert_eq!(details["job_id"], json!(first.job.id));
        }
        other => panic!("expected an idempotency conflict, got {other:?}"),
    }
    Ok(())
}
