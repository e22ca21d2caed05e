//! The push transport: one WebSocket per worker at `GET /v1/workers/connect`.
//!
//! After `hello`, two loops share the socket. The *reader* answers `credit`, `heartbeat`,
//! `outcomes` and `drain` in arrival order. The *pusher* claims as many leases as the worker has
//! credit for whenever work is ready — woken by the same signal as HTTP long-polls, and by the
//! next `run_at` or lease deadline — and pushes them. A single tenant's session hands its
//! outcome batches to the pusher too, which records them in its next claim's transaction
//! (`crate::leasing::session`); a shared pool's session records them on tasks of their own.
//! Frames go out through one writer task. See `leasehold_proto::ClientMessage` /
//! `ServerMessage` for the frames.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing;
use futures_util::{SinkExt, StreamExt};
use leasehold_proto::{ClientMessage, ErrorCode, Lease, OutcomeReport, ServerMessage};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

use super::AppState;
use super::extract::{Tenant, tenant_header_given};
use crate::error::ApiError;
use crate::leasing::{self, Leasing};
use crate::presence::Presence;
use crate::store::{ClaimParams, WorkerSeen};
use crate::validate;

/// The worker WebSocket (a stream: no request timeout).
pub(super) fn streams() -> Router<AppState> {
    Router::new().route("/v1/workers/connect", routing::get(connect))
}

/// How long a new socket may take to say `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping interval; a socket silent for three intervals is closed.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Most credit a worker may hold at once.
const MAX_CREDIT: u32 = 10_000;
/// Longest the pusher sleeps without re-checking.
const MAX_IDLE: Duration = Duration::from_secs(30);

/// Credit and drain state, shared by the reader (writes) and the pusher (reads).
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    credit: u32,
    draining: bool,
}

/// Outcome batches the reader received that the pusher has not yet taken.
#[derive(Default)]
struct Inbox {
    batches: std::sync::Mutex<Vec<(u64, Vec<OutcomeReport>)>>,
    arrived: Notify,
}

impl Inbox {
    fn put(&self, seq: u64, outcomes: Vec<OutcomeReport>) {
        self.batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((seq, outcomes));
        // Stores a permit when the pusher is not waiting: the batch is not missed.
        self.arrived.notify_one();
    }

    fn take(&self) -> Vec<(u64, Vec<OutcomeReport>)> {
        std::mem::take(&mut *self.batches.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Upgrade to a worker session.
#[utoipa::path(get, path = "/v1/workers/connect", tag = "leases",
    responses((status = 101, description = "WebSocket worker session; frames are ClientMessage / ServerMessage"),
              (status = 400, body = leasehold_proto::ErrorEnvelope),
              (status = 503, description = "the database is unreachable", body = leasehold_proto::ErrorEnvelope)))]
pub(crate) async fn connect(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> crate::error::ApiResult<Response> {
    // A session could claim nothing: say so before upgrading, as every other route does.
    state.store.ping().await?;
    let header_given = tenant_header_given(&headers);
    Ok(ws
        .max_message_size(state.max_body_bytes)
        .on_upgrade(move |socket| session(state, tenant, header_given, socket)))
}

fn frame(msg: &ServerMessage) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

fn error_frame(err: ApiError, seq: Option<u64>, session: Uuid) -> Message {
    frame(&ServerMessage::Error {
        seq,
        error: err.into_body(&session.to_string()),
    })
}

async fn session(state: AppState, tenant: Tenant, header_given: bool, socket: WebSocket) {
    let session_id = Uuid::now_v7();
    let (mut sink, mut stream) = socket.split();

    let hello = match tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => ClientMessage::from_json(&text)
            .map_err(|e| ApiError::invalid_request(format!("bad hello frame: {e}"))),
        Ok(_) => Err(ApiError::invalid_request("expected a hello text frame")),
        Err(_) => Err(ApiError::invalid_request("no hello within 10 s")),
    };
    let params = hello.and_then(|msg| match msg {
        ClientMessage::Hello {
            worker_id,
            queues,
            lease_ttl_ms,
            worker_version,
            tenant: body_tenant,
            tenants,
            tenant_weights,
        } => {
            let acts_for_all = tenant.acts_for_all();
            let named_tenant = body_tenant.is_some();
            let tenant = tenant.merge(body_tenant.as_deref(), header_given)?;
            let params =
                leasing::claim_params(tenant, worker_id, worker_version, queues, 1, lease_ttl_ms)?;
            leasing::pooled(params, tenants, tenant_weights, acts_for_all, named_tenant)
        }
        _ => Err(ApiError::invalid_request("the first frame must be hello")),
    });
    let params = match params {
        Ok(p) => p,
        Err(err) => {
            let _ = sink.send(error_frame(err, None, session_id)).await;
            let _ = sink.close().await;
            return;
        }
    };
    // A shared pool's session acts for each job's own tenant on heartbeats and outcomes.
    let pooled = params.pool.is_some();
    let span = tracing::info_span!("worker_session", %session_id, worker_id = %params.worker_id);
    // Instrumented, not entered: a guard held across `.await` leaves the span "current" on
    // whichever thread the task last ran, which corrupted the subscriber's span registry (a
    // coordinator thread panicked in `tracing_subscriber` and dropped a request's connection).
    async move {
        tracing::info!(queues = ?params.queues, "worker connected");
        metrics::gauge!(crate::metrics::WORKER_SESSIONS).increment(1.0);

        let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
        let writer = tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let _ = out_tx
            .send(frame(&ServerMessage::Welcome { session_id }))
            .await;

        let leasing = state.leasing();
        let flow = Arc::new(watch::channel(Flow::default()).0);
        let inbox = Arc::new(Inbox::default());
        let pusher = tokio::spawn(push_leases(
            leasing.clone(),
            params.clone(),
            flow.clone(),
            inbox.clone(),
            Outbox { out: out_tx.clone(), session: session_id },
        ));

        let mut shutdown = state.shutdown.clone();
        let mut last_seen = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        // Each frame (pongs included) is a sighting of the worker (`crate::presence`).
        let sighting = |heartbeat: bool, closed: bool| WorkerSeen {
            tenant: params.tenant.clone(),
            worker_id: params.worker_id.clone(),
            transport: Some("websocket"),
            queues: Some(params.queues.clone()),
            version: params.worker_version.clone(),
            heartbeat,
            closed,
        };
        let seen = |heartbeat: bool, closed: bool| {
            if closed
                || state
                    .presence
                    .due(&params.tenant, &params.worker_id, heartbeat)
            {
                Presence::write(&state.store, state.clock.now(), sighting(heartbeat, closed));
            }
        };
        seen(false, false);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    last_seen = Instant::now();
                    let text = match msg {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            seen(false, false);
                            continue;
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let _ = out_tx.send(error_frame(ApiError::invalid_request("frames are JSON text"), None, session_id)).await;
                            break;
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    };
                    let msg = match ClientMessage::from_json(&text) {
                        Ok(m) => m,
                        Err(e) => {
                            let err = ApiError::invalid_request(format!("bad frame: {e}"));
                            let _ = out_tx.send(error_frame(err, None, session_id)).await;
                            break;
                        }
                    };
                    seen(matches!(msg, ClientMessage::Heartbeat { .. }), false);
                    let reply = match msg {
                        ClientMessage::Credit { n } => {
                            flow.send_modify(|f| f.credit = f.credit.saturating_add(n).min(MAX_CREDIT));
                            None
                        }
                        ClientMessage::Drain => {
                            flow.send_modify(|f| f.draining = true);
                            None
                        }
                        // Answered on their own tasks: one slow database call must not hold up
                        // credit, the other acks or the pusher (acks carry `seq`, order is free).
                        ClientMessage::Heartbeat { seq, leases } => {
                            let (leasing, tenant, out) = (leasing.clone(), params.tenant.clone(), out_tx.clone());
                            tokio::spawn(async move {
                                let acked = match pooled {
                                    true => leasing.heartbeat_each(&tenant, &leases).await,
                                    false => leasing.heartbeat(&tenant, &leases).await,
                                };
                                let reply = match acked {
                                    Ok(leases) => frame(&ServerMessage::HeartbeatAck { seq, leases }),
                                    Err(err) => error_frame(err, Some(seq), session_id),
                                };
                                let _ = out.send(reply).await;
                            });
                            None
                        }
                        ClientMessage::Outcomes { seq, outcomes } if !pooled => {
                            inbox.put(seq, outcomes);
                            None
                        }
                        // A shared pool's: each outcome acts for its job's own tenant.
                        ClientMessage::Outcomes { seq, outcomes } => {
                            let (leasing, tenant, out) = (leasing.clone(), params.tenant.clone(), out_tx.clone());
                            tokio::spawn(async move {
                                let recorded = leasing.finish_each(&tenant, outcomes).await;
                                let reply = match recorded {
                                    Ok(results) => frame(&ServerMessage::OutcomesAck { seq, results }),
                                    Err(err) => error_frame(err, Some(seq), session_id),
                                };
                                let _ = out.send(reply).await;
                            });
                            None
                        }
                        ClientMessage::Hello { .. } => {
                            let err = ApiError::invalid_request("hello was already sent");
                            let _ = out_tx.send(error_frame(err, None, session_id)).await;
                            break;
                        }
                    };
                    if let Some(reply) = reply
                        && out_tx.send(reply).await.is_err()
                    {
                        break;
                    }
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > PING_EVERY * 3 {
                        tracing::info!("worker silent for too long; closing");
                        break;
                    }
                    if out_tx.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    let err = ApiError::new(ErrorCode::Unavailable, "the coordinator is shutting down; reconnect");
                    let _ = out_tx.send(error_frame(err, None, session_id)).await;
                    break;
                }
            }
        }
        pusher.abort();
        drop(out_tx);
        let _ = writer.await;
        seen(false, true);
        metrics::gauge!(crate::metrics::WORKER_SESSIONS).decrement(1.0);
        tracing::info!("worker disconnected");
    }
    .instrument(span)
    .await;
}

/// Where the pusher's frames go.
struct Outbox {
    out: mpsc::Sender<Message>,
    session: Uuid,
}

/// Records the outcomes the reader put in `inbox`, and claims and pushes leases while the
/// worker has credit, each turn both at once (`Leasing::turn`), until the socket goes away.
/// After a drain it claims no more but still records outcomes.
async fn push_leases(
    leasing: Leasing,
    mut params: ClaimParams,
    flow_tx: Arc<watch::Sender<Flow>>,
    inbox: Arc<Inbox>,
    outbox: Outbox,
) {
    let out = &outbox.out;
    let mut flow = flow_tx.subscribe();
    let mut shutdown = leasing.shutdown.clone();
    let mut backoff = Duration::from_millis(50);
    loop {
        // Wait for credit or outcomes.
        let (credit, batches) = loop {
            let f = *flow.borrow_and_update();
            if *shutdown.borrow() {
                return;
            }
            let credit = if f.draining { 0 } else { f.credit };
            let batches = inbox.take();
            if credit > 0 || !batches.is_empty() {
                break (credit, batches);
            }
            tokio::select! {
                changed = flow.changed() => if changed.is_err() { return },
                () = inbox.arrived.notified() => {}
                _ = shutdown.changed() => return,
            }
        };
        let mut wake = leasing.subscribe();
        params.max_jobs = credit.min(validate::MAX_BATCH as u32);
        let claim = (credit > 0).then_some(&params);
        let turn = leasing.turn(&params.tenant, batches, claim).await;
        for (seq, answer) in turn.answers {
            let reply = match answer {
                Ok(results) => frame(&ServerMessage::OutcomesAck { seq, results }),
                Err(err) => error_frame(err, Some(seq), outbox.session),
            };
            if out.send(reply).await.is_err() {
                return;
            }
        }
        let granted = match turn.granted {
            None => continue,
            Some(Ok(granted)) => granted,
            Some(Err(_)) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        if !granted.leases.is_empty() {
            if !push(&leasing, &flow_tx, out, granted.leases).await {
                return;
            }
            continue;
        }
        let idle = Instant::now() + MAX_IDLE;
        // A session held back by a limit sleeps until a token returns or a slot frees (a wake-up).
        let until = leasing
            .due_by(&params, &granted, idle)
            .await
            .unwrap_or(idle);
        let mut parking = leasing.park(&params);
        let mut handed = None;
        let mut stop = false;
        tokio::select! {
            lease = parking.recv() => handed = lease,
            _ = wake.changed() => {}
            _ = tokio::time::sleep_until(until) => {}
            () = inbox.arrived.notified() => {}
            changed = flow.changed() => stop = changed.is_err(),
            _ = shutdown.changed() => stop = true,
        }
        // A lease handed off while another wake-up won the race is pushed, not dropped.
        if let Some(lease) = handed.or_else(|| parking.leave())
            && !push(&leasing, &flow_tx, out, vec![lease]).await
        {
            return;
        }
        if stop {
            return;
        }
    }
}

/// Counts `leases` as granted, pushes them to the worker and takes them off its credit; false
/// when the worker drains or its socket is gone (the leases are then released at once rather
/// than left to expire).
async fn push(
    leasing: &Leasing,
    flow_tx: &watch::Sender<Flow>,
    out: &mpsc::Sender<Message>,
    leases: Vec<Lease>,
) -> bool {
    let n = leases.len() as u32;
    metrics::counter!(crate::metrics::LEASES_GRANTED).increment(u64::from(n));
    flow_tx.send_modify(|f| f.credit = f.credit.saturating_sub(n));
    let held: Vec<(String, Uuid, i64)> = leases
        .iter()
        .map(|l| (l.job.tenant.clone(), l.job.id, l.fencing_token))
        .collect();
    // A drain that arrived while these were granted wants no more leases.
    if flow_tx.borrow().draining
        || out
            .send(frame(&ServerMessage::Leases { leases }))
            .await
            .is_err()
    {
        leasing.release_leases(held).await;
        return false;
    }
    true
}
