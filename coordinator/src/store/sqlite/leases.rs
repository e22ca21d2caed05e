//! The lease hot path on SQLite: claiming jobs (ending timed-out attempts, burying expired
//! leases whose attempts are spent) and finishing leased jobs, each as one write transaction
//! (heartbeats: `sqlite_heartbeat`). No outcome is recorded from the attempt's run-time
//! deadline on (`super::timeouts`).
//!
//! Statements that name jobs by id write their `tenant` and `state` checks as `+tenant`,
//! `+jobs.state`: SQLite's documented way to keep a term from choosing an index. Without it,
//! a batch of 100 ids was planned as a walk of the whole tenant through `jobs_listing
//! (tenant, id)` with the batch probed per row (27 ms per batch at 100k jobs, against 3 ms
//! by primary key; W1 at 100k ran at half its 20k rate). See docs/postgres-hot-path.md for the
//! same trap on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState};
use serde_json::{Value, json};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::SqliteStore;
use super::dag::SqliteDag;
use super::direct::{Arg, Exec, numbered_rows, placeholders, required, uuid_at};
use super::limits::parse_keys;
use super::rows::{BATCH_ROWS, append_events, append_events_in, decode_job, json_text, micros};
use super::timeouts::end_timed_out;
use crate::flow::gate::Gate;
use crate::flow::keys::job_keys;
use crate::store::dag::{self, DagEffects};
use crate::store::timeouts::{SWEEP_LIMIT, TIMED_OUT};
use crate::store::{
    ClaimParams, Claimed, Finished, GateCandidate, Outcome, OutcomeKind, StoreError, StoreResult,
    event_type_for, gate_candidates, gated_read, lease_of,
};

/// Applies `outcomes` (distinct jobs, at most [`BATCH_ROWS`]) with one `UPDATE … FROM`, each
/// fenced by its token in the WHERE clause (an outcome whose lease is gone matches no row and
/// writes nothing; SET expressions read the row as it was). Returns the updated job for each
/// outcome, `None` where the lease was not held under that token. Writes no events.
async fn finish_chunk(
    exec: &mut Exec<'_>,
    now: DateTime<Utc>,
    tenant: &str,
    outcomes: &[Outcome],
) -> StoreResult<Vec<Option<Job>>> {
    /// One outcome's values, in the column order of `i` below.
    struct Input {
        outcome: &'static str,
        result: Option<String>,
        artifacts: Option<String>,
        retryable: bool,
        retry_at: Option<i64>,
        error: Option<String>,
    }
    let inputs: Vec<Input> = outcomes
        .iter()
        .map(|o| match &o.kind {
            OutcomeKind::Complete { result, artifacts } => Input {
                outcome: "complete",
                result: Some(json_text(result)),
                artifacts: Some(json!(artifacts).to_string()),
                retryable: false,
                retry_at: None,
                error: None,
            },
            OutcomeKind::Fail { error, retry_at } => Input {
                outcome: "fail",
                result: None,
                artifacts: None,
                retryable: error.retryable,
                retry_at: Some(micros(*retry_at)),
                error: Some(json!(error).to_string()),
            },
            OutcomeKind::Release { .. } => Input {
                outcome: "release",
                result: None,
                artifacts: None,
                retryable: false,
                retry_at: None,
                error: None,
            },
        })
        .collect();
    let t = micros(now);
    let mut sql = String::from(
        "WITH i(id, token, outcome, result, artifacts, retryable, retry_at, error) AS (VALUES ",
    );
    // `?1` is the time and `?2` the tenant; the inputs are numbered from `?3` on.
    sql.push_str(&numbered_rows(outcomes.len(), 8, 3));
    let mut args = Vec::with_capacity(outcomes.len() * 8 + 2);
    args.extend([Arg::Int(t), Arg::Text(tenant)]);
    for (o, input) in outcomes.iter().zip(&inputs) {
        args.extend([
            Arg::uuid(&o.job_id),
            Arg::Int(o.fencing_token),
            Arg::Text(input.outcome),
            Arg::opt_text(input.result.as_deref()),
            Arg::opt_text(input.artifacts.as_deref()),
            Arg::Int(i64::from(input.retryable)),
            Arg::opt_int(input.retry_at),
            Arg::opt_text(input.error.as_deref()),
        ]);
    }
    // Per kind exactly the SET list of the one-job statements it replaces; the terminal test
    // of a failure is spelled twice because SET expressions see the old row.
    sql.push_str(
        ") UPDATE jobs SET \
         state = CASE i.outcome \
           WHEN 'complete' THEN 'succeeded' \
           WHEN 'fail' THEN CASE WHEN jobs.cancel_requested = 1 THEN 'cancelled' \
             WHEN i.retryable AND jobs.attempt < jobs.max_attempts THEN 'queued' ELSE 'dead' END \
           ELSE CASE WHEN jobs.cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END END, \
         attempt = CASE WHEN i.outcome = 'release' THEN \
           CASE WHEN jobs.cancel_requested = 1 THEN jobs.attempt ELSE jobs.attempt - 1 END \
           ELSE jobs.attempt END, \
         result = CASE WHEN i.outcome = 'complete' THEN i.result ELSE jobs.result END, \
         artifacts = CASE WHEN i.outcome = 'complete' THEN i.artifacts ELSE jobs.artifacts END, \
         last_error = CASE WHEN i.outcome = 'fail' THEN i.error ELSE jobs.last_error END, \
         run_at = CASE i.outcome WHEN 'fail' THEN i.retry_at WHEN 'release' THEN ?1 \
           ELSE jobs.run_at END, \
         finished_at = CASE i.outcome WHEN 'complete' THEN ?1 \
           WHEN 'fail' THEN CASE WHEN jobs.cancel_requested = 1 OR NOT i.retryable \
             OR jobs.attempt >= jobs.max_attempts THEN ?1 ELSE NULL END \
           ELSE CASE WHEN jobs.cancel_requested = 1 THEN ?1 ELSE NULL END END, \
         updated_at = ?1, lease_expires_at = NULL FROM i \
         WHERE jobs.id = i.id AND +jobs.tenant = ?2 \
           AND +jobs.state = 'leased' AND jobs.lease_epoch = i.token \
           AND (jobs.deadline_at IS NULL OR jobs.deadline_at > ?1) RETURNING *",
    );
    let mut updated: HashMap<Uuid, Job> = exec.fetch_jobs_by_id(&sql, &args).await?;
    Ok(outcomes.iter().map(|o| updated.remove(&o.job_id)).collect())
}

/// The ids among `ids` (in `tenant`) for which `filter` (a condition on `jobs`) holds, with
/// their state; one query per [`BATCH_ROWS`] ids.
async fn states_of(
    exec: &mut Exec<'_>,
    tenant: &str,
    ids: &[Uuid],
    filter: &str,
) -> StoreResult<HashMap<Uuid, JobState>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(BATCH_ROWS) {
        let sql = format!(
            "SELECT id, state FROM jobs WHERE +tenant = ? AND {filter} AND id IN ({})",
            placeholders(chunk.len())
        );
        let mut args = Vec::with_capacity(chunk.len() + 1);
        args.push(Arg::Text(tenant));
        args.extend(chunk.iter().map(Arg::uuid));
        let rows = exec
            .fetch(&sql, &args, |row| {
                let id = required(uuid_at(row, 0)?, "id")?;
                let state = row.text(1)?.unwrap_or_default();
                let state = JobState::parse(state)
                    .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
                Ok((id, state))
            })
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// A chunk of outcomes applied: the job recorded for each (`None` where the lease was lost)
/// and the current state of each job whose lease was lost (for its answer).
struct ChunkFinished {
    updated: Vec<Option<Job>>,
    current: HashMap<Uuid, JobState>,
}

/// [`finish_chunk`], then the events of the outcomes recorded (one `INSERT`, in input order)
/// and the states of the jobs whose lease was lost.
async fn finish_chunk_with_events(
    exec: &mut Exec<'_>,
    now: DateTime<Utc>,
    tenant: &str,
    chunk: &[Outcome],
) -> StoreResult<ChunkFinished> {
    let updated = finish_chunk(exec, now, tenant, chunk).await?;
    let lost = crate::store::lost_leases(chunk, &updated);
    let current = if lost.is_empty() {
        HashMap::new()
    } else {
        states_of(exec, tenant, &lost, "1").await?
    };
    let events: Vec<(&Job, &str, Value)> = chunk
        .iter()
        .zip(&updated)
        .filter_map(|(outcome, job)| job.as_ref().map(|job| (outcome, job)))
        .map(|(outcome, job)| {
            let mut data = match &outcome.kind {
                OutcomeKind::Complete { artifacts, .. } => json!({"artifacts": artifacts.len()}),
                OutcomeKind::Fail { error, retry_at } => {
                    json!({"error": error, "retry_at": retry_at})
                }
                OutcomeKind::Release { undelivered: true } => json!({"reason": "undelivered"}),
                OutcomeKind::Release { undelivered: false } => json!({}),
            };
            data["from"] = json!("leased");
            data["to"] = json!(job.state);
            data["fencing_token"] = json!(job.fencing_token);
            data["attempt"] = json!(job.attempt);
            (job, event_type_for(job.state, &outcome.kind), data)
        })
        .collect();
    append_events_in(exec, &events, now).await?;
    Ok(ChunkFinished { updated, current })
}

/// A job chosen by a claim, in claim order.
struct Candidate {
    id: Uuid,
    /// Taken over from an expired lease (else it was queued).
    expired: bool,
    run_id: Option<Uuid>,
    /// Its keys (`crate::flow::keys::job_keys`), read for a gated claim only.
    keys: Vec<String>,
}

/// Expired leases whose attempts are spent: they end `dead` instead of being re-leased.
async fn bury_exhausted(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    params: &ClaimParams,
    fx: &mut DagEffects,
) -> StoreResult<u64> {
    let mut qb = QueryBuilder::<Sqlite>::new("UPDATE jobs SET state = 'dead', finished_at = ");
    qb.push_bind(micros(now))
        .push(", updated_at = ")
        .push_bind(micros(now))
        .push(", lease_expires_at = NULL, last_error = ")
        .push_bind(
            json!({"class": "lease_expired", "message": "lease expired and attempts are spent", "retryable": false})
                .to_string(),
        )
        .push(" WHERE tenant = ")
        .push_bind(&params.tenant)
        .push(" AND state = 'leased' AND lease_expires_at <= ")
        .push_bind(micros(now))
        .push(format!(" AND attempt >= max_attempts AND NOT ({TIMED_OUT}) AND queue IN ("));
    let mut sep = qb.separated(", ");
    for q in &params.queues {
        sep.push_bind(q);
    }
    qb.push(") RETURNING *");
    let rows = qb.build().fetch_all(&mut *conn).await?;
    let jobs = rows
        .iter()
        .map(decode_job)
        .collect::<StoreResult<Vec<_>>>()?;
    // Events in the order the rows came back (as before), one multi-row `INSERT` per group:
    // a job that belongs to a run ends its group, so its DAG bookkeeping (and events) come
    // right after its own event, as with one job at a time.
    let mut start = 0;
    while start < jobs.len() {
        let mut end = start;
        while end < jobs.len() {
            end += 1;
            if jobs[end - 1].run_id.is_some() {
                break;
            }
        }
        let events: Vec<(&Job, &str, Value)> = jobs[start..end]
            .iter()
            .map(|job| {
                (
                    job,
                    "dead",
                    json!({"from": "leased", "to": "dead", "reason": "lease_expired",
                           "fencing_token": job.fencing_token}),
                )
            })
            .collect();
        append_events(conn, &events, now).await?;
        dag::after_job_change(&mut SqliteDag(conn), (&jobs[end - 1]).into(), now, fx).await?;
        start = end;
    }
    Ok(jobs.len() as u64)
}

/// The jobs a claim may take, in claim order: ready queued jobs and expired leases (two
/// index-friendly halves, merged), in the claim's queues that are not paused; and, in the same
/// statement (no extra trip when there are none), the ids of the attempts in the claim's
/// queues whose run-time deadline has passed (at most [`SWEEP_LIMIT`]), for the claim to end.
///
/// A gated claim (`gated`: how many to read, [`gated_read`]) reads their keys too.
async fn select_candidates(
    exec: &mut Exec<'_>,
    now: DateTime<Utc>,
    params: &ClaimParams,
    gated: Option<u32>,
) -> StoreResult<(Vec<Candidate>, Vec<Uuid>)> {
    let t = micros(now);
    let limit = i64::from(gated.unwrap_or(params.max_jobs));
    let gated = gated.is_some();
    let queues = placeholders(params.queues.len());
    let half = |state_test: &str, queue_test: &str, extra: &str| {
        format!(
            "SELECT id, state, priority, run_at, run_id, queue, kind, limit_keys{extra} FROM jobs \
             WHERE tenant = ? AND {state_test} <= ? AND {queue_test} \
             AND queue NOT IN (SELECT name FROM queues WHERE paused = 1 AND tenant = ?)"
        )
    };
    let ready = "state = 'queued' AND run_at";
    let expired = format!("state = 'leased' AND NOT ({TIMED_OUT}) AND lease_expires_at");
    let order = "ORDER BY priority DESC, run_at, id";
    let mut args = Vec::with_capacity(12 * params.queues.len() + 9);
    // The candidates. From one queue: its first `limit` in claim order. From several: each
    // queue's first `limit`, ranked within their queue, then taken rank by rank, the queues'
    // order within a rank turning from claim to claim (`turn`): every queue is served whatever
    // the others' depths and priorities (a backlog in one no longer starves the rest), and
    // priorities hold within a queue.
    let candidates = if let [queue] = params.queues.as_slice() {
        for _ in 0..2 {
            args.extend([Arg::Text(&params.tenant), Arg::Int(t), Arg::Text(queue)]);
            args.push(Arg::Text(&params.tenant));
        }
        args.push(Arg::Int(limit));
        format!(
            "SELECT *, 1 AS rank, 0 AS turn FROM ({} UNION ALL {} {order} LIMIT ?)",
            half(ready, "queue = ?", ""),
            half(&expired, "queue = ?", ""),
        )
    } else {
        let mut branches = Vec::with_capacity(2 * params.queues.len());
        for (pos, queue) in params.queues.iter().enumerate() {
            for state_test in [ready, expired.as_str()] {
                let extra = format!(", {pos} AS pos");
                branches.push(format!(
                    "SELECT * FROM ({} {order} LIMIT ?)",
                    half(state_test, "queue = ?", &extra)
                ));
                args.extend([Arg::Text(&params.tenant), Arg::Int(t), Arg::Text(queue)]);
                args.extend([Arg::Text(&params.tenant), Arg::Int(limit)]);
            }
        }
        args.push(Arg::Int(limit));
        // A literal: at most one statement text per queue of the claim.
        let turn = crate::store::claim_turn(params.queues.len());
        format!(
            "SELECT id, state, priority, run_at, run_id, queue, kind, limit_keys, rank, \
               (pos + {turn}) % {n} AS turn FROM ( \
               SELECT *, row_number() OVER (PARTITION BY pos {order}) AS rank FROM ({branches})) \
             ORDER BY rank, turn, priority DESC, run_at, id LIMIT ?",
            branches = branches.join(" UNION ALL "),
            n = params.queues.len(),
        )
    };
    // The outer `ORDER BY` keeps the candidates in claim order and puts the timed-out last.
    let sql = format!(
        "SELECT * FROM (SELECT * FROM ({candidates}) \
         UNION ALL SELECT * FROM (SELECT id, 'timed_out', priority, run_at, run_id, queue, kind, \
           limit_keys, 0, 0 FROM jobs \
           WHERE tenant = ? AND state = 'leased' AND lease_expires_at <= ? AND {TIMED_OUT} \
           AND queue IN ({queues}) LIMIT {SWEEP_LIMIT})) \
         ORDER BY state = 'timed_out', rank, turn, priority DESC, run_at, id"
    );
    args.extend([Arg::Text(&params.tenant), Arg::Int(t)]);
    args.extend(params.queues.iter().map(|q| Arg::Text(q)));
    let rows = exec
        .fetch(&sql, &args, |row| {
            let timed_out = row.text(1)? == Some("timed_out");
            let keys = if gated && !timed_out {
                job_keys(
                    row.text(5)?.unwrap_or_default(),
                    row.text(6)?.unwrap_or_default(),
                    &parse_keys(row.text(7)?)?,
                )
            } else {
                Vec::new()
            };
            let candidate = Candidate {
                id: required(uuid_at(row, 0)?, "id")?,
                expired: row.text(1)? == Some("leased"),
                run_id: uuid_at(row, 4)?,
                keys,
            };
            Ok((candidate, timed_out))
        })
        .await?;
    let mut candidates = Vec::with_capacity(rows.len());
    let mut timed_out = Vec::new();
    for (candidate, late) in rows {
        if late {
            timed_out.push(candidate.id);
        } else {
            candidates.push(candidate);
        }
    }
    Ok((candidates, timed_out))
}

/// Leases `chunk` (at most [`BATCH_ROWS`] candidates) with one `UPDATE … RETURNING` and
/// writes its events (`lease_expired` for a lease taken over, then `leased`); returns the
/// jobs in claim order.
async fn lease_chunk(
    exec: &mut Exec<'_>,
    now: DateTime<Utc>,
    params: &ClaimParams,
    chunk: &[Candidate],
) -> StoreResult<Vec<Job>> {
    let t = micros(now);
    let expires = micros(now + chrono::Duration::milliseconds(params.lease_ttl_ms as i64));
    let ttl = params.lease_ttl_ms as i64;
    // The attempt's deadline: the job's own timeout, else its queue's default (none if
    // neither); the lease never outlives it. The ids are numbered from `?6` on.
    let timeout = "COALESCE(timeout_ms, (SELECT q.default_timeout_ms FROM queues q \
                   WHERE q.tenant = jobs.tenant AND q.name = jobs.queue))";
    let sql = format!(
        "UPDATE jobs SET state = 'leased', attempt = attempt + 1, \
         lease_epoch = lease_epoch + 1, started_at = ?1, \
         deadline_at = ?1 + 1000 * {timeout}, \
         lease_expires_at = MIN(?2, COALESCE(?1 + 1000 * {timeout}, ?2)), lease_ttl_ms = ?3, \
         worker_id = ?4, worker_version = ?5, updated_at = ?1 WHERE id IN {} RETURNING *",
        numbered_rows(1, chunk.len(), 6)
    );
    let mut args = vec![
        Arg::Int(t),
        Arg::Int(expires),
        Arg::Int(ttl),
        Arg::Text(&params.worker_id),
        Arg::opt_text(params.worker_version.as_deref()),
    ];
    args.extend(chunk.iter().map(|c| Arg::uuid(&c.id)));
    let mut updated: HashMap<Uuid, Job> = exec.fetch_jobs_by_id(&sql, &args).await?;
    // RETURNING order is unspecified: put the jobs back in claim order.
    let jobs = chunk
        .iter()
        .map(|cand| {
            updated
                .remove(&cand.id)
                .ok_or_else(|| StoreError::Internal(format!("claimed job {} vanished", cand.id)))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let mut events: Vec<(&Job, &str, Value)> = Vec::with_capacity(jobs.len() + 1);
    for (cand, job) in chunk.iter().zip(&jobs) {
        if cand.expired {
            events.push((
                job,
                "lease_expired",
                json!({"from": "leased", "to": "queued", "fencing_token": job.fencing_token - 1}),
            ));
        }
        events.push((
            job,
            "leased",
            json!({"from": "queued", "to": "leased",
                   "fencing_token": job.fencing_token, "attempt": job.attempt,
                   "lease_expires_at": job.lease_expires_at,
                   "waited_ms": (now - job.run_at).num_milliseconds().max(0)}),
        ));
    }
    append_events_in(exec, &events, now).await?;
    Ok(jobs)
}

impl SqliteStore {
    pub(super) async fn claim_impl(
        &self,
        now: DateTime<Utc>,
        params: &ClaimParams,
    ) -> StoreResult<Claimed> {
        let mut tx = self.begin_write().await?;
        let mut fx = DagEffects::default();
        let rules = if params.ungated {
            Vec::new()
        } else {
            super::limits::rules(&mut tx, &params.tenant).await?
        };
        let buried = bury_exhausted(&mut tx, now, params, &mut fx).await?;
        // The single writer serializes claims: nothing else counts or draws meanwhile. What the
        // limits covering the whole claim leave room for bounds how much is read.
        let mut gate =
            (!rules.is_empty()).then(|| Gate::new(now, &rules).with_batch(params.max_jobs));
        let mut covering = Vec::new();
        let mut read = None;
        if let Some(gate) = gate.as_mut() {
            super::limits::count_leases(&mut tx, &params.tenant, gate).await?;
            covering = gate.covering_buckets(&params.queues);
            super::limits::load_levels(&mut tx, &params.tenant, &covering, gate).await?;
            read = Some(gated_read(gate, &params.queues, params.max_jobs));
        }
        // The candidate search runs before its size is known: guess from the latest claim
        // (under load claims fill up; an idle worker's claim finds one job or none).
        let guess = self.last_claim_size.load(Ordering::Relaxed);
        let (mut candidates, late) = select_candidates(
            &mut Exec::for_rows(&mut tx, guess).await?,
            now,
            params,
            read,
        )
        .await?;
        self.last_claim_size
            .store(candidates.len(), Ordering::Relaxed);
        let mut held = None;
        if let Some(mut gate) = gate {
            let mut buckets = gate.stateful_buckets(candidates.iter().map(|c| c.keys.as_slice()));
            buckets.retain(|b| !covering.contains(b));
            super::limits::load_levels(&mut tx, &params.tenant, &buckets, &mut gate).await?;
            let gated: Vec<GateCandidate> = candidates
                .iter_mut()
                .map(|c| GateCandidate {
                    keys: std::mem::take(&mut c.keys),
                    lease: true,
                    expired: c.expired,
                })
                .collect();
            let mut taken = gate_candidates(&mut gate, &gated, params.max_jobs).into_iter();
            candidates.retain(|_| taken.next().unwrap_or(false));
            super::limits::save_levels(&mut tx, &params.tenant, &gate).await?;
            held = gate.held();
        }
        // Leases are granted with one `UPDATE` per chunk of the candidates, in claim order. As
        // in `finish`, a chunk ends after a job of a run, so that run's status is refreshed
        // (and its event written) before the next job is leased, as with one job at a time.
        let mut leases = Vec::with_capacity(candidates.len());
        let mut reclaimed = 0;
        let mut start = 0;
        while start < candidates.len() {
            let mut end = start;
            while end < candidates.len() && end - start < BATCH_ROWS {
                end += 1;
                if candidates[end - 1].run_id.is_some() {
                    break;
                }
            }
            let chunk = &candidates[start..end];
            let mut exec = Exec::for_rows(&mut tx, chunk.len()).await?;
            let jobs = lease_chunk(&mut exec, now, params, chunk).await?;
            drop(exec);
            reclaimed += chunk.iter().filter(|c| c.expired).count() as u64;
            // Only the last job of a chunk can belong to a run.
            if let Some(run_id) = jobs.last().and_then(|job| job.run_id) {
                dag::refresh_run_status(&mut SqliteDag(&mut tx), run_id, now, &mut fx).await?;
            }
            for job in jobs {
                leases.push(lease_of(job)?);
            }
            start = end;
        }
        // After the leases, as on PostgreSQL (where one statement picks both): an attempt that
        // times out now is never leased again by this same claim.
        let timed_out = end_timed_out(&mut tx, now, &late, &mut fx).await?;
        tx.commit().await?;
        fx.after_commit(&self.ready);
        Ok(Claimed {
            leases,
            expired: buried + reclaimed,
            timed_out,
            held,
        })
    }

    pub(super) async fn finish_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>> {
        // Outcomes are applied in input order, one `UPDATE … FROM` per chunk of the batch. A
        // chunk ends before a job named a second time (that report must see the first one's
        // effect) and after a job that belongs to a run (its DAG bookkeeping must run, and
        // write its events, before the next outcome), so results and events are exactly
        // those of applying the outcomes one by one. A batch without runs or repeats (and at
        // most BATCH_ROWS long) is one chunk: one UPDATE, one INSERT of its events, and one
        // SELECT if some lease was lost.
        let mut tx = self.begin_write().await?;
        // `run_id` never changes, so this holds for the whole transaction.
        let in_run: HashSet<Uuid> = if outcomes.len() > 1 {
            let ids: Vec<Uuid> = outcomes.iter().map(|o| o.job_id).collect();
            let mut exec = Exec::for_rows(&mut tx, ids.len()).await?;
            states_of(&mut exec, tenant, &ids, "run_id IS NOT NULL")
                .await?
                .into_keys()
                .collect()
        } else {
            HashSet::new()
        };
        let mut out = Vec::with_capacity(outcomes.len());
        let mut fx = DagEffects::default();
        let mut start = 0;
        while start < outcomes.len() {
            let end = crate::store::outcome_chunk_end(&outcomes, start, BATCH_ROWS, &in_run);
            let chunk = &outcomes[start..end];
            let ChunkFinished { updated, current } = finish_chunk_with_events(
                &mut Exec::for_rows(&mut tx, chunk.len()).await?,
                now,
                tenant,
                chunk,
            )
            .await?;
            // Only the last job of a chunk can belong to a run (no-op for the others).
            for job in updated.iter().flatten() {
                dag::after_job_change(&mut SqliteDag(&mut tx), job.into(), now, &mut fx).await?;
            }
            for (outcome, job) in chunk.iter().zip(updated) {
                out.push(match job {
                    Some(job) => Finished::Ok(Box::new(job)),
                    None => match current.get(&outcome.job_id) {
                        Some(state) => Finished::LeaseLost(*state),
                        None => Finished::NotFound,
                    },
                });
            }
            start = end;
        }
        tx.commit().await?;
        fx.after_commit(&self.ready);
        Ok(out)
    }
}
