use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One entry of the append-only event ledger; every state change writes one in the same
/// transaction as the change itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Strictly increasing id; SSE streams use it as the event id.
    pub id: i64,
    /// What happened: `enqueued`, `leased`, `lease_expired`, `checkpoint`, `succeeded`,
    /// `retry_scheduled`, `dead`, `cancel_requested`, `cancelled`, `released`, `retried`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The job the event is about.
    pub job_id: Option<Uuid>,
    /// The run the job belongs to, if any.
    pub run_id: Option<Uuid>,
    /// Tenant of the job.
    pub tenant: String,
    /// Queue of the job.
    pub queue: Option<String>,
    /// Project of the job.
    pub project: Option<String>,
    /// The job's kind (its handler name).
    pub job_kind: Option<String>,
    /// The worker involved, if any.
    pub worker_id: Option<String>,
    /// The job's correlation id.
    pub correlation_id: Option<String>,
    /// Digest of the job's payload (`sha256:` over its canonical JSON), tying the event to the
    /// exact inputs; absent on run-level events.
    #[serde(default)]
    pub inputs_hash: Option<String>,
    /// The version the worker named when it took the lease, on events a worker caused.
    #[serde(default)]
    pub worker_version: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Event-specific detail (`from`/`to` states, fencing token, error…).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}
