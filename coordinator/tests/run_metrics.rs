//! Ended runs are counted once in `orchestrator_runs_total` and
//! `orchestrator_run_duration_seconds`, read from `/metrics`: on both stores, and on PostgreSQL
//! when the transaction that ended the run is rolled back by a deadlock and run again.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "integration/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::dag::{Api, Via, Worker, chain, report};
use common::serve_with;
use leasehold_coordinator::store::Store;
use serde_json::json;

/// The metrics are process-wide: the tests of this binary take turns.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `(orchestrator_runs_total, orchestrator_run_duration_seconds_count)` for runs that ended
/// `succeeded`.
async fn succeeded_runs(api: &Api) -> (u64, u64) {
    let text = api
        .http
        .get(format!("{}/metrics", api.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    };
    (
        value("orchestrator_runs_total{status=\"succeeded\"} "),
        value("orchestrator_run_duration_seconds_count{status=\"succeeded\"} "),
    )
}

/// Three runs end: both series grow by three.
async fn each_ended_run_counts_once(store: Arc<dyn Store>) {
    let _turn = TURN.lock().await;
    let served = serve_with(store, |_| {}).await;
    let api = Api::new(&served.url);
    let before = succeeded_runs(&api).await;
    let mut worker = Worker::new(&api, Via::BatchOfOne, "m").await;
    for _ in 0..3 {
        let (run, _) = api.start_run(chain("m", 2)).await;
        for _ in 0..2 {
            let lease = worker.take().await;
            worker.report(&lease, true).await;
        }
        assert_eq!(api.run(&run).await["status"], "succeeded");
    }
    let after = succeeded_runs(&api).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (3, 3));
}

on_both_backends!(each_ended_run_counts_once);

/// The batch `[x, j]` ends x's run, then waits for j's row, which this test holds while it asks
/// for the run's row: a deadlock, and PostgreSQL aborts the batch (it waited first). The batch
/// is run again and commits; the run is counted once, not once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_ended_by_a_retried_transaction_counts_once() {
    let _turn = TURN.lock().await;
    let Some((store, pg)) = common::pg_store("run_metrics::retried_transaction").await else {
        return;
    };
    let served = serve_with(store, |_| {}).await;
    let api = Api::new(&served.url);
    // The cycle must close within `deadlock_timeout` (1 s) of the batch's wait, or PostgreSQL
    // picks this test's transaction instead (a stalled machine): then the scenario runs again.
    for _ in 0..3 {
        if batch_aborted_and_retried(&api, &pg).await {
            return;
        }
    }
    panic!("three times this test's transaction, not the batch, was the deadlock's victim");
}

/// One try of [`a_run_ended_by_a_retried_transaction_counts_once`]: false when the deadlock's
/// victim was this test's transaction, not the batch.
async fn batch_aborted_and_retried(
    api: &Api,
    pg: &leasehold_coordinator::store::PostgresStore,
) -> bool {
    let (run, ids) = api
        .start_run(json!([{"key": "x", "kind": "k", "queue": "m"}]))
        .await;
    let (s, _) = api
        .post("/v1/jobs", json!({"queue": "plain", "kind": "k"}))
        .await;
    assert_eq!(s, 201);
    let x = api.claim("m", 1, 0).await.remove(0);
    let j = api.claim("plain", 1, 0).await.remove(0);
    let before = succeeded_runs(api).await;

    let mut blocker = pg.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1::uuid FOR UPDATE")
        .bind(j["job"]["id"].as_str().unwrap())
        .execute(&mut *blocker)
        .await
        .unwrap();
    let batch = {
        let api = api.clone();
        let outcomes = json!({"outcomes": [report(&x, true), report(&j, true)]});
        tokio::spawn(async move { api.post("/v1/leases/outcomes", outcomes).await })
    };
    // Until the batch waits for the row this transaction holds. Asked outside that transaction:
    // inside one, pg_stat_activity is a snapshot taken at its first read, which never shows a
    // connection the batch opens later (the flake this test had: "never waited for j").
    let blocker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *blocker)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))",
        )
        .bind(blocker_pid)
        .fetch_one(pg.pool())
        .await
        .unwrap();
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "the batch never waited for j");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The batch holds the run's row (it ended the run): the cycle closes here, and the batch,
    // waiting longest, is the one PostgreSQL aborts; this statement then gets the row.
    let run_id: uuid::Uuid = run.parse().unwrap();
    let closed = tokio::time::timeout(
        Duration::from_secs(10),
        sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE")
            .bind(run_id)
            .execute(&mut *blocker),
    )
    .await
    .expect("a deadlock, resolved");
    blocker.rollback().await.unwrap();
    if let Err(err) = closed {
        let victim =
            matches!(&err, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"));
        assert!(victim, "{err}");
        let (s, body) = batch.await.unwrap();
        assert_eq!(s, 200, "{body}");
        return false;
    }

    let (s, body) = batch.await.unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "succeeded"),
        "{body}"
    );
    assert_eq!(api.run_jobs(&run).await["x"].0, "succeeded", "{ids:?}");
    assert_eq!(api.run(&run).await["status"], "succeeded");
    let after = succeeded_runs(api).await;
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (1, 1),
        "counted once"
    );
    true
}
