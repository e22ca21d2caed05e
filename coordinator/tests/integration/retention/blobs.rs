//! Artifact blobs: collected once no remaining job names them and the grace period (1h by
//! default) has passed since their last upload or claim; never one a retained job names.
//! The interleavings of a collection with a claim are unit-tested in `retention/blobs.rs`.

use std::sync::Arc;

use leasehold_coordinator::clock::OffsetClock;
use leasehold_coordinator::store::Store;
use serde_json::json;

use super::{Coord, DAY_MS, HOUR_MS};

async fn a_blob_goes_only_when_no_remaining_job_names_it(store: Arc<dyn Store>) {
    let c = Coord::start(store, OffsetClock::default(), |_| {}).await;
    let before = c.metric("leasehold_artifacts_collected_total").await;
    let r = c
        .call(
            "PUT",
            "/v1/retention/queues/keep",
            Some(json!({"succeeded": "off"})),
        )
        .await;
    assert_eq!(r.status, 200);
    let (_, kept) = c.upload(b"named by a job kept forever").await;
    let (_, dropped) = c.upload(b"named by a job that expires").await;
    let (_, orphan) = c.upload(b"named by nobody").await;
    let (_, shared) = c.upload(b"named by both").await;
    c.succeeded("keep", None, json!([kept, shared])).await;
    let expiring = c.succeeded("q", None, json!([dropped, shared])).await;

    // Inside the grace period nothing goes, named or not.
    c.clock.advance_ms(HOUR_MS / 2);
    assert_eq!(c.sweep().await["blobs_collected"], 0);
    assert_eq!(c.blob_status(&orphan).await, 200);

    // Two days on: the expiring job goes, and with it the blob only it named; the orphan goes.
    c.clock.advance_ms(2 * DAY_MS);
    let report = c.sweep().await;
    assert_eq!(report["jobs_removed"], 1, "{report}");
    assert_eq!(report["blobs_collected"], 2, "{report}");
    assert_eq!(c.job_status(&expiring, None).await, 404);
    assert_eq!(c.blob_status(&dropped).await, 404);
    assert_eq!(c.blob_status(&orphan).await, 404);
    assert_eq!(c.blob_status(&kept).await, 200);
    assert_eq!(
        c.blob_status(&shared).await,
        200,
        "a retained job still names it"
    );
    assert_eq!(c.sweep().await["blobs_collected"], 0);
    assert!(c.metric("leasehold_artifacts_collected_total").await >= before + 2.0);
}

async fn an_upload_or_completion_after_collection_never_names_a_lost_blob(store: Arc<dyn Store>) {
    let c = Coord::start(store, OffsetClock::default(), |_| {}).await;
    // Uploaded long ago, never named: a second upload claims it, so the sweep keeps it.
    let (status, reused) = c.upload(b"uploaded twice").await;
    assert_eq!(status, 201);
    c.clock.advance_ms(2 * DAY_MS);
    let (status, _) = c.upload(b"uploaded twice").await;
    assert_eq!(status, 200, "deduplicated");
    assert_eq!(c.sweep().await["blobs_collected"], 0);
    assert_eq!(c.blob_status(&reused).await, 200);

    // Collected before any job named it: a completion naming it is refused, not recorded.
    let (_, late) = c.upload(b"named too late").await;
    c.clock.advance_ms(2 * DAY_MS);
    assert_eq!(
        c.sweep().await["blobs_collected"],
        2,
        "both blobs went unnamed"
    );
    c.enqueue("late", None).await;
    let (id, token) = c.claim("late", None).await;
    let r = c
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": token, "artifacts": [late]})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["details"]["field"], "artifacts[0].digest");
    // Uploaded again, the same completion is recorded and its blob outlives the grace period.
    let (status, _) = c.upload(b"named too late").await;
    assert_eq!(status, 201, "stored anew");
    let r = c
        .call(
            "POST",
            &format!("/v1/jobs/{id}/complete"),
            Some(json!({"fencing_token": token, "artifacts": [late]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    c.clock.advance_ms(2 * HOUR_MS);
    assert_eq!(c.sweep().await["blobs_collected"], 0);
    assert_eq!(c.blob_status(&late).await, 200);
}

on_both_backends!(
    a_blob_goes_only_when_no_remaining_job_names_it,
    an_upload_or_completion_after_collection_never_names_a_lost_blob,
);
