//! PostgreSQL rows: the job row codec and the event columns every statement of this backend
//! shares.

use leasehold_proto::{Job, JobState};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::store::{StoreError, StoreResult};

/// The columns every event insert copies from a job row; `job` is the CTE alias of that row.
pub(super) const EVENT_COLUMNS: &str = "tenant, type, job_id, run_id, queue, project, kind, worker_id, correlation_id, at, data, \
     inputs_hash, worker_version";

pub(super) fn decode_job(row: &PgRow) -> StoreResult<Job> {
    let state: String = row.try_get("state")?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
    let backoff: Option<Json<leasehold_proto::BackoffHint>> = row.try_get("backoff")?;
    let artifacts: Json<Vec<leasehold_proto::Artifact>> = row.try_get("artifacts")?;
    Ok(Job {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        kind: row.try_get("kind")?,
        state,
        payload: row.try_get("payload")?,
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        fencing_token: row.try_get("lease_epoch")?,
        run_at: row.try_get("run_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        idempotency_key: row.try_get("idempotency_key")?,
        correlation_id: row.try_get("correlation_id")?,
        project: row.try_get("project")?,
        run_id: row.try_get("run_id")?,
        inputs_hash: row.try_get("inputs_hash")?,
        backoff: backoff.map(|b| b.0),
        timeout_ms: row
            .try_get::<Option<i64>, _>("timeout_ms")?
            .and_then(|ms| u64::try_from(ms).ok()),
        deadline_at: row.try_get("deadline_at")?,
        worker_id: row.try_get("worker_id")?,
        worker_version: row.try_get("worker_version")?,
        cancel_requested: row.try_get("cancel_requested")?,
        cancel_reason: row.try_get("cancel_reason")?,
        checkpoint: row.try_get("checkpoint")?,
        progress: row.try_get("progress")?,
        result: row.try_get("result")?,
        last_error: row.try_get("last_error")?,
        artifacts: artifacts.0,
        limit_keys: row
            .try_get::<Option<Vec<String>>, _>("limit_keys")?
            .unwrap_or_default(),
    })
}

pub(super) async fn fetch_job(
    conn: &mut PgConnection,
    tenant: &str,
    id: Uuid,
) -> StoreResult<Option<Job>> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = $1 AND tenant = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(decode_job).transpose()
}

/// Runs `UPDATE … RETURNING *` given as `update_sql` (its row alias must be the whole job) and
/// appends one event per returned row, `type` and `data` computed in SQL by `event_sql`
/// (expressions over the returned row `u`).
pub(super) fn with_event(
    update_sql: &str,
    event_type_sql: &str,
    event_data_sql: &str,
    at: &str,
) -> String {
    format!(
        "WITH u AS ({update_sql}), \
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
                SELECT u.tenant, {event_type_sql}, u.id, u.run_id, u.queue, u.project, u.kind, \
                       u.worker_id, u.correlation_id, {at}, {event_data_sql}, u.inputs_hash, \
                       u.worker_version FROM u) \
         SELECT * FROM u"
    )
}

pub(super) fn internal(err: serde_json::Error) -> StoreError {
    StoreError::Internal(err.to_string())
}
