//! The hand-off on SQLite ([`Store::enqueue_leased`](super::Store::enqueue_leased)): a job
//! inserted already leased to a parked claimer, with its `enqueued` and `leased` events.
//!
//! On SQLite the cost of a small write transaction is its statements' trips to sqlx's
//! connection thread, not their execution (docs/sqlite-direct.md). Done as an enqueue and a
//! claim would do it — `BEGIN`, the paused check, the insert, its event, the lease update, its
//! event, `COMMIT` — the hand-off took seven trips. Here the whole transaction is one
//! multi-statement text, `BEGIN IMMEDIATE; INSERT …; INSERT …; COMMIT`, which sqlx runs in one
//! trip (binding `?` parameters across the statements in order). When the row cannot be
//! inserted (paused queue, existing key, a tenant with limits or a quota) neither statement writes
//! anything and the empty transaction commits; when a statement fails, the transaction the text
//! opened is rolled back before the connection goes back to the pool.

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState, Lease};
use serde_json::json;

use super::SqliteStore;
use super::direct::{Arg, Exec};
use super::rows::{EVENT_INSERT, from_micros, json_text, keys_text, micros};
use crate::store::timeouts::ms_int;
use crate::store::{ClaimParams, NewJobRow, StoreError, StoreResult, as_enqueued, lease_of};

impl SqliteStore {
    /// The job inserted leased to `claim`'s worker, or `None` (rolled back, nothing written)
    /// when its queue is paused, its idempotency key exists, or its tenant has limits (a gated
    /// claim must weigh it: `crate::flow`) or a quota (its jobs go through the checked enqueue
    /// and are leased by claims).
    pub(super) async fn enqueue_leased_impl(
        &self,
        now: DateTime<Utc>,
        job: NewJobRow,
        claim: &ClaimParams,
    ) -> StoreResult<Option<(Job, Lease)>> {
        let at = micros(now);
        // The attempt's deadline, as a claim would set it: the job's own timeout, else its
        // queue's default, read first so that the `leased` event can name the lease's end (the
        // deadline when it comes first). A default changed meanwhile applies from the next
        // claim on, as if this one had come a moment earlier.
        let timeout = match job.timeout_ms {
            Some(ms) => Some(ms),
            None => self.queue_timeout(&job.tenant, &job.queue).await?,
        };
        let deadline = timeout.map(|ms| at.saturating_add(ms_int(ms).saturating_mul(1000)));
        let lease_end = micros(now + chrono::Duration::milliseconds(claim.lease_ttl_ms as i64));
        let expires = deadline.map_or(lease_end, |d| d.min(lease_end));
        // The events' data as the enqueue and the claim write it, from the values as stored
        // (times at microsecond precision).
        let enqueued = json_text(&json!({
            "to": JobState::Queued, "run_at": from_micros(micros(job.run_at))?,
            "priority": job.priority,
        }));
        let leased = json_text(&json!({
            "from": "queued", "to": "leased", "fencing_token": 1, "attempt": 1,
            "lease_expires_at": from_micros(expires)?,
            "waited_ms": (now - from_micros(micros(job.run_at))?).num_milliseconds().max(0),
        }));
        let payload = json_text(&job.payload);
        let backoff = job.backoff.as_ref().map(|b| json_text(&json!(b)));
        let limit_keys = keys_text(&job.limit_keys);
        // `WHERE` before `ON CONFLICT` also keeps SQLite's parser from reading `ON` as a join.
        let sql = format!(
            "BEGIN IMMEDIATE; \
             INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, attempt, \
               max_attempts, lease_epoch, run_at, created_at, updated_at, started_at, \
               lease_expires_at, lease_ttl_ms, idempotency_key, correlation_id, project, \
               inputs_hash, backoff, worker_id, worker_version, timeout_ms, deadline_at, \
               limit_keys) \
             SELECT ?, ?, ?, ?, 'leased', ?, ?, 1, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, \
               ?, ?, ? \
             WHERE NOT EXISTS (SELECT 1 FROM queues WHERE tenant = ? AND name = ? AND paused = 1) \
               AND NOT EXISTS (SELECT 1 FROM limits WHERE tenant = ?) \
               AND NOT EXISTS (SELECT 1 FROM quotas WHERE tenant = ?) \
             ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
             DO NOTHING RETURNING *; \
             {EVENT_INSERT} \
             SELECT jobs.tenant, e.type, jobs.id, jobs.run_id, jobs.queue, jobs.project, \
                    jobs.kind, e.worker, jobs.correlation_id, ?, e.data, jobs.inputs_hash, \
                    CASE WHEN e.worker IS NULL THEN NULL ELSE jobs.worker_version END \
             FROM jobs JOIN (SELECT 1 AS ord, 'enqueued' AS type, NULL AS worker, ? AS data \
                             UNION ALL SELECT 2, 'leased', ?, ?) e \
             WHERE jobs.id = ? AND jobs.state = 'leased' ORDER BY e.ord; \
             COMMIT"
        );
        let args = [
            Arg::uuid(&job.id),
            Arg::Text(&job.tenant),
            Arg::Text(&job.queue),
            Arg::Text(&job.kind),
            Arg::Text(&payload),
            Arg::Int(i64::from(job.priority)),
            Arg::Int(i64::from(job.max_attempts)),
            Arg::Int(micros(job.run_at)),
            Arg::Int(at),
            Arg::Int(at),
            Arg::Int(at),
            Arg::Int(expires),
            Arg::Int(claim.lease_ttl_ms as i64),
            Arg::opt_text(job.idempotency_key.as_deref()),
            Arg::opt_text(job.correlation_id.as_deref()),
            Arg::opt_text(job.project.as_deref()),
            Arg::Text(&job.inputs_hash),
            Arg::opt_text(backoff.as_deref()),
            Arg::Text(&claim.worker_id),
            Arg::opt_text(claim.worker_version.as_deref()),
            Arg::opt_int(job.timeout_ms.map(ms_int)),
            Arg::opt_int(deadline),
            Arg::opt_text(limit_keys.as_deref()),
            Arg::Text(&job.tenant),
            Arg::Text(&job.queue),
            Arg::Text(&job.tenant),
            Arg::Text(&job.tenant),
            // the events
            Arg::Int(at),
            Arg::Text(&enqueued),
            Arg::Text(&claim.worker_id),
            Arg::Text(&leased),
            Arg::uuid(&job.id),
        ];
        let mut conn = self.writer.acquire().await?;
        // Through sqlx, whatever the row count: only sqlx runs a multi-statement text.
        let fetched = Exec::Sqlx(&mut conn).fetch_jobs(&sql, &args).await;
        let mut rows = match fetched {
            Ok(rows) => rows,
            Err(err) => {
                // Ends the text's transaction if it is still open ("no transaction is active"
                // otherwise); a connection that cannot even do that is not reused.
                if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await
                    && !e.to_string().contains("no transaction is active")
                {
                    tracing::warn!(%e, "rollback after a failed hand-off failed; closing the connection");
                    conn.close_on_drop();
                }
                return Err(err);
            }
        };
        let Some(row) = rows.pop() else {
            return Ok(None); // paused or replayed: nothing was written
        };
        if !rows.is_empty() || row.id != job.id {
            return Err(StoreError::Internal(format!(
                "the hand-off of job {} returned an unexpected row",
                job.id
            )));
        }
        Ok(Some((as_enqueued(&row), lease_of(row)?)))
    }
}
