//! The batch paths and the claim against a real PostgreSQL (skipped without one,
//! like the conformance suite).
use super::*;
use chrono::Duration as Span;

async fn store(test: &str) -> Option<PostgresStore> {
    let base = leasehold_testkit::postgres_url(test)?;
    let url = leasehold_testkit::fresh_schema(&base).await.unwrap();
    Some(PostgresStore::connect(&url).await.unwrap())
}

fn job(queue: &str, priority: i32, run_at: DateTime<Utc>, key: Option<&str>) -> NewJobRow {
    NewJobRow {
        payload: serde_json::json!({"q": queue}),
        priority,
        run_at,
        idempotency_key: key.map(str::to_owned),
        ..NewJobRow::sample("default", queue)
    }
}

fn params(queues: &[String], max_jobs: u32) -> ClaimParams {
    ClaimParams {
        tenant: "default".into(),
        worker_id: "w".into(),
        worker_version: None,
        queues: queues.to_vec(),
        max_jobs,
        lease_ttl_ms: 60_000,
        ungated: false,
        pool: None,
    }
}

/// Claim order across queues (priority, then run_at, then id), paused queues skipped and
/// expired leases taken over, with one queue, a few and many.
#[tokio::test]
async fn claim_orders_across_queues() {
    for n_queues in [1, 3, 12] {
        let Some(store) = store("postgres::claim_orders_across_queues").await else {
            return;
        };
        let t0 = Utc::now() - Span::minutes(10);
        let queues: Vec<String> = (0..n_queues).map(|i| format!("q{i}")).collect();
        let mut rows = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            for k in 0..4 {
                let at = t0 + Span::seconds((k * n_queues + i) as i64);
                rows.push(job(q, (k % 2) as i32, at, None));
            }
        }
        // Not yet due, and in a queue that will be paused: never claimed.
        rows.push(job(&queues[0], 9, t0 + Span::hours(1), None));
        rows.push(job("paused", 9, t0, None));
        let mut all = queues.clone();
        all.push("paused".into());
        store.enqueue(t0, rows.clone()).await.unwrap();
        store
            .set_queue_paused(PauseQueue {
                now: t0,
                tenant: "default".into(),
                queue: "paused".into(),
                paused: true,
            })
            .await
            .unwrap();
        // One lease that has expired by `now`, taken over in its place in the order.
        let first = store.claim(t0, &params(&queues[..1], 1)).await.unwrap();
        let expired_id = first.leases[0].job.id;
        let now = t0 + Span::minutes(5);

        let mut expected: Vec<&NewJobRow> = rows
            .iter()
            .filter(|r| r.queue != "paused" && r.run_at <= now)
            .collect();
        expected.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a.id.cmp(&b.id))
        });
        let expected: Vec<Uuid> = expected.iter().map(|r| r.id).collect();
        assert!(expected.contains(&expired_id));

        let mut got = Vec::new();
        let mut expired = 0;
        loop {
            let claimed = store.claim(now, &params(&all, 5)).await.unwrap();
            if claimed.leases.is_empty() {
                break;
            }
            expired += claimed.expired;
            got.extend(claimed.leases.iter().map(|l| l.job.id));
        }
        // Every ready job once; within each queue in claim order (priority, `run_at`, id).
        // Across queues, claims interleave them rank by rank (fairness), so the global order
        // is not priority order when there are several queues.
        let mut sorted_got = got.clone();
        sorted_got.sort();
        let mut sorted_expected = expected.clone();
        sorted_expected.sort();
        assert_eq!(sorted_got, sorted_expected, "{n_queues} queues");
        let queue_of: std::collections::HashMap<Uuid, &str> =
            rows.iter().map(|r| (r.id, r.queue.as_str())).collect();
        for q in &queues {
            let in_q = |ids: &[Uuid]| -> Vec<Uuid> {
                ids.iter()
                    .copied()
                    .filter(|id| queue_of[id] == q.as_str())
                    .collect()
            };
            assert_eq!(in_q(&got), in_q(&expected), "{n_queues} queues, queue {q}");
        }
        if n_queues == 1 {
            assert_eq!(got, expected);
        }
        assert_eq!(expired, 1);
    }
}

#[tokio::test]
async fn every_connection_runs_without_jit() {
    let Some(store) = store("every_connection_runs_without_jit").await else {
        return;
    };
    // The server's default is on; the URL's own options (the test's search_path) still hold.
    for _ in 0..3 {
        let (jit, path): (String, String) =
            sqlx::query_as("SELECT current_setting('jit'), current_setting('search_path')")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(jit, "off");
        assert!(path.starts_with("t_"), "{path}");
    }
    let mut listen =
        <sqlx::PgConnection as sqlx::Connection>::connect_with(store.connect_options())
            .await
            .unwrap();
    let jit: String = sqlx::query_scalar("SHOW jit")
        .fetch_one(&mut listen)
        .await
        .unwrap();
    assert_eq!(jit, "off");
}
