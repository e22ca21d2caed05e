//! Bounded storage: a sweep removes finished jobs past their retention window (runs whole),
//! collects artifact blobs no remaining job names, and archives then trims old ledger events.
//!
//! A sweep runs on a schedule inside the coordinator ([`spawn`]) and on demand
//! (`POST /v1/retention/sweep`). One sweep at a time: within a process a mutex, across
//! PostgreSQL replicas an advisory lock ([`crate::store::SweepLock`]) — a replica that finds
//! it taken skips its turn. Every step is batched into short transactions and re-checks its
//! condition where it deletes, so a sweep can stop anywhere and the next one finishes the work.
//! Time comes from the injected [`crate::clock::Clock`]. The reasoning is in
//! docs/ARCHITECTURE.md, "Retention and the ledger archive".

pub mod archive;
pub mod blobs;
mod jobs;
mod window;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use leasehold_proto::SweepReport;

pub use window::{Policies, Resolved, Source, Window};

use crate::clock::Clock;
use crate::store::Store;
use crate::store::StoreResult;

/// Default window of `succeeded` jobs (River's JobCleaner keeps completed jobs 24 h).
pub const DEFAULT_RETAIN_SUCCEEDED: &str = "24h";
/// Default window of `dead` and `cancelled` jobs (River keeps discarded and cancelled 7 days).
pub const DEFAULT_RETAIN_FAILED: &str = "7d";
/// Default window of the ledger: kept in the database forever until an operator chooses where
/// archives go.
pub const DEFAULT_RETAIN_LEDGER: &str = "off";
/// Default grace period of artifact blobs: one younger than this (by its last upload or
/// claim) is never collected.
pub const DEFAULT_ARTIFACT_GRACE: &str = "1h";
/// Shortest grace period accepted: it must outlast any request between a completion's claim
/// of its blobs and its commit (the request timeout is 90 s).
pub const MIN_ARTIFACT_GRACE: Duration = Duration::from_secs(300);
/// How long a limit bucket's stored state must have been untouched and at rest before a sweep
/// deletes it.
pub const BUCKET_REST: Duration = Duration::from_secs(3600);

/// Default time between scheduled sweeps.
pub const DEFAULT_INTERVAL: &str = "10m";

/// What a sweep keeps and how it works.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Default window of `succeeded` jobs.
    pub succeeded: Window,
    /// Default window of `dead` and `cancelled` jobs.
    pub failed: Window,
    /// Window of the ledger (all tenants).
    pub ledger: Window,
    /// Where archived ledger segments are written.
    pub archive_dir: PathBuf,
    /// Blobs younger than this are never collected (`None`: none is).
    pub artifact_grace: Option<Duration>,
    /// Rows per delete transaction.
    pub batch: u32,
    /// Most events in one ledger segment.
    pub segment_events: u32,
}

impl RetentionConfig {
    /// The defaults, archiving under `data_dir/ledger-archive`.
    pub fn defaults(data_dir: &std::path::Path) -> Self {
        let parse = |s: &str| s.parse().unwrap_or(Window::Forever);
        Self {
            succeeded: parse(DEFAULT_RETAIN_SUCCEEDED),
            failed: parse(DEFAULT_RETAIN_FAILED),
            ledger: parse(DEFAULT_RETAIN_LEDGER),
            archive_dir: data_dir.join("ledger-archive"),
            artifact_grace: Some(Duration::from_secs(3600)),
            batch: 500,
            segment_events: 10_000,
        }
    }
}

/// The sweeper's configuration and the mutex that keeps one sweep at a time in this process.
#[derive(Debug)]
pub struct Retention {
    /// What to keep.
    pub config: RetentionConfig,
    gate: tokio::sync::Mutex<()>,
}

impl Retention {
    /// A sweeper with `config`.
    pub fn new(config: RetentionConfig) -> Self {
        Self {
            config,
            gate: tokio::sync::Mutex::new(()),
        }
    }
}

/// What a sweep works with: the store, the clock, the artifact folder, the shutdown signal and
/// the retention settings. Built from the server's state ([`crate::AppState::sweeper`]).
#[derive(Clone)]
pub struct Sweeper {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) data_dir: PathBuf,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    pub(crate) retention: Arc<Retention>,
}

/// Runs one sweep now (waiting for one already running in this process). Answers with
/// `swept: false` when another replica holds the sweep lock.
pub async fn sweep(state: &Sweeper) -> StoreResult<SweepReport> {
    let retention = state.retention.clone();
    let _one_at_a_time = retention.gate.lock().await;
    let store = state.store.retention();
    let Some(lock) = store.try_lock_sweep().await? else {
        metrics::counter!(crate::metrics::RETENTION_SWEEPS, "result" => "skipped").increment(1);
        return Ok(SweepReport::default());
    };
    let result = run_steps(state, &retention.config).await;
    lock.release().await;
    match &result {
        Ok(report) => {
            metrics::counter!(crate::metrics::RETENTION_SWEEPS, "result" => "ok").increment(1);
            metrics::gauge!(crate::metrics::RETENTION_LAST_SWEEP)
                .set(state.clock.now().timestamp() as f64);
            tracing::info!(
                jobs_removed = report.jobs_removed,
                runs_removed = report.runs_removed,
                blobs_collected = report.blobs_collected,
                events_archived = report.events_archived,
                limit_buckets_pruned = report.limit_buckets_pruned,
                "retention sweep done"
            );
        }
        Err(err) => {
            metrics::counter!(crate::metrics::RETENTION_SWEEPS, "result" => "error").increment(1);
            tracing::warn!(%err, "retention sweep failed; the next one resumes");
        }
    }
    result
}

async fn run_steps(state: &Sweeper, config: &RetentionConfig) -> StoreResult<SweepReport> {
    let mut report = SweepReport {
        swept: true,
        ..Default::default()
    };
    jobs::remove_expired(state, config, &mut report).await?;
    // After the jobs: a blob named only by jobs removed just now goes in the same sweep.
    if let Some(grace) = config.artifact_grace {
        blobs::collect(state, grace, &mut report).await?;
    }
    archive::archive(state, config, &mut report).await?;
    // A prefix limit keeps a row per key it met (one per host…): those at rest go.
    let now = state.clock.now();
    report.limit_buckets_pruned = state
        .store
        .prune_resting_buckets(
            now,
            now - chrono::Duration::from_std(BUCKET_REST).unwrap_or_default(),
        )
        .await?;
    // Workers unseen for a day are gone from `GET /v1/workers` anyway (`crate::presence`).
    let forgotten = state
        .store
        .prune_workers(now - chrono::Duration::days(1))
        .await?;
    tracing::debug!(forgotten, "workers unseen for a day forgotten");
    Ok(report)
}

/// Sweeps every `interval` until shutdown (the first one after one interval).
pub fn spawn(state: Sweeper, interval: Duration) -> tokio::task::JoinHandle<()> {
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            // On its own task: a panic or a slow sweep never takes the loop down with it.
            let state = state.clone();
            let _ = tokio::spawn(async move { sweep(&state).await }).await;
        }
    })
}

/// The retention settings a fresh [`crate::AppState`] starts with.
pub(crate) fn default_for(data_dir: &std::path::Path) -> Arc<Retention> {
    Arc::new(Retention::new(RetentionConfig::defaults(data_dir)))
}
