//! `GET /v1/runs` on SQLite (`crate::store::run_listing`). Times are microseconds.

use async_trait::async_trait;
use leasehold_proto::{RunStatus, RunSummary};
use sqlx::{QueryBuilder, Row, Sqlite};
use uuid::Uuid;

use super::SqliteStore;
use super::rows::{from_micros, micros, opt_time};
use crate::store::run_listing::{RunFilter, RunListings, with_counts};
use crate::store::{StoreError, StoreResult};

#[async_trait]
impl RunListings for SqliteStore {
    async fn list_runs(&self, f: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "SELECT id, tenant, name, project, correlation_id, status, created_at, updated_at, \
             cancelled_at FROM runs WHERE tenant = ",
        );
        qb.push_bind(&f.tenant);
        if let Some(status) = f.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        for (column, value) in [
            ("name", &f.name),
            ("project", &f.project),
            ("correlation_id", &f.correlation_id),
        ] {
            if let Some(v) = value {
                qb.push(format!(" AND {column} = ")).push_bind(v);
            }
        }
        if let Some(since) = f.since {
            qb.push(" AND created_at >= ").push_bind(micros(since));
        }
        if let Some(until) = f.until {
            qb.push(" AND created_at < ").push_bind(micros(until));
        }
        if let Some(before) = f.before {
            qb.push(" AND id < ").push_bind(before);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(&self.reader).await?;
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
                    created_at: from_micros(r.try_get("created_at")?)?,
                    updated_at: from_micros(r.try_get("updated_at")?)?,
                    cancelled_at: opt_time(r.try_get("cancelled_at")?)?,
                    jobs: Default::default(),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let mut counts: Vec<(Uuid, String, i64)> = Vec::new();
        for chunk in runs.chunks(400) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT run_id, state, count(*) FROM jobs WHERE run_id IN (",
            );
            let mut sep = qb.separated(", ");
            for run in chunk {
                sep.push_bind(run.id);
            }
            qb.push(") GROUP BY run_id, state");
            counts.extend(
                qb.build_query_as::<(Uuid, String, i64)>()
                    .fetch_all(&self.reader)
                    .await?,
            );
        }
        Ok(with_counts(runs, counts))
    }
}
