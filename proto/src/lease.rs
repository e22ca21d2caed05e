use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{Artifact, BackoffHint, Job};

/// Body of `POST /v1/leases`: claim up to `max_jobs` ready jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Stable id of the claiming worker process (1..=255 bytes).
    pub worker_id: String,
    /// Queues to claim from, at least one.
    pub queues: Vec<String>,
    /// At most this many leases (1..=1000); default 1.
    #[serde(default = "one")]
    pub max_jobs: u32,
    /// Lease length in milliseconds (1000..=86 400 000); default 30 000.
    #[serde(default = "default_ttl")]
    pub lease_ttl_ms: u64,
    /// Long-poll: wait up to this long (≤ 60 000 ms) for a job to become ready; default 0.
    #[serde(default)]
    pub wait_ms: u64,
    /// SDK and application version, recorded with each outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_version: Option<String>,
    /// Tenant; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A worker pool shared by several tenants: claim for these (1..=100 tenants) instead of
    /// one, interleaved fairly by `tenant_weights` (docs/flow-control.md). Only a caller that
    /// acts for the whole coordinator may (its own key, or anyone on a keyless coordinator);
    /// not with `tenant`. Each lease's `job.tenant` says whose job it is; heartbeats and
    /// outcomes of such leases name the tenant `*` (each job's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// Shares of the pool's tenants (1..=1000 each; default 1): while both have ready jobs, a
    /// tenant of weight 3 is leased three jobs for each one of a tenant of weight 1. Every
    /// tenant named here must be in `tenants`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_weights: Option<BTreeMap<String, u32>>,
}

fn one() -> u32 {
    1
}

fn default_ttl() -> u64 {
    30_000
}

/// Retry facts the SDK needs to decide alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryHints {
    /// Attempts allowed in all.
    pub max_attempts: i32,
    /// The job's own backoff policy, if it has one (else the worker's default).
    pub backoff: Option<BackoffHint>,
}

/// One granted lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    /// The job, as stored after the claim.
    pub job: Job,
    /// Carry this on every heartbeat, complete, fail and release.
    pub fencing_token: i64,
    /// Lease deadline unless extended by a heartbeat (never past `deadline_at`).
    pub expires_at: DateTime<Utc>,
    /// Lease length granted.
    pub lease_ttl_ms: u64,
    /// This attempt's longest run in milliseconds (the job's own, else its queue's default),
    /// if it has one. The SDKs cancel the handler and report a `timeout` failure before it.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// When this attempt's run time ends: heartbeats stop extending the lease and outcomes are
    /// refused (`lease_lost`) from then on.
    #[serde(default)]
    pub deadline_at: Option<DateTime<Utc>>,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// The last checkpoint of an earlier attempt.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub checkpoint: Option<serde_json::Value>,
    /// Retry facts.
    pub retry: RetryHints,
}

/// Answer of `POST /v1/leases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimResponse {
    /// Granted leases; empty when nothing became ready within `wait_ms`.
    pub leases: Vec<Lease>,
    /// Present when the tenant's limits held ready jobs back (docs/flow-control.md): they stay
    /// queued, and the claimer may ask again after `retry_after_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<Throttled>,
}

/// Why a claim granted fewer leases than there were ready jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Throttled {
    /// The limits (their keys) that held jobs back, sorted.
    pub limits: Vec<String>,
    /// When to ask again, in milliseconds from the answer: when a rate limit has room for the
    /// claim's batch (`max_jobs` tokens, at most its burst), a blackout or a breaker's cooldown
    /// ends. Absent when only a concurrency limit held jobs back (a slot frees when a lease
    /// ends; long polls wake then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// One lease in a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatItem {
    /// The job.
    pub job_id: Uuid,
    /// The token of the lease being extended.
    pub fencing_token: i64,
    /// Latest progress (replaces the previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub progress: Option<serde_json::Value>,
    /// Latest checkpoint (replaces the previous one; the next attempt receives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub checkpoint: Option<serde_json::Value>,
}

/// Body of `POST /v1/leases/heartbeat`: every lease of one worker at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The worker.
    pub worker_id: String,
    /// Its leases (at most 1000).
    pub leases: Vec<HeartbeatItem>,
    /// Tenant; default `default`. `*` (a shared pool's worker, see [`ClaimRequest::tenants`]):
    /// each lease's job's own tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// What a heartbeat found for one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatStatus {
    /// Extended.
    Ok,
    /// The token is stale or the job is no longer leased: stop and drop the outcome.
    Lost,
    /// Extended, but an operator asked to cancel: stop and report `cancelled`.
    CancelRequested,
}

/// The answer for one lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResult {
    /// The job.
    pub job_id: Uuid,
    /// What happened.
    pub status: HeartbeatStatus,
    /// New deadline unless `lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Answer of `POST /v1/leases/heartbeat`, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    /// One result per lease sent.
    pub leases: Vec<HeartbeatResult>,
}

/// Body of `POST /v1/jobs/{id}/complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease's token.
    pub fencing_token: i64,
    /// The handler's result.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub result: serde_json::Value,
    /// The artifacts the attempt uploaded.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

/// A failure as reported by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FailureInfo {
    /// Error class, e.g. the exception type.
    #[serde(default = "default_class")]
    pub class: String,
    /// Error message.
    #[serde(default)]
    pub message: String,
    /// Whether another attempt may succeed; default true.
    #[serde(default = "yes")]
    pub retryable: bool,
}

fn default_class() -> String {
    "error".to_owned()
}

fn yes() -> bool {
    true
}

/// Body of `POST /v1/jobs/{id}/fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease's token.
    pub fencing_token: i64,
    /// What went wrong.
    pub error: FailureInfo,
    /// When to run again if retryable and attempts remain; default: the job's backoff (its hint,
    /// else 1 s doubling up to 10 min, full jitter), as the SDK computes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

/// Body of `POST /v1/jobs/{id}/release`: give the lease back unrun.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// The lease's token.
    pub fencing_token: i64,
}
