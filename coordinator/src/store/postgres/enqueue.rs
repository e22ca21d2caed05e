//! Enqueue on PostgreSQL: jobs, their `enqueued` events and the ready-channel wake-up, written
//! by one statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use leasehold_proto::{Job, Lease};

use super::announce::{queue_key, queue_keys};
use super::rows::{EVENT_COLUMNS, decode_job, internal};
use super::{PostgresStore, READY_CHANNEL};
use crate::store::timeouts::ms_int;
use crate::store::{
    ClaimParams, Enqueued, NewJobRow, StoreError, StoreResult, as_enqueued, lease_of,
};

impl PostgresStore {
    /// Inserts jobs (with their `enqueued` events, in input order) inside the caller's
    /// transaction, by [`Self::insert_rows`]. A job whose idempotency key exists already (or
    /// appeared earlier in the same batch) is not inserted; the existing job is returned,
    /// `replayed`; a replay whose kind or payload differs refuses the whole batch.
    pub(super) async fn insert_jobs(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
        origin: Option<&str>,
        plan: Plan,
    ) -> StoreResult<Vec<Enqueued>> {
        let mut inserted = self.insert_rows(tx, now, &jobs, origin, plan, None).await?;
        let existing = stored_by_key(tx, &jobs, &inserted).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for (position, new) in jobs.into_iter().enumerate() {
            match inserted.remove(&new.id) {
                Some(job) => out.push(Enqueued {
                    job,
                    replayed: false,
                }),
                None => {
                    let job = key_of(&new)
                        .and_then(|key| existing.get(&key))
                        .cloned()
                        .ok_or_else(|| {
                            StoreError::Internal(format!(
                                "job {} neither inserted nor found",
                                new.id
                            ))
                        })?;
                    // A conflict returns before the caller commits: the batch stores nothing.
                    out.push(crate::store::replay_of(&new, job, position)?);
                }
            }
        }
        Ok(out)
    }

    /// [`Store::enqueue_each`](super::Store::enqueue_each): independent single-job enqueues
    /// (group commit) written by one statement outside any explicit transaction — one round
    /// trip and one WAL flush for the group, where a transaction took four (`BEGIN` with its
    /// planner settings, the quota check, the insert, `COMMIT`). The statement inserts nothing
    /// when a tenant of the group has a `max_queued` (the [`Plan::Group`] guard, one probe of
    /// `quotas`); those jobs then go one by one through [`Store::enqueue`], whose checked
    /// transaction weighs them. A replayed key is answered to its own caller (a conflict
    /// included): the others' rows are stored either way, as their own calls would have been.
    pub(super) async fn enqueue_group(
        &self,
        now: DateTime<Utc>,
        jobs: Vec<NewJobRow>,
    ) -> StoreResult<Vec<StoreResult<Enqueued>>> {
        let group = async |conn: &mut PgConnection| {
            let keys = queue_keys(jobs.iter().map(|j| (j.tenant.as_str(), j.queue.as_str())));
            let announced = self.announcer.take(&keys);
            // An error here stored nothing (one statement): the caller may go job by job.
            let inserted = self
                .insert_rows(
                    conn,
                    now,
                    &jobs,
                    Some(&self.origin),
                    Plan::Group,
                    Some(&announced),
                )
                .await?;
            let written = queue_keys(
                inserted
                    .values()
                    .map(|j| (j.tenant.as_str(), j.queue.as_str())),
            );
            self.announcer
                .owe(written, &announced, self.pool(), &self.origin);
            // From here the inserted rows are committed, and every answer is a job's own: a
            // look-up that fails sends the skipped jobs alone, whose enqueue looks again.
            let existing = stored_by_key(conn, &jobs, &inserted)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(%err, "reading a group's replayed keys failed; each alone");
                    HashMap::new()
                });
            Ok((inserted, existing))
        };
        // Groups follow each other back to back: on a kept connection (`kept.rs`).
        let (mut inserted, existing) = self.kept.with(self.pool(), group).await?;
        let mut out = Vec::with_capacity(jobs.len());
        for new in jobs {
            if let Some(job) = inserted.remove(&new.id) {
                out.push(Ok(Enqueued {
                    job,
                    replayed: false,
                }));
            } else if let Some(job) = key_of(&new).and_then(|key| existing.get(&key)) {
                out.push(crate::store::replay_of(&new, job.clone(), 0));
            } else {
                // Held back by the quota guard (or its key's look-up failed).
                out.push(super::Store::enqueue_one(self, now, new).await);
            }
        }
        Ok(out)
    }

    /// Inserts `jobs` with their `enqueued` events with one `INSERT … SELECT FROM UNNEST(…)`,
    /// which also announces them on the ready channel, once per tenant and queue (`pg_notify`,
    /// delivered on commit; `origin` ends the payload, see [`Self::is_own_wakeup`]): every
    /// queue written, or with `announce` only those it names (`tenant/queue`, see
    /// [`super::announce`]). A job
    /// whose idempotency key is stored already (or taken earlier in `jobs`) is skipped (see
    /// [`stored_by_key`]). The inserted rows, by id.
    async fn insert_rows(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        jobs: &[NewJobRow],
        origin: Option<&str>,
        plan: Plan,
        announce: Option<&[String]>,
    ) -> StoreResult<HashMap<Uuid, Job>> {
        if jobs.is_empty() {
            return Ok(HashMap::new());
        }
        let n = jobs.len();
        let mut ids = Vec::with_capacity(n);
        let mut tenants = Vec::with_capacity(n);
        let mut queues = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        let mut priorities = Vec::with_capacity(n);
        let mut max_attempts = Vec::with_capacity(n);
        let mut run_ats = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut correlation_ids = Vec::with_capacity(n);
        let mut projects = Vec::with_capacity(n);
        let mut run_ids = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        let mut backoffs = Vec::with_capacity(n);
        let mut timeouts = Vec::with_capacity(n);
        // Each job's keys as a JSON array (UNNEST cannot take an array of arrays of unequal
        // lengths), `NULL` when none.
        let mut limit_keys: Vec<Option<String>> = Vec::with_capacity(n);
        for new in jobs {
            limit_keys.push(
                (!new.limit_keys.is_empty())
                    .then(|| serde_json::Value::from(new.limit_keys.clone()).to_string()),
            );
            timeouts.push(new.timeout_ms.map(ms_int));
            ids.push(new.id);
            tenants.push(new.tenant.as_str());
            queues.push(new.queue.as_str());
            kinds.push(new.kind.as_str());
            states.push(new.state.as_str());
            payloads.push(new.payload.to_string());
            priorities.push(new.priority);
            max_attempts.push(new.max_attempts);
            run_ats.push(new.run_at);
            keys.push(new.idempotency_key.as_deref());
            correlation_ids.push(new.correlation_id.as_deref());
            projects.push(new.project.as_deref());
            run_ids.push(new.run_id);
            hashes.push(new.inputs_hash.as_str());
            backoffs.push(
                new.backoff
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(internal)?,
            );
        }
        let (marker, guard) = plan.marker_and_guard();
        // Rows are inserted in input order, so of two jobs with one idempotency key the first
        // is stored and the second skipped, as with one statement per job. `notified` is there
        // only to run `n`: PostgreSQL skips a plain `SELECT` CTE that nothing reads (an
        // uncorrelated subquery, run once; never when nothing was inserted).
        let sql = format!(
            "{marker}WITH input AS ( \
               SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                    $6::text[], $7::int[], $8::int[], $9::timestamptz[], \
                                    $10::text[], $11::text[], $12::text[], $13::uuid[], \
                                    $14::text[], $15::text[], $19::bigint[], \
                                    $20::text[]) WITH ORDINALITY \
                 AS t(id, tenant, queue, kind, state, payload, priority, max_attempts, run_at, \
                      idempotency_key, correlation_id, project, run_id, inputs_hash, backoff, \
                      timeout_ms, limit_keys, ord)), \
             u AS ( \
               INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, max_attempts, \
                 run_at, created_at, updated_at, idempotency_key, correlation_id, project, run_id, \
                 inputs_hash, backoff, timeout_ms, limit_keys) \
               SELECT id, tenant, queue, kind, state, payload::jsonb, priority, max_attempts, \
                 run_at, $16, $16, idempotency_key, correlation_id, project, run_id, inputs_hash, \
                 backoff::jsonb, timeout_ms, \
                 CASE WHEN limit_keys IS NOT NULL \
                   THEN ARRAY(SELECT jsonb_array_elements_text(limit_keys::jsonb)) END \
               FROM input {guard} ORDER BY ord \
               ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
               DO NOTHING RETURNING *), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT u.tenant, 'enqueued', u.id, u.run_id, u.queue, u.project, u.kind, \
                      u.worker_id, u.correlation_id, $16, \
                      jsonb_build_object('to', u.state, 'run_at', u.run_at, 'priority', u.priority), \
                      u.inputs_hash, u.worker_version \
               FROM u JOIN input i ON i.id = u.id ORDER BY i.ord), \
             n AS (SELECT pg_notify($17, k || $18) FROM (SELECT DISTINCT u.tenant || '/' || u.queue \
                                                         AS k FROM u) d \
                   WHERE $21::text[] IS NULL OR k = ANY($21)) \
             SELECT *, (SELECT count(*) FROM n) AS notified FROM u"
        );
        let rows = sqlx::query(&sql)
            .bind(&ids)
            .bind(&tenants)
            .bind(&queues)
            .bind(&kinds)
            .bind(&states)
            .bind(&payloads)
            .bind(&priorities)
            .bind(&max_attempts)
            .bind(&run_ats)
            .bind(&keys)
            .bind(&correlation_ids)
            .bind(&projects)
            .bind(&run_ids)
            .bind(&hashes)
            .bind(&backoffs)
            .bind(now)
            .bind(READY_CHANNEL)
            .bind(origin.unwrap_or_default())
            .bind(&timeouts)
            .bind(&limit_keys)
            .bind(announce)
            .fetch_all(&mut *tx)
            .await?;
        rows.iter()
            .map(|row| decode_job(row).map(|job| (job.id, job)))
            .collect()
    }

    /// One job, enqueued by one statement outside any explicit transaction: one round trip
    /// and one WAL flush (an enqueue in a `BEGIN … COMMIT` took three round trips). With
    /// `lease`, the job is inserted already leased to that claimer
    /// ([`Store::enqueue_leased`](super::Store::enqueue_leased); an enqueue and a claim took
    /// six round trips and two flushes): its `enqueued` event says `queued`, then its `leased`
    /// event follows, as the two transactions would have written them, and no claimer is woken.
    /// Answers the stored row, or `None` when nothing was inserted: the idempotency key exists,
    /// or (with `lease`) the queue is paused, the tenant has limits (a gated claim must weigh
    /// the job: `crate::flow`) or any quota; without `lease`, when the tenant has a
    /// `max_queued`. A tenant's quota is one primary-key probe of `quotas` inside this
    /// statement; an enqueue it stops goes through the checked transaction instead
    /// (`store/quotas.rs`), and a lease through a claim.
    pub(super) async fn insert_one(
        &self,
        now: DateTime<Utc>,
        job: &NewJobRow,
        lease: Option<&ClaimParams>,
    ) -> StoreResult<Option<Job>> {
        // `n` runs only because the final SELECT reads it (see `insert_jobs`).
        let sql = format!(
            "WITH u AS ( \
               INSERT INTO jobs (id, tenant, queue, kind, state, payload, priority, attempt, \
                 max_attempts, lease_epoch, run_at, created_at, updated_at, started_at, \
                 lease_expires_at, lease_ttl_ms, idempotency_key, correlation_id, project, \
                 run_id, inputs_hash, backoff, worker_id, worker_version, timeout_ms, \
                 deadline_at, limit_keys) \
               SELECT $1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $8, $10, $11, $11, $12, \
                 LEAST($12 + $13 * interval '1 millisecond', d.deadline_at), $13, $14, $15, $16, \
                 $17, $18, $19::jsonb, $20, $21, $24, d.deadline_at, $25::text[] \
               FROM (SELECT $12 + COALESCE($24, (SELECT q.default_timeout_ms FROM queues q \
                       WHERE q.tenant = $2 AND q.name = $3)) * interval '1 millisecond' \
                     AS deadline_at) d \
               WHERE ($5 <> 'leased' OR (NOT EXISTS ( \
                 SELECT 1 FROM queues q WHERE q.tenant = $2 AND q.name = $3 AND q.paused) \
                 AND NOT EXISTS (SELECT 1 FROM limits l WHERE l.tenant = $2))) \
                 AND NOT EXISTS (SELECT 1 FROM quotas qt WHERE qt.tenant = $2 \
                   AND ($5 = 'leased' OR qt.max_queued IS NOT NULL)) \
               ON CONFLICT (tenant, queue, idempotency_key) WHERE idempotency_key IS NOT NULL \
               DO NOTHING RETURNING *), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT u.tenant, e.type, u.id, u.run_id, u.queue, u.project, u.kind, e.worker_id, \
                      u.correlation_id, $11, e.data, u.inputs_hash, \
                      CASE WHEN e.worker_id IS NULL THEN NULL ELSE u.worker_version END \
               FROM u CROSS JOIN LATERAL (VALUES \
                 (1, 'enqueued', NULL::text, jsonb_build_object( \
                   'to', CASE u.state WHEN 'leased' THEN 'queued' ELSE u.state END, \
                   'run_at', u.run_at, 'priority', u.priority)), \
                 (2, 'leased', u.worker_id, jsonb_build_object('from', 'queued', 'to', 'leased', \
                   'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                   'lease_expires_at', u.lease_expires_at, 'waited_ms', \
                   GREATEST(0, floor(extract(epoch FROM (u.started_at - u.run_at)) * 1000))::bigint))) \
                 AS e(ord, type, worker_id, data) \
               WHERE e.ord = 1 OR u.state = 'leased' \
               ORDER BY e.ord), \
             n AS (SELECT pg_notify($22, u.tenant || '/' || u.queue || $23) FROM u \
                   WHERE u.state <> 'leased' AND $26) \
             SELECT *, (SELECT count(*) FROM n) AS notified FROM u"
        );
        let backoff = job
            .backoff
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(internal)?;
        let (state, attempt, started_at, ttl_ms) = match lease {
            Some(claim) => ("leased", 1, Some(now), Some(claim.lease_ttl_ms as i64)),
            None => (job.state.as_str(), 0, None, None),
        };
        // A lease wakes nobody; a queued job is announced unless its queue was just now.
        let key = vec![queue_key(&job.tenant, &job.queue)];
        let queued = lease.is_none();
        let announced = if queued {
            self.announcer.take(&key)
        } else {
            Vec::new()
        };
        let row = sqlx::query(&sql)
            .bind(job.id)
            .bind(&job.tenant)
            .bind(&job.queue)
            .bind(&job.kind)
            .bind(state)
            .bind(job.payload.to_string())
            .bind(job.priority)
            .bind(attempt)
            .bind(job.max_attempts)
            .bind(job.run_at)
            .bind(now)
            .bind(started_at)
            .bind(ttl_ms)
            .bind(&job.idempotency_key)
            .bind(&job.correlation_id)
            .bind(&job.project)
            .bind(job.run_id)
            .bind(&job.inputs_hash)
            .bind(backoff)
            .bind(lease.map(|c| c.worker_id.as_str()))
            .bind(lease.and_then(|c| c.worker_version.as_deref()))
            .bind(READY_CHANNEL)
            .bind(&self.origin)
            .bind(job.timeout_ms.map(ms_int))
            .bind((!job.limit_keys.is_empty()).then_some(&job.limit_keys))
            .bind(!announced.is_empty())
            .fetch_optional(self.pool())
            .await?;
        let job = row.as_ref().map(decode_job).transpose()?;
        if queued && job.is_some() {
            self.announcer
                .owe(key, &announced, self.pool(), &self.origin);
        }
        Ok(job)
    }

    /// The stored job of `job`'s idempotency key, if it has one and it is stored (an enqueue
    /// that inserted nothing because of it is a replay).
    pub(super) async fn keyed(&self, job: &NewJobRow) -> StoreResult<Option<Job>> {
        if job.idempotency_key.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT * FROM jobs WHERE tenant = $1 AND queue = $2 AND idempotency_key = $3",
        )
        .bind(&job.tenant)
        .bind(&job.queue)
        .bind(&job.idempotency_key)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(decode_job).transpose()
    }

    /// [`Store::enqueue_leased`](super::Store::enqueue_leased), by [`Self::insert_one`].
    pub(super) async fn enqueue_leased_impl(
        &self,
        now: DateTime<Utc>,
        job: NewJobRow,
        claim: &ClaimParams,
    ) -> StoreResult<Option<(Job, Lease)>> {
        let Some(leased) = self.insert_one(now, &job, Some(claim)).await? else {
            return Ok(None);
        };
        let enqueued = as_enqueued(&leased);
        Ok(Some((enqueued, lease_of(leased)?)))
    }
}

/// How [`PostgresStore::insert_rows`]'s statement is planned, and whether it is guarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Planned at each execution: batches, whose events are written in input order by joining
    /// the inserted rows back to the input, which PostgreSQL, knowing the arrays' length,
    /// hashes.
    PerExecution,
    /// Inside a [`begin_by_index`](super::begin_by_index) transaction: planned once,
    /// generically, under that transaction's planner settings.
    ByIndex,
    /// Group commit's statement, outside any explicit transaction, guarded by the quota probe
    /// ([`PostgresStore::enqueue_group`]).
    Group,
}

impl Plan {
    /// The statement's leading comment and its guard. PostgreSQL keeps a generic plan with the
    /// prepared statement whatever the settings of later executions: a batch enqueue running
    /// the by-index text after a small enqueue got the by-index plan (nested loops over 1000
    /// rows; bulk enqueue at 1000 per request fell from 16.5k to 6.9k rows/s). A comment makes
    /// each form a prepared statement of its own.
    fn marker_and_guard(self) -> (&'static str, &'static str) {
        match self {
            Self::PerExecution => ("", ""),
            Self::ByIndex => ("/* by index */ ", ""),
            // Nothing is inserted while a tenant of the group has a `max_queued`: only the
            // checked transaction may admit its jobs (`store/quotas.rs`).
            Self::Group => (
                "/* group */ ",
                "WHERE NOT EXISTS (SELECT 1 FROM quotas qt WHERE qt.tenant = ANY($2::text[]) \
                   AND qt.max_queued IS NOT NULL)",
            ),
        }
    }
}

/// The stored job of each idempotency key of `jobs` that [`PostgresStore::insert_rows`] skipped
/// (not in `inserted`), by `(tenant, queue, key)`: one query, none when no key was skipped.
async fn stored_by_key(
    conn: &mut PgConnection,
    jobs: &[NewJobRow],
    inserted: &HashMap<Uuid, Job>,
) -> StoreResult<HashMap<(String, String, String), Job>> {
    let skipped: Vec<&NewJobRow> = jobs
        .iter()
        .filter(|new| new.idempotency_key.is_some() && !inserted.contains_key(&new.id))
        .collect();
    if skipped.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT * FROM jobs WHERE (tenant, queue, idempotency_key) IN \
         (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]))",
    )
    .bind(
        skipped
            .iter()
            .map(|j| j.tenant.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(skipped.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
    .bind(
        skipped
            .iter()
            .map(|j| j.idempotency_key.as_deref())
            .collect::<Vec<_>>(),
    )
    .fetch_all(conn)
    .await?;
    let mut existing = HashMap::with_capacity(rows.len());
    for row in &rows {
        let job = decode_job(row)?;
        let key = (
            job.tenant.clone(),
            job.queue.clone(),
            job.idempotency_key.clone().unwrap_or_default(),
        );
        existing.insert(key, job);
    }
    Ok(existing)
}

/// A job's `(tenant, queue, idempotency key)`, when it has a key.
fn key_of(job: &NewJobRow) -> Option<(String, String, String)> {
    job.idempotency_key
        .as_ref()
        .map(|k| (job.tenant.clone(), job.queue.clone(), k.clone()))
}
