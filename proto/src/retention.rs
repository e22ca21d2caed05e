//! Bounded storage: how long finished jobs are kept (`/v1/retention…`), what a sweep removed,
//! and the archived ledger segments (`/v1/ledger/segments`).
//!
//! A window is written as a whole number and a unit — `90s`, `15m`, `24h`, `7d` — or `off`
//! (kept forever).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Body of `PUT /v1/retention/tenant` and `PUT /v1/retention/queues/{queue}`: the windows this
/// override sets. A field left out is inherited (queue → tenant → the coordinator's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// How long a `succeeded` job is kept after it finished (`24h`, `7d`, `off`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<String>,
    /// How long a `dead` or `cancelled` job (`upstream_failed` included) is kept after it
    /// finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A stored override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredRetentionPolicy {
    /// The queue it applies to; absent for the tenant-wide override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Window for `succeeded` jobs, when this override sets one.
    #[serde(default)]
    pub succeeded: Option<String>,
    /// Window for `dead` and `cancelled` jobs, when this override sets one.
    #[serde(default)]
    pub failed: Option<String>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// The coordinator's defaults (its flags), which overrides refine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionDefaults {
    /// `--retain-succeeded`.
    pub succeeded: String,
    /// `--retain-failed`.
    pub failed: String,
    /// `--retain-ledger`: events older than this are archived, then trimmed (all tenants).
    pub ledger: String,
}

/// Answer of `GET /v1/retention`: the defaults and the tenant's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionSettings {
    /// The coordinator's defaults.
    pub defaults: RetentionDefaults,
    /// The tenant-wide override, if any.
    pub tenant: Option<StoredRetentionPolicy>,
    /// Per-queue overrides, sorted by queue.
    pub queues: Vec<StoredRetentionPolicy>,
}

/// Answer of `GET /v1/retention/queues/{queue}`: the windows that apply to the queue's jobs and
/// where each comes from (`queue`, `tenant` or `default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectiveRetention {
    /// The queue.
    pub queue: String,
    /// Window for `succeeded` jobs.
    pub succeeded: String,
    /// Which level set it.
    pub succeeded_from: String,
    /// Window for `dead` and `cancelled` jobs.
    pub failed: String,
    /// Which level set it.
    pub failed_from: String,
}

/// What one sweep did (`POST /v1/retention/sweep`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SweepReport {
    /// False when another replica was sweeping: this one did nothing.
    pub swept: bool,
    /// Finished jobs removed (those of removed runs included).
    pub jobs_removed: u64,
    /// Finished runs removed with their jobs.
    pub runs_removed: u64,
    /// Artifact blobs deleted because no remaining job names them.
    pub blobs_collected: u64,
    /// Ledger events archived to segments and then deleted.
    pub events_archived: u64,
    /// Ledger segments written.
    pub segments_written: u64,
    /// Stored states of limit buckets at rest for an hour, deleted (docs/flow-control.md).
    #[serde(default)]
    pub limit_buckets_pruned: u64,
}

/// The manifest line that ends an archived ledger segment: the export's manifest
/// ([`crate::LedgerManifest`]) plus the segment's place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SegmentManifest {
    /// Always `manifest`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Events in the segment.
    pub count: u64,
    /// First event id.
    pub first_id: Option<i64>,
    /// Last event id.
    pub last_id: Option<i64>,
    /// `at` of the first event.
    pub from: DateTime<Utc>,
    /// The archive cut-off: every event of the segment happened before it.
    pub to: DateTime<Utc>,
    /// `sha256:` of every byte before this line (the event lines).
    pub sha256: String,
    /// Position in the chain, from 1.
    pub seq: i64,
    /// `sha256:` of the previous segment's manifest line (its bytes with the newline); absent
    /// for the first segment.
    pub prev: Option<String>,
}

/// One archived segment as the coordinator recorded it (`GET /v1/ledger/segments`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerSegment {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// First event id.
    pub first_id: i64,
    /// Last event id.
    pub last_id: i64,
    /// Events in it.
    pub count: u64,
    /// `sha256:` of its event lines (the manifest's `sha256`).
    pub sha256: String,
    /// `sha256:` of its manifest line: what the next segment's `prev` names.
    pub manifest_sha256: String,
    /// The previous segment's `manifest_sha256`.
    pub prev: Option<String>,
    /// File name in the archive directory.
    pub file: String,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
}

/// Answer of `GET /v1/ledger/segments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerSegmentList {
    /// Segments in chain order.
    pub segments: Vec<LedgerSegment>,
}
