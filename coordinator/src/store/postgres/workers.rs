//! Workers as seen (`crate::store::workers`) on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use super::rows::internal;
use crate::store::StoreResult;
use crate::store::workers::{WorkerRecords, WorkerRow, WorkerSeen};

#[async_trait]
impl WorkerRecords for PostgresStore {
    async fn worker_seen(&self, now: DateTime<Utc>, seen: &WorkerSeen) -> StoreResult<()> {
        let queues = seen
            .queues
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(internal)?;
        // A heartbeat keeps what the last claim said (transport, queues).
        sqlx::query(
            "INSERT INTO workers (tenant, worker_id, transport, queues, version, first_seen_at, \
             last_seen_at, last_heartbeat_at, closed_at) \
             VALUES ($1, $2, COALESCE($3, 'http'), COALESCE($4, '[]'), $5, $6, $6, \
                     CASE WHEN $7 THEN $6 END, CASE WHEN $8 THEN $6 END) \
             ON CONFLICT (tenant, worker_id) DO UPDATE SET \
               transport = COALESCE($3, workers.transport), queues = COALESCE($4, workers.queues), \
               version = COALESCE($5, workers.version), last_seen_at = $6, \
               last_heartbeat_at = CASE WHEN $7 THEN $6 ELSE workers.last_heartbeat_at END, \
               closed_at = CASE WHEN $8 THEN $6 ELSE workers.closed_at END",
        )
        .bind(&seen.tenant)
        .bind(&seen.worker_id)
        .bind(seen.transport)
        .bind(queues)
        .bind(&seen.version)
        .bind(now)
        .bind(seen.heartbeat)
        .bind(seen.closed)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn list_workers(
        &self,
        tenant: &str,
        since: DateTime<Utc>,
    ) -> StoreResult<Vec<WorkerRow>> {
        let rows = sqlx::query(
            "SELECT w.worker_id, w.transport, w.queues, w.version, w.first_seen_at, \
             w.last_seen_at, w.last_heartbeat_at, w.closed_at, COALESCE(l.n, 0) AS leases \
             FROM workers w LEFT JOIN (SELECT worker_id, count(*) AS n FROM jobs \
               WHERE tenant = $1 AND state = 'leased' GROUP BY worker_id) l \
               ON l.worker_id = w.worker_id \
             WHERE w.tenant = $1 AND (w.last_seen_at >= $2 OR l.n > 0) ORDER BY w.worker_id",
        )
        .bind(tenant)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let queues: String = r.try_get("queues")?;
                Ok(WorkerRow {
                    worker_id: r.try_get("worker_id")?,
                    transport: r.try_get("transport")?,
                    queues: serde_json::from_str(&queues).map_err(internal)?,
                    version: r.try_get("version")?,
                    first_seen_at: r.try_get("first_seen_at")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                    last_heartbeat_at: r.try_get("last_heartbeat_at")?,
                    closed_at: r.try_get("closed_at")?,
                    leases: r.try_get("leases")?,
                })
            })
            .collect()
    }

    async fn prune_workers(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query("DELETE FROM workers WHERE last_seen_at < $1")
            .bind(before)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
