//! Flow control: the limits a tenant puts on leasing (docs/flow-control.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a limit allows, per bucket: leases per second (a token bucket) and leases held at once.
/// At least one of `rate` and `concurrency` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// Leases granted per second at most, on average (0.001 to 100 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.001, maximum = 100_000.0))]
    pub rate: Option<f64>,
    /// Leases that may be granted at once after a quiet spell (the bucket's size, 1 to 100 000);
    /// default `rate` rounded up. Only with `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000))]
    pub burst: Option<u32>,
    /// Leases held at once at most (1 to 100 000). A lease counts until its job leaves
    /// `leased`: an expired lease frees its slot when a claim takes it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000))]
    pub concurrency: Option<u32>,
}

/// Body of `PUT /v1/limits/{key}`: the limit, and why it is set (recorded in the audit trail).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PutLimit {
    /// See [`LimitSpec::rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.001, maximum = 100_000.0))]
    pub rate: Option<f64>,
    /// See [`LimitSpec::burst`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000))]
    pub burst: Option<u32>,
    /// See [`LimitSpec::concurrency`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100_000))]
    pub concurrency: Option<u32>,
    /// Why (required; up to 1000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The change ticket (required; up to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

impl PutLimit {
    /// The limit itself, without its justification.
    pub fn spec(&self) -> LimitSpec {
        LimitSpec {
            rate: self.rate,
            burst: self.burst,
            concurrency: self.concurrency,
        }
    }
}

/// One bucket of a limit as it stands: a limit on an exact key has one, a prefix limit
/// (`host:*`) one per key it has met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitBucket {
    /// The key the bucket counts (the limit's own, or the job key a prefix matched).
    pub bucket: String,
    /// Tokens available now (rate limits; at most `burst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<f64>,
    /// Leases held now under this bucket (concurrency limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased: Option<u64>,
}

/// A limit: its key, what it allows and its buckets now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limit {
    /// `*` (the whole tenant), `queue:<name>`, `kind:<kind>`, a job key (`host:api.example.com`)
    /// or a prefix (`host:*`, one bucket per key).
    pub key: String,
    /// See [`LimitSpec::rate`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// See [`LimitSpec::burst`] (here with its default filled in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// See [`LimitSpec::concurrency`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Its buckets as they stand (a bucket not met yet is full and idle).
    pub buckets: Vec<LimitBucket>,
}

/// Answer of `GET /v1/limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitList {
    /// The tenant's limits, by key.
    pub limits: Vec<Limit>,
}
