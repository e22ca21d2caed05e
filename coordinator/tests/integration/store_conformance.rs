//! Store suite, lifecycle: enqueue and idempotency, claims, fencing tokens, lease expiry,
//! heartbeats and completion. Every body runs on SQLite and on PostgreSQL (failure, release,
//! cancel and retry: `store_transitions.rs`; queues, listings and events: `store_listings.rs`;
//! batches: `store_batches.rs`).
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use common::events::event_types;
use common::rows::{claim_one, claim_params, complete, enqueue_one, fail, new_job};
use leasehold_coordinator::store::{CancelJob, RetryJob};
use leasehold_coordinator::store::{Finished, JobFilter, NewJobRow, Outcome, OutcomeKind, Store};
use leasehold_proto::{Artifact, HeartbeatItem, HeartbeatStatus, JobState};
use serde_json::json;

async fn enqueue_get_and_idempotency(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut a = new_job("q", "k", now);
    a.idempotency_key = Some("key-1".into());
    let first = store.enqueue(now, vec![a.clone()]).await.unwrap();
    assert!(!first[0].replayed);
    let mut again = new_job("q", "k", now);
    again.idempotency_key = Some("key-1".into());
    let second = store.enqueue(now, vec![again]).await.unwrap();
    assert!(second[0].replayed);
    assert_eq!(second[0].job.id, first[0].job.id);
    // Same key on another queue is another job.
    let mut other = new_job("q2", "k", now);
    other.idempotency_key = Some("key-1".into());
    let third = store.enqueue(now, vec![other]).await.unwrap();
    assert!(!third[0].replayed);
    assert_ne!(third[0].job.id, first[0].job.id);
    // A duplicate inside one batch returns the first of the batch.
    let mut b1 = new_job("q", "k", now);
    b1.idempotency_key = Some("key-2".into());
    let mut b2 = new_job("q", "k", now);
    b2.idempotency_key = Some("key-2".into());
    let batch = store.enqueue(now, vec![b1, b2]).await.unwrap();
    assert!(!batch[0].replayed && batch[1].replayed);
    assert_eq!(batch[0].job.id, batch[1].job.id);

    let got = store
        .get_job("default", first[0].job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.state, JobState::Queued);
    assert_eq!(got.payload, json!({"n": 1}));
    assert!(got.inputs_hash.starts_with("sha256:"));
    assert!(
        store
            .get_job("other-tenant", first[0].job.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(event_types(&store, got.id).await, vec!["enqueued"]);
}

async fn claim_order_and_batch(store: Arc<dyn Store>) {
    let now = Utc::now();
    let mut low = new_job("q", "k", now);
    low.priority = -5;
    let mut high = new_job("q", "k", now);
    high.priority = 10;
    let mut later = new_job("q", "k", now);
    later.run_at = now + Duration::seconds(60);
    let plain = new_job("q", "k", now);
    let ids: Vec<_> = store
        .enqueue(now, vec![low, high, later, plain])
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job.id)
        .collect();
    let claimed = store
        .claim(now, &claim_params("q", 10, 300_000))
        .await
        .unwrap();
    let got: Vec<_> = claimed.leases.iter().map(|l| l.job.id).collect();
    assert_eq!(
        got,
        vec![ids[1], ids[3], ids[0]],
        "priority, then run_at/id; future job not due"
    );
    for lease in &claimed.leases {
        assert_eq!(lease.fencing_token, 1);
        assert_eq!(lease.attempt, 1);
        assert_eq!(lease.lease_ttl_ms, 300_000);
        assert_eq!(lease.job.state, JobState::Leased);
        assert_eq!(lease.job.worker_id.as_deref(), Some("w1"));
    }
    let next = store
        .next_ready_at(now, &["default".into()], &["q".into()])
        .await
        .unwrap()
        .unwrap();
    assert!(next <= now + Duration::seconds(60));
    // Once due, the future job is claimable.
    let due = store
        .claim(now + Duration::seconds(61), &claim_params("q", 10, 30_000))
        .await
        .unwrap();
    assert_eq!(due.leases.len(), 1);
    assert_eq!(due.leases[0].job.id, ids[2]);
}

async fn stale_token_changes_nothing(store: Arc<dyn Store>) {
    let now = Utc::now();
    let id = enqueue_one(&*store, "q", now).await;
    let lease = claim_one(&*store, "q", now).await;
    let before = store.get_job("default", id).await.unwrap().unwrap();
    let events_before = store.events_after(0, 10_000).await.unwrap().len();
    for outcome in [
        complete(id, lease.fencing_token + 1),
        fail(id, lease.fencing_token - 1, true, now),
        Outcome {
            job_id: id,
            fencing_token: 99,
            kind: OutcomeKind::Release { undelivered: false },
        },
    ] {
        let r = store.finish(now, "default", vec![outcome]).await.unwrap();
        assert!(
            matches!(r[0], Finished::LeaseLost(JobState::Leased)),
            "{r:?}"
        );
    }
    let hb = store
        .heartbeat(
            now,
            "default",
            &[HeartbeatItem {
                job_id: id,
                fencing_token: 7,
                progress: None,
                checkpoint: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(hb[0].status, HeartbeatStatus::Lost);
    assert_eq!(store.get_job("default", id).await.unwrap().unwrap(), before);
    assert_eq!(
        store.events_after(0, 10_000).await.unwrap().len(),
        events_before
    );
    let missing = store
        .finish(now, "default", vec![complete(uuid::Uuid::now_v7(), 1)])
        .await
        .unwrap();
    assert!(matches!(missing[0], Finished::NotFound));
}

async fn expired_lease_is_reclaimed_with_next_token(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    let id = enqueue_one(&*store, "q", t0).await;
    let old = store
        .claim(t0, &claim_params("q", 1, 5_000))
        .await
        .unwrap()
        .leases
        .remove(0);
    // Before the deadline nobody else gets it.
    assert!(
        store
            .claim(t0 + Duration::seconds(4), &claim_params("q", 1, 5_000))
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    let t1 = t0 + Duration::seconds(6);
    let claimed = store.claim(t1, &claim_params("q", 1, 5_000)).await.unwrap();
    assert_eq!(claimed.expired, 1);
    let new = &claimed.leases[0];
    assert_eq!(new.job.id, id);
    assert_eq!(new.fencing_token, old.fencing_token + 1);
    assert_eq!(new.attempt, 2);
    // The zombie's heartbeat and outcome are refused; the new attempt's outcome stands.
    let hb = store
        .heartbeat(
            t1,
            "default",
            &[HeartbeatItem {
                job_id: id,
                fencing_token: old.fencing_token,
                progress: None,
                checkpoint: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(hb[0].status, HeartbeatStatus::Lost);
    let zombie = store
        .finish(t1, "default", vec![complete(id, old.fencing_token)])
        .await
        .unwrap();
    assert!(matches!(zombie[0], Finished::LeaseLost(JobState::Leased)));
    let done = store
        .finish(t1, "default", vec![complete(id, new.fencing_token)])
        .await
        .unwrap();
    let Finished::Ok(job) = &done[0] else {
        panic!("{done:?}")
    };
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.fencing_token, 2);
    assert_eq!(
        event_types(&store, id).await,
        vec!["enqueued", "leased", "lease_expired", "leased", "succeeded"]
    );
}

async fn expiry_with_attempts_spent_is_dead(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    let mut row = new_job("q", "k", t0);
    row.max_attempts = 1;
    let id = store.enqueue(t0, vec![row]).await.unwrap()[0].job.id;
    store.claim(t0, &claim_params("q", 1, 1_000)).await.unwrap();
    let later = store
        .claim(t0 + Duration::seconds(2), &claim_params("q", 1, 1_000))
        .await
        .unwrap();
    assert!(later.leases.is_empty());
    assert_eq!(later.expired, 1);
    let job = store.get_job("default", id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.last_error.unwrap()["class"], "lease_expired");
}

async fn heartbeat_extends_and_keeps_checkpoint(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    let id = enqueue_one(&*store, "q", t0).await;
    let l = store
        .claim(t0, &claim_params("q", 1, 5_000))
        .await
        .unwrap()
        .leases
        .remove(0);
    let t1 = t0 + Duration::seconds(4);
    let hb = store
        .heartbeat(
            t1,
            "default",
            &[HeartbeatItem {
                job_id: id,
                fencing_token: l.fencing_token,
                progress: Some(json!({"pct": 50})),
                checkpoint: Some(json!({"page": 7})),
            }],
        )
        .await
        .unwrap();
    assert_eq!(hb[0].status, HeartbeatStatus::Ok);
    assert_eq!(
        hb[0].expires_at.unwrap().timestamp_millis(),
        (t1 + Duration::seconds(5)).timestamp_millis()
    );
    // Past the original deadline but within the extended one: still held.
    assert!(
        store
            .claim(t0 + Duration::seconds(6), &claim_params("q", 1, 5_000))
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    // After the extended deadline another attempt takes it, with the checkpoint.
    let l2 = store
        .claim(t1 + Duration::seconds(6), &claim_params("q", 1, 5_000))
        .await
        .unwrap()
        .leases
        .remove(0);
    assert_eq!(l2.checkpoint, Some(json!({"page": 7})));
    assert_eq!(l2.job.progress, Some(json!({"pct": 50})));
}

async fn complete_records_result_and_artifacts(store: Arc<dyn Store>) {
    let now = Utc::now();
    let id = enqueue_one(&*store, "q", now).await;
    let l = claim_one(&*store, "q", now).await;
    let artifact = Artifact {
        name: "out/report.txt".into(),
        digest: format!("sha256:{}", "a".repeat(64)),
        size: 3,
        media_type: "text/plain".into(),
    };
    let r = store
        .finish(
            now,
            "default",
            vec![Outcome {
                job_id: id,
                fencing_token: l.fencing_token,
                kind: OutcomeKind::Complete {
                    result: json!({"rows": 3}),
                    artifacts: vec![artifact.clone()],
                },
            }],
        )
        .await
        .unwrap();
    let Finished::Ok(job) = &r[0] else { panic!() };
    assert_eq!(job.result, Some(json!({"rows": 3})));
    assert_eq!(job.artifacts, vec![artifact]);
    assert_eq!(job.worker_version.as_deref(), Some("test/1"));
    // Terminal: a second outcome is lease_lost and cancel changes nothing.
    let again = store
        .finish(now, "default", vec![complete(id, l.fencing_token)])
        .await
        .unwrap();
    assert!(matches!(again[0], Finished::LeaseLost(JobState::Succeeded)));
    let c = store
        .cancel_job(CancelJob {
            now,
            tenant: "default".into(),
            id,
            reason: "late".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert!(!c.changed);
}

async fn concurrent_claimers_never_share_a_job(store: Arc<dyn Store>) {
    let now = Utc::now();
    let rows: Vec<_> = (0..300).map(|_| new_job("q", "k", now)).collect();
    store.enqueue(now, rows).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let mut p = claim_params("q", 7, 30_000);
                p.worker_id = format!("w{w}");
                let got = store.claim(now, &p).await.unwrap();
                if got.leases.is_empty() {
                    return mine;
                }
                mine.extend(got.leases.into_iter().map(|l| l.job.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "job {id} leased twice");
        }
    }
    assert_eq!(total, 300);
}

/// Every job has a lease deadline exactly while it is leased, through every way in and out of
/// `leased` (the PostgreSQL expired-lease index is partial on `lease_expires_at IS NOT NULL`).
async fn lease_deadline_is_set_exactly_while_leased(store: Arc<dyn Store>) {
    let t0 = Utc::now();
    let mut rows: Vec<NewJobRow> = (0..6).map(|_| new_job("ld", "k", t0)).collect();
    rows[5].max_attempts = 1;
    store.enqueue(t0, rows).await.unwrap();
    let check = |step: &'static str| {
        let store = store.clone();
        async move {
            let filter = JobFilter {
                tenant: "default".into(),
                queue: Some("ld".into()),
                state: None,
                kind: None,
                before: None,
                limit: 100,
                ..Default::default()
            };
            let jobs = store.list_jobs(&filter).await.unwrap();
            assert_eq!(jobs.len(), 6, "{step}");
            for j in jobs {
                assert_eq!(
                    j.state == JobState::Leased,
                    j.lease_expires_at.is_some(),
                    "{step}: job in state {:?} with lease_expires_at {:?}",
                    j.state,
                    j.lease_expires_at
                );
            }
        }
    };
    check("enqueued").await;
    let leases = store
        .claim(t0, &claim_params("ld", 6, 1_000))
        .await
        .unwrap()
        .leases;
    assert_eq!(leases.len(), 6);
    check("claimed").await;
    let l = |i: usize| (leases[i].job.id, leases[i].fencing_token);
    store
        .cancel_job(CancelJob {
            now: t0,
            tenant: "default".into(),
            id: l(4).0,
            reason: "operator".into(),
        })
        .await
        .unwrap();
    check("cancel requested").await;
    let outcomes = vec![
        complete(l(0).0, l(0).1),
        fail(l(1).0, l(1).1, true, t0),
        fail(l(2).0, l(2).1, false, t0),
        Outcome {
            job_id: l(3).0,
            fencing_token: l(3).1,
            kind: OutcomeKind::Release { undelivered: false },
        },
        fail(l(4).0, l(4).1, true, t0),
    ];
    let finished = store.finish(t0, "default", outcomes).await.unwrap();
    assert!(finished.iter().all(|f| matches!(f, Finished::Ok(_))));
    check("finished").await;
    // Job 5 (one attempt) expires: dead; jobs 1 and 3 are leased again.
    let later = t0 + Duration::seconds(5);
    let again = store
        .claim(later, &claim_params("ld", 6, 1_000))
        .await
        .unwrap();
    assert_eq!(again.expired, 1);
    assert_eq!(again.leases.len(), 2);
    check("expired and re-claimed").await;
    store
        .retry_job(RetryJob {
            now: later,
            tenant: "default".into(),
            id: l(2).0,
        })
        .await
        .unwrap()
        .unwrap();
    check("dead job retried").await;
}

/// A lease given back because it never reached its worker says so in the ledger; a worker's own
/// release does not. Both return the attempt and re-queue the job at once.
async fn an_undelivered_release_says_why(store: Arc<dyn Store>) {
    let now = Utc::now();
    for (undelivered, queue) in [(true, "unseen"), (false, "given-back")] {
        let id = enqueue_one(&*store, queue, now).await;
        let lease = claim_one(&*store, queue, now).await;
        assert_eq!(lease.job.id, id);
        let r = store
            .finish(
                now,
                "default",
                vec![Outcome {
                    job_id: id,
                    fencing_token: lease.fencing_token,
                    kind: OutcomeKind::Release { undelivered },
                }],
            )
            .await
            .unwrap();
        assert!(matches!(r[0], Finished::Ok(_)), "{r:?}");
        let job = store.get_job("default", id).await.unwrap().unwrap();
        assert_eq!((job.state, job.attempt), (JobState::Queued, 0));
        let events = store.events_after(0, 10_000).await.unwrap();
        let released = events
            .iter()
            .rfind(|e| e.job_id == Some(id) && e.kind == "released")
            .expect("a released event");
        assert_eq!(
            released.data.get("reason").and_then(|r| r.as_str()),
            undelivered.then_some("undelivered"),
            "{released:?}"
        );
    }
}

on_both_backends!(
    an_undelivered_release_says_why,
    enqueue_get_and_idempotency,
    claim_order_and_batch,
    stale_token_changes_nothing,
    expired_lease_is_reclaimed_with_next_token,
    expiry_with_attempts_spent_is_dead,
    heartbeat_extends_and_keeps_checkpoint,
    complete_records_result_and_artifacts,
    concurrent_claimers_never_share_a_job,
    lease_deadline_is_set_exactly_while_leased,
);
