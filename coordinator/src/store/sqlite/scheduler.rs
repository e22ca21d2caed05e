//! The scheduler's run records (`/orchestrator/runs`, a surface of the systems Leasehold
//! replaces) on SQLite. Retiring that surface is deleting this file (see `store/scheduler.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{SchedulerRun, SchedulerRunInput};
use sqlx::Row;

use super::SqliteStore;
use super::rows::{from_micros, micros};
use crate::store::{SchedulerRecords, StoreResult};

#[async_trait]
impl SchedulerRecords for SqliteStore {
    async fn record_scheduler_run(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        input: &SchedulerRunInput,
    ) -> StoreResult<SchedulerRun> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scheduler_runs (started_at, completed_at, status, tables_assessed, \
             tables_skipped, tables_healthy, jobs_submitted, jobs_completed, jobs_failed, dry_run, \
             error, recorded_at, tenant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(micros(input.started_at))
        .bind(micros(input.completed_at))
        .bind(&input.status)
        .bind(input.tables_assessed)
        .bind(input.tables_skipped)
        .bind(input.tables_healthy)
        .bind(input.jobs_submitted)
        .bind(input.jobs_completed)
        .bind(input.jobs_failed)
        .bind(input.dry_run)
        .bind(&input.error)
        .bind(micros(now))
        .bind(tenant)
        .fetch_one(&self.writer)
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
            sqlx::query("SELECT * FROM scheduler_runs WHERE tenant = ? ORDER BY id DESC LIMIT ?")
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(SchedulerRun {
                    id: r.try_get("id")?,
                    input: SchedulerRunInput {
                        started_at: from_micros(r.try_get("started_at")?)?,
                        completed_at: from_micros(r.try_get("completed_at")?)?,
                        status: r.try_get("status")?,
                        tables_assessed: r.try_get("tables_assessed")?,
                        tables_skipped: r.try_get("tables_skipped")?,
                        tables_healthy: r.try_get("tables_healthy")?,
                        jobs_submitted: r.try_get("jobs_submitted")?,
                        jobs_completed: r.try_get("jobs_completed")?,
                        jobs_failed: r.try_get("jobs_failed")?,
                        dry_run: r.try_get::<i64, _>("dry_run")? != 0,
                        error: r.try_get("error")?,
                    },
                })
            })
            .collect()
    }
}
