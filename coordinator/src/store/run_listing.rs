//! Listing a tenant's runs (`GET /v1/runs`): their records, filtered, newest first, and how many
//! of each run's jobs are in each state. Its own trait, a supertrait of [`super::Store`].

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use leasehold_proto::{RunStatus, RunSummary};
use uuid::Uuid;

use super::{Detached, StoreResult};

/// What `GET /v1/runs` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Tenant (always set).
    pub tenant: String,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs of this name.
    pub name: Option<String>,
    /// Only runs of this project.
    pub project: Option<String>,
    /// Only runs with this correlation id.
    pub correlation_id: Option<String>,
    /// Only runs submitted at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Only runs submitted before this.
    pub until: Option<DateTime<Utc>>,
    /// Only ids strictly older than this one (the decoded cursor).
    pub before: Option<Uuid>,
    /// Page size.
    pub limit: u32,
}

/// Lists runs.
#[async_trait]
pub trait RunListings: Send + Sync {
    /// The tenant's runs matching `filter`, newest first, at most `filter.limit`.
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>>;
}

#[async_trait]
impl RunListings for Detached {
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<RunSummary>> {
        self.0.list_runs(filter).await
    }
}

/// Puts each run's job counts (`(run, state, count)` rows) into its summary.
pub(crate) fn with_counts(
    mut runs: Vec<RunSummary>,
    counts: Vec<(Uuid, String, i64)>,
) -> Vec<RunSummary> {
    let mut by_run: HashMap<Uuid, BTreeMap<String, u64>> = HashMap::new();
    for (run, state, n) in counts {
        by_run
            .entry(run)
            .or_default()
            .insert(state, u64::try_from(n).unwrap_or(0));
    }
    for run in &mut runs {
        run.jobs = by_run.remove(&run.id).unwrap_or_default();
    }
    runs
}
