//! The DAG bookkeeping's statements on SQLite ([`super::dag`] decides what they do), inside
//! the caller's write transaction (which the single writer already serializes, so a run needs
//! no row lock).

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState, RunStatus};
use serde_json::{Value, json};
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::rows::{append_event, append_events, decode_job, from_micros, json_text, micros};
use crate::store::dag::{DagStatements, Ready, RunRow};
use crate::store::{StoreError, StoreResult};

/// [`DagStatements`] over the writer connection inside the caller's transaction.
pub(super) struct SqliteDag<'a>(pub(super) &'a mut SqliteConnection);

/// Descendants of `?2`, as a recursive CTE named `d`.
const DESCENDANTS: &str = "WITH RECURSIVE d(id) AS (SELECT job_id FROM job_deps \
     WHERE parent_id = ?2 UNION SELECT jd.job_id FROM job_deps jd JOIN d ON jd.parent_id = d.id) ";

impl SqliteDag<'_> {
    /// Runs `sql` (`?1` now, `?2` a job id; `RETURNING *`) and appends an event of `kind`
    /// with `data` for each returned job, in id order.
    async fn update_with_events(
        &mut self,
        sql: &str,
        now: DateTime<Utc>,
        id: Uuid,
        kind: &str,
        data: Value,
    ) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(sql)
            .bind(micros(now))
            .bind(id)
            .fetch_all(&mut *self.0)
            .await?;
        let mut jobs = rows
            .iter()
            .map(decode_job)
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|j| j.id);
        let events: Vec<(&Job, &str, Value)> =
            jobs.iter().map(|j| (j, kind, data.clone())).collect();
        append_events(self.0, &events, now).await?;
        Ok(jobs)
    }
}

impl DagStatements for SqliteDag<'_> {
    async fn lock_run(&mut self, run_id: Uuid) -> StoreResult<Option<RunRow>> {
        let row = sqlx::query(
            "SELECT status, cancelled_at IS NOT NULL AS cancelled, created_at FROM runs WHERE id = ?",
        )
        .bind(run_id)
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|r| {
            Ok(RunRow {
                status: r.try_get("status")?,
                cancelled: r.try_get::<i64, _>("cancelled")? != 0,
                created_at: from_micros(r.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    async fn unblock_children(
        &mut self,
        parent: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Ready>> {
        let jobs = self
            .update_with_events(
                "UPDATE jobs SET state = 'queued', run_at = ?1, updated_at = ?1 \
                 WHERE state = 'blocked' AND id IN (SELECT job_id FROM job_deps WHERE parent_id = ?2) \
                 AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.parent_id \
                                 WHERE d.job_id = jobs.id AND p.state <> 'succeeded') \
                 RETURNING *",
                now,
                parent,
                "unblocked",
                json!({"from": "blocked", "to": "queued", "parent": parent}),
            )
            .await?;
        Ok(jobs
            .into_iter()
            .map(|j| Ready {
                tenant: j.tenant,
                queue: j.queue,
            })
            .collect())
    }

    async fn cancel_descendants(&mut self, upstream: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        let sql = format!(
            "{DESCENDANTS} UPDATE jobs SET state = 'cancelled', cancel_reason = 'upstream_failed', \
               finished_at = ?1, updated_at = ?1 \
             WHERE id IN (SELECT id FROM d) AND state IN ('blocked', 'queued') RETURNING *"
        );
        let data = json!({"from": "blocked", "to": "cancelled", "reason": "upstream_failed",
                          "upstream": upstream});
        self.update_with_events(&sql, now, upstream, "cancelled", data)
            .await?;
        Ok(())
    }

    async fn parents_succeeded(&mut self, job: Uuid) -> StoreResult<bool> {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.parent_id \
             WHERE d.job_id = ? AND p.state <> 'succeeded')",
        )
        .bind(job)
        .fetch_one(&mut *self.0)
        .await?;
        Ok(waiting == 0)
    }

    async fn replay(&mut self, job: &Job, to: JobState, now: DateTime<Utc>) -> StoreResult<Job> {
        let row = sqlx::query(
            "UPDATE jobs SET state = ?3, attempt = 0, run_at = ?1, updated_at = ?1, \
             finished_at = NULL, cancel_requested = 0, cancel_reason = NULL, \
             lease_expires_at = NULL WHERE id = ?2 RETURNING *",
        )
        .bind(micros(now))
        .bind(job.id)
        .bind(to.as_str())
        .fetch_optional(&mut *self.0)
        .await?
        .ok_or_else(|| StoreError::Internal(format!("replayed job {} vanished", job.id)))?;
        let replayed = decode_job(&row)?;
        append_event(
            self.0,
            &replayed,
            "retried",
            now,
            json!({"from": job.state, "to": to}),
        )
        .await?;
        Ok(replayed)
    }

    async fn reblock_descendants(
        &mut self,
        upstream: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let sql = format!(
            "{DESCENDANTS} UPDATE jobs SET state = 'blocked', cancel_reason = NULL, \
               finished_at = NULL, updated_at = ?1 \
             WHERE id IN (SELECT id FROM d) AND state = 'cancelled' \
               AND cancel_reason = 'upstream_failed' \
               AND NOT EXISTS (SELECT 1 FROM job_deps x JOIN jobs p ON p.id = x.parent_id \
                               WHERE x.job_id = jobs.id AND p.state IN ('dead', 'cancelled')) \
             RETURNING *"
        );
        let data = json!({"from": "cancelled", "to": "blocked", "upstream": upstream});
        let jobs = self
            .update_with_events(&sql, now, upstream, "reblocked", data)
            .await?;
        Ok(jobs.len() as u64)
    }

    async fn job_states(&mut self, run_id: Uuid) -> StoreResult<Vec<(JobState, bool)>> {
        let rows = sqlx::query(
            "SELECT state, started_at IS NOT NULL AS started FROM jobs WHERE run_id = ?",
        )
        .bind(run_id)
        .fetch_all(&mut *self.0)
        .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("state")?;
                let state = JobState::parse(&s)
                    .ok_or_else(|| StoreError::Internal(format!("unknown state {s}")))?;
                Ok((state, r.try_get::<i64, _>("started")? != 0))
            })
            .collect()
    }

    async fn store_run_status(
        &mut self,
        run_id: Uuid,
        from: &str,
        to: RunStatus,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE runs SET status = ?1, updated_at = ?2 WHERE id = ?3")
            .bind(to.as_str())
            .bind(micros(now))
            .bind(run_id)
            .execute(&mut *self.0)
            .await?;
        sqlx::query(
            "INSERT INTO events (tenant, type, job_id, run_id, project, correlation_id, at, data) \
             SELECT tenant, 'run_status', NULL, id, project, correlation_id, ?1, ?2 \
             FROM runs WHERE id = ?3",
        )
        .bind(micros(now))
        .bind(json_text(&json!({"from": from, "status": to})))
        .bind(run_id)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn mark_run_cancelled(
        &mut self,
        tenant: &str,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE runs SET cancelled_at = ?1, updated_at = ?1 WHERE id = ?2 AND tenant = ?3 \
             AND cancelled_at IS NULL AND status NOT IN ('succeeded', 'failed')",
        )
        .bind(micros(now))
        .bind(run_id)
        .bind(tenant)
        .execute(&mut *self.0)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn cancel_unstarted(&mut self, run_id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        self.update_with_events(
            "UPDATE jobs SET state = 'cancelled', cancel_reason = 'run_cancelled', \
             finished_at = ?1, updated_at = ?1 WHERE run_id = ?2 AND state IN ('blocked', 'queued') \
             RETURNING *",
            now,
            run_id,
            "cancelled",
            json!({"to": "cancelled", "reason": "run_cancelled"}),
        )
        .await?;
        Ok(())
    }

    async fn request_cancel_of_leased(
        &mut self,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.update_with_events(
            "UPDATE jobs SET cancel_requested = 1, cancel_reason = 'run_cancelled', \
             updated_at = ?1 WHERE run_id = ?2 AND state = 'leased' AND cancel_requested = 0 \
             RETURNING *",
            now,
            run_id,
            "cancel_requested",
            json!({"reason": "run_cancelled"}),
        )
        .await?;
        Ok(())
    }

    async fn announce(&mut self, _ready: &[Ready]) -> StoreResult<()> {
        // One process per SQLite file: the local wake-up after the commit is all there is.
        Ok(())
    }
}
