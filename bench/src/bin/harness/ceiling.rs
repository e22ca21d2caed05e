//! The ceiling row: W1's shape as raw SQL against the coordinator's own schema — claim a batch
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), then a fenced
//! batch complete — with no HTTP, no SDK and no event rows. What our rows are divided by.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection};
use uuid::Uuid;

use crate::measure::Probe;
use crate::report::Measurement;

const PG_CLAIM: &str = "WITH cand AS MATERIALIZED ( \
       SELECT id FROM jobs \
       WHERE tenant = 'default' AND queue = $1 AND state = 'queued' AND run_at <= now() \
       ORDER BY priority DESC, run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     UPDATE jobs j SET state = 'leased', attempt = j.attempt + 1, lease_epoch = j.lease_epoch + 1, \
       started_at = now(), lease_expires_at = now() + interval '60 seconds', lease_ttl_ms = 60000, \
       worker_id = $3, updated_at = now() \
     FROM cand WHERE j.id = cand.id RETURNING j.id, j.lease_epoch, j.payload";

const PG_COMPLETE: &str = "UPDATE jobs j SET state = 'succeeded', finished_at = now(), \
       updated_at = now(), lease_expires_at = NULL, result = 'null'::jsonb \
     FROM UNNEST($1::uuid[], $2::bigint[]) AS t(id, token) \
     WHERE j.id = t.id AND j.state = 'leased' AND j.lease_epoch = t.token";

/// `n` job ids made as the coordinator makes them (UUIDv7, time-ordered). Random ids would
/// scatter each claimed batch over the primary-key index and make the ceiling slower than the
/// coordinator's own rows can be (on SQLite, 4× slower in a raw-SQL test of W1's shape).
fn job_ids(n: u64) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

/// Raw claim + complete on PostgreSQL at `url` (a fresh schema): `loops` connections, each
/// claiming `batch` at a time.
pub(crate) async fn postgres(
    url: &str,
    jobs: u64,
    loops: usize,
    batch: usize,
    probe: &Probe,
    patience: Duration,
) -> Result<Measurement> {
    let pool = PgPoolOptions::new()
        .max_connections(loops as u32 + 1)
        .connect(url)
        .await?;
    sqlx::migrate!("../coordinator/migrations/postgres")
        .run(&pool)
        .await
        .context("applying the coordinator's PostgreSQL migrations")?;
    sqlx::query(
        "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
         run_at, created_at, updated_at, inputs_hash) \
         SELECT t.id, 'default', 'bulk', 'noop', 'queued', \
                jsonb_build_object('i', t.i, 't', 0, 'pad', '0123456789abcdef0123'), 0, 3, \
                now(), now(), now(), 'sha256:0' \
         FROM UNNEST($1::uuid[]) WITH ORDINALITY AS t(id, i)",
    )
    .bind(job_ids(jobs))
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE jobs").execute(&pool).await?;
    // Warm the pool so that connecting is not measured.
    let mut warm = Vec::new();
    for _ in 0..loops {
        warm.push(pool.acquire().await?);
    }
    drop(warm);
    // One queue, compared with `=`: PostgreSQL then walks `jobs_ready` in order. (The
    // coordinator's `queue = ANY($2)` cannot use the index order on PostgreSQL 15 and sorts
    // the whole ready set on every claim; see bench/README.md.)
    let queues = "bulk".to_owned();
    let mark = probe.begin().await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..loops {
        let (pool, queues) = (pool.clone(), queues.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            loop {
                let rows = sqlx::query(PG_CLAIM)
                    .bind(&queues)
                    .bind(batch as i64)
                    .bind(format!("ceiling-{w}"))
                    .fetch_all(&pool)
                    .await?;
                if rows.is_empty() {
                    return anyhow::Ok(done);
                }
                let mut ids = Vec::with_capacity(rows.len());
                let mut tokens = Vec::with_capacity(rows.len());
                for r in &rows {
                    ids.push(r.try_get::<Uuid, _>("id")?);
                    tokens.push(r.try_get::<i64, _>("lease_epoch")?);
                    let _payload: serde_json::Value = r.try_get("payload")?;
                }
                let res = sqlx::query(PG_COMPLETE)
                    .bind(&ids)
                    .bind(&tokens)
                    .execute(&pool)
                    .await?;
                done += res.rows_affected();
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(patience, t).await???;
    }
    let secs = started.elapsed().as_secs_f64();
    let m = probe.end(mark, total, Some(secs)).await;
    anyhow::ensure!(total == jobs, "ceiling completed {total} of {jobs}");
    pool.close().await;
    Ok(m)
}

/// Raw claim + complete on a SQLite file in `dir`, one connection (SQLite has one writer).
pub(crate) async fn sqlite(
    dir: &std::path::Path,
    full: bool,
    jobs: u64,
    batch: usize,
    probe: &Probe,
) -> Result<Measurement> {
    let path = dir.join("ceiling.db");
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    sqlx::migrate!("../coordinator/migrations/sqlite")
        .run(&mut conn)
        .await
        .context("applying the coordinator's SQLite migrations")?;
    let now_us = chrono::Utc::now().timestamp_micros();
    let ids = job_ids(jobs);
    let mut tx = conn.begin().await?;
    for (chunk_no, chunk) in ids.chunks(1000).enumerate() {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
               run_at, created_at, updated_at, inputs_hash) ",
        );
        qb.push_values(chunk.iter().enumerate(), |mut b, (i, id)| {
            let n = chunk_no * 1000 + i + 1;
            b.push_bind(*id)
                .push("'default', 'bulk', 'noop', 'queued'")
                .push_bind(format!(
                    "{{\"i\":{n},\"t\":0,\"pad\":\"0123456789abcdef0123\"}}"
                ))
                .push("0, 3")
                .push_bind(now_us)
                .push_bind(now_us)
                .push_bind(now_us)
                .push("'sha256:0'");
        });
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let mark = probe.begin().await;
    let started = Instant::now();
    let mut done = 0u64;
    loop {
        let now = chrono::Utc::now().timestamp_micros();
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let rows = sqlx::query(
            "UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_epoch = lease_epoch + 1, \
               started_at = ?1, lease_expires_at = ?1 + 60000000, lease_ttl_ms = 60000, \
               worker_id = 'ceiling', updated_at = ?1 \
             WHERE id IN (SELECT id FROM jobs WHERE tenant = 'default' AND queue = 'bulk' \
               AND state = 'queued' AND run_at <= ?1 ORDER BY priority DESC, run_at, id LIMIT ?2) \
             RETURNING id, lease_epoch, payload",
        )
        .bind(now)
        .bind(batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        if rows.is_empty() {
            break;
        }
        // One fenced statement for the whole batch: (id, lease_epoch) must both match.
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "UPDATE jobs SET state = 'succeeded', finished_at = ",
        );
        qb.push_bind(now)
            .push(", updated_at = ")
            .push_bind(now)
            .push(", lease_expires_at = NULL, result = 'null' WHERE state = 'leased' AND (id, lease_epoch) IN (VALUES ");
        let mut sep = qb.separated(", ");
        for r in &rows {
            let id: Vec<u8> = r.try_get("id")?;
            let token: i64 = r.try_get("lease_epoch")?;
            let _payload: String = r.try_get("payload")?;
            sep.push("(")
                .push_bind_unseparated(id)
                .push_unseparated(", ")
                .push_bind_unseparated(token)
                .push_unseparated(")");
        }
        qb.push(")");
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        done += qb.build().execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let m = probe.end(mark, done, Some(secs)).await;
    anyhow::ensure!(done == jobs, "ceiling completed {done} of {jobs}");
    conn.close().await?;
    Ok(m)
}
