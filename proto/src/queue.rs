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
    /// Jobs per state.
    pub depth: QueueDepth,
}

/// Response of `GET /v1/queues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueList {
    /// Every queue of the tenant that has jobs or has been paused, sorted by name.
    pub queues: Vec<QueueInfo>,
}
