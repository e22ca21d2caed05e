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
    /// A circuit breaker per bucket: consecutive failures open it (no leases), a probe after
    /// the cooldown closes it again on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSpec>,
    /// Windows in which nothing the limit covers is leased (at most 32).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
    /// Whether `rate` adapts to upstream throttles (AIMD): a job's failure of class
    /// `throttled` halves the rate of its buckets (down to 1%), which then regains 2% of `rate`
    /// per second, never above `rate`. Only with `rate`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive: bool,
}

/// A blackout window: **absolute** (`from` and `to`, instants) or **recurring** (`start` and
/// `end` local times `HH:MM`, on `days` — `mon` … `sun`, every day when absent — in the IANA
/// time zone `tz`, default UTC; an `end` before its `start` crosses midnight).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Blackout {
    /// Absolute: the start (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// Absolute: the end (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Recurring: the local start time, `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Recurring: the local end time, `HH:MM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Recurring: the days a window starts on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// Recurring: the time zone, e.g. `Europe/Paris`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
}

/// A circuit breaker: `failures` consecutive failures (of `classes`, or any class when empty)
/// of jobs in a bucket open it: no job of that bucket is leased for `cooldown_ms`; then one
/// probe is leased (half-open): its success closes the breaker, its failure opens it again.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Consecutive failures that open it (1 to 1000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub failures: u32,
    /// The failure classes (`error.class`) that count; empty or absent: every failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// How long it stays open before a probe, in milliseconds (1000 to 86 400 000); default
    /// 30 000. A probe that never reports lets another through after as long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1000, maximum = 86_400_000))]
    pub cooldown_ms: Option<u64>,
}

/// Body of `PUT /v1/limits/{key}`: the limit, and why it is set (recorded in the audit trail).
/// It repeats [`LimitSpec`]'s fields rather than flattening it: serde cannot refuse unknown
/// fields through `flatten`, and a misspelt `concurency` must be refused, not ignored.
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
    /// See [`LimitSpec::breaker`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSpec>,
    /// See [`LimitSpec::blackouts`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
    /// See [`LimitSpec::adaptive`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive: bool,
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
            breaker: self.breaker.clone(),
            blackouts: self.blackouts.clone(),
            adaptive: self.adaptive,
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
    /// The rate the bucket runs at now (adaptive limits): `rate` lowered by throttles,
    /// recovering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_rate: Option<f64>,
    /// The bucket's circuit breaker (limits with one; a bucket never failed is closed and not
    /// listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerState>,
}

/// A circuit breaker as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BreakerState {
    /// `closed` (leases flow), `open` (none until the cooldown ends) or `half_open` (one probe
    /// at a time).
    pub state: String,
    /// Consecutive counted failures so far.
    pub failures: u32,
    /// When it last opened, while not closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
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
    /// See [`LimitSpec::breaker`] (here with its default filled in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSpec>,
    /// See [`LimitSpec::blackouts`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Blackout>,
    /// See [`LimitSpec::adaptive`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive: bool,
    /// Whether a blackout window is on now, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blackout_until: Option<DateTime<Utc>>,
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

/// Answer of `GET /v1/incidents`: circuit breaker events, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentList {
    /// Events of type `breaker`.
    pub events: Vec<crate::Event>,
    /// Pass as `after` for the next page (absent on the last page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}
