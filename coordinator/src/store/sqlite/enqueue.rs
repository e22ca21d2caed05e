//! Enqueue on SQLite: jobs and their `enqueued` events, in multi-row statements (run
//! directly on the writer's handle for batches of `DIRECT_MIN_ROWS` or more, see
//! `sqlite_direct`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leasehold_proto::Job;
use serde_json::{Value, json};
use sqlx::SqliteConnection;
use uuid::Uuid;

use super::SqliteStore;
use super::direct::{Arg, Exec, numbered_rows};
use super::rows::{BATCH_ROWS, append_events_in, json_text, keys_text, micros};
use crate::store::timeouts::ms_int;
use crate::store::{Enqueued, NewJobRow, StoreError, StoreResult};

impl SqliteStore {
    /// Inserts jobs (with their `enqueued` events) inside the caller's transaction; a job whose
    /// idempotency key exists already comes back `replayed`.
    ///
    /// One multi-row `INSERT … ON CONFLICT DO NOTHING` per [`BATCH_ROWS`] jobs: rows are inserted
    /// in input order, so of two jobs with one idempotency key the first is stored and the
    /// second skipped, as with one statement per job. Replays are looked up in one query and
    /// the events written by one multi-row `INSERT`, in input order.
    pub(super) async fn insert_jobs(
        &self,
        tx: &mut SqliteConnection,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<Enqueued>> {
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(BATCH_ROWS) {
            let mut exec = Exec::for_rows(&mut *tx, chunk.len()).await?;
            let at = micros(now);
            let payloads: Vec<String> = chunk.iter().map(|new| json_text(&new.payload)).collect();
            let backoffs: Vec<Option<String>> = chunk
                .iter()
                .map(|new| new.backoff.as_ref().map(|b| json!(b).to_string()))
                .collect();
            let limit_keys: Vec<Option<String>> =
                chunk.iter().map(|new| keys_text(&new.limit_keys)).collect();
            let mut sql = String::from(
                "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
                 run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
                 inputs_hash, backoff, timeout_ms, limit_keys) VALUES ",
            );
            let mut args = Vec::with_capacity(chunk.len() * 19);
            for (n, (((new, payload), backoff), keys)) in chunk
                .iter()
                .zip(&payloads)
                .zip(&backoffs)
                .zip(&limit_keys)
                .enumerate()
            {
                sql.push_str(if n == 0 { "" } else { ", " });
                sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
                args.extend([
                    Arg::uuid(&new.id),
                    Arg::Text(&new.tenant),
                    Arg::Text(&new.queue),
                    Arg::Text(&new.kind),
                    Arg::Text(new.state.as_str()),
                    Arg::Text(payload),
                    Arg::Int(i64::from(new.priority)),
                    Arg::Int(i64::from(new.max_attempts)),
                    Arg::Int(micros(new.run_at)),
                    Arg::Int(at),
                    Arg::Int(at),
                    Arg::opt_text(new.idempotency_key.as_deref()),
                    Arg::opt_text(new.correlation_id.as_deref()),
                    Arg::opt_text(new.project.as_deref()),
                    Arg::opt_uuid(new.run_id.as_ref()),
                    Arg::Text(&new.inputs_hash),
                    Arg::opt_text(backoff.as_deref()),
                    Arg::opt_int(new.timeout_ms.map(ms_int)),
                    Arg::opt_text(keys.as_deref()),
                ]);
            }
            sql.push_str(
                " ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
                 DO NOTHING RETURNING *",
            );
            let mut inserted: HashMap<Uuid, Job> = exec.fetch_jobs_by_id(&sql, &args).await?;
            // Replays: the stored job of each idempotency key that was skipped.
            let skipped: Vec<&NewJobRow> = chunk
                .iter()
                .filter(|new| !inserted.contains_key(&new.id))
                .collect();
            let mut existing = HashMap::new();
            if !skipped.is_empty() {
                let keys = numbered_rows(skipped.len(), 3, 1);
                let sql = format!(
                    "WITH k(tenant, queue, idempotency_key) AS (VALUES {keys}) \
                     SELECT DISTINCT jobs.* FROM k JOIN jobs ON jobs.tenant = k.tenant \
                     AND jobs.queue = k.queue AND jobs.idempotency_key = k.idempotency_key"
                );
                let args: Vec<Arg<'_>> = skipped
                    .iter()
                    .flat_map(|new| {
                        [
                            Arg::Text(&new.tenant),
                            Arg::Text(&new.queue),
                            Arg::opt_text(new.idempotency_key.as_deref()),
                        ]
                    })
                    .collect();
                for job in exec.fetch_jobs(&sql, &args).await? {
                    let key = (
                        job.tenant.clone(),
                        job.queue.clone(),
                        job.idempotency_key.clone(),
                    );
                    existing.insert(key, job);
                }
            }
            let events: Vec<(&Job, &str, Value)> = chunk
                .iter()
                .filter_map(|new| inserted.get(&new.id))
                .map(|job| {
                    let data =
                        json!({"to": job.state, "run_at": job.run_at, "priority": job.priority});
                    (job, "enqueued", data)
                })
                .collect();
            append_events_in(&mut exec, &events, now).await?;
            drop(exec);
            for new in chunk {
                match inserted.remove(&new.id) {
                    Some(job) => out.push(Enqueued {
                        job,
                        replayed: false,
                    }),
                    None => {
                        let key = (
                            new.tenant.clone(),
                            new.queue.clone(),
                            new.idempotency_key.clone(),
                        );
                        let job = existing.get(&key).cloned().ok_or_else(|| {
                            StoreError::Internal(format!(
                                "job {} neither inserted nor found",
                                new.id
                            ))
                        })?;
                        // A conflict returns before the caller commits: nothing is stored.
                        out.push(crate::store::replay_of(new, job, out.len())?);
                    }
                }
            }
        }
        Ok(out)
    }
}
