//! The scheduler's run records (`/orchestrator/runs`, a surface of the systems Leasehold
//! replaces) on PostgreSQL. Retiring that surface is deleting this file (see `store/scheduler.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{SchedulerRun, SchedulerRunInput};
use sqlx::Row;

use super::PostgresStore;
use crate::store::{SchedulerRecords, StoreResult};

#[async_trait]
impl SchedulerRecords for PostgresStore {
    async fn record_scheduler_run(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        input: &SchedulerRunInput,
    ) -> StoreResult<SchedulerRun> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scheduler_runs (started_at, completed_at, status, tables_assessed, \
             tables_skipped, tables_healthy, jobs_submitted, jobs_completed, jobs_failed, dry_run, \
             error, recorded_at, tenant) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             RETURNING id",
        )
        .bind(input.started_at)
        .bind(input.completed_at)
        .bind(&input.status)
        .bind(input.tables_assessed)
        .bind(input.tables_skipped)
        .bind(input.tables_healthy)
        .bind(input.jobs_submitted)
        .bind(input.jobs_completed)
        .bind(input.jobs_failed)
        .bind(input.dry_run)
        .bind(&input.error)
        .bind(now)
        .bind(tenant)
        .fetch_one(self.pool())
        .await?;
        Ok(SchedulerRun {
            id,
            input: input.clone(),
        })
    }

    async fn list_scheduler_runs(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<SchedulerRun>> {
        let rows =
            sqlx::query("SELECT * FROM scheduler_runs WHERE tenant = $1 ORDER BY id DESC LIMIT $2")
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(SchedulerRun {
                    id: r.try_get("id")?,
                    input: SchedulerRunInput {
                        started_at: r.try_get("started_at")?,
                        completed_at: r.try_get("completed_at")?,
                        status: r.try_get("status")?,
                        tables_assessed: r.try_get("tables_assessed")?,
                        tables_skipped: r.try_get("tables_skipped")?,
                        tables_healthy: r.try_get("tables_healthy")?,
                        jobs_submitted: r.try_get("jobs_submitted")?,
                        jobs_completed: r.try_get("jobs_completed")?,
                        jobs_failed: r.try_get("jobs_failed")?,
                        dry_run: r.try_get("dry_run")?,
                        error: r.try_get("error")?,
                    },
                })
            })
            .collect()
    }
}
