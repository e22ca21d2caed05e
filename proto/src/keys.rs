//! API keys (`/v1/keys`): each bound to one tenant and a set of scopes. The token is shown once,
//! when the key is created; the coordinator keeps only its SHA-256.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a key may do. A route needs one of the scopes the docs' table names for it.
pub const SCOPES: [&str; 8] = [
    "jobs:read",
    "jobs:write",
    "worker",
    "runs",
    "events",
    "admin",
    "orch:quota",
    "orch:backfill",
];

/// Body of `POST /v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// The tenant the key acts for (default: the caller's). Only the coordinator's own key
    /// (`ORCHESTRATOR_API_KEY`) may create keys for another tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A label for people (who holds it, what for); up to 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its scopes, at least one, each one of `jobs:read`, `jobs:write`, `worker`, `runs`,
    /// `events`, `admin`, `orch:quota`, `orch:backfill`.
    pub scopes: Vec<String>,
    /// When it stops working (default: never). Must be in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key as listed: everything but the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKey {
    /// Public id (`k_` and 12 hex digits); also the token's second part.
    pub id: String,
    /// Its label ("" when none was given).
    pub name: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When a request last used it (recorded at most every few seconds).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Answer of `POST /v1/keys`: the key and its token, which is never shown again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    /// The key.
    pub key: ApiKey,
    /// The secret to send as `Authorization: Bearer <token>`: `lhk_<id>_<64 hex digits>`.
    pub token: String,
}

/// Answer of `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyList {
    /// The keys, newest first, revoked ones included.
    pub keys: Vec<ApiKey>,
}

/// Answer of `GET /v1/whoami`: who the caller is, as its key makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Identity {
    /// The tenant the caller acts for.
    pub tenant: String,
    /// `key` (a created key), `root` (the coordinator's own key) or `keyless` (no key is
    /// configured: the `Leasehold-Tenant` header picks the tenant).
    pub principal: String,
    /// The created key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The created key's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// What the caller may do (every scope for `root` and `keyless`).
    pub scopes: Vec<String>,
}
