//! The lease hot path on PostgreSQL: claiming (merged or per-queue candidate scans, ending
//! timed-out attempts) and recording outcomes, each retried on deadlock or serialization
//! failure (heartbeats: `postgres_heartbeat`). No outcome is recorded from the attempt's
//! run-time deadline on (`super::timeouts`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::rows::{EVENT_COLUMNS, decode_job, internal};
use super::{PostgresStore, READY_CHANNEL, begin_by_index_on};
use crate::flow::gate::Gate;
use crate::flow::keys::job_keys;
use crate::store::dag::{self, DagEffects, JobChange};
use crate::store::timeouts::{SWEEP_LIMIT, TIMED_OUT};
use crate::store::{
    ClaimParams, Claimed, Finished, GateCandidate, Outcome, OutcomeKind, StoreError, StoreResult,
    gate_candidates, gated_read, lease_of,
};

/// Whether an error is worth running the same transaction again (deadlock, serialization).
pub(super) fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01") | Some("40001")))
}

/// A recorded outcome as [`finish_chunk`] reads it back.
enum Recorded {
    /// The whole row: for the single-job endpoints.
    Job(Box<Job>),
    /// The new state and run only: all the batch endpoints report, and all a run's
    /// bookkeeping needs. Returning whole rows made PostgreSQL render, and the coordinator
    /// parse, every JSON column of every finished job (W1 PostgreSQL ~9% faster without;
    /// bench/README.md).
    State(JobState, Option<Uuid>),
}

impl Recorded {
    fn state(&self) -> JobState {
        match self {
            Self::Job(job) => job.state,
            Self::State(state, _) => *state,
        }
    }

    /// What the DAG bookkeeping needs to know about the outcome of `id`.
    fn change(&self, id: Uuid) -> JobChange {
        match self {
            Self::Job(job) => JobChange::from(job.as_ref()),
            Self::State(state, run_id) => JobChange {
                id,
                run_id: *run_id,
                state: *state,
            },
        }
    }
}

/// Applies a prefix of `outcomes` (distinct jobs) in one statement, each fenced by its token,
/// with one event per recorded outcome in input order. The prefix ends after the first job that
/// belongs to a run (its DAG bookkeeping must run before the next outcome is applied), or covers
/// all of `outcomes` when none does: the statement finds that cut itself, which spares a round
/// trip to look up the runs first. Returns what was recorded for each outcome of the prefix (the
/// whole row if `whole`, else its state), `None` where the lease was not held under that token
/// (nothing written); the prefix is as long as the returned list.
async fn finish_chunk(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    tenant: &str,
    outcomes: &[Outcome],
    whole: bool,
) -> StoreResult<Vec<Option<Recorded>>> {
    let n = outcomes.len();
    let mut ids = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut results: Vec<Option<String>> = Vec::with_capacity(n);
    let mut artifact_lists: Vec<Option<String>> = Vec::with_capacity(n);
    let mut retryable = Vec::with_capacity(n);
    let mut retry_at = Vec::with_capacity(n);
    let mut errors: Vec<Option<String>> = Vec::with_capacity(n);
    for outcome in outcomes {
        ids.push(outcome.job_id);
        tokens.push(outcome.fencing_token);
        let (kind, result, artifacts, error) = match &outcome.kind {
            OutcomeKind::Complete { result, artifacts } => (
                "complete",
                Some(result.to_string()),
                Some(serde_json::to_string(artifacts).map_err(internal)?),
                None,
            ),
            OutcomeKind::Fail { error, .. } => (
                "fail",
                None,
                None,
                Some(serde_json::to_string(error).map_err(internal)?),
            ),
            OutcomeKind::Release { undelivered } => (
                if *undelivered {
                    "undelivered"
                } else {
                    "release"
                },
                None,
                None,
                None,
            ),
        };
        kinds.push(kind);
        results.push(result);
        artifact_lists.push(artifacts);
        errors.push(error);
        match &outcome.kind {
            OutcomeKind::Fail {
                error,
                retry_at: at,
            } => {
                retryable.push(error.retryable);
                retry_at.push(*at);
            }
            _ => {
                retryable.push(false);
                retry_at.push(now);
            }
        }
    }
    // The fencing check lives in the WHERE clause of the one UPDATE: an outcome whose lease is
    // gone matches no row and writes nothing. SET expressions read the row as it was. `cut`
    // probes the primary key once per outcome: the `LIMIT 1` keeps it a nested loop whatever
    // the statistics say (a planner short of them on a freshly filled table may otherwise pick
    // a join that reads the whole table, as the look-up this replaces once did).
    let sql = format!(
        "WITH input AS ( \
           SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                                $6::bool[], $7::timestamptz[], $8::text[]) WITH ORDINALITY \
             AS t(id, token, outcome, result, artifacts, retryable, retry_at, error, ord)), \
         cut AS (SELECT COALESCE(min(i.ord), $11) AS at FROM input i CROSS JOIN LATERAL \
           (SELECT 1 FROM jobs j WHERE j.id = i.id AND j.run_id IS NOT NULL LIMIT 1) r), \
         u AS ( \
           UPDATE jobs j SET \
             state = CASE i.outcome \
               WHEN 'complete' THEN 'succeeded' \
               WHEN 'fail' THEN CASE WHEN j.cancel_requested THEN 'cancelled' \
                 WHEN i.retryable AND j.attempt < j.max_attempts THEN 'queued' ELSE 'dead' END \
               ELSE CASE WHEN j.cancel_requested THEN 'cancelled' ELSE 'queued' END END, \
             attempt = CASE WHEN i.outcome IN ('release', 'undelivered') AND NOT j.cancel_requested \
               THEN j.attempt - 1 ELSE j.attempt END, \
             result = CASE WHEN i.outcome = 'complete' THEN i.result::jsonb ELSE j.result END, \
             artifacts = CASE WHEN i.outcome = 'complete' THEN i.artifacts::jsonb \
               ELSE j.artifacts END, \
             last_error = CASE WHEN i.outcome = 'fail' THEN i.error::jsonb ELSE j.last_error END, \
             run_at = CASE WHEN i.outcome = 'fail' THEN i.retry_at \
               WHEN i.outcome IN ('release', 'undelivered') THEN $9 \
               ELSE j.run_at END, \
             finished_at = CASE i.outcome \
               WHEN 'complete' THEN $9 \
               WHEN 'fail' THEN CASE WHEN j.cancel_requested OR NOT i.retryable \
                 OR j.attempt >= j.max_attempts THEN $9 END \
               ELSE CASE WHEN j.cancel_requested THEN $9 END END, \
             updated_at = $9, \
             lease_expires_at = NULL \
           FROM input i \
           WHERE j.id = i.id AND j.tenant = $10 AND j.state = 'leased' AND j.lease_epoch = i.token \
             AND (j.deadline_at IS NULL OR j.deadline_at > $9) \
             AND i.ord <= (SELECT at FROM cut) \
           RETURNING j.*, i.ord, i.outcome), \
         ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
           SELECT u.tenant, \
                  CASE u.outcome WHEN 'complete' THEN 'succeeded' \
                    WHEN 'fail' THEN CASE u.state WHEN 'queued' THEN 'retry_scheduled' ELSE u.state END \
                    ELSE CASE u.state WHEN 'queued' THEN 'released' ELSE u.state END END, \
                  u.id, u.run_id, u.queue, u.project, u.kind, u.worker_id, u.correlation_id, $9, \
                  CASE u.outcome \
                    WHEN 'complete' THEN jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                      'artifacts', jsonb_array_length(u.artifacts)) \
                    WHEN 'fail' THEN jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                      'error', u.last_error, 'retry_at', u.run_at) \
                    WHEN 'undelivered' THEN jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                      'reason', 'undelivered') \
                    ELSE jsonb_build_object('from', 'leased', 'to', u.state, \
                      'fencing_token', u.lease_epoch, 'attempt', u.attempt) END, \
                  u.inputs_hash, u.worker_version \
           FROM u ORDER BY u.ord) \
         {answer}",
        // The cut rides on every row, and on a row of its own when nothing was recorded.
        answer = if whole {
            "SELECT c.at AS cut, u.* FROM cut c LEFT JOIN u ON true ORDER BY u.ord"
        } else {
            "SELECT c.at AS cut, u.ord, u.state, u.run_id FROM cut c LEFT JOIN u ON true"
        },
    );
    let rows = sqlx::query(&sql)
        .bind(&ids)
        .bind(&tokens)
        .bind(&kinds)
        .bind(&results)
        .bind(&artifact_lists)
        .bind(&retryable)
        .bind(&retry_at)
        .bind(&errors)
        .bind(now)
        .bind(tenant)
        .bind(n as i64)
        .fetch_all(&mut *tx)
        .await?;
    let cut = match rows.first() {
        Some(row) => row.try_get::<i64, _>("cut")?,
        None => {
            return Err(StoreError::Internal(
                "an outcome batch came back without its cut".into(),
            ));
        }
    };
    let covered = usize::try_from(cut)
        .ok()
        .filter(|c| (1..=n).contains(c))
        .ok_or_else(|| StoreError::Internal(format!("outcome cut {cut} out of range")))?;
    let mut out: Vec<Option<Recorded>> = (0..covered).map(|_| None).collect();
    for row in &rows {
        let Some(ord) = row.try_get::<Option<i64>, _>("ord")? else {
            continue;
        };
        let slot = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| StoreError::Internal(format!("outcome ordinal {ord} out of range")))?;
        *slot = Some(if whole {
            Recorded::Job(Box::new(decode_job(row)?))
        } else {
            let state: String = row.try_get("state")?;
            Recorded::State(
                JobState::parse(&state)
                    .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?,
                row.try_get("run_id")?,
            )
        });
    }
    Ok(out)
}

/// The current state of each of `ids` that exists in `tenant` (for lease-lost answers).
async fn current_states(
    tx: &mut PgConnection,
    tenant: &str,
    ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, JobState>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query("SELECT id, state FROM jobs WHERE tenant = $1 AND id = ANY($2)")
        .bind(tenant)
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            let state = JobState::parse(&state)
                .ok_or_else(|| StoreError::Internal(format!("unknown state {state}")))?;
            Ok((row.try_get("id")?, state))
        })
        .collect()
}

/// Whether a claim's candidate scan locks the rows it reads.
#[derive(Clone, Copy)]
enum Lock {
    /// `FOR UPDATE SKIP LOCKED`: concurrent claimers take different rows (an ungated claim).
    SkipLocked,
    /// Plain reads: a gated claim holds its tenant's limits lock, so no other claim of the
    /// tenant runs meanwhile, and it reads far more candidates than it leases; locking them all
    /// wrote a lock into every one of those rows (W8 on PostgreSQL: 551 leases/s of 2000,
    /// 1.6 s of database CPU per 1000 jobs). The claim's `UPDATE` checks each chosen row's
    /// state again instead.
    None,
}

/// The body of the claim's `cand` CTE (`$1` tenant, `$2` the sorted queue names, `$3` now,
/// `$4` how many; `queues` how many queues `$2` names): rows `(id, prev, exhausted,
/// queue_timeout, rank, turn)`, at most `$4`, each locked as `lock` says, in claim
/// order: from one queue priority descending, `run_at`, id; from several, by `rank` (the place
/// within its queue) and `turn`, then that order. `queue_timeout` is the queue's
/// `default_timeout_ms`. Expired leases that reached their run-time deadline are
/// not candidates: the claim ends them as timeouts instead (`TIMED_OUT`).
///
/// Per queue, two branches each lock their first `$4` free rows in index order: due queued jobs
/// (`jobs_ready`, already in claim order) and expired leases (`jobs_lease_expiry`; few rows). The best
/// `$4` of those are claimed; rows locked but not claimed are released at commit. A paused
/// queue's branches are switched off by a one-time filter, so its backlog is never read.
///
/// Each branch is the plain `ORDER BY … LIMIT … FOR UPDATE SKIP LOCKED` shape on purpose: its
/// `LIMIT` is what makes the planner walk the ordered index and stop after `$4` rows whatever
/// the table statistics say. An earlier form merged unlocked branches and locked on the join
/// back to `jobs`; planned without a `LIMIT` inside the branches, it chose a sequential scan and
/// a sort of the whole backlog on every claim (23–36 ms at 20k queued against 1.2 ms for this
/// form, worst on a freshly filled, never analyzed table: see docs/postgres-hot-path.md).
fn claim_candidates(queues: usize, lock: Lock) -> String {
    const ORDER: &str = "ORDER BY priority DESC, run_at, id";
    let lock = match lock {
        Lock::SkipLocked => "FOR UPDATE SKIP LOCKED",
        Lock::None => "",
    };
    let not_paused = "NOT EXISTS (SELECT 1 FROM queues q WHERE q.tenant = $1 AND q.name = qn.name \
                      AND q.paused)";
    let branches = format!(
        "SELECT * FROM (SELECT id, state AS prev, false AS exhausted, priority, run_at \
                        FROM jobs WHERE tenant = $1 AND queue = qn.name AND state = 'queued' \
                          AND run_at <= $3 AND {not_paused} \
                        {ORDER} LIMIT $4 {lock}) f \
         UNION ALL \
         SELECT * FROM (SELECT id, state AS prev, attempt >= max_attempts AS exhausted, \
                               priority, run_at \
                        FROM jobs WHERE tenant = $1 AND queue = qn.name AND state = 'leased' \
                          AND lease_expires_at <= $3 AND NOT ({TIMED_OUT}) AND {not_paused} \
                        {ORDER} LIMIT $4 {lock}) e"
    );
    let timeout = "(SELECT q.default_timeout_ms FROM queues q WHERE q.tenant = $1 \
                   AND q.name = qn.name) AS queue_timeout";
    if queues <= 1 {
        return format!(
            "SELECT c.id, c.prev, c.exhausted, {timeout}, 1 AS rank, 0 AS turn \
             FROM unnest($2::text[]) AS qn(name) CROSS JOIN LATERAL ({branches}) c \
             ORDER BY c.priority DESC, c.run_at, c.id \
             LIMIT $4"
        );
    }
    // Several queues: each queue's candidates ranked within it, taken rank by rank, the
    // queues' order within a rank turning from claim to claim (a literal: one statement text
    // per turn). Every queue is served whatever the others' depths and priorities; priorities
    // hold within a queue.
    let turn = crate::store::claim_turn(queues);
    format!(
        "SELECT c.id, c.prev, c.exhausted, {timeout}, c.rank, \
                (qn.pos - 1 + {turn}) % {queues} AS turn \
         FROM unnest($2::text[]) WITH ORDINALITY AS qn(name, pos) CROSS JOIN LATERAL ( \
           SELECT b.*, row_number() OVER (ORDER BY b.priority DESC, b.run_at, b.id) AS rank \
           FROM ({branches}) b) c \
         ORDER BY c.rank, turn, c.priority DESC, c.run_at, c.id \
         LIMIT $4"
    )
}

/// The candidates a gated claim takes, as the claim statement reads them (`$4`, `$8`–`$10`).
struct Chosen {
    ids: Vec<Uuid>,
    prev: Vec<String>,
    exhausted: Vec<bool>,
    queue_timeout: Vec<Option<i64>>,
}

/// A gated claim's candidates (as many as [`gated_read`] says, read without locks: see
/// [`Lock::None`]), passed through `gate` in claim order: the ones it admits, up to
/// `max_jobs` leases. Runs after [`super::limits::lock_rules`], so no other claim of the tenant
/// is counting leases or drawing tokens meanwhile; its statements see every lease committed
/// before.
async fn gated_candidates(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    params: &ClaimParams,
    queues: &[String],
    gate: &mut Gate<'_>,
) -> StoreResult<Chosen> {
    let sql = format!(
        "SELECT c.id, c.prev, c.exhausted, c.queue_timeout, j.queue, j.kind, j.limit_keys \
         FROM ({}) c JOIN jobs j ON j.id = c.id \
         ORDER BY c.rank, c.turn, j.priority DESC, j.run_at, j.id",
        claim_candidates(queues.len(), Lock::None)
    );
    // What the limits covering the whole claim leave room for bounds how much is read.
    super::limits::count_leases(tx, &params.tenant, gate).await?;
    let covering = gate.covering_buckets(queues);
    super::limits::load_levels(tx, &params.tenant, &covering, gate).await?;
    let read = gated_read(gate, queues, params.max_jobs);
    let rows = sqlx::query(&sql)
        .bind(&params.tenant)
        .bind(queues)
        .bind(now)
        .bind(i64::from(read))
        .fetch_all(&mut *tx)
        .await?;
    let mut candidates = Vec::with_capacity(rows.len());
    for row in &rows {
        let own: Option<Vec<String>> = row.try_get("limit_keys")?;
        candidates.push(GateCandidate {
            keys: job_keys(
                row.try_get("queue")?,
                row.try_get("kind")?,
                &own.unwrap_or_default(),
            ),
            lease: !row.try_get::<bool, _>("exhausted")?,
            expired: row.try_get::<String, _>("prev")? == "leased",
        });
    }
    let mut buckets = gate.stateful_buckets(candidates.iter().map(|c| c.keys.as_slice()));
    buckets.retain(|b| !covering.contains(b));
    super::limits::load_levels(tx, &params.tenant, &buckets, gate).await?;
    let taken = gate_candidates(gate, &candidates, params.max_jobs);
    let mut chosen = Chosen {
        ids: Vec::new(),
        prev: Vec::new(),
        exhausted: Vec::new(),
        queue_timeout: Vec::new(),
    };
    for (row, take) in rows.iter().zip(taken) {
        if take {
            chosen.ids.push(row.try_get("id")?);
            chosen.prev.push(row.try_get("prev")?);
            chosen.exhausted.push(row.try_get("exhausted")?);
            chosen.queue_timeout.push(row.try_get("queue_timeout")?);
        }
    }
    Ok(chosen)
}

/// The statements of one hot transaction, run by [`PostgresStore::hot_transaction`]: perhaps
/// more than once, since a deadlock or serialization failure runs them again from the start.
trait HotWork: Sync {
    type Out: Send;

    /// Runs the statements in `tx`, noting in `fx` what is left to do once it commits.
    fn run<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut PgConnection,
        fx: &'a mut DagEffects,
    ) -> impl Future<Output = StoreResult<Self::Out>> + Send + 'a;
}

/// A claim ([`Store::claim`](super::Store::claim)).
struct ClaimWork<'p> {
    now: DateTime<Utc>,
    params: &'p ClaimParams,
}

impl HotWork for ClaimWork<'_> {
    type Out = Claimed;

    fn run<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut PgConnection,
        fx: &'a mut DagEffects,
    ) -> impl Future<Output = StoreResult<Claimed>> + Send + 'a {
        store.claim_in(tx, self.now, self.params, fx)
    }
}

/// A batch of outcomes ([`Store::finish`](super::Store::finish)); rows are read back if `whole`.
struct FinishWork<'p> {
    now: DateTime<Utc>,
    tenant: &'p str,
    outcomes: &'p [Outcome],
    whole: bool,
}

impl HotWork for FinishWork<'_> {
    type Out = Vec<Finished<Recorded>>;

    fn run<'a>(
        &'a self,
        store: &'a PostgresStore,
        tx: &'a mut PgConnection,
        fx: &'a mut DagEffects,
    ) -> impl Future<Output = StoreResult<Self::Out>> + Send + 'a {
        store.finish_in(tx, self.now, self.tenant, self.outcomes, self.whole, fx)
    }
}

/// Outcomes, then a claim that sees them ([`Store::finish_and_claim`](super::Store::finish_and_claim)).
struct FinishAndClaimWork<'p> {
    finish: FinishWork<'p>,
    claim: ClaimWork<'p>,
}

impl HotWork for FinishAndClaimWork<'_> {
    type Out = (Vec<Finished<Recorded>>, Claimed);

    async fn run(
        &self,
        store: &PostgresStore,
        tx: &mut PgConnection,
        fx: &mut DagEffects,
    ) -> StoreResult<Self::Out> {
        let finished = self.finish.run(store, tx, fx).await?;
        let claimed = self.claim.run(store, tx, fx).await?;
        Ok((finished, claimed))
    }
}

impl PostgresStore {
    /// Runs `work` in one transaction planned by index on a kept connection, again (up to three
    /// more times) after a deadlock or serialization failure. Only the attempt that committed
    /// runs its after-commit work (ended runs counted, claimers woken).
    async fn hot_transaction<W: HotWork>(&self, work: &W) -> StoreResult<W::Out> {
        let mut tries = 0;
        loop {
            let attempt = async |conn: &mut PgConnection| {
                let mut tx = begin_by_index_on(conn).await?;
                let mut fx = DagEffects::default();
                let out = work.run(self, &mut tx, &mut fx).await?;
                tx.commit().await?;
                Ok((out, fx))
            };
            match self.kept.with(self.pool(), attempt).await {
                Err(StoreError::Retryable(_)) if tries < 3 => tries += 1,
                Err(err) => return Err(err),
                Ok((out, fx)) => {
                    fx.after_commit(&self.ready);
                    return Ok(out);
                }
            }
        }
    }

    pub(super) async fn claim_impl(
        &self,
        now: DateTime<Utc>,
        params: &ClaimParams,
    ) -> StoreResult<Claimed> {
        if params.queues.is_empty() {
            return Ok(Claimed::default());
        }
        self.hot_transaction(&ClaimWork { now, params }).await
    }

    pub(super) async fn finish_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished>> {
        let work = FinishWork {
            now,
            tenant,
            outcomes: &outcomes,
            whole: true,
        };
        self.hot_transaction(&work)
            .await?
            .into_iter()
            .map(|f| match f {
                Finished::Ok(Recorded::Job(job)) => Ok(Finished::Ok(job)),
                Finished::Ok(Recorded::State(..)) => Err(StoreError::Internal(
                    "an outcome was read back without its row".into(),
                )),
                Finished::LeaseLost(state) => Ok(Finished::LeaseLost(state)),
                Finished::NotFound => Ok(Finished::NotFound),
            })
            .collect()
    }

    /// [`Store::finish_states`](super::Store::finish_states): rows are not read back.
    pub(super) async fn finish_states_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
    ) -> StoreResult<Vec<Finished<JobState>>> {
        let work = FinishWork {
            now,
            tenant,
            outcomes: &outcomes,
            whole: false,
        };
        let finished = self.hot_transaction(&work).await?;
        Ok(finished.into_iter().map(|f| f.map(|r| r.state())).collect())
    }

    /// [`Store::finish_and_claim`](super::Store::finish_and_claim): one transaction, retried
    /// whole, as each alone is.
    pub(super) async fn finish_and_claim_impl(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: Vec<Outcome>,
        params: &ClaimParams,
    ) -> StoreResult<(Vec<Finished<JobState>>, Claimed)> {
        let work = FinishAndClaimWork {
            finish: FinishWork {
                now,
                tenant,
                outcomes: &outcomes,
                whole: false,
            },
            claim: ClaimWork { now, params },
        };
        let (finished, claimed) = self.hot_transaction(&work).await?;
        let states = finished.into_iter().map(|f| f.map(|r| r.state()));
        Ok((states.collect(), claimed))
    }

    /// The statements that record outcomes (see [`Store::finish`](super::Store::finish)), in
    /// the caller's transaction.
    ///
    /// Outcomes are applied in input order, one `UPDATE … FROM UNNEST(…)` per chunk of the
    /// batch. A chunk ends before a job named a second time (that report must see the first
    /// one's effect) and after a job that belongs to a run (its DAG bookkeeping must run before
    /// the next outcome), so results and events are exactly those of applying the outcomes one
    /// by one. A batch without runs or repeats is one chunk, one round trip. Rows are read back
    /// if `whole`; else each outcome's state and run, which is all the bookkeeping of a run
    /// needs. What is left to do after the commit goes to `fx`, not done: this attempt may be
    /// rolled back and run again.
    async fn finish_in(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        tenant: &str,
        outcomes: &[Outcome],
        whole: bool,
        fx: &mut DagEffects,
    ) -> StoreResult<Vec<Finished<Recorded>>> {
        let no_runs_known = HashSet::new();
        let mut out = Vec::with_capacity(outcomes.len());
        let mut notify = false;
        let mut start = 0;
        while start < outcomes.len() {
            // Distinct jobs; `finish_chunk` itself stops after the first one in a run.
            let end = crate::store::outcome_chunk_end(outcomes, start, usize::MAX, &no_runs_known);
            let mut updated = finish_chunk(tx, now, tenant, &outcomes[start..end], whole).await?;
            let end = start + updated.len();
            let chunk = &outcomes[start..end];
            let lost = crate::store::lost_leases(chunk, &updated);
            let current = current_states(tx, tenant, &lost).await?;
            for (outcome, recorded) in chunk.iter().zip(updated.drain(..)) {
                out.push(match recorded {
                    Some(recorded) => {
                        notify |= recorded.state() == JobState::Queued;
                        let change = recorded.change(outcome.job_id);
                        if change.run_id.is_some() {
                            let dag = &mut self.dag(tx);
                            dag::after_job_change(dag, change, now, fx).await?;
                        }
                        Finished::Ok(recorded)
                    }
                    None => match current.get(&outcome.job_id) {
                        Some(state) => Finished::LeaseLost(*state),
                        None => Finished::NotFound,
                    },
                });
            }
            start = end;
        }
        if notify {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(READY_CHANNEL)
                .bind(tenant)
                .execute(&mut *tx)
                .await?;
        }
        Ok(out)
    }

    /// A claim's statements, in the caller's transaction.
    async fn claim_in(
        &self,
        tx: &mut PgConnection,
        now: DateTime<Utc>,
        params: &ClaimParams,
        fx: &mut DagEffects,
    ) -> StoreResult<Claimed> {
        let mut queues = params.queues.clone();
        queues.sort();
        queues.dedup();
        if queues.is_empty() {
            return Ok(Claimed::default());
        }
        let rules = if params.ungated {
            Vec::new()
        } else {
            super::limits::lock_rules(tx, &params.tenant).await?
        };
        let (cand, chosen, held) = if rules.is_empty() {
            (claim_candidates(queues.len(), Lock::SkipLocked), None, None)
        } else {
            let mut gate = Gate::new(now, &rules).with_batch(params.max_jobs);
            let chosen = gated_candidates(tx, now, params, &queues, &mut gate).await?;
            super::limits::save_levels(tx, &params.tenant, &gate).await?;
            // The chosen candidates; the `UPDATE` checks their state again (`Lock::None`).
            let cand = "SELECT * FROM unnest($4::uuid[], $8::text[], $9::bool[], $10::bigint[]) \
                        AS c(id, prev, exhausted, queue_timeout)"
                .to_owned();
            (cand, Some(chosen), gate.held())
        };
        // `prev` tells fresh claims from expired leases taken over; an expired lease whose
        // attempts are spent goes to `dead` instead of being leased again.
        // `t`: attempts in these queues whose run-time deadline has passed (locked; ended by
        // `end_timed_out` below, in the same transaction), read back with the claimed rows.
        let sql = format!(
            "WITH cand AS MATERIALIZED ({cand}), \
             t AS MATERIALIZED (SELECT x.id FROM unnest($2::text[]) AS tq(name) \
               CROSS JOIN LATERAL (SELECT id FROM jobs WHERE tenant = $1 AND queue = tq.name \
                 AND lease_expires_at <= $3 AND state = 'leased' AND {TIMED_OUT} \
                 LIMIT {SWEEP_LIMIT} FOR UPDATE SKIP LOCKED) x LIMIT {SWEEP_LIMIT}), \
             u AS ( \
               UPDATE jobs j SET \
                 state = CASE WHEN c.exhausted THEN 'dead' ELSE 'leased' END, \
                 attempt = CASE WHEN c.exhausted THEN j.attempt ELSE j.attempt + 1 END, \
                 lease_epoch = CASE WHEN c.exhausted THEN j.lease_epoch ELSE j.lease_epoch + 1 END, \
                 started_at = CASE WHEN c.exhausted THEN j.started_at ELSE $3 END, \
                 deadline_at = CASE WHEN c.exhausted THEN j.deadline_at \
                   ELSE $3 + COALESCE(j.timeout_ms, c.queue_timeout) * interval '1 millisecond' END, \
                 lease_expires_at = CASE WHEN c.exhausted THEN NULL \
                   ELSE LEAST($3 + $5 * interval '1 millisecond', \
                     $3 + COALESCE(j.timeout_ms, c.queue_timeout) * interval '1 millisecond') END, \
                 finished_at = CASE WHEN c.exhausted THEN $3 ELSE NULL END, \
                 last_error = CASE WHEN c.exhausted THEN '{{\"class\":\"lease_expired\",\"message\":\"lease expired and attempts are spent\",\"retryable\":false}}'::jsonb ELSE j.last_error END, \
                 lease_ttl_ms = $5, \
                 worker_id = CASE WHEN c.exhausted THEN j.worker_id ELSE $6 END, \
                 worker_version = CASE WHEN c.exhausted THEN j.worker_version ELSE $7 END, \
                 updated_at = $3 \
               FROM cand c WHERE j.id = c.id AND j.state = c.prev \
                 AND (c.prev = 'queued' OR j.lease_expires_at <= $3) \
               RETURNING j.*, c.prev, c.exhausted), \
             ev AS (INSERT INTO events ({EVENT_COLUMNS}) \
               SELECT e.tenant, e.etype, e.id, e.run_id, e.queue, e.project, e.kind, e.worker_id, \
                      e.correlation_id, $3, e.edata, e.inputs_hash, e.eversion FROM ( \
                 SELECT u.*, 0 AS ord, \
                        CASE WHEN u.exhausted THEN 'dead' ELSE 'lease_expired' END AS etype, \
                        jsonb_build_object('from', 'leased', \
                          'to', CASE WHEN u.exhausted THEN 'dead' ELSE 'queued' END, \
                          'reason', 'lease_expired', \
                          'fencing_token', CASE WHEN u.exhausted THEN u.lease_epoch ELSE u.lease_epoch - 1 END) AS edata, \
                        u.worker_version AS eversion \
                 FROM u WHERE u.prev = 'leased' \
                 UNION ALL \
                 SELECT u.*, 1 AS ord, 'leased' AS etype, \
                        jsonb_build_object('from', 'queued', 'to', 'leased', \
                          'fencing_token', u.lease_epoch, 'attempt', u.attempt, \
                          'lease_expires_at', u.lease_expires_at, \
                          'waited_ms', GREATEST(0, floor(extract(epoch FROM ($3 - u.run_at)) * 1000))::bigint) AS edata, \
                        u.worker_version AS eversion \
                 FROM u WHERE NOT u.exhausted) e \
               ORDER BY e.priority DESC, e.run_at, e.id, e.ord) \
             SELECT *, false AS timed_out FROM u \
             UNION ALL SELECT j.*, 'leased'::text, false, true FROM jobs j JOIN t ON j.id = t.id \
             ORDER BY priority DESC, run_at, id",
        );
        let query = sqlx::query(&sql)
            .bind(&params.tenant)
            .bind(&queues)
            .bind(now);
        let query = match &chosen {
            None => query.bind(i64::from(params.max_jobs)),
            Some(chosen) => query.bind(&chosen.ids),
        };
        let query = query
            .bind(params.lease_ttl_ms as i64)
            .bind(&params.worker_id)
            .bind(&params.worker_version);
        let query = match &chosen {
            None => query,
            Some(chosen) => query
                .bind(&chosen.prev)
                .bind(&chosen.exhausted)
                .bind(&chosen.queue_timeout),
        };
        let rows = query.fetch_all(&mut *tx).await?;
        let mut claimed = Claimed {
            held,
            ..Claimed::default()
        };
        let mut timed_out = Vec::new();
        for row in &rows {
            if row.try_get("timed_out")? {
                timed_out.push(decode_job(row)?);
                continue;
            }
            let prev: String = row.try_get("prev")?;
            let exhausted: bool = row.try_get("exhausted")?;
            if prev == "leased" {
                claimed.expired += 1;
            }
            let job = decode_job(row)?;
            if exhausted {
                dag::after_job_change(&mut self.dag(tx), (&job).into(), now, fx).await?;
            } else {
                if let Some(run_id) = job.run_id {
                    dag::refresh_run_status(&mut self.dag(tx), run_id, now, fx).await?;
                }
                claimed.leases.push(lease_of(job)?);
            }
        }
        claimed.timed_out = self.end_timed_out(tx, now, timed_out, fx).await?;
        Ok(claimed)
    }
}
