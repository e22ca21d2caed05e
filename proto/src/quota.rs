//! Tenant quotas (`/v1/quota`): how many jobs a tenant may keep waiting (`max_queued`) and how
//! many it may hold leased at once (`max_leased`). Changing one needs the `orch:quota` scope, a
//! `reason` and a `ticket`, recorded in the tenant's audit trail.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest limit a quota may set.
pub const MAX_QUOTA_LIMIT: u64 = 1_000_000_000;

/// Body of `PUT /v1/quota`: the tenant's quota, replaced whole. A limit left out (or `null`) is
/// no limit; at least one must be set (`DELETE /v1/quota` removes the quota).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    /// Most jobs the tenant may have waiting — `queued` (due or scheduled) or `blocked` behind
    /// their parents — once an enqueue is stored; an enqueue past it is refused (429
    /// `quota_exceeded`, nothing stored). 0 refuses every enqueue.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000))]
    pub max_queued: Option<u64>,
    /// Most jobs the tenant may hold leased at once, enforced when leases are granted.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1_000_000_000))]
    pub max_leased: Option<u64>,
    /// Why (required, up to 1000 characters): recorded in the audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The change ticket it belongs to (required, up to 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// A tenant's stored quota. A `null` limit is no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredQuota {
    /// Most jobs waiting (`queued` or `blocked`) after an enqueue.
    pub max_queued: Option<u64>,
    /// Most jobs leased at once.
    pub max_leased: Option<u64>,
    /// When it was last written.
    pub updated_at: DateTime<Utc>,
}

/// What counts against a tenant's quota now: its live jobs by state. `max_queued` counts
/// `queued + blocked`, `max_leased` counts `leased` (a lease that expired counts until a claim
/// takes it over).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    /// Jobs `queued`, due or scheduled for later.
    pub queued: u64,
    /// Jobs `blocked` behind their parents in a run.
    pub blocked: u64,
    /// Jobs `leased`.
    pub leased: u64,
}

impl QuotaUsage {
    /// The jobs `max_queued` counts: `queued + blocked`.
    pub fn waiting(&self) -> u64 {
        self.queued.saturating_add(self.blocked)
    }
}

/// Answer of `GET /v1/quota`: the caller's tenant, its quota (`null`: none, no limit) and its
/// usage now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaStatus {
    /// The tenant.
    pub tenant: String,
    /// Its quota, if one is set.
    pub quota: Option<StoredQuota>,
    /// Its live jobs now.
    pub usage: QuotaUsage,
}
