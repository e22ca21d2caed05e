//! Store suite, batches: every body runs on SQLite and on PostgreSQL. Batches must answer
//! item by item exactly as one call per item would, at the sizes SQLite runs through sqlx (under
//! 8 rows) and directly on its handle (8 or more; docs/sqlite-direct.md).
#![allow(clippy::unwrap_used, missing_docs)]

use crate::common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use common::rows::{claim_params, complete, fail, new_job};
use leasehold_coordinator::store::{Finished, NewJobRow, Outcome, OutcomeKind, Store};
use leasehold_proto::{FailureInfo, HeartbeatItem, HeartbeatStatus, JobState, Lease};
use serde_json::json;
use uuid::Uuid;

/// Each answer of a batch as `ok <state>`, `lost <state>` or `not found`.
fn summarize(results: &[Finished]) -> Vec<String> {
    summarize_states(results.iter().map(|r| r.clone().map(|job| job.state)))
}

/// [`summarize`] for answers that carry the new state only (`Store::finish_states`).
fn summarize_states(results: impl IntoIterator<Item = Finished<JobState>>) -> Vec<String> {
    results
        .into_iter()
        .map(|r| match r {
            Finished::Ok(state) => format!("ok {}", state.as_str()),
            Finished::LeaseLost(state) => format!("lost {}", state.as_str()),
            Finished::NotFound => "not found".into(),
        })
        .collect()
}

/// One outcome of each kind for `leases`, in turn: complete, fail (retryable, due at
/// `retry_at`), fail (final), release, and a complete under a stale token.
fn five_kinds(leases: &[Lease], retry_at: DateTime<Utc>) -> Vec<Outcome> {
    leases
        .iter()
        .enumerate()
        .map(|(i, l)| match i % 5 {
            0 => complete(l.job.id, l.fencing_token),
            1 => fail(l.job.id, l.fencing_token, true, retry_at),
            2 => fail(l.job.id, l.fencing_token, false, retry_at),
            3 => Outcome {
                job_id: l.job.id,
                fencing_token: l.fencing_token,
                kind: OutcomeKind::Release { undelivered: false },
            },
            _ => complete(l.job.id, l.fencing_token + 1),
        })
        .collect()
}

/// The id of the store's latest event (0 when none).
async fn last_event(store: &Arc<dyn Store>) -> i64 {
    store
        .events_after(0, 100_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.id)
}

/// What an outcome or a claim changes in a job's row.
async fn stored(store: &Arc<dyn Store>, id: Uuid) -> impl PartialEq + std::fmt::Debug {
    let job = store.get_job("default", id).await.unwrap().unwrap();
    (
        job.state,
        job.attempt,
        job.result,
        job.last_error,
        job.run_at,
        job.started_at,
        job.finished_at,
    )
}

/// A batch naming one job twice, mixing kinds, stale tokens and unknown jobs answers each
/// item as if applied one by one; a batch enqueue with a repeated key stores the first.
async fn batches_answer_per_item(store: Arc<dyn Store>) {
    // Both stores keep microseconds.
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let job = |key: Option<&str>| {
        let mut row = new_job("q", "k", now);
        row.idempotency_key = key.map(str::to_owned);
        row
    };
    let rows = vec![job(Some("a")), job(None), job(Some("a")), job(None)];
    let enq = store.enqueue(now, rows.clone()).await.unwrap();
    assert_eq!(
        enq.iter().map(|e| e.replayed).collect::<Vec<_>>(),
        [false, false, true, false]
    );
    assert_eq!(enq[2].job.id, rows[0].id);
    let ids: Vec<Uuid> = enq.iter().map(|e| e.job.id).collect();
    assert_eq!(ids, [rows[0].id, rows[1].id, rows[0].id, rows[3].id]);
    let again = store
        .enqueue(now, vec![job(None), job(Some("a")), job(Some("b"))])
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|e| e.replayed).collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(again[1].job.id, rows[0].id);
    let enqueued = store.events_after(0, 100).await.unwrap();
    let enqueued: Vec<Option<Uuid>> = enqueued.iter().map(|e| e.job_id).collect();
    assert_eq!(
        enqueued,
        [
            rows[0].id,
            rows[1].id,
            rows[3].id,
            again[0].job.id,
            again[2].job.id
        ]
        .map(Some)
        .to_vec()
    );

    let leases = store
        .claim(now, &claim_params("q", 3, 60_000))
        .await
        .unwrap()
        .leases;
    assert_eq!(leases.len(), 3);
    let (a, b, c) = (&leases[0], &leases[1], &leases[2]);
    let outcome = |l: &Lease, token: i64, kind: OutcomeKind| Outcome {
        job_id: l.job.id,
        fencing_token: token,
        kind,
    };
    let complete = OutcomeKind::Complete {
        result: json!({"ok": 1}),
        artifacts: vec![],
    };
    let fail = OutcomeKind::Fail {
        error: FailureInfo {
            class: "E".into(),
            message: "m".into(),
            retryable: true,
        },
        retry_at: now + Duration::seconds(30),
    };
    let missing = Outcome {
        job_id: Uuid::now_v7(),
        fencing_token: 1,
        kind: OutcomeKind::Release { undelivered: false },
    };
    // The newest event visible now (`last_event_id` is the *settled* end on PostgreSQL, which
    // other tests' transactions in the cluster can hold back).
    let last = store
        .events_after(0, 1000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.id);
    let results = store
        .finish(
            now,
            "default",
            vec![
                outcome(a, a.fencing_token + 1, complete.clone()),
                outcome(a, a.fencing_token, complete.clone()),
                outcome(
                    a,
                    a.fencing_token,
                    OutcomeKind::Release { undelivered: false },
                ),
                outcome(b, b.fencing_token, fail),
                missing,
                outcome(
                    c,
                    c.fencing_token,
                    OutcomeKind::Release { undelivered: false },
                ),
            ],
        )
        .await
        .unwrap();
    let summary = summarize(&results);
    assert_eq!(
        summary,
        [
            "lost leased",
            "ok succeeded",
            "lost succeeded",
            "ok queued",
            "not found",
            "ok queued"
        ]
    );
    let Finished::Ok(released) = &results[5] else {
        unreachable!()
    };
    assert_eq!((released.attempt, released.run_at), (0, now));
    let Finished::Ok(failed) = &results[3] else {
        unreachable!()
    };
    assert_eq!(
        (failed.attempt, failed.run_at, failed.finished_at),
        (1, now + Duration::seconds(30), None)
    );
    let events = store.events_after(last, 100).await.unwrap();
    let got: Vec<(&str, Option<Uuid>)> =
        events.iter().map(|e| (e.kind.as_str(), e.job_id)).collect();
    assert_eq!(
        got,
        [
            ("succeeded", Some(a.job.id)),
            ("retry_scheduled", Some(b.job.id)),
            ("released", Some(c.job.id)),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        events[0].data,
        json!({"from": "leased", "to": "succeeded", "fencing_token": a.fencing_token,
               "attempt": 1, "artifacts": 0})
    );
    assert_eq!(
        events[2].data,
        json!({"from": "leased", "to": "queued", "fencing_token": c.fencing_token,
               "attempt": 0})
    );
}

/// Batches of 24 (SQLite runs statements over 8 rows or more directly on its handle, smaller
/// ones through sqlx; both must answer alike): claim, heartbeat and finish with stale tokens
/// mixed in, then a claim that takes expired leases over.
async fn large_batches_answer_like_small_ones(store: Arc<dyn Store>) {
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    // 30 jobs, the last two with one idempotency key: the second is a replay of the first.
    let keyed = |key: Option<&str>| {
        let mut row = new_job("big", "k", now);
        row.idempotency_key = key.map(str::to_owned);
        row
    };
    let mut rows: Vec<NewJobRow> = (0..29).map(|_| keyed(None)).collect();
    rows.push(keyed(Some("k29")));
    rows.push(keyed(Some("k29")));
    let enq = store.enqueue(now, rows.clone()).await.unwrap();
    assert_eq!(enq.iter().filter(|e| e.replayed).count(), 1);
    assert!(enq[30].replayed && enq[30].job.id == rows[29].id);
    // A batch of 10 replaying it again among 9 new jobs.
    let mut more: Vec<NewJobRow> = (0..9).map(|_| keyed(None)).collect();
    more.insert(4, keyed(Some("k29")));
    let enq2 = store.enqueue(now, more).await.unwrap();
    let replayed: Vec<usize> = (0..10).filter(|&i| enq2[i].replayed).collect();
    assert_eq!(replayed, [4]);
    assert_eq!(enq2[4].job.id, rows[29].id);
    assert!(enq2.iter().all(|e| e.job.state == JobState::Queued));
    let leases = store
        .claim(now, &claim_params("big", 24, 60_000))
        .await
        .unwrap()
        .leases;
    assert_eq!(leases.len(), 24);
    assert!(leases.iter().all(|l| l.job.state == JobState::Leased
        && l.job.attempt == 1
        && l.job.payload == json!({"n": 1})
        && l.job.worker_version.as_deref() == Some("test/1")));
    // Claim order is queue order: ids are UUIDv7, made in enqueue order.
    assert!(leases.windows(2).all(|w| w[0].job.id < w[1].job.id));

    let t1 = now + Duration::seconds(10);
    let items: Vec<HeartbeatItem> = leases
        .iter()
        .enumerate()
        .map(|(i, l)| HeartbeatItem {
            job_id: l.job.id,
            // Every sixth is stale.
            fencing_token: l.fencing_token + i64::from(i % 6 == 5),
            progress: Some(json!({"i": i})),
            checkpoint: (i % 2 == 0).then(|| json!({"page": i})),
        })
        .collect();
    let last = store
        .events_after(0, 10_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.id);
    let beats = store.heartbeat(t1, "default", &items).await.unwrap();
    let lost: Vec<usize> = (0..24)
        .filter(|&i| beats[i].status == HeartbeatStatus::Lost)
        .collect();
    assert_eq!(lost, [5, 11, 17, 23]);
    assert!(beats.iter().zip(&leases).all(|(b, l)| b.job_id == l.job.id));
    assert!(
        beats
            .iter()
            .filter(|b| b.status == HeartbeatStatus::Ok)
            .all(|b| b.expires_at.unwrap().timestamp_millis()
                == (t1 + Duration::seconds(60)).timestamp_millis())
    );
    let checkpoints = store.events_after(last, 100).await.unwrap();
    assert_eq!(checkpoints.len(), 12);
    assert!(checkpoints.iter().all(|e| e.kind == "checkpoint"));

    // Outcomes: complete, fail (retryable), release, stale, in turn; plus an unknown job.
    let mut outcomes: Vec<Outcome> = leases
        .iter()
        .enumerate()
        .map(|(i, l)| match i % 4 {
            0 => complete(l.job.id, l.fencing_token),
            1 => fail(l.job.id, l.fencing_token, true, t1 + Duration::seconds(5)),
            2 => Outcome {
                job_id: l.job.id,
                fencing_token: l.fencing_token,
                kind: OutcomeKind::Release { undelivered: false },
            },
            _ => complete(l.job.id, l.fencing_token - 1),
        })
        .collect();
    outcomes.push(complete(Uuid::now_v7(), 1));
    let results = store.finish(t1, "default", outcomes).await.unwrap();
    let summary = summarize(&results);
    let mut expected: Vec<String> = (0..24)
        .map(|i| match i % 4 {
            0 => "ok succeeded",
            1 | 2 => "ok queued",
            _ => "lost leased",
        })
        .map(str::to_owned)
        .collect();
    expected.push("not found".into());
    assert_eq!(summary, expected);
    let Finished::Ok(done) = &results[0] else {
        unreachable!()
    };
    assert_eq!(done.result, Some(json!({"ok": true})));
    assert_eq!(done.finished_at, Some(t1));

    // The six still-leased jobs expire; a claim of up to 40 takes them over (with the
    // checkpoint of those that stored one) together with the released and queued ones.
    let t2 = t1 + Duration::seconds(120);
    let claimed = store
        .claim(t2, &claim_params("big", 40, 60_000))
        .await
        .unwrap();
    assert_eq!(claimed.expired, 6);
    // 6 expired, 6 released, 6 failed (their retry time, t1 + 5 s, is past) and the 15 never
    // claimed.
    assert_eq!(claimed.leases.len(), 33);
    let again: HashSet<Uuid> = claimed.leases.iter().map(|l| l.job.id).collect();
    for (i, l) in leases.iter().enumerate() {
        assert_eq!(again.contains(&l.job.id), i % 4 != 0, "job {i}");
    }
    let taken_over = claimed
        .leases
        .iter()
        .find(|l| l.job.id == leases[3].job.id)
        .unwrap();
    assert_eq!(taken_over.fencing_token, leases[3].fencing_token + 1);
    assert_eq!(taken_over.checkpoint, None);
    assert_eq!(taken_over.job.progress, Some(json!({"i": 3})));
}

/// `finish_states` (what the batch endpoints use) records exactly what `finish` records and
/// answers with the state `finish` would show: two identical groups of leases, each finished
/// with one of the two, end with the same rows, the same events and the same answers.
async fn state_answers_match_whole_ones(store: Arc<dyn Store>) {
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let t1 = now + Duration::seconds(10);
    let mut groups = Vec::new();
    for queue in ["whole", "states"] {
        let rows: Vec<NewJobRow> = (0..12).map(|_| new_job(queue, "k", now)).collect();
        store.enqueue(now, rows).await.unwrap();
        let leases = store
            .claim(now, &claim_params(queue, 12, 60_000))
            .await
            .unwrap()
            .leases;
        assert_eq!(leases.len(), 12);
        // One of each kind; then the first job a second time (already finished) and an
        // unknown job.
        let mut outcomes = five_kinds(&leases, t1 + Duration::seconds(5));
        outcomes.push(complete(leases[0].job.id, leases[0].fencing_token));
        outcomes.push(complete(Uuid::now_v7(), 1));
        let last = last_event(&store).await;
        let answers: Vec<String> = if queue == "whole" {
            summarize(&store.finish(t1, "default", outcomes).await.unwrap())
        } else {
            summarize_states(store.finish_states(t1, "default", outcomes).await.unwrap())
        };
        let mut rows = Vec::new();
        for l in &leases {
            rows.push(stored(&store, l.job.id).await);
        }
        let events: Vec<String> = store
            .events_after(last, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {}", e.kind, e.data))
            .collect();
        groups.push((answers, rows, events));
    }
    let (whole, states) = (&groups[0], &groups[1]);
    let expected: Vec<&str> = (0..12)
        .map(|i| match i % 5 {
            0 => "ok succeeded",
            1 | 3 => "ok queued",
            2 => "ok dead",
            _ => "lost leased",
        })
        .chain(["lost succeeded", "not found"])
        .collect();
    assert_eq!(states.0, expected);
    assert_eq!(whole.0, states.0);
    assert_eq!(whole.1, states.1);
    assert_eq!(states.2.len(), 10, "one event per recorded outcome");
    assert_eq!(whole.2, states.2);
}

/// A single-job enqueue (its own statement on PostgreSQL) stores, answers and logs what the
/// same job in a batch does, replays included.
async fn single_enqueues_match_batched_ones(store: Arc<dyn Store>) {
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let row = |key: &str| {
        let mut row = new_job("one", "k", now);
        row.idempotency_key = Some(key.to_owned());
        row.correlation_id = Some("corr".into());
        row.priority = 3;
        row
    };
    let alone = store.enqueue(now, vec![row("a")]).await.unwrap().remove(0);
    let batch = store.enqueue(now, vec![row("b"), row("c")]).await.unwrap();
    let strip = |job: &leasehold_proto::Job| {
        let mut v = serde_json::to_value(job).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("id");
        obj.remove("idempotency_key");
        v
    };
    assert!(!alone.replayed && !batch[0].replayed);
    assert_eq!(strip(&alone.job), strip(&batch[0].job), "answers");
    let stored = |id| {
        let store = store.clone();
        async move { store.get_job("default", id).await.unwrap().unwrap() }
    };
    assert_eq!(
        strip(&stored(alone.job.id).await),
        strip(&stored(batch[0].job.id).await),
        "stored rows"
    );
    let events = store.events_after(0, 1000).await.unwrap();
    let of = |id| -> Vec<(String, serde_json::Value)> {
        events
            .iter()
            .filter(|e| e.job_id == Some(id))
            .map(|e| (e.kind.clone(), e.data.clone()))
            .collect()
    };
    assert_eq!(of(alone.job.id), of(batch[0].job.id), "events");
    assert_eq!(of(alone.job.id).len(), 1);
    let again = store.enqueue(now, vec![row("a")]).await.unwrap().remove(0);
    assert!(again.replayed);
    assert_eq!(again.job.id, alone.job.id);
    assert_eq!(of(alone.job.id).len(), 1, "a replay writes nothing");
}

/// A worker session's outcomes and next claim together (`Store::finish_and_claim`, one
/// transaction on PostgreSQL) answer, store and log exactly what the two calls one after the
/// other do: the claim sees the jobs the outcomes sent back to the queue.
async fn outcomes_with_a_claim_match_the_two_calls(store: Arc<dyn Store>) {
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let t1 = now + Duration::seconds(10);
    let mut groups = Vec::new();
    for queue in ["apart", "together"] {
        let rows: Vec<NewJobRow> = (0..16).map(|_| new_job(queue, "k", now)).collect();
        let ids: Vec<Uuid> = store
            .enqueue(now, rows)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.job.id)
            .collect();
        let leases = store
            .claim(now, &claim_params(queue, 12, 60_000))
            .await
            .unwrap()
            .leases;
        assert_eq!(leases.len(), 12);
        // One of each kind, the retry due at once.
        let outcomes = five_kinds(&leases, t1);
        let last = last_event(&store).await;
        let params = leasehold_coordinator::store::ClaimParams {
            ungated: true,
            ..claim_params(queue, 20, 60_000)
        };
        let (finished, claimed) = if queue == "apart" {
            let finished = store.finish_states(t1, "default", outcomes).await.unwrap();
            (finished, store.claim(t1, &params).await.unwrap())
        } else {
            store
                .finish_and_claim(t1, "default", outcomes, &params)
                .await
                .unwrap()
        };
        let answers = summarize_states(finished);
        // Jobs by their place in the queue: ids differ between the queues.
        let place = |id: Uuid| ids.iter().position(|j| *j == id).unwrap();
        let granted: Vec<_> = claimed
            .leases
            .iter()
            .map(|l| (place(l.job.id), l.attempt, l.fencing_token, l.expires_at))
            .collect();
        let mut rows = Vec::new();
        for id in &ids {
            rows.push(stored(&store, *id).await);
        }
        let events: Vec<String> = store
            .events_after(last, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                let job = e.job_id.map(place);
                format!("{} {job:?} {}", e.kind, e.data)
            })
            .collect();
        groups.push((answers, granted, rows, events));
    }
    let (apart, together) = (&groups[0], &groups[1]);
    // The retried and the released jobs (5 of 12) and the 4 never leased are claimed again.
    assert_eq!(apart.1.len(), 9, "{:?}", apart.1);
    assert_eq!(together.0, apart.0, "answers");
    assert_eq!(together.1, apart.1, "leases granted");
    assert_eq!(together.2, apart.2, "rows");
    assert_eq!(together.3, apart.3, "events");
}

on_both_backends!(
    single_enqueues_match_batched_ones,
    outcomes_with_a_claim_match_the_two_calls,
    batches_answer_per_item,
    large_batches_answer_like_small_ones,
    state_answers_match_whole_ones
);
