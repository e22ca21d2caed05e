//! `GET /v1/runs` on PostgreSQL (`crate::store::run_listing`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{RunStatus, RunSummary};
use sqlx::Row;
use uuid::Uuid;

use super::PostgresStore;
use crate::store::run_listing::{RunFilter, RunListings, with_counts};
use crate::store::{StoreError, StoreResult};

#[async_trait]
impl RunListings for PostgresStore {
    async fn list_runs(&self, f: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        // `runs_listing (tenant, id)` walks the tenant's runs newest first; the filters are
        // checked on the way.
        let rows = sqlx::query(
            "SELECT id, tenant, name, project, correlation_id, status, created_at, updated_at, \
             cancelled_at FROM runs WHERE tenant = $1 \
             AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR name = $3) \
             AND ($4::text IS NULL OR project = $4) AND ($5::text IS NULL OR correlation_id = $5) \
             AND ($6::timestamptz IS NULL OR created_at >= $6) \
             AND ($7::timestamptz IS NULL OR created_at < $7) \
             AND ($8::uuid IS NULL OR id < $8) ORDER BY id DESC LIMIT $9",
        )
        .bind(&f.tenant)
        .bind(f.status.map(RunStatus::as_str))
        .bind(&f.name)
        .bind(&f.project)
        .bind(&f.correlation_id)
        .bind(f.since)
        .bind(f.until)
        .bind(f.before)
        .bind(i64::from(f.limit))
        .fetch_all(self.pool())
        .await?;
        let runs = rows
            .iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                Ok(RunSummary {
                    id: r.try_get("id")?,
                    tenant: r.try_get("tenant")?,
                    name: r.try_get("name")?,
                    project: r.try_get("project")?,
                    correlation_id: r.try_get("correlation_id")?,
                    status: RunStatus::parse(&status).ok_or_else(|| {
                        StoreError::Internal(format!("unknown run status {status}"))
                    })?,
                    created_at: r.try_get::<DateTime<Utc>, _>("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    cancelled_at: r.try_get("cancelled_at")?,
                    jobs: Default::default(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
        let counts: Vec<(Uuid, String, i64)> = sqlx::query_as(
            "SELECT run_id, state, count(*) FROM jobs WHERE run_id = ANY($1) \
             GROUP BY run_id, state",
        )
        .bind(&ids)
        .fetch_all(self.pool())
        .await?;
        Ok(with_counts(runs, counts))
    }
}
