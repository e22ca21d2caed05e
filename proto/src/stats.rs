//! What happened to a tenant's jobs over time, rolled up per minute from the ledger:
//! throughput (`GET /v1/stats`), failures by class (`GET /v1/failures`) and service-level
//! objectives with their burn rates (`GET /v1/slo`, `PUT /v1/slo/{queue}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One queue's counts in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsPoint {
    /// The minute's start.
    pub at: DateTime<Utc>,
    /// Queue.
    pub queue: String,
    /// Attempts started (leases granted; a lease taken over after it expired counts again).
    pub leased: u64,
    /// Jobs that succeeded.
    pub succeeded: u64,
    /// Attempts that failed: failures reported by workers (retried or not), leases that
    /// expired, attempts whose run time ran out.
    pub failed: u64,
    /// Jobs that ended `dead` (attempts spent or a failure not to retry).
    pub dead: u64,
    /// Jobs that ended `cancelled`.
    pub cancelled: u64,
}

/// Answer of `GET /v1/stats`: per minute and queue, oldest first; minutes with nothing are
/// left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobStats {
    /// The first minute asked for.
    pub since: DateTime<Utc>,
    /// The end of the range (now).
    pub until: DateTime<Utc>,
    /// Width of a point, in seconds (60).
    pub bucket_secs: u32,
    /// The points.
    pub points: Vec<StatsPoint>,
}

/// Failed attempts of one class in one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureClass {
    /// Queue.
    pub queue: String,
    /// The failure's `error.class` (`lease_expired` for an expired lease, `timeout` for a run
    /// time that ran out).
    pub class: String,
    /// Failed attempts in the range.
    pub count: u64,
    /// The minute of the latest.
    pub last_at: DateTime<Utc>,
}

/// Answer of `GET /v1/failures`: failed attempts counted by queue and class, most first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureClasses {
    /// Start of the range.
    pub since: DateTime<Utc>,
    /// End of the range (now).
    pub until: DateTime<Utc>,
    /// The classes.
    pub classes: Vec<FailureClass>,
}

/// A queue's service-level objectives: the share of jobs that must succeed, and the share that
/// must be picked up (leased) within `pickup_ms` of becoming due.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SloObjective {
    /// Of the jobs that ended `succeeded` or `dead`, the share that must succeed (0.5 to
    /// 0.99999; default 0.99).
    pub success_ratio: f64,
    /// The pickup latency objective, in milliseconds, from when a job became due to its lease
    /// (one of 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000; default
    /// 1000).
    pub pickup_ms: u64,
    /// The share of leases that must come within `pickup_ms` (0.5 to 0.99999; default 0.99).
    pub pickup_ratio: f64,
}

impl Default for SloObjective {
    fn default() -> Self {
        Self {
            success_ratio: 0.99,
            pickup_ms: 1000,
            pickup_ratio: 0.99,
        }
    }
}

/// The pickup latencies (milliseconds) counted apart: a `pickup_ms` objective is one of them.
pub const PICKUP_BOUNDS_MS: [u64; 12] = [
    10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000,
];

/// How one objective fares over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SloMeasure {
    /// Events that met the objective (jobs that succeeded; leases within `pickup_ms`).
    pub good: u64,
    /// Events counted (jobs that succeeded or died; leases).
    pub total: u64,
    /// `good / total`; absent when nothing was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// How fast the error budget burns: the share that missed over the share allowed to miss
    /// (`(1 - ratio) / (1 - objective)`). 1 spends the budget exactly over the window; above
    /// 1 spends it sooner. Absent when nothing was counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate: Option<f64>,
}

/// One queue's objectives and how they fare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueSlo {
    /// Queue.
    pub queue: String,
    /// Its objectives: its own (`PUT /v1/slo/{queue}`), else the tenant's (`PUT /v1/slo/*`),
    /// else the defaults.
    pub objective: SloObjective,
    /// Whether the objectives were set (for the queue or the tenant) rather than the defaults.
    pub configured: bool,
    /// Jobs that succeeded against jobs that ended.
    pub success: SloMeasure,
    /// Leases within `pickup_ms` against leases.
    pub pickup: SloMeasure,
}

/// Answer of `GET /v1/slo`: each queue with activity in the window or objectives of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SloReport {
    /// The window measured, in seconds.
    pub window_secs: u64,
    /// Queues, by name.
    pub queues: Vec<QueueSlo>,
}
