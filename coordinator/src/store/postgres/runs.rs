//! Runs, DAG bookkeeping, the event feed and scheduler records on PostgreSQL. Functions taking
//! a connection run inside the caller's transaction.

use chrono::{DateTime, Utc};
use leasehold_proto::{Event, JobState, Run, RunJob};
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use super::PostgresStore;
use super::quotas::PgQuotas;
use crate::store::dag::{self, DagEffects};
use crate::store::quotas;
use crate::store::runs::{self, NewRunRow, RunRecord, RunStatements, assemble};
use crate::store::{EventFilter, NewJobRow, StoreError, StoreResult};

async fn append_run_event(
    conn: &mut PgConnection,
    run: &PgRow,
    kind: &str,
    job_id: Option<Uuid>,
    now: DateTime<Utc>,
    data: Value,
) -> StoreResult<Event> {
    let row = sqlx::query(
        "INSERT INTO events (tenant, type, job_id, run_id, project, correlation_id, at, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(run.try_get::<String, _>("tenant")?)
    .bind(kind)
    .bind(job_id)
    .bind(run.try_get::<Uuid, _>("id")?)
    .bind(run.try_get::<Option<String>, _>("project")?)
    .bind(run.try_get::<Option<String>, _>("correlation_id")?)
    .bind(now)
    .bind(data)
    .fetch_one(&mut *conn)
    .await?;
    decode_event(&row)
}

pub(super) fn decode_event(row: &PgRow) -> StoreResult<Event> {
    Ok(Event {
        id: row.try_get("id")?,
        kind: row.try_get("type")?,
        job_id: row.try_get("job_id")?,
        run_id: row.try_get("run_id")?,
        tenant: row.try_get("tenant")?,
        queue: row.try_get("queue")?,
        project: row.try_get("project")?,
        job_kind: row.try_get("kind")?,
        worker_id: row.try_get("worker_id")?,
        correlation_id: row.try_get("correlation_id")?,
        inputs_hash: row.try_get("inputs_hash")?,
        worker_version: row.try_get("worker_version")?,
        at: row.try_get("at")?,
        data: row.try_get("data")?,
    })
}

async fn load_run(conn: &mut PgConnection, tenant: &str, id: Uuid) -> StoreResult<Option<Run>> {
    let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = $1 AND tenant = $2")
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let record = RunRecord {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        run_token: row.try_get("run_token")?,
        name: row.try_get("name")?,
        project: row.try_get("project")?,
        correlation_id: row.try_get("correlation_id")?,
        mode: row.try_get("mode")?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    };
    let jobs = sqlx::query(
        "SELECT j.id, j.run_key, j.kind, j.queue, j.state, j.attempt, j.cancel_reason, j.started_at, \
         j.finished_at, COALESCE((SELECT array_agg(p.run_key ORDER BY p.run_key) FROM job_deps d \
           JOIN jobs p ON p.id = d.parent_id WHERE d.job_id = j.id), '{}') AS parents \
         FROM jobs j WHERE j.run_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let jobs = jobs
        .iter()
        .map(|r| {
            let state: String = r.try_get("state")?;
            let id: Uuid = r.try_get("id")?;
            Ok((
                RunJob {
                    key: r
                        .try_get::<Option<String>, _>("run_key")?
                        .unwrap_or_default(),
                    job_id: id,
                    kind: r.try_get("kind")?,
                    queue: r.try_get("queue")?,
                    state: JobState::parse(&state)
                        .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?,
                    depends_on: r.try_get("parents")?,
                    attempt: r.try_get("attempt")?,
                    cancel_reason: r.try_get("cancel_reason")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                },
                id,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(assemble(record, jobs)))
}

/// [`RunStatements`] inside the caller's transaction.
struct PgRuns<'a> {
    store: &'a PostgresStore,
    tx: &'a mut PgConnection,
}

impl RunStatements for PgRuns<'_> {
    async fn run_with_token(&mut self, tenant: &str, token: &str) -> StoreResult<Option<Uuid>> {
        // Serializes submissions of one token across replicas until the commit.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
            .bind(tenant)
            .bind(token)
            .execute(&mut *self.tx)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT id FROM runs WHERE tenant = $1 AND run_token = $2")
                .bind(tenant)
                .bind(token)
                .fetch_optional(&mut *self.tx)
                .await?,
        )
    }

    async fn check_quota(&mut self, jobs: &[&NewJobRow]) -> StoreResult<()> {
        quotas::check_enqueue(&mut PgQuotas(&mut *self.tx), jobs).await
    }

    async fn insert_run(&mut self, run: &NewRunRow, now: DateTime<Utc>) -> StoreResult<()> {
        let run_row = sqlx::query(
            "INSERT INTO runs (id, tenant, run_token, name, project, correlation_id, mode, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8) RETURNING *",
        )
        .bind(run.id)
        .bind(&run.tenant)
        .bind(&run.run_token)
        .bind(&run.name)
        .bind(&run.project)
        .bind(&run.correlation_id)
        .bind(&run.mode)
        .bind(now)
        .fetch_one(&mut *self.tx)
        .await?;
        append_run_event(
            self.tx,
            &run_row,
            "run_created",
            None,
            now,
            json!({"jobs": run.jobs.len(), "mode": run.mode}),
        )
        .await?;
        Ok(())
    }

    async fn insert_run_jobs(&mut self, run: &NewRunRow, now: DateTime<Utc>) -> StoreResult<()> {
        let rows: Vec<_> = run.jobs.iter().map(|j| j.row.clone()).collect();
        let inserted = self
            .store
            .insert_jobs(self.tx, now, rows, None, super::enqueue::Plan::PerExecution)
            .await?;
        for (spec, enq) in run.jobs.iter().zip(&inserted) {
            sqlx::query("UPDATE jobs SET run_key = $1 WHERE id = $2")
                .bind(&spec.key)
                .bind(enq.job.id)
                .execute(&mut *self.tx)
                .await?;
            if !spec.parents.is_empty() {
                sqlx::query(
                    "INSERT INTO job_deps (job_id, parent_id) SELECT $1, unnest($2::uuid[])",
                )
                .bind(enq.job.id)
                .bind(&spec.parents)
                .execute(&mut *self.tx)
                .await?;
            }
        }
        Ok(())
    }

    async fn load_run(&mut self, tenant: &str, id: Uuid) -> StoreResult<Option<Run>> {
        load_run(self.tx, tenant, id).await
    }
}

impl PostgresStore {
    pub(super) async fn create_run_impl(
        &self,
        now: DateTime<Utc>,
        run: NewRunRow,
    ) -> StoreResult<(Run, bool)> {
        let mut tx = self.pool().begin().await?;
        let created = runs::create(
            &mut PgRuns {
                store: self,
                tx: &mut tx,
            },
            &run,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub(super) async fn get_run_impl(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Run>> {
        let mut conn = self.pool().acquire().await?;
        load_run(&mut conn, tenant, id).await
    }

    pub(super) async fn cancel_run_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Run>> {
        let mut tx = self.pool().begin().await?;
        let mut fx = DagEffects::default();
        dag::cancel_run(&mut self.dag(&mut tx), tenant, id, now, &mut fx).await?;
        let run = load_run(&mut tx, tenant, id).await?;
        tx.commit().await?;
        fx.after_commit(&self.ready);
        Ok(run)
    }

    pub(super) async fn add_run_event_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        run_id: Uuid,
        kind: &str,
        job_id: Option<Uuid>,
        data: Value,
    ) -> StoreResult<Option<Event>> {
        let mut tx = self.pool().begin().await?;
        let Some(run) = sqlx::query("SELECT * FROM runs WHERE id = $1 AND tenant = $2")
            .bind(run_id)
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let event = append_run_event(&mut tx, &run, kind, job_id, now, data).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    pub(super) async fn list_events_impl(&self, f: &EventFilter) -> StoreResult<Vec<Event>> {
        // A settled read never passes an id that a running transaction may still commit: it
        // reads up to the feed's settled end (`postgres/feed.rs`), so a reader that resumes
        // after the last id it got can never step over an event that commits late.
        let mut qb = QueryBuilder::<Postgres>::new("SELECT * FROM events WHERE id > ");
        qb.push_bind(f.after);
        if f.settled {
            let end = self.settled_end(f.after, 0).await?;
            qb.push(" AND id <= ").push_bind(end);
        }
        if let Some(t) = &f.tenant {
            qb.push(" AND tenant = ").push_bind(t);
        }
        if let Some(r) = f.run_id {
            qb.push(" AND run_id = ").push_bind(r);
        }
        if let Some(j) = f.job_id {
            qb.push(" AND job_id = ").push_bind(j);
        }
        if let Some(q) = &f.queue {
            qb.push(" AND queue = ").push_bind(q);
        }
        if !f.types.is_empty() {
            qb.push(" AND type = ANY(").push_bind(&f.types).push(")");
        }
        if let Some(from) = f.from {
            qb.push(" AND at >= ").push_bind(from);
        }
        if let Some(to) = f.to {
            qb.push(" AND at < ").push_bind(to);
        }
        qb.push(if f.newest_first {
            " ORDER BY id DESC LIMIT "
        } else {
            " ORDER BY id LIMIT "
        })
        .push_bind(i64::from(f.limit));
        let rows = qb.build().fetch_all(self.pool()).await?;
        rows.iter().map(decode_event).collect()
    }
}
