//! The workers a tenant has (`GET /v1/workers`): as the coordinators saw them claim and
//! heartbeat, with the leases they hold.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// Its id (`worker_id` of its claims).
    pub worker_id: String,
    /// How it last claimed: `websocket` (a session) or `http` (long polls).
    pub transport: String,
    /// The queues it last claimed from.
    pub queues: Vec<String>,
    /// Its SDK and application version, if it said.
    pub version: Option<String>,
    /// When a coordinator first saw it.
    pub first_seen_at: DateTime<Utc>,
    /// When a coordinator last saw it (a claim, a heartbeat, a frame of its session), to
    /// within a few seconds.
    pub last_seen_at: DateTime<Utc>,
    /// When it last heartbeated.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Seen within the last minute, and its session (if any) not closed since.
    pub connected: bool,
    /// Jobs of the tenant leased to it now.
    pub leases: u64,
}

/// Answer of `GET /v1/workers`: by worker id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerList {
    /// The workers seen within the window asked for, or holding leases.
    pub workers: Vec<WorkerInfo>,
}
