//! Retention statements on SQLite ([`RetentionStore`]). Each batch is one `BEGIN IMMEDIATE`
//! transaction on the single writer, so the condition it checks cannot change before it
//! deletes.

use async_trait::async_trait;
use leasehold_proto::{JobState, LedgerSegment};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use super::SqliteStore;
use super::rows::{from_micros, micros, opt_time};
use crate::store::retention::{
    self, FinishedRun, PolicyRow, RetentionStore, RunJobFact, ScopeCutoffs, SweepLock,
};
use crate::store::{StoreError, StoreResult};

fn policy(row: &SqliteRow) -> StoreResult<PolicyRow> {
    Ok(PolicyRow {
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        succeeded: row.try_get("succeeded")?,
        failed: row.try_get("failed")?,
        updated_at: from_micros(row.try_get("updated_at")?)?,
    })
}

fn segment(row: &SqliteRow) -> StoreResult<LedgerSegment> {
    Ok(LedgerSegment {
        seq: row.try_get("seq")?,
        first_id: row.try_get("first_id")?,
        last_id: row.try_get("last_id")?,
        count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
        sha256: row.try_get("sha256")?,
        manifest_sha256: row.try_get("manifest_sha256")?,
        prev: row.try_get("prev")?,
        file: row.try_get("file")?,
        archived_at: from_micros(row.try_get("archived_at")?)?,
    })
}

fn state(raw: &str) -> StoreResult<JobState> {
    JobState::parse(raw).ok_or_else(|| StoreError::Internal(format!("unknown state {raw}")))
}

fn fact(row: &SqliteRow) -> StoreResult<RunJobFact> {
    Ok(RunJobFact {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        state: state(row.try_get("state")?)?,
        finished_at: opt_time(row.try_get("finished_at")?)?,
    })
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn retention_policies(&self, tenant: Option<&str>) -> StoreResult<Vec<PolicyRow>> {
        let rows = sqlx::query(
            "SELECT * FROM retention_policies WHERE (?1 IS NULL OR tenant = ?1) \
             ORDER BY tenant, queue",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(policy).collect()
    }

    async fn put_retention_policy(&self, row: &PolicyRow) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO retention_policies (tenant, queue, succeeded, failed, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, queue) DO UPDATE SET \
             succeeded = excluded.succeeded, failed = excluded.failed, updated_at = excluded.updated_at",
        )
        .bind(&row.tenant)
        .bind(&row.queue)
        .bind(&row.succeeded)
        .bind(&row.failed)
        .bind(micros(row.updated_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_retention_policy(&self, tenant: &str, queue: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM retention_policies WHERE tenant = ? AND queue = ?")
            .bind(tenant)
            .bind(queue)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn try_lock_sweep(&self) -> StoreResult<Option<SweepLock>> {
        Ok(Some(SweepLock::Local))
    }

    async fn finished_scopes(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT DISTINCT tenant, queue FROM jobs \
             WHERE state IN ('succeeded', 'dead', 'cancelled') AND run_id IS NULL",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant")?, r.try_get("queue")?)))
            .collect()
    }

    async fn delete_finished_jobs(&self, cut: &ScopeCutoffs, limit: u32) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
               WHERE tenant = ?1 AND queue = ?2 AND run_id IS NULL AND finished_at IS NOT NULL \
                 AND ((state = 'succeeded' AND finished_at < ?3) \
                   OR (state IN ('dead', 'cancelled') AND finished_at < ?4)) \
               ORDER BY id LIMIT ?5)",
        )
        .bind(&cut.tenant)
        .bind(&cut.queue)
        .bind(cut.succeeded_before.map(micros))
        .bind(cut.failed_before.map(micros))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn finished_runs(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<FinishedRun>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled') \
             AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            let rows = sqlx::query(
                "SELECT id, tenant, queue, state, finished_at FROM jobs WHERE run_id = ? ORDER BY id",
            )
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
            let jobs = rows.iter().map(fact).collect::<StoreResult<_>>()?;
            runs.push(FinishedRun { id, jobs });
        }
        Ok(runs)
    }

    async fn delete_run(&self, run: &FinishedRun) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, tenant, queue, state, finished_at FROM jobs WHERE run_id = ? ORDER BY id",
        )
        .bind(run.id)
        .fetch_all(&mut *tx)
        .await?;
        let now = rows.iter().map(fact).collect::<StoreResult<Vec<_>>>()?;
        let mut read = run.jobs.clone();
        read.sort_by_key(|j| j.id);
        if now != read || now.iter().any(|j| !j.state.is_terminal()) {
            return Ok(0);
        }
        sqlx::query("DELETE FROM job_deps WHERE job_id IN (SELECT id FROM jobs WHERE run_id = ?)")
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        let removed = sqlx::query("DELETE FROM jobs WHERE run_id = ?")
            .bind(run.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM runs WHERE id = ?")
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
        let wanted =
            serde_json::to_string(digests).map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT json_extract(a.value, '$.digest') FROM jobs, json_each(jobs.artifacts) a \
             WHERE jobs.artifacts <> '[]' \
               AND json_extract(a.value, '$.digest') IN (SELECT value FROM json_each(?))",
        )
        .bind(wanted)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn ledger_segments(&self, last_only: bool) -> StoreResult<Vec<LedgerSegment>> {
        let sql = if last_only {
            "SELECT * FROM ledger_segments ORDER BY seq DESC LIMIT 1"
        } else {
            "SELECT * FROM ledger_segments ORDER BY seq"
        };
        let rows = sqlx::query(sql).fetch_all(&self.reader).await?;
        rows.iter().map(segment).collect()
    }

    async fn record_segment(&self, s: &LedgerSegment) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let head: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM ledger_segments")
            .fetch_one(&mut *tx)
            .await?;
        retention::segment_follows(head, s)?;
        let present: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE id BETWEEN ? AND ?")
                .bind(s.first_id)
                .bind(s.last_id)
                .fetch_one(&mut *tx)
                .await?;
        retention::segment_covers(present, s)?;
        sqlx::query(
            "INSERT INTO ledger_segments (seq, first_id, last_id, count, sha256, manifest_sha256, \
             prev, file, archived_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.seq)
        .bind(s.first_id)
        .bind(s.last_id)
        .bind(i64::try_from(s.count).unwrap_or(i64::MAX))
        .bind(&s.sha256)
        .bind(&s.manifest_sha256)
        .bind(&s.prev)
        .bind(&s.file)
        .bind(micros(s.archived_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM events WHERE id BETWEEN ? AND ?")
            .bind(s.first_id)
            .bind(s.last_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
