//! Leasing: what a lease means, the same for every way a worker reaches the coordinator (HTTP
//! long polls and outcomes, WebSocket sessions) and for the hand-off of a new job to a parked
//! claimer. It knows nothing of HTTP: the handlers in `crate::http` decode requests, call in
//! here and encode the answers. Checks that decide whether a job may be leased now (flow
//! control) belong in [`Leasing::claim_now`], the one path every lease is granted through.
//!
//! - this file: claim parameters, claiming (once, or waiting for work), giving back leases that
//!   never reached their worker, heartbeats, the enqueue that hands a job straight to a parked
//!   claimer;
//! - [`outcomes`]: recording what workers report (one outcome, or a batch);
//! - [`session`]: a worker session's turn, its outcomes and its next claim together;
//! - [`checks`]: what is checked or filled in on an outcome before it is recorded.

pub(crate) mod checks;
pub(crate) mod group;
pub(crate) mod outcomes;
pub(crate) mod session;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use leasehold_proto::{ErrorCode, HeartbeatItem, HeartbeatResult, Job, JobState, Lease, Throttled};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::flow::catalog::Catalog;
use crate::flow::gate::Held;
use crate::flow::pool::{FairShare, Pool};
use crate::flow::waiters::SlotWaiters;
use crate::handoff::{Handoffs, Parking, Taken};
use crate::ready::ReadySignal;
use crate::store::{
    ClaimParams, Claimed, Enqueued, NewJobRow, Outcome, OutcomeKind, Store, StoreResult,
};
use crate::validate;

/// Longest long poll a claimer may ask for.
pub(crate) const MAX_WAIT_MS: u64 = 60_000;

/// `--wake-poll-ms` on PostgreSQL without `LISTEN`: a job enqueued through another replica
/// waits at most this long for a parked claimer here (plus the claim).
pub(crate) const DEFAULT_WAKE_POLL_MS: u64 = 500;

/// What leasing works with: the store, the clock, the wake-ups and the parked claimers. Cheap
/// to clone (shared handles); built per request from the server's state.
#[derive(Clone)]
pub(crate) struct Leasing {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ready: ReadySignal,
    pub(crate) handoffs: Handoffs,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Where artifact blobs are stored (a completion's artifacts must be there).
    pub(crate) data_dir: PathBuf,
    /// Tenants whose claimers wait for a concurrency slot (`crate::flow::waiters`).
    pub(crate) slot_waiters: SlotWaiters,
    /// What is known of tenants' limits: gated claims, outcomes that feed limits
    /// (`crate::flow::catalog`).
    pub(crate) catalog: Catalog,
    /// How shared worker pools' leases are split among their tenants (`crate::flow::pool`).
    pub(crate) fair_share: FairShare,
    /// How often a claimer held back by a concurrency limit asks again at the latest.
    pub(crate) slot_poll: Duration,
    /// How long any parked claimer waits at most before asking again (`--wake-poll-ms`): the
    /// fallback when the other replicas' wake-ups cannot be heard.
    pub(crate) wake_poll: Option<Duration>,
    /// Single-job enqueues and single outcomes committed together (`group`); `None`: each in
    /// its own transaction.
    pub(crate) groups: Option<group::Groups>,
}

/// What one claim granted, and what the tenant's limits held back.
#[derive(Debug, Default)]
pub(crate) struct Granted {
    /// The leases.
    pub(crate) leases: Vec<Lease>,
    /// Set when a limit held a ready job back (`crate::flow`).
    pub(crate) held: Option<Held>,
    /// The instant the claim looked at: what was due then, it saw.
    pub(crate) at: DateTime<Utc>,
}

impl Granted {
    /// The claim answer's `throttled`, with the time to wait counted from `now`.
    pub(crate) fn throttled(&self, now: DateTime<Utc>) -> Option<Throttled> {
        self.held.as_ref().map(|held| Throttled {
            limits: held.limits.clone(),
            retry_after_ms: held
                .retry_at
                .map(|at| (at - now).num_milliseconds().max(0) as u64),
        })
    }
}

/// Validates what a worker asks for (HTTP claim or WebSocket hello) into claim parameters.
pub(crate) fn claim_params(
    tenant: String,
    worker_id: String,
    worker_version: Option<String>,
    mut queues: Vec<String>,
    max_jobs: u32,
    lease_ttl_ms: u64,
) -> ApiResult<ClaimParams> {
    validate::label("worker_id", &worker_id)?;
    validate::opt_label("worker_version", &worker_version)?;
    if queues.is_empty() || queues.len() > 100 {
        return Err(ApiError::validation("queues", "name 1 to 100 queues"));
    }
    for q in &queues {
        validate::name("queues", q)?;
    }
    let lease_ttl_ms = validate::range("lease_ttl_ms", lease_ttl_ms, 1000, 86_400_000)?;
    queues.sort();
    queues.dedup();
    Ok(ClaimParams {
        tenant,
        worker_id,
        worker_version,
        queues,
        max_jobs,
        lease_ttl_ms,
        ungated: false,
        pool: None,
    })
}

/// Applies a claim's (or a hello's) `tenants` and `tenant_weights`: with `tenants`, makes the
/// parameters those of a worker pool shared by them, for a caller that `acts_for_all` tenants
/// (`named_tenant`: whether the request also named one tenant, which it may not); weights
/// without `tenants` are refused.
pub(crate) fn pooled(
    mut params: ClaimParams,
    tenants: Option<Vec<String>>,
    weights: Option<std::collections::BTreeMap<String, u32>>,
    acts_for_all: bool,
    named_tenant: bool,
) -> ApiResult<ClaimParams> {
    let Some(tenants) = tenants else {
        if weights.is_some() {
            return Err(ApiError::validation(
                "tenant_weights",
                "tenant_weights are the shares of a pool's `tenants`; name those",
            ));
        }
        return Ok(params);
    };
    if !acts_for_all {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the coordinator's own key (ORCHESTRATOR_API_KEY) may claim for several tenants; a tenant's key claims for its tenant",
        )
        .with_details(serde_json::json!({"field": "tenants"})));
    }
    if named_tenant {
        return Err(ApiError::validation(
            "tenants",
            "name one `tenant` or a pool's `tenants`, not both",
        ));
    }
    params.pool = Some(Arc::new(Pool::new(tenants, weights)?));
    Ok(params)
}

impl Leasing {
    /// Wake-ups after this call: subscribe *before* [`Leasing::claim_now`], so a job made ready
    /// between an empty claim and the wait still wakes the claimer.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.ready.subscribe()
    }

    /// One claim: the leases granted now (reclaiming expired leases and ending timed-out
    /// attempts on the way), through the tenant's limits. Every lease is granted through here.
    pub(crate) async fn claim_now(&self, params: &ClaimParams) -> StoreResult<Granted> {
        match &params.pool {
            Some(pool) => self.claim_pool(params, pool).await,
            None => self.claim_tenant(params).await,
        }
    }

    /// One claim for a worker pool shared by several tenants: the batch is split among the
    /// tenants with ready jobs by their fair share (`crate::flow::pool`), each share claimed as
    /// that tenant's own claim (its limits apply); what a tenant could not use (its limits
    /// held jobs back, or it had fewer ready) goes to the others that may have more: those
    /// that used all of their share, or had none.
    async fn claim_pool(&self, params: &ClaimParams, pool: &Pool) -> StoreResult<Granted> {
        let pool_key = format!("{}|{}", params.queues.join(","), pool.tenants().join(","));
        let mut ready = self
            .store
            .ready_tenants(self.clock.now(), &pool.tenants(), &params.queues)
            .await?;
        let mut granted = Granted {
            at: self.clock.now(),
            ..Granted::default()
        };
        let mut wanted = params.max_jobs;
        // Two rounds: the shares, then what was left over among the tenants that filled theirs.
        for _ in 0..2 {
            if wanted == 0 || ready.is_empty() {
                break;
            }
            let mut short = Vec::new();
            for (tenant, share) in self.fair_share.split(&pool_key, pool, &ready, wanted) {
                let own = ClaimParams {
                    tenant: tenant.clone(),
                    max_jobs: share,
                    pool: None,
                    ..params.clone()
                };
                let got = match self.claim_tenant(&own).await {
                    Ok(got) => got,
                    // Leases granted to other tenants of the pool already must reach the worker.
                    Err(err) if !granted.leases.is_empty() => {
                        tracing::warn!(%err, tenant, "a pool's claim failed for one tenant");
                        return Ok(granted);
                    }
                    Err(err) => return Err(err),
                };
                let n = got.leases.len();
                self.fair_share.served(&pool_key, pool, &tenant, n);
                wanted -= n as u32;
                if n < share as usize {
                    short.push(tenant.clone());
                }
                granted.leases.extend(got.leases);
                if let Some(held) = got.held {
                    granted.held = Some(Held::merge(granted.held.take(), held, &tenant));
                }
            }
            ready.retain(|t| !short.contains(t));
        }
        Ok(granted)
    }

    /// One claim of one tenant.
    async fn claim_tenant(&self, params: &ClaimParams) -> StoreResult<Granted> {
        // A tenant known (within a second) to have no limits skips the store's check for them.
        let gated = self
            .catalog
            .facts(&*self.store, &params.tenant)
            .await?
            .gated;
        let params = &ClaimParams {
            ungated: !gated,
            ..params.clone()
        };
        let at = self.clock.now();
        let claimed = self.store.claim(at, params).await?;
        Ok(self.granted(params, claimed, at))
    }

    /// What a claim of one tenant at `at` granted, counted in the metrics; a tenant whose
    /// concurrency held a job back is noted as waiting for a slot.
    fn granted(&self, params: &ClaimParams, claimed: Claimed, at: DateTime<Utc>) -> Granted {
        let Claimed {
            leases,
            expired,
            timed_out,
            held,
        } = claimed;
        metrics::counter!(crate::metrics::LEASE_EXPIRIES).increment(expired);
        metrics::counter!(crate::metrics::TIMEOUTS).increment(timed_out);
        if let Some(held) = &held {
            for limit in &held.limits {
                metrics::counter!(crate::metrics::LIMIT_HOLDS, "limit" => limit.clone())
                    .increment(1);
            }
            if held.by_concurrency {
                self.slot_waiters.waiting(&params.tenant);
            }
        }
        Granted { leases, held, at }
    }

    /// When an idle claimer should query again at the latest: `cap`, or earlier when something
    /// of its queues falls due after its last claim (`granted.at`: a `run_at`, a lease
    /// deadline) or a limit that held a job back lets it go (a token returns; a concurrency
    /// slot may free on another replica). What was due at the claim and not leased (held back,
    /// or in a paused queue) does not make it query again at once: a wake-up, a limit's
    /// `retry_at` or the slot poll does.
    pub(crate) async fn due_by(
        &self,
        params: &ClaimParams,
        granted: &Granted,
        cap: Instant,
    ) -> StoreResult<Instant> {
        let held = granted.held.as_ref();
        let now = self.clock.now();
        let after = |at: DateTime<Utc>| {
            let in_ms = (at - now).num_milliseconds().max(0) as u64;
            Instant::now() + Duration::from_millis(in_ms + 1)
        };
        let mut until = cap;
        if let Some(poll) = self.wake_poll {
            until = until.min(Instant::now() + poll);
        }
        if let Some(held) = held {
            if let Some(at) = held.retry_at {
                until = until.min(after(at));
            }
            if held.by_concurrency {
                until = until.min(Instant::now() + self.slot_poll);
            }
        }
        let tenants = match &params.pool {
            Some(pool) => pool.tenants(),
            None => vec![params.tenant.clone()],
        };
        match self
            .store
            .next_ready_at(granted.at, &tenants, &params.queues)
            .await?
        {
            Some(at) => Ok(until.min(after(at))),
            None => Ok(until),
        }
    }

    /// Parks a claimer: an enqueue on its queues may lease its job to it directly
    /// (`crate::handoff`). A lease handed off in the instant before the claimer goes away (a
    /// cancelled long poll, a closed session) is released at once.
    pub(crate) fn park(&self, params: &ClaimParams) -> Parking {
        let leasing = self.clone();
        self.handoffs.park(params).on_stray(move |lease| {
            let held = vec![(lease.job.tenant.clone(), lease.job.id, lease.fencing_token)];
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move { leasing.release_leases(held).await });
                }
                // Only outside a runtime (never in the server): the lease expires instead.
                Err(_) => tracing::warn!(job_id = %lease.job.id, "a stray lease is left to expire"),
            }
        })
    }

    /// Claims up to `params.max_jobs` leases, waiting up to `wait` for work (a long poll). Returns
    /// early, empty, when the server shuts down.
    pub(crate) async fn claim_or_wait(
        &self,
        params: &ClaimParams,
        wait: Duration,
    ) -> ApiResult<Granted> {
        let deadline = Instant::now() + wait;
        let mut shutdown = self.shutdown.clone();
        loop {
            let mut wake = self.subscribe();
            let granted = self.claim_now(params).await?;
            if !granted.leases.is_empty() || Instant::now() >= deadline || *shutdown.borrow() {
                let result = if granted.leases.is_empty() {
                    "empty"
                } else {
                    "leased"
                };
                metrics::counter!(crate::metrics::CLAIMS, "result" => result).increment(1);
                metrics::counter!(crate::metrics::LEASES_GRANTED)
                    .increment(granted.leases.len() as u64);
                return Ok(granted);
            }
            // Sleep until something is due, a wake-up, the long poll's deadline or shutdown.
            let until = self.due_by(params, &granted, deadline).await?;
            let mut parking = self.park(params);
            let mut handed = None;
            tokio::select! {
                lease = parking.recv() => handed = lease,
                _ = wake.changed() => {}
                _ = tokio::time::sleep_until(until) => {}
                _ = shutdown.changed() => {}
            }
            // A lease handed off while another wake-up won the race is answered, not released.
            if let Some(lease) = handed.or_else(|| parking.leave()) {
                metrics::counter!(crate::metrics::CLAIMS, "result" => "leased").increment(1);
                metrics::counter!(crate::metrics::LEASES_GRANTED).increment(1);
                return Ok(Granted {
                    leases: vec![lease],
                    held: None,
                    at: self.clock.now(),
                });
            }
        }
    }

    /// After outcomes of `tenant` were recorded: wakes the parked claimers when a job went
    /// back to its queue (`requeued`) or when one of them waits for a concurrency slot that an
    /// ended lease may have freed.
    pub(crate) fn after_outcomes(&self, tenant: &str, requeued: bool) {
        if requeued || self.slot_waiters.anyone_waiting(tenant) {
            self.ready.notify();
        }
    }

    /// After leases of `tenant` ended: when the tenant has a concurrency limit (or a quota
    /// `max_leased`), the claimers of other replicas waiting for a slot are told too (they
    /// also ask again every `SLOT_POLL`, should the message be lost).
    pub(crate) async fn slots_freed(&self, tenant: &str) {
        let counted = match self.catalog.facts(&*self.store, tenant).await {
            Ok(facts) => facts.counts_slots,
            Err(_) => false,
        };
        if counted && let Err(err) = self.store.slots_freed(tenant).await {
            tracing::debug!(%err, "could not tell other replicas that slots freed");
        }
    }

    /// Whether the tenant's outcomes feed its limits (circuit breakers, adaptive rates). Asked
    /// before outcomes are recorded, so that a tenant without such limits gathers nothing for
    /// them. A failure to tell is logged and read as no: the outcomes stand either way.
    pub(crate) async fn outcomes_feed_limits(&self, tenant: &str) -> bool {
        match self.catalog.facts(&*self.store, tenant).await {
            Ok(facts) => facts.fed_by_outcomes,
            Err(err) => {
                tracing::warn!(%err, "could not read the tenant's limits; outcomes not fed to them");
                false
            }
        }
    }

    /// Feeds recorded outcomes (`(job, failure class or None for a success)`) to the tenant's
    /// circuit breakers and adaptive rates (for a tenant [`Leasing::outcomes_feed_limits`] said
    /// yes to). After the outcomes' own commit: a failure to update them is logged, never turned
    /// into a failed outcome.
    pub(crate) async fn feed_limits(&self, tenant: &str, outcomes: Vec<(Uuid, Option<String>)>) {
        if outcomes.is_empty() {
            return;
        }
        match self
            .store
            .record_breaker_outcomes(self.clock.now(), tenant, outcomes)
            .await
        {
            Ok(incidents) => {
                for incident in incidents {
                    tracing::warn!(limit = %incident.limit, bucket = %incident.bucket,
                        state = incident.change.as_str(), failures = incident.failures,
                        "circuit breaker changed");
                    metrics::counter!(crate::metrics::BREAKER_CHANGES,
                        "limit" => incident.limit, "state" => incident.change.as_str())
                    .increment(1);
                    // A closing lets held jobs through: wake the claimers.
                    self.ready.notify();
                }
            }
            Err(err) => tracing::warn!(%err, "could not feed the tenant's limits"),
        }
    }

    /// Gives back leases that were granted but never reached their worker, each for its job's
    /// tenant (a shared pool's leases are of several).
    pub(crate) async fn release_leases(&self, held: Vec<(String, Uuid, i64)>) {
        let mut by_tenant: std::collections::BTreeMap<String, Vec<(Uuid, i64)>> =
            std::collections::BTreeMap::new();
        for (tenant, job_id, token) in held {
            by_tenant.entry(tenant).or_default().push((job_id, token));
        }
        for (tenant, held) in by_tenant {
            self.release_undelivered(&tenant, held).await;
        }
    }

    /// Gives back leases that were granted but never reached their worker (its socket or long
    /// poll went away first), so their jobs run again now instead of after the lease expires.
    pub(crate) async fn release_undelivered(&self, tenant: &str, held: Vec<(Uuid, i64)>) {
        let outcomes = held
            .into_iter()
            .map(|(job_id, fencing_token)| Outcome {
                job_id,
                fencing_token,
                kind: OutcomeKind::Release { undelivered: true },
            })
            .collect();
        if let Err(err) = self
            .store
            .finish_states(self.clock.now(), tenant, outcomes)
            .await
        {
            tracing::warn!(%err, "could not release undelivered leases; they will expire");
        }
        self.ready.notify();
        self.slots_freed(tenant).await;
    }

    /// Heartbeats of a worker pool shared by several tenants (`*`): each lease extended for its
    /// job's own tenant (`caller`'s when the job does not exist: answered `lost`), one call per
    /// tenant, answered in request order.
    pub(crate) async fn heartbeat_each(
        &self,
        caller: &str,
        leases: &[HeartbeatItem],
    ) -> ApiResult<Vec<HeartbeatResult>> {
        let ids: Vec<Uuid> = leases.iter().map(|l| l.job_id).collect();
        let tenants = self.tenants_of(caller, &ids, "leases").await?;
        let mut groups: std::collections::BTreeMap<&str, (Vec<usize>, Vec<HeartbeatItem>)> =
            std::collections::BTreeMap::new();
        for (i, (item, tenant)) in leases.iter().zip(&tenants).enumerate() {
            let group = groups.entry(tenant).or_default();
            group.0.push(i);
            group.1.push(item.clone());
        }
        let mut results: Vec<Option<HeartbeatResult>> = vec![None; leases.len()];
        for (tenant, (at, items)) in groups {
            for (i, result) in at.into_iter().zip(self.heartbeat(tenant, &items).await?) {
                results[i] = Some(result);
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    /// Heartbeats for many leases (HTTP or WebSocket): validated, then extended in one call.
    pub(crate) async fn heartbeat(
        &self,
        tenant: &str,
        leases: &[HeartbeatItem],
    ) -> ApiResult<Vec<HeartbeatResult>> {
        if leases.len() > validate::MAX_BATCH {
            return Err(ApiError::validation(
                "leases",
                "at most 1000 leases per heartbeat",
            ));
        }
        for item in leases {
            if let Some(p) = &item.progress {
                validate::json_size("progress", p)?;
            }
            if let Some(c) = &item.checkpoint {
                validate::json_size("checkpoint", c)?;
            }
        }
        if leases.is_empty() {
            return Ok(vec![]);
        }
        Ok(self
            .store
            .heartbeat(self.clock.now(), tenant, leases)
            .await?)
    }

    /// Stores validated jobs and wakes the claimers. A single job that is ready now goes straight
    /// to a claimer parked on its queue, if there is one (`crate::handoff`).
    pub(crate) async fn enqueue(
        &self,
        now: DateTime<Utc>,
        mut rows: Vec<NewJobRow>,
    ) -> ApiResult<Vec<Enqueued>> {
        if let [row] = rows.as_slice()
            && row.state == JobState::Queued
            && row.run_at <= now
            && row.run_id.is_none()
            && let Some(taken) = self.handoffs.take(&row.tenant, &row.queue)
        {
            let row = rows
                .pop()
                .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no job"))?;
            // On its own task: once leased, the job must reach its claimer or be released, even
            // if the enqueuing client hangs up (the request's future is then dropped).
            let handoff = tokio::spawn(self.clone().hand_off(now, row.clone(), taken));
            match handoff.await {
                Ok(Ok(Some(job))) => {
                    return Ok(vec![Enqueued {
                        job,
                        replayed: false,
                    }]);
                }
                Ok(Ok(None)) => rows.push(row),
                Ok(Err(err)) => return Err(err.into()),
                Err(err) => {
                    return Err(ApiError::new(
                        ErrorCode::Internal,
                        format!("hand-off task failed: {err}"),
                    ));
                }
            }
        }
        let enqueued = match (&self.groups, rows.len()) {
            (Some(group), 1) => match rows.pop() {
                Some(row) => vec![group.enqueue(now, row).await?],
                None => Vec::new(),
            },
            _ => self.store.enqueue(now, rows).await?,
        };
        if enqueued.iter().any(|e| !e.replayed) {
            self.ready.notify();
        }
        Ok(enqueued)
    }

    /// Enqueues `row` leased to the claimer `taken` and answers that claimer; the job as
    /// enqueued, or `None` when it could not be handed off (nothing was written; `taken`,
    /// dropped, queries again).
    async fn hand_off(
        self,
        now: DateTime<Utc>,
        row: NewJobRow,
        taken: Taken,
    ) -> StoreResult<Option<Job>> {
        let Some((job, lease)) = self.store.enqueue_leased(now, row, taken.params()).await? else {
            return Ok(None);
        };
        metrics::counter!(crate::metrics::HANDOFFS).increment(1);
        let tenant = taken.params().tenant.clone();
        if let Err(lease) = taken.deliver(lease) {
            // The claimer left between the take and now: the job goes back to its queue.
            self.release_undelivered(&tenant, vec![(lease.job.id, lease.fencing_token)])
                .await;
        }
        Ok(Some(job))
    }
}
