use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a job is in its life (docs/CONTRACT.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waits for its DAG parents to succeed.
    Blocked,
    /// Claimable once `run_at` has passed.
    Queued,
    /// Held by a worker under a fencing token.
    Leased,
    /// Finished successfully (terminal).
    Succeeded,
    /// Attempts exhausted or failed fatally (terminal until retried by an operator).
    Dead,
    /// Cancelled (terminal).
    Cancelled,
}

impl JobState {
    /// Every state, in life order.
    pub const ALL: [JobState; 6] = [
        Self::Blocked,
        Self::Queued,
        Self::Leased,
        Self::Succeeded,
        Self::Dead,
        Self::Cancelled,
    ];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Queued => "queued",
            Self::Leased => "leased",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether no further transition happens without an operator.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead | Self::Cancelled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The job's own retry policy, handed to the SDK with each lease. The SDK computes the delay
/// (exponential with full jitter) and sends `retry_at`; the coordinator stores it, and uses the
/// same policy itself for a failure reported without `retry_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackoffHint {
    /// First delay in milliseconds.
    pub initial_ms: u64,
    /// Growth factor per attempt.
    pub multiplier: f64,
    /// Cap on any one delay in milliseconds.
    pub max_delay_ms: u64,
}

/// A job to enqueue: the body of `POST /v1/jobs`, or one element of `{"jobs": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// Queue name (`[A-Za-z0-9][A-Za-z0-9_.:-]*`, at most 128 bytes); default `default`.
    #[serde(default = "default_queue")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    )]
    pub queue: String,
    /// The handler name workers dispatch on.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}$")
    )]
    pub kind: String,
    /// Arbitrary JSON handed to the handler (an object by convention; any JSON value,
    /// `null` included, is kept as sent).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub payload: serde_json::Value,
    /// Higher runs first; default 0, range -1000..=1000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = -1000, maximum = 1000))]
    pub priority: i32,
    /// Attempts before the job is `dead`; default 25, range 1..=1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub max_attempts: Option<i32>,
    /// Not claimable before this instant; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Within a tenant and queue, a second enqueue with the same key returns the first job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Free-form id tying the job to a request or trace upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Free-form project name for provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Tenant; default `default` (taken from the API key once auth is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    )]
    pub tenant: Option<String>,
    /// The job's retry policy, echoed to workers with each lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffHint>,
    /// Longest run of one attempt in milliseconds (1000..=604 800 000); default the queue's
    /// `default_timeout_ms`, else none. Past it the attempt fails with class `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1000, maximum = 604_800_000))]
    pub timeout_ms: Option<u64>,
    /// Keys the tenant's limits apply to besides the implicit `queue:<queue>` and
    /// `kind:<kind>` (docs/flow-control.md): at most 8, each `<prefix>:<value>` such as
    /// `host:api.example.com` (`prefix` lower-case letters, digits, `_` or `-`; not `queue` or
    /// `kind`; no `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 8))]
    pub limit_keys: Vec<String>,
}

fn default_queue() -> String {
    crate::DEFAULT_QUEUE.to_owned()
}

/// Body of a batch enqueue: `{"jobs": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnqueueBatchRequest {
    /// The jobs, 1 to 1000; all are inserted in one transaction.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub jobs: Vec<NewJob>,
}

/// One job of a batch enqueue's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnqueuedJob {
    /// The job (the earlier one when `replayed`).
    #[serde(flatten)]
    pub job: Job,
    /// True when an earlier job with the same idempotency key was returned instead.
    pub replayed: bool,
}

/// Answer to a batch enqueue, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnqueueBatchResponse {
    /// The jobs in request order.
    pub jobs: Vec<EnqueuedJob>,
}

/// A job as the coordinator stores it.
// Its `Debug` form (what `{:?}` and `tracing`'s `?job` print) redacts secret fields of the
// payload, checkpoint, progress, result and error (`crate::redact`): written out below.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Job id (UUIDv7, so ids sort by creation time).
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Queue.
    pub queue: String,
    /// Handler name.
    pub kind: String,
    /// Current state.
    pub state: JobState,
    /// The handler's input: any JSON value, as enqueued.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i32,
    /// Claims made so far (a release gives one back).
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The fencing token of the latest lease (0 before the first claim).
    pub fencing_token: i64,
    /// When the job becomes (or became) claimable.
    pub run_at: DateTime<Utc>,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Start of the latest lease.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// Current lease deadline while `leased`.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Idempotency key, if one was given.
    pub idempotency_key: Option<String>,
    /// Correlation id, if one was given.
    pub correlation_id: Option<String>,
    /// Project, if one was given.
    pub project: Option<String>,
    /// The run this job belongs to, if any.
    pub run_id: Option<Uuid>,
    /// `sha256:` of the JCS-canonical payload.
    pub inputs_hash: String,
    /// The job's retry policy, if one was given.
    pub backoff: Option<BackoffHint>,
    /// The job's own longest run per attempt in milliseconds, if one was given (else its
    /// queue's default applies, decided at each claim).
    pub timeout_ms: Option<u64>,
    /// The run-time deadline of the latest attempt, when it had a timeout: its lease is never
    /// extended past it, and no outcome is accepted from then on.
    pub deadline_at: Option<DateTime<Utc>>,
    /// The worker holding (or that last held) the lease.
    pub worker_id: Option<String>,
    /// That worker's SDK and application version.
    pub worker_version: Option<String>,
    /// Set when a cancel arrived while leased; the next heartbeat answers `cancel_requested`.
    pub cancel_requested: bool,
    /// Why it was cancelled, when it was.
    pub cancel_reason: Option<String>,
    /// Last checkpoint written by a worker; handed to the next attempt.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub checkpoint: Option<serde_json::Value>,
    /// Last progress reported by a worker.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub progress: Option<serde_json::Value>,
    /// The handler's result once `succeeded`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
    /// The last failure.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub last_error: Option<serde_json::Value>,
    /// Artifact manifest of the successful attempt, sorted by name.
    pub artifacts: Vec<Artifact>,
    /// The keys the tenant's limits apply to besides `queue:<queue>` and `kind:<kind>`, as
    /// enqueued (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_keys: Vec<String>,
}

/// Answer of `GET /v1/jobs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobList {
    /// One page of jobs.
    pub jobs: Vec<Job>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One entry of an artifact manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Relative `/`-separated name, no `..`, no leading `/`, no NUL.
    pub name: String,
    /// `sha256:<64 lowercase hex>` of the bytes.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Media type, e.g. `application/octet-stream`.
    pub media_type: String,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = crate::redact::Redactor::default();
        let opt = |v: &Option<serde_json::Value>| v.as_ref().map(|v| r.redact(v));
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("queue", &self.queue)
            .field("kind", &self.kind)
            .field("state", &self.state)
            .field("payload", &r.redact(&self.payload))
            .field("priority", &self.priority)
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .field("fencing_token", &self.fencing_token)
            .field("run_at", &self.run_at)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("started_at", &self.started_at)
            .field("finished_at", &self.finished_at)
            .field("lease_expires_at", &self.lease_expires_at)
            .field("idempotency_key", &self.idempotency_key)
            .field("correlation_id", &self.correlation_id)
            .field("project", &self.project)
            .field("run_id", &self.run_id)
            .field("inputs_hash", &self.inputs_hash)
            .field("backoff", &self.backoff)
            .field("timeout_ms", &self.timeout_ms)
            .field("deadline_at", &self.deadline_at)
            .field("worker_id", &self.worker_id)
            .field("worker_version", &self.worker_version)
            .field("cancel_requested", &self.cancel_requested)
            .field("cancel_reason", &self.cancel_reason)
            .field("checkpoint", &opt(&self.checkpoint))
            .field("progress", &opt(&self.progress))
            .field("result", &opt(&self.result))
            .field("last_error", &opt(&self.last_error))
            .field("artifacts", &self.artifacts)
            .finish()
    }
}
