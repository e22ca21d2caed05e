//! Runs, DAG bookkeeping, the event feed and scheduler records on SQLite. Every function that
//! takes a connection runs inside the caller's write transaction.

use chrono::{DateTime, Utc};
use leasehold_proto::{Event, JobState, Run, RunJob};
use serde_json::{Value, json};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use super::dag::SqliteDag;
use super::quotas::SqliteQuotas;
use super::rows::{from_micros, micros, opt_time};
use crate::store::dag::{self, DagEffects};
use crate::store::quotas;
use crate::store::runs::{self, NewRunRow, RunRecord, RunStatements, assemble};
use crate::store::{EventFilter, NewJobRow, StoreError, StoreResult};

async fn append_run_event(
    conn: &mut SqliteConnection,
    run: &SqliteRow,
    kind: &str,
    job_id: Option<Uuid>,
    now: DateTime<Utc>,
    data: Value,
) -> StoreResult<Event> {
    let row = sqlx::query(
        "INSERT INTO events (tenant, type, job_id, run_id, project, correlation_id, at, data) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(run.try_get::<String, _>("tenant")?)
    .bind(kind)
    .bind(job_id)
    .bind(run.try_get::<Uuid, _>("id")?)
    .bind(run.try_get::<Option<String>, _>("project")?)
    .bind(run.try_get::<Option<String>, _>("correlation_id")?)
    .bind(micros(now))
    .bind(data.to_string())
    .fetch_one(&mut *conn)
    .await?;
    decode_event(&row)
}

pub(super) fn decode_event(row: &SqliteRow) -> StoreResult<Event> {
    let data: String = row.try_get("data")?;
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
        at: from_micros(row.try_get("at")?)?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    })
}

fn decode_record(row: &SqliteRow) -> StoreResult<RunRecord> {
    Ok(RunRecord {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant")?,
        run_token: row.try_get("run_token")?,
        name: row.try_get("name")?,
        project: row.try_get("project")?,
        correlation_id: row.try_get("correlation_id")?,
        mode: row.try_get("mode")?,
        created_at: from_micros(row.try_get("created_at")?)?,
        cancelled_at: opt_time(row.try_get("cancelled_at")?)?,
    })
}

async fn load_run(conn: &mut SqliteConnection, tenant: &str, id: Uuid) -> StoreResult<Option<Run>> {
    let Some(row) = sqlx::query("SELECT * FROM runs WHERE id = ? AND tenant = ?")
        .bind(id)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let record = decode_record(&row)?;
    let jobs = sqlx::query(
        "SELECT j.id, j.run_key, j.kind, j.queue, j.state, j.attempt, j.cancel_reason, j.started_at, \
         j.finished_at, (SELECT group_concat(p.run_key, char(31)) FROM job_deps d JOIN jobs p ON p.id = d.parent_id \
                          WHERE d.job_id = j.id) AS parents \
         FROM jobs j WHERE j.run_id = ?",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let jobs = jobs
        .iter()
        .map(|r| {
            let state: String = r.try_get("state")?;
            let parents: Option<String> = r.try_get("parents")?;
            let mut depends_on: Vec<String> = parents
                .map(|p| p.split('\u{1f}').map(str::to_owned).collect())
                .unwrap_or_default();
            depends_on.sort();
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
                    depends_on,
                    attempt: r.try_get("attempt")?,
                    cancel_reason: r.try_get("cancel_reason")?,
                    started_at: opt_time(r.try_get("started_at")?)?,
                    finished_at: opt_time(r.try_get("finished_at")?)?,
                },
                id,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(assemble(record, jobs)))
}

fn push_event_filter<'a>(qb: &mut QueryBuilder<'a, Sqlite>, f: &'a EventFilter) {
    qb.push(" WHERE id > ").push_bind(f.after);
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
        qb.push(" AND type IN (");
        let mut sep = qb.separated(", ");
        for t in &f.types {
            sep.push_bind(t);
        }
        qb.push(")");
    }
    if let Some(from) = f.from {
        qb.push(" AND at >= ").push_bind(micros(from));
    }
    if let Some(to) = f.to {
        qb.push(" AND at < ").push_bind(micros(to));
    }
    qb.push(if f.newest_first {
        " ORDER BY id DESC LIMIT "
    } else {
        " ORDER BY id LIMIT "
    })
    .push_bind(i64::from(f.limit));
}

/// [`RunStatements`] inside the caller's write transaction.
struct SqliteRuns<'a> {
    store: &'a SqliteStore,
    tx: &'a mut SqliteConnection,
}

impl RunStatements for SqliteRuns<'_> {
    async fn run_with_token(&mut self, tenant: &str, token: &str) -> StoreResult<Option<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM runs WHERE tenant = ? AND run_token = ?")
                .bind(tenant)
                .bind(token)
                .fetch_optional(&mut *self.tx)
                .await?,
        )
    }

    async fn check_quota(&mut self, jobs: &[&NewJobRow]) -> StoreResult<()> {
        let mut limits = SqliteQuotas {
            conn: &mut *self.tx,
            known: &self.store.queue_quotas,
        };
        quotas::check_enqueue(&mut limits, jobs).await
    }

    async fn insert_run(&mut self, run: &NewRunRow, now: DateTime<Utc>) -> StoreResult<()> {
        let run_row = sqlx::query(
            "INSERT INTO runs (id, tenant, run_token, name, project, correlation_id, mode, status, \
             created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING *",
        )
        .bind(run.id)
        .bind(&run.tenant)
        .bind(&run.run_token)
        .bind(&run.name)
        .bind(&run.project)
        .bind(&run.correlation_id)
        .bind(&run.mode)
        .bind(micros(now))
        .bind(micros(now))
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
        let inserted = self.store.insert_jobs(self.tx, now, rows).await?;
        for (spec, enq) in run.jobs.iter().zip(&inserted) {
            sqlx::query("UPDATE jobs SET run_key = ? WHERE id = ?")
                .bind(&spec.key)
                .bind(enq.job.id)
                .execute(&mut *self.tx)
                .await?;
            for parent in &spec.parents {
                sqlx::query("INSERT INTO job_deps (job_id, parent_id) VALUES (?, ?)")
                    .bind(enq.job.id)
                    .bind(parent)
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

impl SqliteStore {
    pub(super) async fn create_run_impl(
        &self,
        now: DateTime<Utc>,
        run: NewRunRow,
    ) -> StoreResult<(Run, bool)> {
        let mut tx = self.begin_write().await?;
        let created = runs::create(
            &mut SqliteRuns {
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
        let mut conn = self.reader.acquire().await?;
        load_run(&mut conn, tenant, id).await
    }

    pub(super) async fn cancel_run_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        id: Uuid,
    ) -> StoreResult<Option<Run>> {
        let mut tx = self.begin_write().await?;
        let mut fx = DagEffects::default();
        dag::cancel_run(&mut SqliteDag(&mut tx), tenant, id, now, &mut fx).await?;
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
        let mut tx = self.begin_write().await?;
        let Some(run) = sqlx::query("SELECT * FROM runs WHERE id = ? AND tenant = ?")
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

    pub(super) async fn list_events_impl(&self, filter: &EventFilter) -> StoreResult<Vec<Event>> {
        let mut qb = QueryBuilder::<Sqlite>::new("SELECT * FROM events");
        push_event_filter(&mut qb, filter);
        let rows = qb.build().fetch_all(&self.reader).await?;
        rows.iter().map(decode_event).collect()
    }
}
