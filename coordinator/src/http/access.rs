//! Who may call: API key (`--api-key`, `ORCHESTRATOR_API_KEY`), CORS (`--cors-origins`,
//! `CORS_ORIGINS`) and the settings of the rate limit per client address (`super::rate_limit`);
//! all flags of `leasehold serve`.
//!
//! The key is kept only as its SHA-256 and compared in constant time; who a key is, and what it
//! may do, is [`crate::keys`]' decision, and the scope each route needs is `http/scopes.rs`'.
//! `/health`, `/ready` and `/metrics` are always open. Event streams also accept `?api_key=`
//! because browsers' EventSource cannot set headers; request logs carry only the path, never
//! the query.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leasehold_proto::ErrorCode;
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::keys::{KeyRing, Principal, Verdict};

/// Access settings: `leasehold serve`'s `--api-key`, `--cors-origins` and `--rate-limit-*`
/// (read from the variables the replaced services used).
#[derive(Clone, Default)]
pub struct AccessConfig {
    key_digest: Option<[u8; 32]>,
    /// Allowed browser origins (`*` for any).
    pub cors_origins: Vec<String>,
    /// Rate-limit window and budget per client address.
    pub rate_limit: Option<(Duration, u32)>,
    /// Host names a keyless coordinator answers to (`crate::http::cross_site`).
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("api_key", &self.key_digest.map(|_| "<set>"))
            .field("cors_origins", &self.cors_origins)
            .field("rate_limit", &self.rate_limit)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl AccessConfig {
    /// Requires `key` on every protected route.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.key_digest = Some(Sha256::digest(key.as_bytes()).into());
        self
    }

    /// Whether `ORCHESTRATOR_API_KEY` is set (created keys require a key too, once one exists).
    pub fn requires_key(&self) -> bool {
        self.key_digest.is_some()
    }

    /// The digest of `ORCHESTRATOR_API_KEY`, if set.
    pub(crate) fn root_digest(&self) -> Option<&[u8; 32]> {
        self.key_digest.as_ref()
    }

    /// The CORS layer, if origins are configured.
    pub fn cors(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        let origin = if self.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::OPTIONS,
                ])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::HeaderName::from_static("x-api-key"),
                    header::HeaderName::from_static("idempotency-key"),
                    header::HeaderName::from_static("last-event-id"),
                    header::HeaderName::from_static("leasehold-tenant"),
                ])
                .expose_headers([
                    header::HeaderName::from_static("x-request-id"),
                    header::HeaderName::from_static("leasehold-api-version"),
                    header::HeaderName::from_static("idempotent-replayed"),
                    header::RETRY_AFTER,
                ])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// Shared access state: the config plus the rate limiter.
#[derive(Debug, Clone, Default)]
pub struct Access {
    config: AccessConfig,
    limiter: Option<super::rate_limit::RateLimiter>,
}

impl Access {
    /// Access control with `config`.
    pub fn new(config: AccessConfig) -> Self {
        let limiter = config
            .rate_limit
            .map(|(window, max)| super::rate_limit::RateLimiter::new(window, max));
        Self { config, limiter }
    }

    /// The configuration.
    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    /// The rate limiter, when one is configured.
    pub(crate) fn limiter(&self) -> Option<super::rate_limit::RateLimiter> {
        self.limiter.clone()
    }
}

/// The probes: open to anyone, never rate-limited.
pub(super) fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// The event streams a browser's `EventSource` reads (it cannot send headers, so `?api_key=`
/// is taken there, and only there): `/v1/events` and `/runs/{runId}/events`.
fn is_stream(path: &str) -> bool {
    if path == "/v1/events" {
        return true;
    }
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), ["", "runs", id, "events"] if !id.is_empty())
}

fn presented_key(req: &Request) -> Option<String> {
    let headers = req.headers();
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 §11.1): `BEARER` and `bearer` too.
            let (scheme, token) = v.trim_start().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
    {
        return Some(bearer.trim().to_owned());
    }
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_owned());
    }
    if is_stream(req.uri().path()) {
        let query = req.uri().query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        return pairs
            .into_iter()
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v);
    }
    None
}

/// What the guard needs: the access settings, the keys, the clock.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) access: Access,
    pub(crate) keys: Arc<KeyRing>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The middleware: the key (who is calling), then the scope the route needs (the rate limit
/// runs before it, outside CORS: `super::rate_limit`).
/// The caller's [`Principal`] goes into the request's extensions for the handlers (the tenant
/// extractor reads it). CORS preflights pass through (the CORS layer outside this one answers
/// them).
pub(crate) async fn guard(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    // The console's files hold no data: its pages call the API with the operator's key.
    if is_open(&path) || super::console::is_console(&path) || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let access = &gate.access;
    let presented = presented_key(&req);
    let verdict = gate
        .keys
        .verify(
            access.config.root_digest(),
            presented.as_deref(),
            gate.clock.now(),
        )
        .await;
    let principal = match verdict {
        Verdict::Allowed(principal) => principal,
        Verdict::Refused(reason) => {
            let mut response = ApiError::new(
                ErrorCode::Unauthorized,
                format!("{reason}: send Authorization: Bearer <key> or X-Api-Key"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        Verdict::Unavailable => {
            return ApiError::new(
                ErrorCode::Unavailable,
                "the API keys cannot be read right now (the database is unavailable); retry",
            )
            .into_response();
        }
    };
    if let Some(needed) = super::scopes::needed(req.method(), &path)
        && !principal.allows(needed)
    {
        let names: Vec<&str> = needed.iter().map(|s| s.as_str()).collect();
        return ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this API key lacks the scope this route needs: {}",
                names.join(" or ")
            ),
        )
        .with_details(serde_json::json!({"needed_scopes": names}))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The caller, as the guard found it (keyless when no guard ran, as in some unit tests).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Open))
    }
}
