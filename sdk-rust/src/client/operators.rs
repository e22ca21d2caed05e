//! The operators' calls of [`Client`]: runs and workers listed, the jobs a filter selects
//! cancelled or replayed, job statistics, failure classes and SLO reports.

use leasehold_proto::{
    CancellationRequest, CancellationResult, FailureClasses, JobStats, ReplayRequest, ReplayResult,
    RunList, RunStatus, SloReport, WorkerInfo, WorkerList,
};

use super::{Client, with_query};
use crate::error::{Error, Result};

/// Filters for [`Client::list_runs`]. `since` and `until` take an RFC 3339 time or a span back
/// from now (`24h`).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ListRuns {
    /// Only runs with this aggregate status.
    pub status: Option<RunStatus>,
    /// Only runs of this name.
    pub name: Option<String>,
    /// Only runs of this project.
    pub project: Option<String>,
    /// Only runs with this correlation id.
    pub correlation_id: Option<String>,
    /// Only runs submitted at or after this.
    pub since: Option<String>,
    /// Only runs submitted before this.
    pub until: Option<String>,
    /// Page size (coordinator default 50, cap 500).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl Client {
    /// A page of the tenant's runs, newest first: each with its status and its jobs counted by
    /// state ([`Client::get_run`] has the jobs themselves).
    pub async fn list_runs(&self, query: &ListRuns) -> Result<RunList> {
        let path = with_query(
            "/v1/runs",
            &[
                ("status", query.status.map(|s| s.as_str().to_owned())),
                ("name", query.name.clone()),
                ("project", query.project.clone()),
                ("correlation_id", query.correlation_id.clone()),
                ("since", query.since.clone()),
                ("until", query.until.clone()),
                ("limit", query.limit.map(|l| l.to_string())),
                ("cursor", query.cursor.clone()),
            ],
        );
        self.get_json(&path).await
    }

    /// The tenant's workers seen since `since` (an RFC 3339 time or a span back from now such
    /// as `10m`; `None`: the last hour) or holding leases now, by worker id: transport, queues,
    /// version, when last seen, whether connected, leases held.
    pub async fn workers(&self, since: Option<&str>) -> Result<Vec<WorkerInfo>> {
        let path = with_query("/v1/workers", &[("since", since.map(str::to_owned))]);
        Ok(self.get_json::<WorkerList>(&path).await?.workers)
    }

    /// Cancels the jobs a filter selects (the filter of [`Client::list`]; by default every
    /// waiting and running job, newest first up to `limit`): waiting jobs end `cancelled`,
    /// running ones are asked to stop at their next heartbeat. `reason` and `ticket` are
    /// required ([`Error::InvalidArgument`] naming the one missing, before anything is sent)
    /// and recorded in an audit event; with `dry_run` the jobs are only counted and named.
    pub async fn cancel_jobs(&self, request: &CancellationRequest) -> Result<CancellationResult> {
        crate::validate::justification(request.reason.as_deref(), request.ticket.as_deref())?;
        filter_names(request.queue.as_deref(), request.kind.as_deref())?;
        let body =
            serde_json::to_value(request).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.post_json("/v1/cancellations", Some(&body)).await
    }

    /// Sends the `dead` (or, with `state: "cancelled"`, the cancelled) jobs a filter selects
    /// back to `queued`, each with a fresh attempt budget, newest first up to `limit`. `reason`
    /// and `ticket` are required ([`Error::InvalidArgument`] naming the one missing, before
    /// anything is sent) and recorded in an audit event; with `dry_run` the jobs are only
    /// counted and named.
    pub async fn replay_jobs(&self, request: &ReplayRequest) -> Result<ReplayResult> {
        crate::validate::justification(request.reason.as_deref(), request.ticket.as_deref())?;
        filter_names(request.queue.as_deref(), request.kind.as_deref())?;
        let body =
            serde_json::to_value(request).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.post_json("/v1/replays", Some(&body)).await
    }

    /// The tenant's jobs per minute and queue from `since` (an RFC 3339 time or a span back
    /// from now such as `6h`, at most `8d`; `None`: the last hour) to now, of one `queue` or
    /// all: attempts leased, jobs succeeded, attempts failed, jobs dead and cancelled. Minutes
    /// with nothing are left out.
    pub async fn stats(&self, since: Option<&str>, queue: Option<&str>) -> Result<JobStats> {
        if let Some(q) = queue {
            crate::validate::queue_name(q)?;
        }
        let path = with_query(
            "/v1/stats",
            &[
                ("since", since.map(str::to_owned)),
                ("queue", queue.map(str::to_owned)),
            ],
        );
        self.get_json(&path).await
    }

    /// The tenant's failed attempts from `since` (as for [`Client::stats`]; `None`: the last
    /// day), of one `queue` or all, counted by queue and error class (`lease_expired` for an
    /// expired lease, `timeout` for a run time that ran out), most first.
    pub async fn failures(
        &self,
        since: Option<&str>,
        queue: Option<&str>,
    ) -> Result<FailureClasses> {
        if let Some(q) = queue {
            crate::validate::queue_name(q)?;
        }
        let path = with_query(
            "/v1/failures",
            &[
                ("since", since.map(str::to_owned)),
                ("queue", queue.map(str::to_owned)),
            ],
        );
        self.get_json(&path).await
    }

    /// Each queue's service-level objectives (success ratio, pickup latency) and how they fare
    /// over `window` (a span from `1m` to `7d`; `None`: `1h`), with their error budgets' burn
    /// rates.
    pub async fn slo(&self, window: Option<&str>) -> Result<SloReport> {
        let path = with_query("/v1/slo", &[("window", window.map(str::to_owned))]);
        self.get_json(&path).await
    }
}

/// The queue and kind of a bulk action's filter, checked as the coordinator checks them.
fn filter_names(queue: Option<&str>, kind: Option<&str>) -> Result<()> {
    if let Some(q) = queue {
        crate::validate::queue_name(q)?;
    }
    if let Some(k) = kind {
        crate::validate::kind(k)?;
    }
    Ok(())
}
