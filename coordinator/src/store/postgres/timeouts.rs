//! Timed-out attempts on PostgreSQL ([`super::timeouts`] decides how each ends): the claim
//! statement locks them and reads them back (`t` in `claims.rs`'s `claim_in`); they are ended
//! here, in the claim's transaction, with one statement and their events.

use chrono::{DateTime, Utc};
use leasehold_proto::Job;
use leasehold_proto::retry::SplitMix64;
use sqlx::PgConnection;

use super::PostgresStore;
use super::rows::{EVENT_COLUMNS, decode_job};
use crate::store::dag::{self, DagEffects};
use crate::store::timeouts::{self, TimedOut};
use crate::store::{StoreError, StoreResult};

impl PostgresStore {
    /// Ends `found` (leased jobs whose run-time deadline has passed, locked by the caller's
    /// transaction) as `timeout` failures, with their events and their runs' bookkeeping.
    /// Returns how many.
    pub(super) async fn end_timed_out(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        found: Vec<Job>,
        fx: &mut DagEffects,
    ) -> StoreResult<u64> {
        if found.is_empty() {
            return Ok(0);
        }
        let mut rng = SplitMix64::from_entropy();
        let ends: Vec<TimedOut> = found
            .iter()
            .map(|job| timeouts::decide(job, now, &mut rng))
            .collect();
        // Each event as it will read once the row is written (what the statement writes is
        // exactly what `ends` says).
        let events: Vec<(&str, String)> = found
            .iter()
            .zip(&ends)
            .map(|(job, end)| {
                let after = Job {
                    state: end.state,
                    run_at: end.run_at,
                    finished_at: end.finished_at,
                    last_error: Some(end.error.clone()),
                    lease_expires_at: None,
                    updated_at: now,
                    ..job.clone()
                };
                let (kind, data) = timeouts::event_of(&after);
                (kind, data.to_string())
            })
            .collect();
        let rows = sqlx::query(&format!(
            "WITH i AS (SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], \
                          $4::timestamptz[], $5::timestamptz[], $6::text[], $7::text[], \
                          $8::text[]) WITH ORDINALITY \
                        AS t(id, token, state, run_at, finished_at, error, etype, edata, ord)), \
             u AS (UPDATE jobs j SET state = i.state, run_at = i.run_at, \
                     finished_at = i.finished_at, last_error = i.error::jsonb, \
                     lease_expires_at = NULL, updated_at = $9 \
                   FROM i WHERE j.id = i.id AND j.state = 'leased' AND j.lease_epoch = i.token \
                   RETURNING j.*, i.ord, i.etype, i.edata), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
                    SELECT u.tenant, u.etype, u.id, u.run_id, u.queue, u.project, u.kind, \
                           u.worker_id, u.correlation_id, $9, u.edata::jsonb, \
                           u.inputs_hash, u.worker_version \
                    FROM u ORDER BY u.ord) \
             SELECT * FROM u ORDER BY ord"
        ))
        .bind(ends.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.token).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.state.as_str()).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.run_at).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.finished_at).collect::<Vec<_>>())
        .bind(ends.iter().map(|e| e.error.to_string()).collect::<Vec<_>>())
        .bind(events.iter().map(|(kind, _)| *kind).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|(_, data)| data.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if rows.len() != ends.len() {
            return Err(StoreError::Internal(format!(
                "{} of {} timed-out jobs were ended",
                rows.len(),
                ends.len()
            )));
        }
        for row in &rows {
            let job = decode_job(row)?;
            dag::after_job_change(&mut self.dag(tx), (&job).into(), now, fx).await?;
        }
        Ok(rows.len() as u64)
    }
}
