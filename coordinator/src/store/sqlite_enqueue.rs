//! Enqueue on SQLite: jobs and their `enqueued` events, in multi-row statements.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use leasehold_proto::Job;
use serde_json::{Value, json};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::sqlite::{BATCH_ROWS, SqliteStore, append_events, decode_job, json_text, micros};
use super::{Enqueued, NewJobRow, StoreError, StoreResult};

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
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
                 run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
                 inputs_hash, backoff) ",
            );
            qb.push_values(chunk, |mut b, new| {
                b.push_bind(new.id)
                    .push_bind(new.tenant.as_str())
                    .push_bind(new.queue.as_str())
                    .push_bind(new.kind.as_str())
                    .push_bind(new.state.as_str())
                    .push_bind(json_text(&new.payload))
                    .push_bind(new.priority)
                    .push_bind(new.max_attempts)
                    .push_bind(micros(new.run_at))
                    .push_bind(micros(now))
                    .push_bind(micros(now))
                    .push_bind(new.idempotency_key.as_deref())
                    .push_bind(new.correlation_id.as_deref())
                    .push_bind(new.project.as_deref())
                    .push_bind(new.run_id)
                    .push_bind(new.inputs_hash.as_str())
                    .push_bind(new.backoff.as_ref().map(|b| json!(b).to_string()));
            });
            qb.push(
                " ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
                 DO NOTHING RETURNING *",
            );
            let rows = qb.build().fetch_all(&mut *tx).await?;
            let mut inserted = HashMap::with_capacity(rows.len());
            for row in &rows {
                let job = decode_job(row)?;
                inserted.insert(job.id, job);
            }
            // Replays: the stored job of each idempotency key that was skipped.
            let skipped: Vec<&NewJobRow> = chunk
                .iter()
                .filter(|new| !inserted.contains_key(&new.id))
                .collect();
            let mut existing = HashMap::new();
            if !skipped.is_empty() {
                let mut qb =
                    QueryBuilder::<Sqlite>::new("WITH k(tenant, queue, idempotency_key) AS (");
                qb.push_values(&skipped, |mut b, new| {
                    b.push_bind(new.tenant.as_str())
                        .push_bind(new.queue.as_str())
                        .push_bind(new.idempotency_key.as_deref());
                });
                qb.push(
                    ") SELECT DISTINCT jobs.* FROM k JOIN jobs ON jobs.tenant = k.tenant \
                     AND jobs.queue = k.queue AND jobs.idempotency_key = k.idempotency_key",
                );
                for row in qb.build().fetch_all(&mut *tx).await? {
                    let job = decode_job(&row)?;
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
            append_events(tx, &events, now).await?;
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
                        out.push(Enqueued {
                            job,
                            replayed: true,
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}
