//! Owned parameters of the store's write methods that are not on the hot path. Each carries
//! its `now` (the caller's clock, injected in tests) and owns its fields, so [`super::Detached`]
//! moves one value onto its task and a new field is added in one place. The hot paths (claims,
//! enqueue, hand-off, heartbeats, outcomes) keep their own shapes: they are batched and
//! per backend on purpose.

use chrono::{DateTime, Utc};
use leasehold_proto::QueueSettings;
use serde_json::Value;
use uuid::Uuid;

/// Cancel one job ([`super::Store::cancel_job`]).
#[derive(Debug, Clone)]
pub struct CancelJob {
    /// When.
    pub now: DateTime<Utc>,
    /// Whose job.
    pub tenant: String,
    /// Which job.
    pub id: Uuid,
    /// Why (recorded on the event and the job's error).
    pub reason: String,
}

/// Send a dead or cancelled job back to work ([`super::Store::retry_job`]).
#[derive(Debug, Clone)]
pub struct RetryJob {
    /// When.
    pub now: DateTime<Utc>,
    /// Whose job.
    pub tenant: String,
    /// Which job.
    pub id: Uuid,
}

/// Cancel a run ([`super::Store::cancel_run`]).
#[derive(Debug, Clone)]
pub struct CancelRun {
    /// When.
    pub now: DateTime<Utc>,
    /// Whose run.
    pub tenant: String,
    /// Which run.
    pub id: Uuid,
}

/// Pause or resume a queue ([`super::Store::set_queue_paused`]).
#[derive(Debug, Clone)]
pub struct PauseQueue {
    /// When.
    pub now: DateTime<Utc>,
    /// Whose queue.
    pub tenant: String,
    /// Which queue.
    pub queue: String,
    /// True to pause, false to resume.
    pub paused: bool,
}

/// Replace a queue's settings ([`super::Store::set_queue_settings`]).
#[derive(Debug, Clone)]
pub struct SetQueueSettings {
    /// When.
    pub now: DateTime<Utc>,
    /// Whose queue.
    pub tenant: String,
    /// Which queue.
    pub queue: String,
    /// The settings, whole.
    pub settings: QueueSettings,
}

/// Append an event about a run ([`super::Store::add_run_event`]).
#[derive(Debug, Clone)]
pub struct AddRunEvent {
    /// When.
    pub now: DateTime<Utc>,
    /// Whose run.
    pub tenant: String,
    /// Which run.
    pub run_id: Uuid,
    /// The event's type.
    pub kind: String,
    /// The job it is about, if any.
    pub job_id: Option<Uuid>,
    /// The event's data.
    pub data: Value,
}
