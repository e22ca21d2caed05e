//! The HTTP surface: routes, shared state and the middleware every response passes through.

pub mod access;
pub mod artifacts;
mod audit;
mod bulk;
mod compat;
mod console;
mod cross_site;
mod cursor;
pub mod extract;
mod feed;
mod jobs;
mod keys;
mod leases;
mod limits;
pub mod openapi;
mod presence;
mod queues;
mod quotas;
mod rate_limit;
mod retention;
mod runs;
mod scopes;
mod service;
mod stats;
mod workers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use leasehold_proto::{API_VERSION, API_VERSION_HEADER, ErrorCode, ErrorEnvelope};
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::clock::Clock;
use crate::error::{ApiError, PendingError};
use crate::handoff::Handoffs;
use crate::ready::ReadySignal;
use crate::store::Store;

/// Everything a handler needs: one shared [`AppParts`], so a clone is one reference count
/// (every middleware layer and extractor clones the state: 5.5% of the coordinator's CPU per
/// single-job enqueue when it was the parts themselves, a path buffer included). Reads go
/// through `Deref`; a write (`state.max_body_bytes = …` while the server is being set up)
/// changes this handle's own parts, copying them first if they are shared, as assigning a
/// field of a copied struct did.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut AppParts {
        Arc::make_mut(&mut self.0)
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct AppParts {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Source of "now" (injected in tests).
    pub clock: Arc<dyn Clock>,
    /// Wakes long-polling claimers (the store's [`Store::ready_signal`]).
    pub ready: ReadySignal,
    /// Claimers parked in a long poll, for direct hand-off of new jobs.
    pub handoffs: Handoffs,
    /// Turns true when the server is shutting down (long-polls return at once).
    pub shutdown: watch::Receiver<bool>,
    /// Request body cap in bytes.
    pub max_body_bytes: usize,
    /// Where artifacts are stored (`<data_dir>/artifacts`).
    pub data_dir: std::path::PathBuf,
    /// Cap on one artifact in bytes.
    pub max_artifact_bytes: u64,
    /// Live fan-out of ledger events.
    pub events: crate::events::EventHub,
    /// API key, CORS and rate limit.
    pub access: access::Access,
    /// What the retention sweep keeps (`crate::retention`).
    pub retention: Arc<crate::retention::Retention>,
    /// The API keys created through `/v1/keys`, cached.
    pub keys: Arc<crate::keys::KeyRing>,
    /// The job gauges of `/metrics`.
    pub job_gauges: Arc<crate::metrics::JobGauges>,
    /// Tenants whose claimers wait for a concurrency slot (`crate::flow::waiters`).
    pub slot_waiters: crate::flow::waiters::SlotWaiters,
    /// What is known of tenants' limits: gated claims, outcomes that feed limits
    /// (`crate::flow::catalog`).
    pub catalog: crate::flow::catalog::Catalog,
    /// The fair share of shared worker pools' leases among their tenants
    /// (`crate::flow::pool`).
    pub fair_share: crate::flow::pool::FairShare,
    /// Which workers were seen, written to the store now and then (`crate::presence`).
    pub presence: crate::presence::Presence,
    /// How often a claimer held back by a concurrency limit asks again at the latest, should
    /// no wake-up reach it (`crate::flow::waiters::SLOT_POLL`).
    pub slot_poll: std::time::Duration,
    /// The longest a parked claimer waits before asking the store again (`--wake-poll-ms`;
    /// `None`: until a wake-up, something falls due, or its long poll ends).
    pub wake_poll: Option<std::time::Duration>,
    /// Single-job enqueues that arrive together share one transaction (`None`: each its own).
    pub(crate) groups: Option<crate::leasing::group::Groups>,
    /// The coordinator-wide high-water mark of waiting jobs (`--max-queued-jobs`).
    pub backpressure: Arc<crate::admission::Backpressure>,
}

/// Marks an error-status response whose body is not an error (e.g. a failing health report),
/// so the envelope renderer leaves it alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepBody;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.store.backend())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over `store` (artifacts under `data_dir`) with the wall clock and default limits.
    /// The returned sender ends
    /// long-polls when set to true.
    pub fn new(store: Arc<dyn Store>, data_dir: std::path::PathBuf) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        // Every write finishes its transaction even when the client hangs up mid-request.
        // Its committers are tasks of their own: a group commits whoever hangs up.
        let groups = crate::leasing::group::Groups::start(store.clone());
        let store: Arc<dyn Store> = Arc::new(crate::store::Detached(store));
        let events = crate::events::EventHub::start(store.clone(), rx.clone());
        // The store's own signal: it wakes claimers when its bookkeeping makes jobs ready.
        let ready = store.ready_signal();
        let state = AppParts {
            events,
            access: access::Access::default(),
            keys: Arc::new(crate::keys::KeyRing::new(store.clone())),
            store,
            clock: Arc::new(crate::clock::SystemClock),
            ready,
            handoffs: Handoffs::new(),
            shutdown: rx,
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            data_dir: data_dir.clone(),
            max_artifact_bytes: crate::config::DEFAULT_MAX_ARTIFACT_BYTES,
            retention: crate::retention::default_for(&data_dir),
            job_gauges: Arc::new(crate::metrics::JobGauges::new(false)),
            slot_waiters: Default::default(),
            catalog: Default::default(),
            fair_share: Default::default(),
            presence: Default::default(),
            slot_poll: crate::flow::waiters::SLOT_POLL,
            wake_poll: None,
            groups: Some(groups),
            backpressure: Arc::default(),
        };
        (Self(Arc::new(state)), tx)
    }

    /// The retention sweep over this state's store, clock, artifacts and settings.
    pub fn sweeper(&self) -> crate::retention::Sweeper {
        crate::retention::Sweeper {
            store: self.store.clone(),
            clock: self.clock.clone(),
            data_dir: self.data_dir.clone(),
            shutdown: self.shutdown.clone(),
            retention: self.retention.clone(),
        }
    }

    /// Leasing over this state's store, clock, wake-ups and parked claimers.
    pub(crate) fn leasing(&self) -> crate::leasing::Leasing {
        crate::leasing::Leasing {
            store: self.store.clone(),
            clock: self.clock.clone(),
            ready: self.ready.clone(),
            handoffs: self.handoffs.clone(),
            shutdown: self.shutdown.clone(),
            data_dir: self.data_dir.clone(),
            slot_waiters: self.slot_waiters.clone(),
            catalog: self.catalog.clone(),
            fair_share: self.fair_share.clone(),
            slot_poll: self.slot_poll,
            wake_poll: self.wake_poll,
            groups: self.groups.clone(),
        }
    }
}

/// The whole router. Tests drive it in-process with `tower::ServiceExt::oneshot`; `serve`
/// puts it on a socket.
pub fn app(state: AppState) -> Router {
    let max_body = state.max_body_bytes;
    // Install the recorder before the first request so no early sample is dropped.
    crate::metrics::handle();
    let request_id = HeaderName::from_static(leasehold_proto::REQUEST_ID_HEADER);
    // Each area exposes its own routes. Streams (WebSocket sessions, SSE feeds, artifact
    // transfers) must not be cut by the request timeout; everything else is.
    let streaming = Router::new()
        .merge(workers::streams())
        .merge(artifacts::streams())
        .merge(feed::streams())
        .merge(compat::streams());
    let cors = state.access.config().cors();
    let limiter = state.access.limiter();
    let site = cross_site::Site {
        rules: Arc::new(cross_site::SiteRules::new(
            state.access.config().cors_origins.clone(),
            state.access.config().allowed_hosts.clone(),
        )),
        keys: state.keys.clone(),
        keyed: state.access.config().requires_key(),
    };
    let gate = access::Gate {
        access: state.access.clone(),
        keys: state.keys.clone(),
        clock: state.clock.clone(),
    };
    Router::new()
        .merge(audit::router())
        .merge(bulk::router())
        .merge(jobs::router())
        .merge(keys::router())
        .merge(leases::router())
        .merge(limits::router())
        .merge(queues::router())
        .merge(presence::router())
        .merge(quotas::router())
        .merge(retention::router())
        .merge(runs::router())
        .merge(compat::router())
        .merge(console::router())
        .merge(service::router())
        .merge(stats::router())
        .merge(openapi::router())
        // Long-polls last at most 60 s; nothing else comes near this bound.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(90),
        ))
        .merge(streaming)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        // Layers run top to bottom on the way in: the request id exists before tracing and the
        // envelope renderer see the request, and is copied onto every response on the way out.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_failure(log_failure),
                )
                .layer(middleware::from_fn(finish_response))
                // Inside the envelope renderer, so 401 and 429 carry the request id too.
                .layer(middleware::from_fn_with_state(gate, access::guard))
                // Inside the guard: the rate limit counts refused requests too.
                .layer(middleware::from_fn_with_state(site, cross_site::check))
                .layer(DefaultBodyLimit::max(max_body)),
        )
        // Preflights are answered and every response carries the CORS headers.
        .layer(tower::util::option_layer(cors))
        // Outermost: every request counts against the rate limit, preflights included.
        .layer(middleware::from_fn_with_state(limiter, rate_limit::limit))
}

/// The trace layer's log of a failed response. A 503 is the database being unavailable, which
/// `crate::outage` logs once per episode: logged here at DEBUG, not as one ERROR per request.
/// Other server errors stay at ERROR (their cause is logged where it happened, too).
fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: Duration,
    _span: &tracing::Span,
) {
    let latency_ms = latency.as_millis() as u64;
    match class {
        tower_http::classify::ServerErrorsFailureClass::StatusCode(code)
            if code == StatusCode::SERVICE_UNAVAILABLE =>
        {
            tracing::debug!(latency_ms, "response failed: 503 Service Unavailable");
        }
        class => tracing::error!(latency_ms, classification = %class, "response failed"),
    }
}

fn make_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get(leasehold_proto::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only method and path: query strings and headers may carry secrets.
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

/// Adds the API version header, records request metrics and renders every error — ours or
/// from axum and tower — as the envelope carrying the request id.
async fn finish_response(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(leasehold_proto::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    // Routes that answer without the database (`/metrics` still answers while it is down).
    let without_database = matches!(
        route.as_str(),
        "/health" | "/metrics" | "/.well-known/openapi" | "/v1/artifacts/{digest}" | "unmatched"
    ) || console::is_console(&route);
    let mut response = next.run(req).await;
    let status = response.status();
    if status.is_success() && !without_database {
        // Every other route that succeeded reached the database.
        crate::outage::reachable();
    }
    if (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<KeepBody>().is_none()
    {
        let pending = response.extensions_mut().remove::<PendingError>();
        let err = pending.map_or_else(|| error_for_status(status), |p| p.0);
        let mut rendered = render_error(err, &request_id);
        // Keep headers such as `Allow` (405) and `Retry-After` (429).
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                rendered.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response = rendered;
    }
    response.headers_mut().insert(
        HeaderName::from_static(API_VERSION_HEADER),
        HeaderValue::from_static(API_VERSION),
    );
    let labels = [("method", method), ("route", route)];
    metrics::histogram!(crate::metrics::HTTP_DURATION, &labels)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => labels[1].1.clone(),
        "status" => response.status().as_u16().to_string())
    .increment(1);
    response
}

/// The envelope for a bare error status produced outside our handlers.
fn error_for_status(status: StatusCode) -> ApiError {
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::InvalidState,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::ValidationFailed,
        429 => ErrorCode::RateLimited,
        503 | 408 | 504 => ErrorCode::Unavailable,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    };
    let message = status.canonical_reason().unwrap_or("error").to_owned();
    ApiError::new(code, message)
}

fn render_error(err: ApiError, request_id: &str) -> Response {
    let status = err.status();
    let envelope = ErrorEnvelope {
        error: err.into_body(request_id),
    };
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let mut response = (status, Body::from(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
