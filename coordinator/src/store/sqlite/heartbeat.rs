//! Heartbeats on SQLite: every lease of a batch extended in one write transaction, fenced by
//! its token and by the attempt's run-time deadline (a lease is never extended past it, and
//! from it on the heartbeat answers `lost`), with latest progress and checkpoints stored.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use leasehold_proto::{HeartbeatItem, HeartbeatResult, HeartbeatStatus, Job};
use serde_json::{Value, json};
use uuid::Uuid;

use super::SqliteStore;
use super::direct::{Arg, Exec, numbered_rows};
use super::rows::{BATCH_ROWS, append_events_in, json_text, micros};
use crate::store::StoreResult;

/// Extends the leases of `chunk` (distinct jobs), storing progress and checkpoints, and
/// writes a `checkpoint` event for each checkpoint stored.
async fn heartbeat_chunk(
    exec: &mut Exec<'_>,
    now: DateTime<Utc>,
    tenant: &str,
    chunk: &[HeartbeatItem],
) -> StoreResult<Vec<HeartbeatResult>> {
    let t = micros(now);
    let progress: Vec<Option<String>> = chunk
        .iter()
        .map(|i| i.progress.as_ref().map(json_text))
        .collect();
    let checkpoints: Vec<Option<String>> = chunk
        .iter()
        .map(|i| i.checkpoint.as_ref().map(json_text))
        .collect();
    // `?1` is the time and `?2` the tenant; the items are numbered from `?3` on.
    let sql = format!(
        "WITH i(id, token, progress, checkpoint) AS (VALUES {}) \
         UPDATE jobs SET lease_expires_at = MIN(?1 + jobs.lease_ttl_ms * 1000, \
             COALESCE(jobs.deadline_at, ?1 + jobs.lease_ttl_ms * 1000)), \
           progress = COALESCE(i.progress, jobs.progress), \
           checkpoint = COALESCE(i.checkpoint, jobs.checkpoint), updated_at = ?1 \
         FROM i WHERE jobs.id = i.id AND +jobs.tenant = ?2 \
           AND +jobs.state = 'leased' AND jobs.lease_epoch = i.token \
           AND (jobs.deadline_at IS NULL OR jobs.deadline_at > ?1) RETURNING *",
        numbered_rows(chunk.len(), 4, 3)
    );
    let mut args = Vec::with_capacity(chunk.len() * 4 + 2);
    args.extend([Arg::Int(t), Arg::Text(tenant)]);
    for ((item, progress), checkpoint) in chunk.iter().zip(&progress).zip(&checkpoints) {
        args.extend([
            Arg::uuid(&item.job_id),
            Arg::Int(item.fencing_token),
            Arg::opt_text(progress.as_deref()),
            Arg::opt_text(checkpoint.as_deref()),
        ]);
    }
    let mut updated: HashMap<Uuid, Job> = exec.fetch_jobs_by_id(&sql, &args).await?;
    let jobs: Vec<Option<Job>> = chunk.iter().map(|i| updated.remove(&i.job_id)).collect();
    let events: Vec<(&Job, &str, Value)> = chunk
        .iter()
        .zip(&jobs)
        .filter_map(|(item, job)| Some((job.as_ref()?, item.checkpoint.as_ref()?)))
        .map(|(job, cp)| {
            (
                job,
                "checkpoint",
                json!({"fencing_token": job.fencing_token, "checkpoint": cp}),
            )
        })
        .collect();
    append_events_in(exec, &events, now).await?;
    Ok(chunk
        .iter()
        .zip(jobs)
        .map(|(item, job)| match job {
            None => HeartbeatResult {
                job_id: item.job_id,
                status: HeartbeatStatus::Lost,
                expires_at: None,
            },
            Some(job) => HeartbeatResult {
                job_id: job.id,
                status: if job.cancel_requested {
                    HeartbeatStatus::CancelRequested
                } else {
                    HeartbeatStatus::Ok
                },
                expires_at: job.lease_expires_at,
            },
        })
        .collect())
}

impl SqliteStore {
    pub(super) async fn heartbeat_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        items: &[HeartbeatItem],
    ) -> StoreResult<Vec<HeartbeatResult>> {
        // One `UPDATE … FROM` per chunk, each item fenced by its token in the WHERE clause; a
        // chunk ends before a job named twice (the second heartbeat sees the first's writes),
        // and the checkpoint events of a chunk are written by one `INSERT` in input order.
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(items.len());
        let mut start = 0;
        while start < items.len() {
            let mut seen = HashSet::new();
            let mut end = start;
            while end < items.len() && end - start < BATCH_ROWS && seen.insert(items[end].job_id) {
                end += 1;
            }
            let chunk = &items[start..end];
            let mut exec = Exec::for_rows(&mut tx, chunk.len()).await?;
            out.extend(heartbeat_chunk(&mut exec, now, tenant, chunk).await?);
            start = end;
        }
        tx.commit().await?;
        Ok(out)
    }
}
