//! Heartbeats on PostgreSQL: every lease of a batch extended by one statement, fenced by its
//! token and by the attempt's run-time deadline (a lease is never extended past it, and from
//! it on the heartbeat answers `lost`), with latest progress and checkpoints stored; retried
//! on deadlock or serialization failure.

use chrono::{DateTime, Utc};
use leasehold_proto::{HeartbeatItem, HeartbeatResult, HeartbeatStatus};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use super::rows::EVENT_COLUMNS;
use super::{PostgresStore, begin_by_index};
use crate::store::{StoreError, StoreResult};

impl PostgresStore {
    pub(super) async fn heartbeat_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        items: &[HeartbeatItem],
    ) -> StoreResult<Vec<HeartbeatResult>> {
        // Rows are locked in id order so that concurrent batches never deadlock each other.
        let mut sorted: Vec<&HeartbeatItem> = items.iter().collect();
        sorted.sort_by_key(|i| i.job_id);
        let ids: Vec<Uuid> = sorted.iter().map(|i| i.job_id).collect();
        let tokens: Vec<i64> = sorted.iter().map(|i| i.fencing_token).collect();
        let progress: Vec<Option<String>> = sorted
            .iter()
            .map(|i| i.progress.as_ref().map(Value::to_string))
            .collect();
        let checkpoints: Vec<Option<String>> = sorted
            .iter()
            .map(|i| i.checkpoint.as_ref().map(Value::to_string))
            .collect();
        let sql = format!(
            "WITH input AS (SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[]) \
                            AS t(id, token, progress, checkpoint)), \
             locked AS (SELECT j.id FROM jobs j JOIN input ON j.id = input.id \
                        WHERE j.tenant = $6 AND j.state = 'leased' AND j.lease_epoch = input.token \
                          AND (j.deadline_at IS NULL OR j.deadline_at > $5) \
                        ORDER BY j.id FOR UPDATE OF j), \
             u AS (UPDATE jobs j SET \
                     lease_expires_at = LEAST($5 + j.lease_ttl_ms * interval '1 millisecond', \
                       j.deadline_at), \
                     progress = COALESCE(input.progress::jsonb, j.progress), \
                     checkpoint = COALESCE(input.checkpoint::jsonb, j.checkpoint), \
                     updated_at = $5 \
                   FROM input, locked \
                   WHERE j.id = input.id AND j.id = locked.id AND j.lease_epoch = input.token \
                     AND j.state = 'leased' AND (j.deadline_at IS NULL OR j.deadline_at > $5) \
                   RETURNING j.*, input.checkpoint IS NOT NULL AS checkpointed), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
                    SELECT u.tenant, 'checkpoint', u.id, u.run_id, u.queue, u.project, u.kind, \
                           u.worker_id, u.correlation_id, $5, \
                           jsonb_build_object('fencing_token', u.lease_epoch, 'checkpoint', u.checkpoint), \
                           u.inputs_hash, u.worker_version \
                    FROM u WHERE u.checkpointed) \
             SELECT id, cancel_requested, lease_expires_at FROM u"
        );
        let mut tries = 0;
        let rows = loop {
            let result = async {
                let mut tx = begin_by_index(self.pool()).await?;
                let rows = sqlx::query(&sql)
                    .bind(&ids)
                    .bind(&tokens)
                    .bind(&progress)
                    .bind(&checkpoints)
                    .bind(now)
                    .bind(tenant)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(rows)
            }
            .await;
            match result.map_err(StoreError::from) {
                Ok(rows) => break rows,
                Err(StoreError::Retryable(_)) if tries < 3 => tries += 1,
                Err(err) => return Err(err),
            }
        };
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = row.try_get("id")?;
            let cancel: bool = row.try_get("cancel_requested")?;
            let expires: Option<DateTime<Utc>> = row.try_get("lease_expires_at")?;
            found.insert(id, (cancel, expires));
        }
        Ok(items
            .iter()
            .map(|item| match found.get(&item.job_id) {
                Some((cancel, expires)) => HeartbeatResult {
                    job_id: item.job_id,
                    status: if *cancel {
                        HeartbeatStatus::CancelRequested
                    } else {
                        HeartbeatStatus::Ok
                    },
                    expires_at: *expires,
                },
                None => HeartbeatResult {
                    job_id: item.job_id,
                    status: HeartbeatStatus::Lost,
                    expires_at: None,
                },
            })
            .collect())
    }
}
