use serde::{Deserialize, Serialize};

/// Jobs per state in one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueDepth {
    /// Waiting for DAG parents.
    pub blocked: i64,
    /// Waiting for a worker (including those scheduled for later).
    pub queued: i64,
    /// Held by a worker.
    pub leased: i64,
    /// Finished successfully.
    pub succeeded: i64,
    /// Attempts exhausted or failed fatally.
    pub dead: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// One queue and its depth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// Whether claims are paused on this queue.
    pub paused: bool,
    /// Longest run of one attempt, in milliseconds, for the queue's jobs that do not set their
    /// own `timeout_ms`; none when unset.
    pub default_timeout_ms: Option<u64>,
    /// Jobs per state.
    pub depth: QueueDepth,
}

/// Body of `PUT /v1/queues/{name}/settings`: the queue's settings, replaced as a whole (a key
/// left out is unset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Longest run of one attempt in milliseconds (1000..=604 800 000) for jobs of this queue
    /// without a `timeout_ms` of their own, applied when an attempt is claimed; `null` or
    /// absent: none.
    #[serde(default)]
    pub default_timeout_ms: Option<u64>,
}

/// Response of `GET /v1/queues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueList {
    /// Every queue of the tenant that has jobs or has been paused, sorted by name.
    pub queues: Vec<QueueInfo>,
}
