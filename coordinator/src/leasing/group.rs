//! Group commit: single-job enqueues (`POST /v1/jobs` with one job) and single outcomes
//! (`POST /v1/jobs/{id}/complete`, `/fail`, `/release`) that arrive together share one store
//! transaction, so one WAL flush (PostgreSQL) or one SQLite commit carries them all. Each caller
//! is answered only after the transaction holding its row committed, with what a call of its own
//! would have answered ([`Store::enqueue_each`]; on PostgreSQL a group of enqueues is one
//! statement): a refusal for one job's sake (an idempotency conflict, a tenant's quota) reaches
//! only the caller it belongs to. Outcomes are answered one by one by the store anyway (a stale
//! token refuses only its own), and are grouped per tenant.
//!
//! Committers take what has gathered whenever they are free: an idle coordinator commits a
//! lone call at once (no timer), a busy one folds the calls that arrived during the last
//! commit into the next. A group holds at most one job per idempotency key (a second call with
//! the same key is committed alone right after, and answered as a replay, as it would be); two
//! outcomes of one job in a group are recorded in their order of arrival, as two calls would be.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::store::{
    Backend, Enqueued, Finished, NewJobRow, Outcome, Store, StoreError, StoreResult,
};

/// Most jobs in one group (the store's batch limit).
pub(crate) const MAX_GROUP: usize = crate::validate::MAX_BATCH;

/// One waiting call.
struct Pending {
    now: DateTime<Utc>,
    row: NewJobRow,
    reply: oneshot::Sender<StoreResult<Enqueued>>,
}

/// One waiting outcome.
struct PendingOutcome {
    now: DateTime<Utc>,
    tenant: String,
    outcome: Outcome,
    reply: oneshot::Sender<StoreResult<Finished>>,
}

/// The queues of single-job enqueues and single outcomes, and their committers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Groups {
    tx: mpsc::UnboundedSender<Pending>,
    outcomes: mpsc::UnboundedSender<PendingOutcome>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").finish_non_exhaustive()
    }
}

impl Groups {
    /// Starts the committers over `store`: one for enqueues (a group commits while the next
    /// gathers in the queue), and for outcomes one on SQLite (one writer commits at a time
    /// anyway) and two on PostgreSQL. They end when the last handle is dropped.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        // One enqueue committer on PostgreSQL too: a second one split the arrivals into groups
        // half the size, each paying a statement's fixed cost, for 0.75–0.9× the rate at 16
        // clients (docs/postgres-hot-path.md §11). An outcome group is a transaction of several
        // round trips, whose latency a second committer overlaps.
        let outcome_committers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 2,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        let outcomes_rx = Arc::new(Mutex::new(outcomes_rx));
        tokio::spawn(commit_loop(store.clone(), rx));
        for _ in 0..outcome_committers {
            tokio::spawn(outcome_loop(store.clone(), outcomes_rx.clone()));
        }
        Self { tx, outcomes }
    }

    /// Records one outcome of `tenant`'s job in the next group; the store's answer for it once
    /// that group committed.
    pub(crate) async fn finish(
        &self,
        now: DateTime<Utc>,
        tenant: &str,
        outcome: Outcome,
    ) -> StoreResult<Finished> {
        let (reply, answer) = oneshot::channel();
        let pending = PendingOutcome {
            now,
            tenant: tenant.to_owned(),
            outcome,
            reply,
        };
        self.outcomes
            .send(pending)
            .map_err(|_| StoreError::Unavailable("the coordinator is shutting down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("an outcome group ended without an answer".into()))?
    }

    /// Enqueues one job in the next group; its answer once that group committed.
    pub(crate) async fn enqueue(
        &self,
        now: DateTime<Utc>,
        row: NewJobRow,
    ) -> StoreResult<Enqueued> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { now, row, reply })
            .map_err(|_| StoreError::Unavailable("the coordinator is shutting down".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Internal("an enqueue group ended without an answer".into()))?
    }
}

async fn commit_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let (group, held) = gather(first, &mut rx);
        commit(&*store, group).await;
        // After its group committed, so that it replays (or conflicts with) that job.
        if let Some(p) = held {
            alone(&*store, p).await;
        }
    }
}

/// `first` and whatever else is waiting, up to [`MAX_GROUP`], stopping at a second job with an
/// idempotency key already in the group: that one is held back, to be committed alone after.
fn gather(
    first: Pending,
    rx: &mut mpsc::UnboundedReceiver<Pending>,
) -> (Vec<Pending>, Option<Pending>) {
    let mut keys = HashSet::new();
    if let Some(key) = key_of(&first.row) {
        keys.insert(key);
    }
    let mut group = vec![first];
    while group.len() < MAX_GROUP {
        let Ok(next) = rx.try_recv() else {
            break;
        };
        if let Some(key) = key_of(&next.row)
            && !keys.insert(key)
        {
            return (group, Some(next));
        }
        group.push(next);
    }
    (group, None)
}

fn key_of(row: &NewJobRow) -> Option<(String, String, String)> {
    row.idempotency_key
        .as_ref()
        .map(|k| (row.tenant.clone(), row.queue.clone(), k.clone()))
}

/// Commits `group` together ([`Store::enqueue_each`]): each caller gets its own job's answer.
async fn commit(store: &dyn Store, group: Vec<Pending>) {
    if group.len() == 1 {
        let one = group.into_iter().next();
        if let Some(p) = one {
            alone(store, p).await;
        }
        return;
    }
    // The latest `now` of the group: no job is created before its own default `run_at`.
    let now = group.iter().map(|p| p.now).max().unwrap_or_else(Utc::now);
    let rows = group.iter().map(|p| p.row.clone()).collect();
    match store.enqueue_each(now, rows).await {
        Ok(done) if done.len() == group.len() => {
            for (p, e) in group.into_iter().zip(done) {
                let _ = p.reply.send(e);
            }
        }
        Err(StoreError::Unavailable(why)) => {
            for p in group {
                let _ = p.reply.send(Err(StoreError::Unavailable(why.clone())));
            }
        }
        // Failed as a whole (or answered oddly): each alone, as the calls would have been.
        _ => {
            for p in group {
                alone(store, p).await;
            }
        }
    }
}

async fn alone(store: &dyn Store, p: Pending) {
    let _ = p.reply.send(store.enqueue_one(p.now, p.row).await);
}

async fn outcome_loop(
    store: Arc<dyn Store>,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<PendingOutcome>>>,
) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                let Ok(next) = rx.try_recv() else {
                    break;
                };
                group.push(next);
            }
            group
        };
        let mut by_tenant: BTreeMap<String, Vec<PendingOutcome>> = BTreeMap::new();
        for p in group {
            by_tenant.entry(p.tenant.clone()).or_default().push(p);
        }
        for (tenant, group) in by_tenant {
            finish_together(&*store, &tenant, group).await;
        }
    }
}

/// Records `group` (one tenant's) in one transaction; if the store fails it for a reason other
/// than being unavailable, outcome by outcome.
async fn finish_together(store: &dyn Store, tenant: &str, group: Vec<PendingOutcome>) {
    if group.len() > 1 {
        let now = group.iter().map(|p| p.now).max().unwrap_or_else(Utc::now);
        let outcomes = group.iter().map(|p| p.outcome.clone()).collect();
        match store.finish(now, tenant, outcomes).await {
            Ok(done) if done.len() == group.len() => {
                for (p, f) in group.into_iter().zip(done) {
                    let _ = p.reply.send(Ok(f));
                }
                return;
            }
            Err(StoreError::Unavailable(why)) => {
                for p in group {
                    let _ = p.reply.send(Err(StoreError::Unavailable(why.clone())));
                }
                return;
            }
            _ => {}
        }
    }
    for p in group {
        let answer = store
            .finish(p.now, tenant, vec![p.outcome])
            .await
            .and_then(|mut done| {
                done.pop()
                    .ok_or_else(|| StoreError::Internal("finish returned nothing".into()))
            });
        let _ = p.reply.send(answer);
    }
}
