//! Who may call: API key (`--api-key`, `ORCHESTRATOR_API_KEY`), CORS (`--cors-origins`,
//! `CORS_ORIGINS`) and a fixed-window rate limit per client address (`--rate-limit-window-ms` +
//! `--rate-limit-max`, `RATE_LIMIT_WINDOW_MS` + `RATE_LIMIT_MAX`); all flags of `leasehold serve`.
//!
//! The key is kept only as its SHA-256 and compared in constant time. `/health`, `/ready` and
//! `/metrics` are always open. Event streams also accept `?api_key=` because browsers'
//! EventSource cannot set headers; request logs carry only the path, never the query.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leasehold_proto::ErrorCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// Access settings: `leasehold serve`'s `--api-key`, `--cors-origins` and `--rate-limit-*`
/// (read from the variables the replaced services used).
#[derive(Clone, Default)]
pub struct AccessConfig {
    key_digest: Option<[u8; 32]>,
    /// Allowed browser origins (`*` for any).
    pub cors_origins: Vec<String>,
    /// Rate-limit window and budget per client address.
    pub rate_limit: Option<(Duration, u32)>,
}

impl std::fmt::Debug for AccessConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessConfig")
            .field("api_key", &self.key_digest.map(|_| "<set>"))
            .field("cors_origins", &self.cors_origins)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl AccessConfig {
    /// Requires `key` on every protected route.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.key_digest = Some(Sha256::digest(key.as_bytes()).into());
        self
    }

    /// Whether an API key is required.
    pub fn requires_key(&self) -> bool {
        self.key_digest.is_some()
    }

    /// Whether a presented key matches (constant time over the digests).
    fn key_ok(&self, presented: Option<&str>) -> bool {
        match (self.key_digest, presented) {
            (None, _) => true,
            (Some(expected), Some(p)) => {
                let got: [u8; 32] = Sha256::digest(p.as_bytes()).into();
                bool::from(expected.ct_eq(&got))
            }
            (Some(_), None) => false,
        }
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

/// Shared access state: the config plus the rate-limit windows.
#[derive(Debug, Clone, Default)]
pub struct Access {
    config: AccessConfig,
    windows: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

impl Access {
    /// Access control with `config`.
    pub fn new(config: AccessConfig) -> Self {
        Self {
            config,
            windows: Default::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AccessConfig {
        &self.config
    }

    /// Counts a request from `ip`; `Some(retry_after)` when over budget.
    fn over_limit(&self, ip: IpAddr) -> Option<Duration> {
        let (window, max) = self.config.rate_limit?;
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        (entry.1 > max).then(|| window.saturating_sub(now.duration_since(entry.0)))
    }
}

fn is_open(path: &str) -> bool {
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

/// The middleware: rate limit, then API key. CORS preflights pass through (the CORS layer
/// outside this one answers them).
pub(crate) async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_open(&path) || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if let Some(retry) = access.over_limit(ip) {
        let secs = retry.as_secs_f64().ceil().max(1.0) as u64;
        let mut response = ApiError::new(
            ErrorCode::RateLimited,
            format!("too many requests; retry in {secs} s"),
        )
        .with_details(serde_json::json!({"retry_after_seconds": secs}))
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    if !access.config.key_ok(presented_key(&req).as_deref()) {
        let mut response = ApiError::new(
            ErrorCode::Unauthorized,
            "missing or wrong API key: send Authorization: Bearer <key> or X-Api-Key",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(req).await
}
