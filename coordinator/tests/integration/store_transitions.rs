//! Store suite, transitions: failure (retry later or dead), release, and the operator's cancel
//! and retry. Every body runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::events::event_types;
use common::rows::{claim_one, claim_params, enqueue_one, fail, new_job};
use leasehold_coordinator::store::{CancelJob, RetryJob};
use leasehold_coordinator::store::{Finished, Outcome, OutcomeKind, Store};
use leasehold_proto::{HeartbeatItem, HeartbeatStatus, JobState};

async fn fail_retry_and_dead(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    let mut row = new_job("q", "k", t0);
    row.max_attempts = 2;
    let id = store.enqueue(t0, vec![row]).await.unwrap()[0].job.id;
    let l1 = claim_one(&*store, "q", t0).await;
    let retry_at = t0 + Duration::seconds(10);
    let r = store
        .finish(
            t0,
            "default",
            vec![fail(id, l1.fencing_token, true, retry_at)],
        )
        .await
        .unwrap();
    let Finished::Ok(job) = &r[0] else { panic!() };
    assert_eq!(job.state, JobState::Queued);
    assert_eq!(job.run_at.timestamp_micros(), retry_at.timestamp_micros());
    assert_eq!(job.last_error.as_ref().unwrap()["class"], "Boom");
    assert!(
        store
            .claim(t0 + Duration::seconds(5), &claim_params("q", 1, 30_000))
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    let l2 = claim_one(&*store, "q", retry_at).await;
    assert_eq!(l2.attempt, 2);
    let r = store
        .finish(
            retry_at,
            "default",
            vec![fail(id, l2.fencing_token, true, retry_at)],
        )
        .await
        .unwrap();
    let Finished::Ok(job) = &r[0] else { panic!() };
    assert_eq!(job.state, JobState::Dead, "attempts spent");
    assert!(job.finished_at.is_some());

    // A fatal error ends the job at once, attempts or not.
    let id2 = enqueue_one(&*store, "q", t0).await;
    let l = claim_one(&*store, "q", retry_at).await;
    let r = store
        .finish(
            retry_at,
            "default",
            vec![fail(id2, l.fencing_token, false, retry_at)],
        )
        .await
        .unwrap();
    let Finished::Ok(job) = &r[0] else { panic!() };
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        event_types(&store, id).await,
        vec!["enqueued", "leased", "retry_scheduled", "leased", "dead"]
    );

    // Operator retry brings it back with a fresh budget.
    let t = store
        .retry_job(RetryJob {
            now: retry_at,
            tenant: "default".into(),
            id,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(t.changed);
    assert_eq!(t.job.state, JobState::Queued);
    assert_eq!(t.job.attempt, 0);
    let again = store
        .retry_job(RetryJob {
            now: retry_at,
            tenant: "default".into(),
            id,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!again.changed, "retrying a queued job changes nothing");
}

async fn release_gives_the_attempt_back(store: Arc<dyn Store>) {
    let now = Utc::now();
    let id = enqueue_one(&*store, "q", now).await;
    let l = claim_one(&*store, "q", now).await;
    let r = store
        .finish(
            now,
            "default",
            vec![Outcome {
                job_id: id,
                fencing_token: l.fencing_token,
                kind: OutcomeKind::Release { undelivered: false },
            }],
        )
        .await
        .unwrap();
    let Finished::Ok(job) = &r[0] else { panic!() };
    assert_eq!((job.state, job.attempt), (JobState::Queued, 0));
    let l2 = claim_one(&*store, "q", now).await;
    assert_eq!(
        (l2.attempt, l2.fencing_token),
        (1, 2),
        "attempt reused, token still grows"
    );
}

async fn cancel_paths(store: Arc<dyn Store>) {
    let now = Utc::now();
    let queued = enqueue_one(&*store, "q", now).await;
    let t = store
        .cancel_job(CancelJob {
            now,
            tenant: "default".into(),
            id: queued,
            reason: "operator".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(t.changed);
    assert_eq!(t.job.state, JobState::Cancelled);
    let twice = store
        .cancel_job(CancelJob {
            now,
            tenant: "default".into(),
            id: queued,
            reason: "operator".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!twice.changed);
    assert_eq!(twice.job.state, JobState::Cancelled);

    let leased = enqueue_one(&*store, "q", now).await;
    let l = claim_one(&*store, "q", now).await;
    let t = store
        .cancel_job(CancelJob {
            now,
            tenant: "default".into(),
            id: leased,
            reason: "stop".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.job.state, t.job.cancel_requested),
        (JobState::Leased, true)
    );
    let hb = store
        .heartbeat(
            now,
            "default",
            &[HeartbeatItem {
                job_id: leased,
                fencing_token: l.fencing_token,
                progress: None,
                checkpoint: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(hb[0].status, HeartbeatStatus::CancelRequested);
    let r = store
        .finish(
            now,
            "default",
            vec![fail(leased, l.fencing_token, true, now)],
        )
        .await
        .unwrap();
    let Finished::Ok(job) = &r[0] else { panic!() };
    assert_eq!(
        job.state,
        JobState::Cancelled,
        "a worker stopping a cancel-requested job ends it cancelled"
    );
    assert!(
        store
            .cancel_job(CancelJob {
                now,
                tenant: "default".into(),
                id: uuid::Uuid::now_v7(),
                reason: "x".into()
            })
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        event_types(&store, leased).await,
        vec!["enqueued", "leased", "cancel_requested", "cancelled"]
    );
}

/// Claims after empty ones (an idle worker's: on SQLite they look on a reader before taking
/// the writer) still see, at the claim's own `now`, expired leases and jobs come due.
async fn claims_after_empty_ones_see_expiry_and_due_jobs(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    let id = store
        .enqueue(t0, vec![new_job("idle", "k", t0)])
        .await
        .unwrap()[0]
        .job
        .id;
    let first = store
        .claim(t0, &claim_params("idle", 10, 1_000))
        .await
        .unwrap()
        .leases;
    assert_eq!(first.len(), 1);
    let empty = |at| {
        let store = store.clone();
        async move {
            let c = store
                .claim(at, &claim_params("idle", 10, 1_000))
                .await
                .unwrap();
            c.leases.len()
        }
    };
    assert_eq!(empty(t0).await, 0, "leased, not expired");
    assert_eq!(empty(t0 + Duration::milliseconds(500)).await, 0);
    let again = store
        .claim(t0 + Duration::seconds(2), &claim_params("idle", 10, 60_000))
        .await
        .unwrap();
    assert_eq!(again.leases.len(), 1, "the expired lease is taken over");
    assert_eq!(again.leases[0].job.id, id);
    assert_eq!(again.leases[0].fencing_token, 2);
    assert_eq!(empty(t0 + Duration::seconds(2)).await, 0);
    let mut later = new_job("idle", "k", t0);
    later.run_at = t0 + Duration::seconds(5);
    store.enqueue(t0, vec![later]).await.unwrap();
    assert_eq!(empty(t0 + Duration::seconds(3)).await, 0, "not due yet");
    assert_eq!(empty(t0 + Duration::seconds(6)).await, 1, "due");
}

on_both_backends!(
    claims_after_empty_ones_see_expiry_and_due_jobs,
    fail_retry_and_dead,
    release_gives_the_attempt_back,
    cancel_paths,
);
