//! Runs: a DAG of jobs submitted together (`/v1/runs`), plus the legacy and runbook surfaces
//! built on them, and the scheduler's run records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::{BackoffHint, JobState};

/// One job of a run, named by a key local to the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunJobSpec {
    /// Key unique within the run (same rules as queue names).
    pub key: String,
    /// Handler name.
    pub kind: String,
    /// Queue; default `default`.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Handler input.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: serde_json::Value,
    /// Keys of the jobs that must succeed first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// Attempts before `dead`; default 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<i32>,
    /// Retry policy hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffHint>,
    /// Longest run of one attempt in milliseconds; default the queue's `default_timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Keys the tenant's limits apply to (see [`crate::NewJob::limit_keys`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_keys: Vec<String>,
}

fn default_queue() -> String {
    crate::DEFAULT_QUEUE.to_owned()
}

/// Body of `POST /v1/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewRun {
    /// Idempotency: a second submission with the same token returns the first run (200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_token: Option<String>,
    /// Human name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Project for provenance (copied to every job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Correlation id (copied to every job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The DAG: 1 to 1000 jobs.
    pub jobs: Vec<RunJobSpec>,
    /// Tenant; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Aggregate status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// No job has started yet.
    Pending,
    /// Some job started and not every job has ended.
    Running,
    /// Every job succeeded.
    Succeeded,
    /// Every job ended and at least one is dead (or cancelled as its upstream failed).
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl RunStatus {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status spelled `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// One job as seen from its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunJob {
    /// Key within the run.
    pub key: String,
    /// Job id.
    pub job_id: Uuid,
    /// Handler name.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// Current state.
    pub state: JobState,
    /// Keys it depends on.
    pub depends_on: Vec<String>,
    /// Attempts made.
    pub attempt: i32,
    /// Why it was cancelled (`upstream_failed` when a parent ended dead or cancelled).
    pub cancel_reason: Option<String>,
    /// Start of its latest lease.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A run with its jobs and aggregate status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Run {
    /// Run id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Idempotency token, if given.
    pub run_token: Option<String>,
    /// Human name.
    pub name: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Dispatch mode recorded from the legacy service (`redis`, `k8s`), if any.
    pub mode: Option<String>,
    /// Aggregate status.
    pub status: RunStatus,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// First job start.
    pub started_at: Option<DateTime<Utc>>,
    /// When the last job ended (terminal runs only).
    pub finished_at: Option<DateTime<Utc>>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// `finished_at - created_at` in seconds, once ended.
    pub duration_seconds: Option<f64>,
    /// Jobs in topological order.
    pub jobs: Vec<RunJob>,
}

/// One run in a listing (`GET /v1/runs`): its record and how many of its jobs are in each
/// state, without the jobs themselves (`GET /v1/runs/{id}` has them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    /// Run id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: String,
    /// Human name.
    pub name: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Aggregate status.
    pub status: RunStatus,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// Last change of its status.
    pub updated_at: DateTime<Utc>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Its jobs, counted by state (states with none left out).
    pub jobs: std::collections::BTreeMap<String, u64>,
}

/// Answer of `GET /v1/runs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunList {
    /// One page of runs.
    pub runs: Vec<RunSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A validated DAG in topological order (`POST /v1/runs/plan`, legacy `POST /runs?mode=plan`):
/// nothing is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPlan {
    /// Job keys, parents before children (ties in submission order).
    pub order: Vec<String>,
    /// The jobs in that order, defaults applied.
    pub jobs: Vec<RunJobSpec>,
}

/// Body of `POST /orchestrator/runs`: one cycle of the scheduler CronJob. Times are ISO 8601
/// with an offset on input and echoed in UTC as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulerRunInput {
    /// ISO 8601 start.
    #[serde(with = "seed_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: DateTime<Utc>,
    /// ISO 8601 end.
    #[serde(with = "seed_time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub completed_at: DateTime<Utc>,
    /// Outcome: completed, failed, partial, …
    pub status: String,
    /// Tables evaluated.
    #[serde(default)]
    pub tables_assessed: i64,
    /// Tables skipped.
    #[serde(default)]
    pub tables_skipped: i64,
    /// Tables healthy.
    #[serde(default)]
    pub tables_healthy: i64,
    /// Jobs submitted.
    #[serde(default)]
    pub jobs_submitted: i64,
    /// Jobs completed.
    #[serde(default)]
    pub jobs_completed: i64,
    /// Jobs failed.
    #[serde(default)]
    pub jobs_failed: i64,
    /// Dry run.
    #[serde(default)]
    pub dry_run: bool,
    /// Error of the run itself.
    #[serde(default)]
    pub error: Option<String>,
}

/// A stored scheduler run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulerRun {
    /// Server-assigned id.
    pub id: i64,
    /// The record as sent.
    #[serde(flatten)]
    pub input: SchedulerRunInput,
}

/// The last line of `GET /v1/ledger/export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerManifest {
    /// Always `manifest`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Events exported.
    pub count: u64,
    /// First event id, if any.
    pub first_id: Option<i64>,
    /// Last event id, if any.
    pub last_id: Option<i64>,
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (exclusive).
    pub to: DateTime<Utc>,
    /// `sha256:` of every byte before this line.
    pub sha256: String,
}

/// The scheduler service's timestamp format: any RFC 3339 in, `…T…%.6f+00:00` out.
mod seed_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "{raw:?} is not an ISO 8601 timestamp with offset: {e}"
                ))
            })
    }
}
