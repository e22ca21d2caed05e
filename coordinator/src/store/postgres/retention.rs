//! Retention statements on PostgreSQL ([`RetentionStore`]). Deletes are batched and each batch
//! is its own short transaction; the rows a batch removes are locked with `FOR UPDATE` and
//! re-checked after the lock, so a job retried concurrently is never removed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{JobState, LedgerSegment};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::retention::{
    self, FinishedRun, PolicyRow, RetentionStore, RunJobFact, SWEEP_TRY_LOCK, ScopeCutoffs,
    SweepLock,
};
use crate::store::{StoreError, StoreResult};

fn policy(row: &PgRow) -> StoreResult<PolicyRow> {
    Ok(PolicyRow {
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        succeeded: row.try_get("succeeded")?,
        failed: row.try_get("failed")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn segment(row: &PgRow) -> StoreResult<LedgerSegment> {
    Ok(LedgerSegment {
        seq: row.try_get("seq")?,
        first_id: row.try_get("first_id")?,
        last_id: row.try_get("last_id")?,
        count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        manifest_sha256: row.try_get("manifest_sha256")?,
        prev: row.try_get("prev")?,
        file: row.try_get("file")?,
        archived_at: row.try_get("archived_at")?,
    })
}

fn state(raw: &str) -> StoreResult<JobState> {
    JobState::parse(raw).ok_or_else(|| StoreError::Internal(format!("unknown state {raw}")))
}

#[async_trait]
impl RetentionStore for PostgresStore {
    async fn retention_policies(&self, tenant: Option<&str>) -> StoreResult<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT * FROM retention_policies WHERE ($1::text IS NULL OR tenant = $1) \
             ORDER BY tenant, queue",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(policy).collect()
    }

    async fn put_retention_policy(&self, row: &PolicyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO retention_policies (tenant, queue, succeeded, failed, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, queue) DO UPDATE SET \
             succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed, updated_at = EXCLUDED.updated_at",
        )
        .bind(&row.tenant)
        .bind(&row.queue)
        .bind(&row.succeeded)
        .bind(&row.failed)
        .bind(row.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn delete_retention_policy(&self, tenant: &str, queue: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM retention_policies WHERE tenant = $1 AND queue = $2")
            .bind(tenant)
            .bind(queue)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn try_lock_sweep(&self) -> StoreResult<Option<SweepLock>> {
        let mut conn = self.pool().acquire().await?;
        let locked: bool = sqlx::query_scalar(SWEEP_TRY_LOCK)
            .fetch_one(&mut *conn)
            .await?;
        Ok(locked.then_some(SweepLock::Postgres(conn)))
    }

    async fn finished_scopes(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT tenant, queue FROM jobs \
             WHERE state IN ('succeeded', 'dead', 'cancelled') AND run_id IS NULL",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant")?, r.try_get("queue")?)))
            .collect()
    }

    async fn delete_finished_jobs(&self, cut: &ScopeCutoffs, limit: u32) -> StoreResult<u64> {
        // Oldest first by id (UUIDv7): the expired jobs are where the primary key starts.
        // `FOR UPDATE` re-reads a row another transaction changed and drops it if it no
        // longer matches (a job retried meanwhile is kept).
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
               WHERE tenant = $1 AND queue = $2 AND run_id IS NULL AND finished_at IS NOT NULL \
                 AND ((state = 'succeeded' AND finished_at < $3) \
                   OR (state IN ('dead', 'cancelled') AND finished_at < $4)) \
               ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED)",
        )
        .bind(&cut.tenant)
        .bind(&cut.queue)
        .bind(cut.succeeded_before)
        .bind(cut.failed_before)
        .bind(i64::from(limit))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn finished_runs(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<FinishedRun>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled') \
             AND ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let rows = sqlx::query(
            "SELECT id, run_id, tenant, queue, state, finished_at FROM jobs \
             WHERE run_id = ANY($1) ORDER BY run_id, id",
        )
        .bind(&ids)
        .fetch_all(self.pool())
        .await?;
        let mut runs: Vec<FinishedRun> = ids
            .into_iter()
            .map(|id| FinishedRun {
                id,
                jobs: Vec::new(),
            })
            .collect();
        for row in &rows {
            let run_id: Uuid = row.try_get("run_id")?;
            if let Some(run) = runs.iter_mut().find(|r| r.id == run_id) {
                run.jobs.push(RunJobFact {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant")?,
                    queue: row.try_get("queue")?,
                    state: state(row.try_get("state")?)?,
                    finished_at: row.try_get("finished_at")?,
                });
            }
        }
        Ok(runs)
    }

    async fn delete_run(&self, run: &FinishedRun) -> StoreResult<u64> {
        let mut tx = self.pool().begin().await?;
        // Lock the run's jobs first: a retry of one of them either committed before (and is
        // seen here) or waits, then finds the row gone.
        let rows = sqlx::query(
            "SELECT id, state, finished_at FROM jobs WHERE run_id = $1 ORDER BY id FOR UPDATE",
        )
        .bind(run.id)
        .fetch_all(&mut *tx)
        .await?;
        let mut now: Vec<(Uuid, JobState, Option<DateTime<Utc>>)> = Vec::new();
        for row in &rows {
            now.push((
                row.try_get("id")?,
                state(row.try_get("state")?)?,
                row.try_get("finished_at")?,
            ));
        }
        let read: Vec<(Uuid, JobState, Option<DateTime<Utc>>)> = run
            .jobs
            .iter()
            .map(|j| (j.id, j.state, j.finished_at))
            .collect();
        let mut sorted = read;
        sorted.sort_by_key(|(id, _, _)| *id);
        if now != sorted || now.iter().any(|(_, s, _)| !s.is_terminal()) {
            return Ok(0);
        }
        let ids: Vec<Uuid> = now.iter().map(|(id, _, _)| *id).collect();
        sqlx::query("DELETE FROM job_deps WHERE job_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE run_id = $1")
            .bind(run.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM runs WHERE id = $1")
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn referenced_digests(&self, digests: &[String]) -> StoreResult<Vec<String>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT a->>'digest' FROM jobs, jsonb_array_elements(jobs.artifacts) a \
             WHERE jobs.artifacts <> '[]'::jsonb AND a->>'digest' = ANY($1)",
        )
        .bind(digests)
        .fetch_all(self.pool())
        .await?)
    }

    async fn ledger_segments(&self, last_only: bool) -> StoreResult<Vec<LedgerSegment>> {
        let sql = if last_only {
            "SELECT * FROM ledger_segments ORDER BY seq DESC LIMIT 1"
        } else {
            "SELECT * FROM ledger_segments ORDER BY seq"
        };
        let rows = sqlx::query(sql).fetch_all(self.pool()).await?;
        rows.iter().map(segment).collect()
    }

    async fn record_segment(&self, s: &LedgerSegment) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        // The head must still be the segment this one names (a second sweep lost the race).
        let head: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM ledger_segments")
            .fetch_one(&mut *tx)
            .await?;
        retention::segment_follows(head, s)?;
        let present: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE id BETWEEN $1 AND $2")
                .bind(s.first_id)
                .bind(s.last_id)
                .fetch_one(&mut *tx)
                .await?;
        retention::segment_covers(present, s)?;
        sqlx::query(
            "INSERT INTO ledger_segments (seq, first_id, last_id, count, sha256, manifest_sha256, \
             prev, file, archived_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(s.seq)
        .bind(s.first_id)
        .bind(s.last_id)
        .bind(i64::try_from(s.count).unwrap_or(i64::MAX))
        .bind(&s.sha256)
        .bind(&s.manifest_sha256)
        .bind(&s.prev)
        .bind(&s.file)
        .bind(s.archived_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM events WHERE id BETWEEN $1 AND $2")
            .bind(s.first_id)
            .bind(s.last_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
