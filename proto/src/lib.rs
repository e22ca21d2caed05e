//! Leasehold's wire contract, as Rust types.
//!
//! These are the request and response bodies of the coordinator's v1 API (see
//! `docs/CONTRACT.md` §4 and the generated `proto/openapi.json`). The coordinator serves them and
//! the SDKs send them, so a field renamed here is renamed for every party at once. With the
//! `openapi` feature each type also derives its OpenAPI schema.

mod audit;
mod bulk;
mod error;
mod event;
mod frame;
mod job;
mod keys;
mod lease;
mod limits;
pub mod names;
mod presence;
mod queue;
mod quota;
pub mod redact;
mod retention;
pub mod retry;
mod run;
mod stats;
mod worker;

pub use audit::AuditList;
pub use bulk::{CancellationRequest, CancellationResult, ReplayRequest, ReplayResult};
pub use error::{ErrorBody, ErrorCode, ErrorEnvelope};
pub use event::Event;
pub use job::{
    Artifact, BackoffHint, EnqueueBatchRequest, EnqueueBatchResponse, EnqueuedJob, Job, JobList,
    JobState, NewJob,
};
pub use keys::{ApiKey, ApiKeyList, CreatedApiKey, Identity, NewApiKey, SCOPES};
pub use lease::{
    ClaimRequest, ClaimResponse, CompleteRequest, FailRequest, FailureInfo, HeartbeatItem,
    HeartbeatRequest, HeartbeatResponse, HeartbeatResult, HeartbeatStatus, Lease, ReleaseRequest,
    RetryHints, Throttled,
};
pub use limits::{
    Blackout, BreakerSpec, BreakerState, IncidentList, Limit, LimitBucket, LimitList, LimitSpec,
    PutLimit,
};
pub use presence::{WorkerInfo, WorkerList};
pub use queue::{QueueDepth, QueueInfo, QueueList, QueueSettings};
pub use quota::{MAX_QUOTA_LIMIT, QuotaRequest, QuotaStatus, QuotaUsage, StoredQuota};
pub use retention::{
    EffectiveRetention, LedgerSegment, LedgerSegmentList, RetentionDefaults, RetentionPolicy,
    RetentionSettings, SegmentManifest, StoredRetentionPolicy, SweepReport,
};
pub use run::{
    LedgerManifest, NewRun, Run, RunJob, RunJobSpec, RunList, RunPlan, RunStatus, RunSummary,
    SchedulerRun, SchedulerRunInput,
};
pub use stats::{
    FailureClass, FailureClasses, JobStats, PICKUP_BOUNDS_MS, QueueSlo, SloMeasure, SloObjective,
    SloReport, StatsPoint,
};
pub use worker::{
    ClientMessage, OutcomeKind, OutcomeReport, OutcomeResult, OutcomeStatus, OutcomesRequest,
    OutcomesResponse, ServerMessage,
};

/// Value of the `Leasehold-Api-Version` header on every response.
pub const API_VERSION: &str = "1";
/// Response header naming the API version.
pub const API_VERSION_HEADER: &str = "leasehold-api-version";
/// Request header carrying an idempotency key for a single enqueue.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Response header set to `true` when an enqueue returned an earlier job for the same key.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";
/// Request and response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The tenant a row belongs to when none is named.
pub const DEFAULT_TENANT: &str = "default";
/// The tenant a shared pool's worker names on heartbeats and outcomes: each job's own.
pub const EACH_JOBS_TENANT: &str = "*";
/// Most tenants one shared worker pool claims for.
pub const MAX_POOL_TENANTS: usize = 100;
/// Largest share (`tenant_weights`) of one tenant in a shared worker pool.
pub const MAX_TENANT_WEIGHT: u32 = 1000;
/// The queue a job goes to when none is named.
pub const DEFAULT_QUEUE: &str = "default";
/// Shortest `timeout_ms` (job) or `default_timeout_ms` (queue) accepted: one second.
pub const MIN_TIMEOUT_MS: u64 = 1_000;
/// Longest `timeout_ms` (job) or `default_timeout_ms` (queue) accepted: seven days.
pub const MAX_TIMEOUT_MS: u64 = 7 * 86_400_000;
