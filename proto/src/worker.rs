//! The worker session protocol: batch outcomes over HTTP (`POST /v1/leases/outcomes`) and the
//! push transport over WebSocket (`GET /v1/workers/connect`).
//!
//! On the WebSocket every frame is one JSON text message tagged by `type`. The worker opens with
//! [`ClientMessage::Hello`], then grants credit ([`ClientMessage::Credit`], one per free slot);
//! the coordinator pushes [`ServerMessage::Leases`] as jobs become ready, never more than the
//! credit outstanding. Heartbeats and outcomes travel on the same socket, each answered by an
//! ack carrying the same `seq`. A socket that closes leaves its leases to expire (or to be
//! released first, on a graceful drain).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorBody;
use crate::job::Artifact;
use crate::job::JobState;
use crate::lease::{FailureInfo, HeartbeatItem, HeartbeatResult, Lease};

/// What a worker reports for one lease.
///
/// Decoded through [`OutcomeWire`], so that a key the outcome does not know is refused (serde
/// cannot refuse unknown keys of a struct that flattens an enum).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "OutcomeWire")]
pub struct OutcomeReport {
    /// The job.
    pub job_id: Uuid,
    /// The lease's token.
    pub fencing_token: i64,
    /// What happened.
    #[serde(flatten)]
    pub outcome: OutcomeKind,
}

/// The three ways a lease ends. A `fail` of a job whose cancel was requested ends it
/// `cancelled`; this is how workers report a cancelled handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The handler succeeded.
    Complete {
        /// Its result.
        #[serde(default)]
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        result: serde_json::Value,
        /// Artifacts it uploaded (any order; stored sorted by name).
        #[serde(default)]
        artifacts: Vec<Artifact>,
        /// `sha256:` of the JCS form of the name-sorted manifest; checked when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest_digest: Option<String>,
    },
    /// The handler failed.
    Fail {
        /// What went wrong.
        error: FailureInfo,
        /// When to run again if retryable and attempts remain; default: the job's backoff (its
        /// hint, else 1 s doubling up to 10 min, full jitter), as the SDK computes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
    },
    /// Given back unrun (graceful drain): no attempt spent.
    Release,
}

/// The `outcome` tag of an [`OutcomeReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutcomeTag {
    Complete,
    Fail,
    Release,
}

impl OutcomeTag {
    fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Fail => "fail",
            Self::Release => "release",
        }
    }
}

/// Every key any outcome may carry; [`OutcomeReport`] then checks that the keys fit the tag.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeWire {
    job_id: Uuid,
    fencing_token: i64,
    outcome: OutcomeTag,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    artifacts: Option<Vec<Artifact>>,
    #[serde(default)]
    manifest_digest: Option<String>,
    #[serde(default)]
    error: Option<FailureInfo>,
    #[serde(default)]
    retry_at: Option<DateTime<Utc>>,
}

impl TryFrom<OutcomeWire> for OutcomeReport {
    type Error = String;

    fn try_from(w: OutcomeWire) -> Result<Self, Self::Error> {
        // The same wording as serde's own, so that the coordinator names the key alike.
        let stray = |key: &str| {
            Err(format!(
                "unknown field `{key}` (not part of a `{}` outcome)",
                w.outcome.as_str()
            ))
        };
        let outcome = match w.outcome {
            OutcomeTag::Complete => {
                if w.error.is_some() {
                    return stray("error");
                }
                if w.retry_at.is_some() {
                    return stray("retry_at");
                }
                OutcomeKind::Complete {
                    result: w.result.unwrap_or_default(),
                    artifacts: w.artifacts.unwrap_or_default(),
                    manifest_digest: w.manifest_digest,
                }
            }
            OutcomeTag::Fail => {
                for (key, given) in [
                    ("result", w.result.is_some()),
                    ("artifacts", w.artifacts.is_some()),
                    ("manifest_digest", w.manifest_digest.is_some()),
                ] {
                    if given {
                        return stray(key);
                    }
                }
                OutcomeKind::Fail {
                    error: w.error.ok_or("missing field `error`")?,
                    retry_at: w.retry_at,
                }
            }
            OutcomeTag::Release => {
                for (key, given) in [
                    ("result", w.result.is_some()),
                    ("artifacts", w.artifacts.is_some()),
                    ("manifest_digest", w.manifest_digest.is_some()),
                    ("error", w.error.is_some()),
                    ("retry_at", w.retry_at.is_some()),
                ] {
                    if given {
                        return stray(key);
                    }
                }
                OutcomeKind::Release
            }
        };
        Ok(Self {
            job_id: w.job_id,
            fencing_token: w.fencing_token,
            outcome,
        })
    }
}

/// Body of `POST /v1/leases/outcomes`: many outcomes in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OutcomesRequest {
    /// At most 1000 outcomes.
    pub outcomes: Vec<OutcomeReport>,
    /// Tenant; default `default`. `*` (a shared pool's worker, see `ClaimRequest::tenants`):
    /// each outcome's job's own tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// How one outcome was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Recorded.
    Ok,
    /// The token is stale or the job is no longer leased; nothing changed.
    LeaseLost,
    /// No such job.
    NotFound,
}

/// The answer for one outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomeResult {
    /// The job.
    pub job_id: Uuid,
    /// How it was received.
    pub status: OutcomeStatus,
    /// The job's state afterwards (its current state when `lease_lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
}

/// Answer of `POST /v1/leases/outcomes`, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutcomesResponse {
    /// One result per outcome sent.
    pub results: Vec<OutcomeResult>,
}

/// Worker → coordinator frames on `/v1/workers/connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First frame: who I am and what I take.
    Hello {
        /// Stable id of this worker process.
        worker_id: String,
        /// Queues to take leases from.
        queues: Vec<String>,
        /// Lease length for every lease pushed on this session.
        lease_ttl_ms: u64,
        /// SDK and application version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        worker_version: Option<String>,
        /// Tenant; default `default`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        /// A worker pool shared by these tenants instead of one (as `ClaimRequest::tenants`):
        /// heartbeats and outcomes on the session then act for each job's own tenant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenants: Option<Vec<String>>,
        /// Shares of the pool's tenants (as `ClaimRequest::tenant_weights`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant_weights: Option<std::collections::BTreeMap<String, u32>>,
    },
    /// `n` more slots are free: the coordinator may push up to `n` more leases.
    Credit {
        /// Slots added.
        n: u32,
    },
    /// Extend these leases (answered by `heartbeat_ack` with the same `seq`).
    Heartbeat {
        /// Correlates the ack.
        seq: u64,
        /// The leases.
        leases: Vec<HeartbeatItem>,
    },
    /// Record these outcomes (answered by `outcomes_ack` with the same `seq`).
    Outcomes {
        /// Correlates the ack.
        seq: u64,
        /// The outcomes.
        outcomes: Vec<OutcomeReport>,
    },
    /// Stop pushing leases (graceful drain); heartbeats and outcomes still work.
    Drain,
}

/// Coordinator → worker frames on `/v1/workers/connect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        /// Id of this session, for logs.
        session_id: Uuid,
    },
    /// Newly granted leases (each consumes one credit).
    Leases {
        /// The leases.
        leases: Vec<Lease>,
    },
    /// Answer to `heartbeat`.
    HeartbeatAck {
        /// The heartbeat's `seq`.
        seq: u64,
        /// One result per lease, in request order.
        leases: Vec<HeartbeatResult>,
    },
    /// Answer to `outcomes`.
    OutcomesAck {
        /// The outcomes' `seq`.
        seq: u64,
        /// One result per outcome, in request order.
        results: Vec<OutcomeResult>,
    },
    /// A failure. With `seq`, it answers that request (which had no effect); without, the
    /// session is over and the socket closes.
    Error {
        /// The request it answers, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// What went wrong (same envelope body as HTTP errors).
        error: ErrorBody,
    },
}
