//! Group commit of single-job enqueues and single outcomes (`leasing::group`), over a real
//! socket on SQLite and PostgreSQL: calls that arrive together share a transaction, yet each is
//! answered as it would be alone — the same rows and events as one-by-one calls, idempotent
//! replays, a key conflict, a quota refusal or a stale token reaching only its own caller.

use std::sync::Arc;

use futures_util::future::join_all;
use leasehold_coordinator::store::Store;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::keyed::{Coordinator, ROOT};

/// `n` single-job enqueues sent at once; each answer's status and body, in request order.
async fn at_once(c: &Coordinator, jobs: Vec<Value>) -> Vec<(u16, Value)> {
    join_all(
        jobs.into_iter()
            .map(|job| c.call(Some(ROOT), Method::POST, "/v1/jobs", Some(job), &[])),
    )
    .await
}

/// What a job's row and its `enqueued` event say, without what differs by nature (ids, times).
fn shape(job: &Value, events: &[leasehold_proto::Event]) -> Value {
    let id = job["id"].as_str().unwrap();
    let mine: Vec<Value> = events
        .iter()
        .filter(|e| e.job_id.map(|j| j.to_string()).as_deref() == Some(id))
        .map(|e| {
            let mut data = e.data.clone();
            data.as_object_mut().unwrap().remove("run_at");
            json!({"type": e.kind, "queue": e.queue, "kind": e.kind, "data": data,
                   "correlation_id": e.correlation_id, "tenant": e.tenant})
        })
        .collect();
    let mut row = job.clone();
    for field in ["id", "created_at", "updated_at", "run_at", "inputs_hash"] {
        row.as_object_mut().unwrap().remove(field);
    }
    json!({"row": row, "events": mine})
}

async fn concurrent_enqueues_answer_and_store_what_single_ones_do(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    // Six kinds of call, each sent alone once, then ten times among sixty at once.
    let job = |i: usize| {
        let k = i % 6;
        json!({"queue": "g", "kind": "k", "payload": {"i": k}, "priority": k as i64,
               "correlation_id": format!("c{k}")})
    };
    // One at a time, then 60 at once.
    let mut alone = Vec::new();
    for i in 0..6 {
        let (s, a) = c
            .call(Some(ROOT), Method::POST, "/v1/jobs", Some(job(i)), &[])
            .await;
        assert_eq!(s, 201, "{a}");
        alone.push(a);
    }
    let together = at_once(&c, (0..60).map(job).collect()).await;
    let events = store.events_after(0, 10_000).await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for (i, (s, a)) in together.iter().enumerate() {
        assert_eq!(*s, 201, "{a}");
        assert!(
            ids.insert(a["id"].as_str().unwrap().to_owned()),
            "one job per call"
        );
        // The answer is the stored row.
        let (_, stored) = c
            .call(
                Some(ROOT),
                Method::GET,
                &format!("/v1/jobs/{}", a["id"].as_str().unwrap()),
                None,
                &[],
            )
            .await;
        assert_eq!(&stored, a);
        assert_eq!(shape(a, &events), shape(&alone[i % 6], &events), "call {i}");
    }
    let enqueued = events.iter().filter(|e| e.kind == "enqueued").count();
    assert_eq!(enqueued, 66, "one event per job");
}

async fn a_key_sent_by_many_at_once_makes_one_job(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    let job = json!({"queue": "g", "kind": "k", "payload": {"x": 1}, "idempotency_key": "once"});
    let answers = at_once(&c, vec![job; 30]).await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    let replayed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((created, replayed), (1, 29), "{answers:?}");
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(_, a)| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1);
    let events = store.events_after(0, 1000).await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "enqueued").count(), 1);
}

async fn a_refusal_reaches_only_its_own_caller(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    let (s, first) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/jobs",
            Some(
                json!({"queue": "g", "kind": "k", "payload": {"v": 1}, "idempotency_key": "taken"}),
            ),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{first}");
    let mut jobs: Vec<Value> = (0..20)
        .map(|i| json!({"queue": "g", "kind": "k", "payload": {"i": i}}))
        .collect();
    // The same key for other work: refused, and only that call.
    jobs.insert(
        7,
        json!({"queue": "g", "kind": "k", "payload": {"v": 2}, "idempotency_key": "taken"}),
    );
    let answers = at_once(&c, jobs).await;
    for (i, (s, a)) in answers.iter().enumerate() {
        if i == 7 {
            assert_eq!(
                (*s, &a["error"]["code"]),
                (409, &json!("idempotency_conflict")),
                "{a}"
            );
        } else {
            assert_eq!(*s, 201, "{i}: {a}");
        }
    }

    // Room for 5 more waiting jobs (21 wait): of 12 at once, 5 are stored and 7 refused.
    let (s, q) = c
        .call(
            Some(ROOT),
            Method::PUT,
            "/v1/quota",
            Some(json!({"max_queued": 26, "reason": "test", "ticket": "T-1"})),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{q}");
    let answers = at_once(
        &c,
        (0..12)
            .map(|i| json!({"queue": "q2", "kind": "k", "payload": {"i": i}}))
            .collect(),
    )
    .await;
    let stored = answers.iter().filter(|(s, _)| *s == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, a)| *s == 429 && a["error"]["code"] == "quota_exceeded")
        .count();
    assert_eq!((stored, refused), (5, 7), "{answers:?}");
}

/// Leases every queued job of queue `q` (one claim); each job's id and token.
async fn lease_all(c: &Coordinator, q: &str, n: usize) -> Vec<(String, i64)> {
    let (s, body) = c
        .call(
            Some(ROOT),
            Method::POST,
            "/v1/leases",
            Some(json!({"worker_id": "w", "queues": [q], "max_jobs": n, "lease_ttl_ms": 60_000})),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let leases = body["leases"].as_array().unwrap();
    assert_eq!(leases.len(), n, "{body}");
    leases
        .iter()
        .map(|l| {
            let id = l["job"]["id"].as_str().unwrap().to_owned();
            (id, l["fencing_token"].as_i64().unwrap())
        })
        .collect()
}

/// The `k`th kind of single outcome for a job leased under `token`: path and body.
fn outcome_call(k: usize, id: &str, token: i64) -> (String, Value) {
    match k % 4 {
        0 => (
            format!("/v1/jobs/{id}/complete"),
            json!({"fencing_token": token, "result": {"ok": true}}),
        ),
        1 => (
            format!("/v1/jobs/{id}/fail"),
            json!({"fencing_token": token, "error": {"class": "flaky", "message": "again"},
                   "retry_at": "2099-01-01T00:00:00Z"}),
        ),
        2 => (
            format!("/v1/jobs/{id}/fail"),
            json!({"fencing_token": token,
                   "error": {"class": "bad", "message": "no", "retryable": false}}),
        ),
        _ => (
            format!("/v1/jobs/{id}/release"),
            json!({"fencing_token": token}),
        ),
    }
}

/// What an outcome left of a job and its ledger, without what differs by nature.
fn settled(job: &Value, events: &[leasehold_proto::Event]) -> Value {
    let id = job["id"].as_str().unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e.job_id.map(|j| j.to_string()).as_deref() == Some(id))
        .map(|e| e.kind.as_str())
        .collect();
    json!({"state": job["state"], "attempt": job["attempt"], "result": job["result"],
           "error": job["last_error"], "events": kinds})
}

async fn concurrent_outcomes_answer_and_store_what_single_ones_do(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    let jobs = (0..44)
        .map(|i| json!({"queue": "o", "kind": "k", "payload": {"i": i}, "max_attempts": 3}))
        .collect();
    assert!(at_once(&c, jobs).await.iter().all(|(s, _)| *s == 201));
    let leased = lease_all(&c, "o", 44).await;
    // Each kind of outcome sent alone once, then the other forty at once.
    let mut alone = Vec::new();
    for (k, (id, token)) in leased.iter().take(4).enumerate() {
        let (path, body) = outcome_call(k, id, *token);
        let (s, a) = c
            .call(Some(ROOT), Method::POST, &path, Some(body), &[])
            .await;
        assert_eq!(s, 200, "{a}");
        alone.push(a);
    }
    let c = &c;
    let together = join_all(leased.iter().skip(4).enumerate().map(|(i, (id, token))| {
        let (path, body) = outcome_call(i, id, *token);
        async move {
            c.call(Some(ROOT), Method::POST, &path, Some(body), &[])
                .await
        }
    }))
    .await;
    let events = store.events_after(0, 10_000).await.unwrap();
    for (i, (s, a)) in together.iter().enumerate() {
        assert_eq!(*s, 200, "{a}");
        let path = format!("/v1/jobs/{}", a["id"].as_str().unwrap());
        let (_, stored) = c.call(Some(ROOT), Method::GET, &path, None, &[]).await;
        // The answer is the stored row, and it settled as the same call alone did.
        assert_eq!(&stored, a);
        assert_eq!(
            settled(a, &events),
            settled(&alone[i % 4], &events),
            "call {i}"
        );
    }
}

async fn a_stale_outcome_among_concurrent_ones_is_refused_alone(store: Arc<dyn Store>) {
    let c = Coordinator::start(store.clone(), Some(ROOT)).await;
    let jobs = (0..20)
        .map(|i| json!({"queue": "s", "kind": "k", "payload": {"i": i}}))
        .collect();
    assert!(at_once(&c, jobs).await.iter().all(|(s, _)| *s == 201));
    let leased = lease_all(&c, "s", 20).await;
    let mut calls: Vec<(String, Value)> = leased
        .iter()
        .map(|(id, token)| outcome_call(0, id, *token))
        .collect();
    // Job 5 reported with a token it was never leased under; job 9's completion sent twice.
    calls[5] = outcome_call(0, &leased[5].0, leased[5].1 + 7);
    calls.push(calls[9].clone());
    let answers = join_all(calls.into_iter().map(|(path, body)| {
        let c = &c;
        async move {
            c.call(Some(ROOT), Method::POST, &path, Some(body), &[])
                .await
        }
    }))
    .await;
    for (i, (s, a)) in answers.iter().enumerate() {
        if i == 5 {
            assert_eq!(
                (*s, &a["error"]["code"]),
                (409, &json!("lease_lost")),
                "{a}"
            );
        } else {
            // The repeated completion is answered as recorded, like a retried call.
            assert_eq!((*s, &a["state"]), (200, &json!("succeeded")), "{i}: {a}");
        }
    }
    let events = store.events_after(0, 10_000).await.unwrap();
    let succeeded = events.iter().filter(|e| e.kind == "succeeded").count();
    assert_eq!(succeeded, 19, "one event per recorded outcome");
}

/// `Store::enqueue_each` called directly (a group formed for sure): each job answered on its
/// own — new ones stored, a replay answered as a replay, a conflicting replay refused alone —
/// with one `enqueued` event per stored job, in input order; then with a `max_queued` quota,
/// the jobs within it stored and the rest refused, each alone.
async fn enqueue_each_answers_every_job_on_its_own(store: Arc<dyn Store>) {
    use leasehold_coordinator::store::{Quota, StoreError};

    use crate::common::rows::new_job;
    let now = chrono::Utc::now();
    let keyed = |key: &str, kind: &str| {
        let mut row = new_job("e", kind, now);
        row.idempotency_key = Some(key.into());
        row
    };
    store.enqueue(now, vec![keyed("a", "k")]).await.unwrap();
    let group = vec![
        new_job("e", "k", now),
        keyed("a", "k"),
        keyed("a2", "k"),
        keyed("a", "other"),
        new_job("e", "k", now),
    ];
    let ids: Vec<_> = group.iter().map(|r| r.id).collect();
    let answers = store.enqueue_each(now, group).await.unwrap();
    assert_eq!(answers.len(), 5);
    for i in [0, 2, 4] {
        let e = answers[i].as_ref().unwrap();
        assert_eq!((e.job.id, e.replayed), (ids[i], false), "job {i}");
    }
    assert!(answers[1].as_ref().unwrap().replayed);
    match &answers[3] {
        Err(StoreError::IdempotencyConflict(c)) => {
            assert_eq!((c.position, c.differs.clone()), (0, vec!["kind"]));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let events = store.events_after(0, 100).await.unwrap();
    let enqueued: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "enqueued")
        .map(|e| e.job_id.unwrap())
        .collect();
    assert_eq!(
        enqueued[1..],
        [ids[0], ids[2], ids[4]],
        "one event per stored job, in order"
    );

    // A quota with room for two more waiting jobs (4 wait): of five, two stored, three refused.
    let quota = Quota {
        tenant: "default".into(),
        max_queued: Some(6),
        max_leased: None,
        updated_at: now,
    };
    store.set_quota(&quota).await.unwrap();
    let answers = store
        .enqueue_each(now, (0..5).map(|_| new_job("e", "k", now)).collect())
        .await
        .unwrap();
    let stored = answers.iter().filter(|a| a.is_ok()).count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Err(StoreError::QuotaExceeded(_))))
        .count();
    assert_eq!((stored, refused), (2, 3), "{answers:?}");
}

crate::on_both_backends!(
    enqueue_each_answers_every_job_on_its_own,
    concurrent_enqueues_answer_and_store_what_single_ones_do,
    a_key_sent_by_many_at_once_makes_one_job,
    a_refusal_reaches_only_its_own_caller,
    concurrent_outcomes_answer_and_store_what_single_ones_do,
    a_stale_outcome_among_concurrent_ones_is_refused_alone
);

/// PostgreSQL's group committer keeps a connection of its own between groups
/// (`store/postgres/kept.rs`). When the server ends it, the committer takes another: a group
/// sent after a rest is stored whole (the kept connection is pinged first), and after a group
/// that failed on the ended connection the next one is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committers_connection_is_replaced_when_the_server_ends_it() {
    use crate::common::rows::new_job;
    use leasehold_coordinator::store::PostgresStore;
    use std::time::Duration;
    let Some(base) = leasehold_testkit::postgres_url("group_commit::kept") else {
        return;
    };
    let url = leasehold_testkit::fresh_schema(&base).await.unwrap();
    // Its own application name: other tests share the database.
    let app = format!("kept_{}", uuid::Uuid::now_v7().simple());
    let url = format!("{url}&application_name={app}");
    let pg = PostgresStore::connect(&url).await.unwrap();
    let c = Coordinator::start(Arc::new(pg.clone()), Some(ROOT)).await;
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    // The store's sessions whose last statement was a group's: the committer's.
    let committers = async |end: bool| -> Vec<i32> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
             AND query LIKE '/* group */%'",
        )
        .bind(&app)
        .fetch_all(&admin)
        .await
        .unwrap();
        if end {
            for pid in &pids {
                sqlx::query("SELECT pg_terminate_backend($1)")
                    .bind(pid)
                    .execute(&admin)
                    .await
                    .unwrap();
            }
        }
        pids
    };
    let jobs = |round: usize| {
        (0..16)
            .map(|i| json!({"queue": "p", "kind": "k", "payload": {"round": round, "i": i}}))
            .collect::<Vec<_>>()
    };
    let all_stored = |answers: Vec<(u16, Value)>| {
        assert!(answers.iter().all(|(s, _)| *s == 201), "{answers:?}");
    };
    all_stored(at_once(&c, jobs(0)).await);
    let first = committers(true).await;
    assert_eq!(first.len(), 1, "the groups went to one connection");
    // After a rest: pinged, found ended, replaced.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    all_stored(at_once(&c, jobs(1)).await);
    let second = committers(true).await;
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "a new connection");
    // At once: the group may fail on the ended connection; the next one is stored.
    let now = chrono::Utc::now();
    let group = || (0..4).map(|_| new_job("q", "k", now)).collect::<Vec<_>>();
    match pg.enqueue_each(now, group()).await {
        Ok(_) | Err(leasehold_coordinator::store::StoreError::Unavailable(_)) => {}
        Err(other) => panic!("{other:?}"),
    }
    let stored = pg.enqueue_each(now, group()).await.unwrap();
    for answer in stored {
        let job = answer.unwrap().job;
        assert!(pg.get_job("default", job.id).await.unwrap().is_some());
    }
    assert_eq!(committers(false).await.len(), 1);
}
