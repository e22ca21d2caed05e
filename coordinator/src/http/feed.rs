//! `GET /v1/events` (SSE, resumable with `Last-Event-ID`) and `GET /v1/ledger/export` (NDJSON
//! in a time window, ending with a manifest line).

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use leasehold_proto::{ErrorEnvelope, LedgerManifest};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;
use super::artifacts::hex;
use super::extract::{QueryParams, Tenant};
use crate::error::{ApiError, ApiResult};
use crate::events::{Delivery, Listener};
use crate::store::EventFilter;
use crate::validate;

/// The event feed and the ledger export (streams: no request timeout).
pub(super) fn streams() -> Router<AppState> {
    Router::new()
        .route("/v1/events", routing::get(events))
        .route("/v1/ledger/export", routing::get(ledger_export))
}

/// Keep-alive comment interval on streams.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Most events `tail` replays.
const MAX_TAIL: u32 = 1000;
/// How far back from the ledger's end `tail` looks for matching events.
const TAIL_WINDOW: i64 = 100_000;

/// The id after which the last `n` events matching `filter` lie (looking back at most
/// [`TAIL_WINDOW`] ids from the settled end, so a rare filter costs a bounded walk).
async fn tail_start(state: &AppState, filter: &EventFilter, n: u32) -> ApiResult<i64> {
    let end = state.store.last_event_id().await?;
    let floor = end.saturating_sub(TAIL_WINDOW).max(0);
    let newest = state
        .store
        .list_events(&EventFilter {
            after: floor,
            limit: n,
            newest_first: true,
            settled: true,
            ..filter.clone()
        })
        .await?;
    Ok(newest.last().map_or(end, |oldest| oldest.id - 1))
}

/// Where a stream resumes: `Last-Event-ID` wins over `?after=`.
pub(crate) fn resume_point(headers: &HeaderMap, query: &QueryParams) -> ApiResult<i64> {
    if let Some(v) = headers.get("last-event-id") {
        let s = v.to_str().unwrap_or("");
        return s.trim().parse::<i64>().map_err(|_| {
            ApiError::validation(
                "Last-Event-ID",
                format!("Last-Event-ID must be an event id, got {s:?}"),
            )
        });
    }
    Ok(query.parse::<i64>("after")?.unwrap_or(0).max(0))
}

/// Turns a listener into SSE frames; `render` names and shapes each event.
pub(crate) fn sse_stream<F>(
    mut listener: Listener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    first: Option<SseEvent>,
    render: F,
) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: Fn(&leasehold_proto::Event) -> Option<SseEvent> + Send + 'static,
{
    async_stream(move |tx| async move {
        if let Some(first) = first
            && tx.send(first).await.is_err()
        {
            return;
        }
        loop {
            let next = tokio::select! {
                next = listener.next() => next,
                _ = shutdown.changed() => return,
            };
            let frame = match next {
                Ok(Delivery::Event(e)) => match render(&e) {
                    Some(frame) => frame,
                    None => continue,
                },
                Ok(Delivery::Resync { last_id }) => SseEvent::default()
                    .event("resync")
                    .data(serde_json::json!({"last_event_id": last_id, "reason": "slow consumer: continuing from the ledger"}).to_string()),
                Err(err) => {
                    tracing::warn!(%err, "event stream cannot read the ledger; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    })
}

/// A tiny channel-backed stream: the producer runs as a task and stops when the body is dropped.
fn async_stream<T, F, Fut>(producer: F) -> impl Stream<Item = Result<T, Infallible>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // One slot: the producer reads the next page only when the client has taken the last one.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(producer(tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (Ok(item), rx))
    })
}

fn parse_filter(tenant: String, query: &QueryParams) -> ApiResult<EventFilter> {
    let uuid = |name: &str| -> ApiResult<Option<Uuid>> {
        query
            .get(name)
            .map(|raw| {
                Uuid::parse_str(raw)
                    .map_err(|_| ApiError::validation(name, format!("{name} must be a UUID")))
            })
            .transpose()
    };
    if let Some(q) = query.get("queue") {
        validate::name("queue", q)?;
    }
    let types: Vec<String> = query
        .get("type")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    for t in &types {
        validate::name("type", t)?;
    }
    Ok(EventFilter {
        tenant: Some(tenant),
        run_id: uuid("run_id")?,
        job_id: uuid("job_id")?,
        queue: query.get("queue").map(str::to_owned),
        types,
        ..Default::default()
    })
}

/// The live event feed (SSE). Filters: `run_id`, `job_id`, `queue`, `type` (comma-separated).
/// Resume with `Last-Event-ID` (or `?after=`): no gap, no duplicate. `tail=N` starts with the
/// last `N` matching events (among the ledger's last 100 000) instead of the first; a
/// reconnect's `Last-Event-ID` still wins. A listener that falls behind gets a `resync` event
/// and continues from the ledger.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(("after" = Option<i64>, Query), ("tail" = Option<u32>, Query, description = "start with the last N (1 to 1000) matching events"),
           ("run_id" = Option<Uuid>, Query), ("job_id" = Option<Uuid>, Query),
           ("queue" = Option<String>, Query), ("type" = Option<String>, Query),
           ("Last-Event-ID" = Option<i64>, Header)),
    responses((status = 200, description = "text/event-stream; each event's id is its ledger id", content_type = "text/event-stream"),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    query: QueryParams,
) -> ApiResult<Response> {
    query.only(&[
        "after", "tail", "run_id", "job_id", "queue", "type", "api_key",
    ])?;
    let mut filter = parse_filter(tenant.0, &query)?;
    filter.after = resume_point(&headers, &query)?;
    if let Some(n) = query.parse::<u32>("tail")? {
        if !(1..=MAX_TAIL).contains(&n) {
            return Err(ApiError::validation(
                "tail",
                format!("tail is 1 to {MAX_TAIL}"),
            ));
        }
        if query.get("after").is_some() {
            return Err(ApiError::validation(
                "tail",
                "give `tail` or `after`, not both",
            ));
        }
        // A reconnect (`Last-Event-ID`) resumes where it was; a first connection starts at
        // the tail.
        if !headers.contains_key("last-event-id") {
            filter.after = tail_start(&state, &filter, n).await?;
        }
    }
    let mut listener = Listener::new(state.store.clone(), state.events.clone(), filter);
    listener.open().await?;
    let stream = sse_stream(listener, state.shutdown.clone(), None, |e| {
        let data = serde_json::to_string(e).ok()?;
        Some(
            SseEvent::default()
                .id(e.id.to_string())
                .event(e.kind.clone())
                .data(data),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

fn parse_time(query: &QueryParams, name: &str) -> ApiResult<DateTime<Utc>> {
    let raw = query
        .get(name)
        .ok_or_else(|| ApiError::validation(name, format!("`{name}` is required (RFC 3339)")))?;
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::validation(
                name,
                format!("`{name}` must be an RFC 3339 timestamp, got {raw:?}"),
            )
        })
}

/// Events with `from <= at < to` as NDJSON, oldest first, streamed; the last line is a manifest
/// with the count, first and last ids and the sha256 of every byte before it.
#[utoipa::path(get, path = "/v1/ledger/export", tag = "events",
    params(("from" = String, Query, description = "RFC 3339, inclusive"), ("to" = String, Query, description = "RFC 3339, exclusive")),
    responses((status = 200, description = "application/x-ndjson: events, then one LedgerManifest line", content_type = "application/x-ndjson"),
              (status = 422, body = ErrorEnvelope)))]
pub(crate) async fn ledger_export(
    State(state): State<AppState>,
    tenant: Tenant,
    query: QueryParams,
) -> ApiResult<Response> {
    query.only(&["from", "to"])?;
    let from = parse_time(&query, "from")?;
    let to = parse_time(&query, "to")?;
    if to <= from {
        return Err(ApiError::validation("to", "`to` must be after `from`"));
    }
    let store = state.store.clone();
    let mut filter = EventFilter {
        tenant: Some(tenant.0),
        from: Some(from),
        to: Some(to),
        limit: 1000,
        ..Default::default()
    };
    // The first page is read before answering, so an unreachable database is a 503.
    let mut first = Some(store.list_events(&filter).await?);
    let stream = async_stream(move |tx: tokio::sync::mpsc::Sender<Bytes>| async move {
        let mut hasher = Sha256::new();
        let (mut count, mut first_id, mut last_id) = (0u64, None, None);
        loop {
            let fetched = match first.take() {
                Some(page) => Ok(page),
                None => store.list_events(&filter).await,
            };
            let page = match fetched {
                Ok(p) => p,
                Err(err) => {
                    // Ending without a manifest tells the reader the export is incomplete.
                    tracing::warn!(%err, "ledger export aborted");
                    return;
                }
            };
            let done = page.len() < filter.limit as usize;
            let mut chunk = Vec::with_capacity(page.len() * 256);
            for e in &page {
                if let Ok(line) = serde_json::to_vec(e) {
                    chunk.extend_from_slice(&line);
                    chunk.push(b'\n');
                }
                count += 1;
                first_id.get_or_insert(e.id);
                last_id = Some(e.id);
                filter.after = e.id;
            }
            hasher.update(&chunk);
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            if done {
                break;
            }
        }
        let manifest = LedgerManifest {
            kind: "manifest".into(),
            count,
            first_id,
            last_id,
            from,
            to,
            sha256: format!("sha256:{}", hex(&hasher.finalize())),
        };
        let mut line = serde_json::to_vec(&manifest).unwrap_or_default();
        line.push(b'\n');
        let _ = tx.send(Bytes::from(line)).await;
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}
