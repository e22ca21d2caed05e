//! The batch paths (finish, enqueue) answer per item exactly as one-by-one application.
use super::*;
use chrono::Duration as Span;
use leasehold_proto::{HeartbeatStatus, Lease};
use serde_json::Value;

use crate::store::OutcomeKind;

struct TempDb {
    store: SqliteStore,
    path: std::path::PathBuf,
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn store() -> TempDb {
    let path = std::env::temp_dir().join(format!("leasehold-sqlite-{}.db", Uuid::now_v7()));
    let store = SqliteStore::open(&path, SqliteSync::Normal).await.unwrap();
    TempDb { store, path }
}

fn job(queue: &str, key: Option<&str>, now: DateTime<Utc>) -> NewJobRow {
    NewJobRow {
        payload: json!({"q": queue}),
        run_at: now,
        idempotency_key: key.map(str::to_owned),
        ..NewJobRow::sample("default", queue)
    }
}

fn params(max_jobs: u32) -> ClaimParams {
    ClaimParams {
        tenant: "default".into(),
        worker_id: "w".into(),
        worker_version: None,
        queues: vec!["q".into()],
        max_jobs,
        lease_ttl_ms: 60_000,
        ungated: false,
        pool: None,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

/// A job of a run ends its chunk: its DAG bookkeeping (here unblocking a child) is written
/// before the next outcome of the batch, as with one-by-one application.
#[tokio::test]
async fn run_job_bookkeeping_precedes_next_outcome() {
    let db = store().await;
    let store = &db.store;
    let now = now();
    let run_id = Uuid::now_v7();
    let mut parent = job("q", None, now);
    parent.run_id = Some(run_id);
    let mut child = job("q", None, now);
    child.run_id = Some(run_id);
    child.state = JobState::Blocked;
    let run = NewRunRow {
        id: run_id,
        tenant: "default".into(),
        run_token: None,
        name: None,
        project: None,
        correlation_id: None,
        mode: None,
        jobs: vec![
            super::super::RunJobRow {
                row: parent.clone(),
                key: "p".into(),
                parents: vec![],
            },
            super::super::RunJobRow {
                row: child.clone(),
                key: "c".into(),
                parents: vec![parent.id],
            },
        ],
    };
    store.create_run(now, run).await.unwrap();
    let single = job("q", None, now);
    store.enqueue(now, vec![single.clone()]).await.unwrap();
    let leases = store.claim(now, &params(10)).await.unwrap().leases;
    assert_eq!(leases.len(), 2);
    let last = store.last_event_id().await.unwrap();
    let complete = |l: &Lease| Outcome {
        job_id: l.job.id,
        fencing_token: l.fencing_token,
        kind: OutcomeKind::Complete {
            result: json!(null),
            artifacts: vec![],
        },
    };
    let by_id = |id: Uuid| leases.iter().find(|l| l.job.id == id).unwrap();
    let results = store
        .finish(
            now,
            "default",
            vec![complete(by_id(parent.id)), complete(by_id(single.id))],
        )
        .await
        .unwrap();
    assert!(results.iter().all(|r| matches!(r, Finished::Ok(_))));
    let events = store.events_after(last, 100).await.unwrap();
    let got: Vec<(&str, Option<Uuid>)> =
        events.iter().map(|e| (e.kind.as_str(), e.job_id)).collect();
    assert_eq!(got.first(), Some(&("succeeded", Some(parent.id))));
    assert_eq!(got.get(1), Some(&("unblocked", Some(child.id))));
    assert_eq!(got.last(), Some(&("succeeded", Some(single.id))));
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
}

/// Timing of the batch paths (run by hand: `cargo test -p leasehold-coordinator --lib
/// store::sqlite::tests::batch_timing -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn batch_timing() {
    const N: usize = 1000;
    let db = store().await;
    let store = &db.store;
    let now = now();
    let mut enqueue_ms = Vec::new();
    let mut finish_ms = Vec::new();
    let mut claim_ms = Vec::new();
    let mut heartbeat_ms = Vec::new();
    for round in 0..5 {
        let rows: Vec<NewJobRow> = (0..N)
            .map(|i| job("q", Some(&format!("{round}-{i}")), now))
            .collect();
        let t = std::time::Instant::now();
        store.enqueue(now, rows).await.unwrap();
        enqueue_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = std::time::Instant::now();
        let leases = store.claim(now, &params(N as u32)).await.unwrap().leases;
        claim_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(leases.len(), N);
        let items: Vec<HeartbeatItem> = leases
            .iter()
            .map(|l| HeartbeatItem {
                job_id: l.job.id,
                fencing_token: l.fencing_token,
                progress: Some(json!({"done": 1})),
                checkpoint: None,
            })
            .collect();
        let t = std::time::Instant::now();
        let beats = store.heartbeat(now, "default", &items).await.unwrap();
        heartbeat_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(beats.iter().all(|b| b.status == HeartbeatStatus::Ok));
        let outcomes: Vec<Outcome> = leases
            .iter()
            .map(|l| Outcome {
                job_id: l.job.id,
                fencing_token: l.fencing_token,
                kind: OutcomeKind::Complete {
                    result: json!({"n": 1}),
                    artifacts: vec![],
                },
            })
            .collect();
        let t = std::time::Instant::now();
        let done = store.finish(now, "default", outcomes).await.unwrap();
        finish_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(done.iter().all(|d| matches!(d, Finished::Ok(_))));
    }
    println!("enqueue {N} jobs, ms per batch: {enqueue_ms:.1?}");
    println!("finish {N} completes, ms per batch: {finish_ms:.1?}");
    println!("claim {N} jobs, ms per batch: {claim_ms:.1?}");
    println!("heartbeat {N} leases, ms per batch: {heartbeat_ms:.1?}");
    // Claims of 100 out of a deeper queue.
    let rows: Vec<NewJobRow> = (0..N).map(|_| job("q", None, now)).collect();
    store.enqueue(now, rows).await.unwrap();
    let mut claim100_ms = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let leases = store.claim(now, &params(100)).await.unwrap().leases;
        claim100_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(leases.len(), 100);
    }
    println!("claim 100 jobs, ms per batch: {claim100_ms:.1?}");
}

/// Claim order (priority, then run_at, then id) across two queues, skipping a paused queue
/// and a job not yet due, taking over an expired lease (new token, attempt spent) and
/// burying an expired lease whose attempts are spent; events in a fixed order.
#[tokio::test]
async fn claim_order_takeover_and_events() {
    let db = store().await;
    let store = &db.store;
    let t0 = now();
    let s = Span::seconds;
    let mk = |queue: &str, priority: i32, run_at: DateTime<Utc>, max_attempts: i32| {
        let mut j = job(queue, None, t0);
        j.priority = priority;
        j.run_at = run_at;
        j.max_attempts = max_attempts;
        j
    };
    let exhausted = mk("a", 0, t0 - s(300), 1);
    let expired = mk("b", 1, t0 - s(200), 3);
    let a_low = mk("a", 0, t0 - s(10), 3);
    let a_high = mk("a", 5, t0, 3);
    let b_high = mk("b", 5, t0 - s(5), 3);
    let b_later = mk("b", 0, t0 + s(3600), 3);
    let paused = mk("c", 9, t0 - s(100), 3);
    let a_low_tie = mk("a", 0, t0 - s(10), 3);
    let rows = vec![
        exhausted.clone(),
        expired.clone(),
        a_low.clone(),
        a_high.clone(),
        b_high.clone(),
        b_later.clone(),
        paused.clone(),
        a_low_tie.clone(),
    ];
    store.enqueue(t0 - s(400), rows).await.unwrap();
    store
        .set_queue_paused(PauseQueue {
            now: t0,
            tenant: "default".into(),
            queue: "c".into(),
            paused: true,
        })
        .await
        .unwrap();
    let mut p = params(1);
    p.queues = vec!["a".into()];
    let first = store.claim(t0 - s(250), &p).await.unwrap();
    assert_eq!(first.leases[0].job.id, exhausted.id);
    p.queues = vec!["b".into()];
    let second = store.claim(t0 - s(120), &p).await.unwrap();
    assert_eq!(second.leases[0].job.id, expired.id);
    let last = store.last_event_id().await.unwrap();

    let mut p = params(10);
    p.queues = vec!["a".into(), "b".into(), "c".into()];
    p.worker_id = "w2".into();
    p.worker_version = Some("v2".into());
    p.lease_ttl_ms = 30_000;
    let claimed = store.claim(t0, &p).await.unwrap();
    assert_eq!(claimed.expired, 2);
    let ids: Vec<Uuid> = claimed.leases.iter().map(|l| l.job.id).collect();
    // Rank by rank across the queues (fairness), the queue that leads drawn per claim; within
    // a queue by priority, `run_at`, id (the expired lease takes its place in `b`).
    let b_leads = [b_high.id, a_high.id, expired.id, a_low.id, a_low_tie.id];
    let a_leads = [a_high.id, b_high.id, a_low.id, expired.id, a_low_tie.id];
    assert!(ids == b_leads || ids == a_leads, "{ids:?}");
    for l in &claimed.leases {
        let takeover = l.job.id == expired.id;
        assert_eq!(l.fencing_token, if takeover { 2 } else { 1 });
        assert_eq!(l.attempt, if takeover { 2 } else { 1 });
        assert_eq!(l.expires_at, t0 + s(30));
        assert_eq!(l.lease_ttl_ms, 30_000);
        assert_eq!(l.job.state, JobState::Leased);
        assert_eq!(l.job.worker_id.as_deref(), Some("w2"));
        assert_eq!(l.job.worker_version.as_deref(), Some("v2"));
        assert_eq!((l.job.started_at, l.job.updated_at), (Some(t0), t0));
        let stored = store.get_job("default", l.job.id).await.unwrap().unwrap();
        assert_eq!(stored, l.job);
    }
    let dead = store
        .get_job("default", exhausted.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((dead.state, dead.finished_at), (JobState::Dead, Some(t0)));
    for id in [b_later.id, paused.id] {
        let j = store.get_job("default", id).await.unwrap().unwrap();
        assert_eq!(j.state, JobState::Queued);
    }

    let events = store.events_after(last, 100).await.unwrap();
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let got: Vec<(&str, Option<Uuid>, Option<&str>, Value)> = events
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.job_id,
                e.worker_id.as_deref(),
                e.data.clone(),
            )
        })
        .collect();
    // How long each job waited past its `run_at` when the claim took it.
    let run_at: std::collections::HashMap<Uuid, _> = claimed
        .leases
        .iter()
        .map(|l| (l.job.id, l.job.run_at))
        .collect();
    let waited = |id: Uuid| (t0 - run_at[&id]).num_milliseconds().max(0);
    let leased = |id: Uuid, from: &str, token: i64| {
        (
            "leased",
            Some(id),
            Some("w2"),
            json!({"from": from, "to": "leased", "fencing_token": token,
                   "attempt": token, "lease_expires_at": t0 + s(30), "waited_ms": waited(id)}),
        )
    };
    // The burial first, then each lease's events in claim order.
    let mut expected = vec![(
        "dead",
        Some(exhausted.id),
        Some("w"),
        json!({"from": "leased", "to": "dead", "reason": "lease_expired",
               "fencing_token": 1}),
    )];
    for id in &ids {
        if *id == expired.id {
            expected.push((
                "lease_expired",
                Some(expired.id),
                Some("w2"),
                json!({"from": "leased", "to": "queued", "fencing_token": 1}),
            ));
            expected.push(leased(expired.id, "queued", 2));
        } else {
            expected.push(leased(*id, "queued", 1));
        }
    }
    assert_eq!(got, expected);
}

/// A heartbeat batch answers per item as one-by-one application: a job named twice (the
/// second keeps the first's progress), a stale token, an unknown job, a cancel request;
/// checkpoint events in input order.
#[tokio::test]
async fn heartbeat_batch_answers_per_item() {
    let db = store().await;
    let store = &db.store;
    let t0 = now();
    let rows: Vec<NewJobRow> = (0..3).map(|_| job("q", None, t0)).collect();
    store.enqueue(t0, rows).await.unwrap();
    let leases = store.claim(t0, &params(3)).await.unwrap().leases;
    let (a, b, c) = (&leases[0], &leases[1], &leases[2]);
    store
        .cancel_job(CancelJob {
            now: t0,
            tenant: "default".into(),
            id: c.job.id,
            reason: "stop".into(),
        })
        .await
        .unwrap();
    let last = store.last_event_id().await.unwrap();
    let t1 = t0 + Span::seconds(10);
    let item =
        |l: &Lease, token: i64, progress: Option<Value>, checkpoint: Option<Value>| HeartbeatItem {
            job_id: l.job.id,
            fencing_token: token,
            progress,
            checkpoint,
        };
    let unknown = HeartbeatItem {
        job_id: Uuid::now_v7(),
        fencing_token: 1,
        progress: None,
        checkpoint: None,
    };
    let results = store
        .heartbeat(
            t1,
            "default",
            &[
                item(
                    a,
                    a.fencing_token,
                    Some(json!({"p": 1})),
                    Some(json!({"c": 1})),
                ),
                item(b, b.fencing_token + 1, None, Some(json!({"c": "stale"}))),
                item(a, a.fencing_token, None, Some(json!({"c": 2}))),
                unknown.clone(),
                item(c, c.fencing_token, Some(json!({"p": 3})), None),
                item(b, b.fencing_token, None, Some(json!({"c": "b"}))),
            ],
        )
        .await
        .unwrap();
    let got: Vec<(Uuid, HeartbeatStatus, Option<DateTime<Utc>>)> = results
        .iter()
        .map(|r| (r.job_id, r.status, r.expires_at))
        .collect();
    let until = Some(t1 + Span::seconds(60));
    assert_eq!(
        got,
        [
            (a.job.id, HeartbeatStatus::Ok, until),
            (b.job.id, HeartbeatStatus::Lost, None),
            (a.job.id, HeartbeatStatus::Ok, until),
            (unknown.job_id, HeartbeatStatus::Lost, None),
            (c.job.id, HeartbeatStatus::CancelRequested, until),
            (b.job.id, HeartbeatStatus::Ok, until),
        ]
    );
    let ja = store.get_job("default", a.job.id).await.unwrap().unwrap();
    assert_eq!(
        (ja.progress, ja.checkpoint, ja.updated_at),
        (Some(json!({"p": 1})), Some(json!({"c": 2})), t1)
    );
    let jc = store.get_job("default", c.job.id).await.unwrap().unwrap();
    assert_eq!((jc.progress, jc.checkpoint), (Some(json!({"p": 3})), None));
    let events = store.events_after(last, 100).await.unwrap();
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let got: Vec<(&str, Option<Uuid>, Value)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.job_id, e.data.clone()))
        .collect();
    let cp = |l: &Lease, c: Value| {
        (
            "checkpoint",
            Some(l.job.id),
            json!({"fencing_token": l.fencing_token, "checkpoint": c}),
        )
    };
    assert_eq!(
        got,
        [
            cp(a, json!({"c": 1})),
            cp(a, json!({"c": 2})),
            cp(b, json!({"c": "b"}))
        ]
    );
}
