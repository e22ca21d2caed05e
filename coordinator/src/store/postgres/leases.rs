//! Recording outcomes on PostgreSQL: a batch in input order, each outcome fenced by its token,
//! one statement per chunk, the DAG bookkeeping of runs, and a worker session's outcomes with
//! its next claim (`super::claims`) in one transaction. No outcome is recorded from the
//! attempt's run-time deadline on (`super::timeouts`). Heartbeats: `super::heartbeat`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use leasehold_proto::{Job, JobState};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::claims::ClaimWork;
use super::hot::HotWork;
use super::rows::{EVENT_COLUMNS, decode_job, internal};
use super::{PostgresStore, READY_CHANNEL};
use crate::store::dag::{self, DagEffects, JobChange};
use crate::store::{ClaimParams, Claimed, Finished, Outcome, OutcomeKind, StoreError, StoreResult};

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
}
