//! The DAG bookkeeping's statements on PostgreSQL ([`super::dag`] decides what they do). Each
//! change of job rows is one statement with its events as a data-modifying CTE.

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState, RunStatus};
use serde_json::json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PostgresStore;
use super::rows::{EVENT_COLUMNS, decode_job};
use crate::store::dag::{DagStatements, Ready, RunRow};
use crate::store::{StoreError, StoreResult};

/// [`DagStatements`] over a connection inside the caller's transaction.
pub(super) struct PgDag<'a> {
    conn: &'a mut PgConnection,
    /// Ends the payload of this store's wake-ups, so that its own LISTEN ignores them (the
    /// caller wakes local claimers after the commit).
    origin: &'a str,
}

impl PostgresStore {
    /// The DAG statements, run on `conn` (inside a transaction).
    pub(super) fn dag<'a>(&'a self, conn: &'a mut PgConnection) -> PgDag<'a> {
        PgDag {
            conn,
            origin: &self.origin,
        }
    }
}

/// `WITH u AS (sql)` plus one event of `kind` per returned row (`data` is SQL over `u`; `$1` is
/// now), answering how many rows `u` changed.
fn count_with_events(with: &str, sql: &str, kind: &str, data: &str) -> String {
    format!(
        "WITH RECURSIVE {with} u AS ({sql}), \
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
           SELECT u.tenant, '{kind}', u.id, u.run_id, u.queue, u.project, u.kind, u.worker_id, \
                  u.correlation_id, $1, {data}, u.inputs_hash, u.worker_version FROM u ORDER BY u.id) \
         SELECT count(*) FROM u"
    )
}

/// Descendants of `$2`, as a recursive CTE named `d` (ends with a comma).
const DESCENDANTS: &str = "d(id) AS (SELECT job_id FROM job_deps WHERE parent_id = $2 \
     UNION SELECT jd.job_id FROM job_deps jd JOIN d ON jd.parent_id = d.id),";

impl DagStatements for PgDag<'_> {
    async fn lock_run(&mut self, run_id: Uuid) -> StoreResult<Option<RunRow>> {
        let row = sqlx::query(
            "SELECT status, cancelled_at IS NOT NULL AS cancelled, created_at FROM runs \
             WHERE id = $1 FOR UPDATE",
        )
        .bind(run_id)
        .fetch_optional(&mut *self.conn)
        .await?;
        row.map(|r| {
            Ok(RunRow {
                status: r.try_get("status")?,
                cancelled: r.try_get("cancelled")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn unblock_children(
        &mut self,
        parent: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Ready>> {
        let sql = format!(
            "WITH u AS (UPDATE jobs SET state = 'queued', run_at = $1, updated_at = $1 \
               WHERE state = 'blocked' AND id IN (SELECT job_id FROM job_deps WHERE parent_id = $2) \
               AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.parent_id \
                               WHERE d.job_id = jobs.id AND p.state <> 'succeeded') RETURNING *), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT u.tenant, 'unblocked', u.id, u.run_id, u.queue, u.project, u.kind, \
                      u.worker_id, u.correlation_id, $1, jsonb_build_object('from', 'blocked', \
                      'to', 'queued', 'parent', $2::uuid), u.inputs_hash, u.worker_version \
               FROM u ORDER BY u.id) \
             SELECT tenant, queue FROM u"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(parent)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Ready {
                    tenant: r.try_get("tenant")?,
                    queue: r.try_get("queue")?,
                })
            })
            .collect()
    }

    async fn cancel_descendants(&mut self, upstream: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        let sql = count_with_events(
            DESCENDANTS,
            "UPDATE jobs SET state = 'cancelled', cancel_reason = 'upstream_failed', \
               finished_at = $1, updated_at = $1 \
             WHERE id IN (SELECT id FROM d) AND state IN ('blocked', 'queued') RETURNING *",
            "cancelled",
            "jsonb_build_object('from', 'blocked', 'to', 'cancelled', 'reason', \
             'upstream_failed', 'upstream', $2::uuid)",
        );
        sqlx::query(&sql)
            .bind(now)
            .bind(upstream)
            .execute(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn parents_succeeded(&mut self, job: Uuid) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.parent_id \
             WHERE d.job_id = $1 AND p.state <> 'succeeded')",
        )
        .bind(job)
        .fetch_one(&mut *self.conn)
        .await?)
    }

    async fn replay(&mut self, job: &Job, to: JobState, now: DateTime<Utc>) -> StoreResult<Job> {
        let sql = format!(
            "WITH u AS (UPDATE jobs SET state = $3, attempt = 0, run_at = $1, updated_at = $1, \
               finished_at = NULL, cancel_requested = false, cancel_reason = NULL, \
               lease_expires_at = NULL WHERE id = $2 RETURNING *), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT u.tenant, 'retried', u.id, u.run_id, u.queue, u.project, u.kind, \
                      u.worker_id, u.correlation_id, $1, \
                      jsonb_build_object('from', $4::text, 'to', u.state), u.inputs_hash, \
                      u.worker_version FROM u) \
             SELECT * FROM u"
        );
        let row = sqlx::query(&sql)
            .bind(now)
            .bind(job.id)
            .bind(to.as_str())
            .bind(job.state.as_str())
            .fetch_optional(&mut *self.conn)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("replayed job {} vanished", job.id)))?;
        decode_job(&row)
    }

    async fn reblock_descendants(
        &mut self,
        upstream: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        // The NOT EXISTS reads the rows as they were before this statement: a grandchild
        // waits for the next call, once its parent is blocked again.
        let sql = count_with_events(
            DESCENDANTS,
            "UPDATE jobs SET state = 'blocked', cancel_reason = NULL, finished_at = NULL, \
               updated_at = $1 \
             WHERE id IN (SELECT id FROM d) AND state = 'cancelled' \
               AND cancel_reason = 'upstream_failed' \
               AND NOT EXISTS (SELECT 1 FROM job_deps x JOIN jobs p ON p.id = x.parent_id \
                               WHERE x.job_id = jobs.id AND p.state IN ('dead', 'cancelled')) \
             RETURNING *",
            "reblocked",
            "jsonb_build_object('from', 'cancelled', 'to', 'blocked', 'upstream', $2::uuid)",
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(now)
            .bind(upstream)
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(n as u64)
    }

    async fn job_states(&mut self, run_id: Uuid) -> StoreResult<Vec<(JobState, bool)>> {
        let rows = sqlx::query(
            "SELECT state, started_at IS NOT NULL AS started FROM jobs WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.try_get("state")?;
                let state = JobState::parse(&s)
                    .ok_or_else(|| StoreError::Internal(format!("unknown state {s}")))?;
                Ok((state, r.try_get::<bool, _>("started")?))
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
        sqlx::query(
            "WITH r AS (UPDATE runs SET status = $1, updated_at = $2 WHERE id = $3 RETURNING *) \
             INSERT INTO events (tenant, type, job_id, run_id, project, correlation_id, at, data) \
             SELECT r.tenant, 'run_status', NULL, r.id, r.project, r.correlation_id, $2, $4 FROM r",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(run_id)
        .bind(json!({"from": from, "status": to}))
        .execute(&mut *self.conn)
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
            "UPDATE runs SET cancelled_at = $1, updated_at = $1 WHERE id = $2 AND tenant = $3 \
             AND cancelled_at IS NULL AND status NOT IN ('succeeded', 'failed')",
        )
        .bind(now)
        .bind(run_id)
        .bind(tenant)
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn cancel_unstarted(&mut self, run_id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        let sql = count_with_events(
            "",
            "UPDATE jobs SET state = 'cancelled', cancel_reason = 'run_cancelled', \
             finished_at = $1, updated_at = $1 WHERE run_id = $2 AND state IN ('blocked', 'queued') \
             RETURNING *",
            "cancelled",
            "jsonb_build_object('to', 'cancelled', 'reason', 'run_cancelled')",
        );
        sqlx::query(&sql)
            .bind(now)
            .bind(run_id)
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn request_cancel_of_leased(
        &mut self,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let sql = count_with_events(
            "",
            "UPDATE jobs SET cancel_requested = true, cancel_reason = 'run_cancelled', \
             updated_at = $1 WHERE run_id = $2 AND state = 'leased' AND NOT cancel_requested \
             RETURNING *",
            "cancel_requested",
            "jsonb_build_object('reason', 'run_cancelled')",
        );
        sqlx::query(&sql)
            .bind(now)
            .bind(run_id)
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(())
    }

    async fn announce(&mut self, ready: &[Ready]) -> StoreResult<()> {
        let keys: Vec<String> = ready
            .iter()
            .map(|r| super::announce::queue_key(&r.tenant, &r.queue))
            .collect();
        super::announce::notify(&mut *self.conn, &keys, self.origin).await?;
        Ok(())
    }
}
