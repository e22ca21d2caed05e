//! Claiming on PostgreSQL: the candidate scans (merged per queue, or read without locks and
//! passed through a tenant's limits), the `UPDATE` that leases them with their `leased`
//! events, and the attempts whose run-time deadline passed, ended in the same transaction
//! (`super::timeouts`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::PostgresStore;
use super::hot::HotWork;
use super::rows::{EVENT_COLUMNS, decode_job};
use crate::flow::gate::Gate;
use crate::flow::keys::job_keys;
use crate::store::dag::{self, DagEffects};
use crate::store::timeouts::{SWEEP_LIMIT, TIMED_OUT};
use crate::store::{
    ClaimParams, Claimed, GateCandidate, StoreResult, gate_candidates, gated_read, lease_of,
};

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

/// A claim ([`Store::claim`](super::Store::claim)).
pub(super) struct ClaimWork<'p> {
    pub(super) now: DateTime<Utc>,
    pub(super) params: &'p ClaimParams,
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

impl PostgresStore {
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
