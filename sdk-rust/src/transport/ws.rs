//! The push transport: one WebSocket per worker at `GET /v1/workers/connect`.
//!
//! The worker says `hello`, waits for `welcome`, then grants credit equal to its free slots
//! (never more than one claim's worth outstanding, `claim_most`); the coordinator pushes
//! `leases` (never more than the credit outstanding). Heartbeats and outcomes are requests on
//! the same socket, answered by acks with the same `seq`. When the socket breaks, pending
//! requests fail (their callers fall back to HTTP) and the connection loop reconnects with
//! jittered backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use leasehold_proto::{
    ClientMessage, HeartbeatItem, HeartbeatResult, OutcomeReport, OutcomeResult, ServerMessage,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::CoordinatorLink;
use super::http::HttpApi;
use crate::error::{Error, Result};
use crate::link::Intake;
use crate::session_config::SessionConfig;
use crate::util::lock;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for the handshake and for `welcome`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ping period; a socket silent for three periods is considered dead.
const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a few free slots wait for company before they are granted as credit anyway.
const CREDIT_COALESCE: Duration = Duration::from_millis(2);

/// The credit worth granting at once: a quarter of the slots (at least 1). The coordinator
/// claims as soon as it has credit, so granting each slot as it frees made every lease its own
/// claim transaction (one commit per job); slots that free in a burst now go as one grant.
fn credit_batch(concurrency: usize) -> usize {
    concurrency.div_ceil(4).max(1)
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The coordinator (or a proxy) answered the upgrade with a plain HTTP status: no WebSocket
    /// here. Long-polling is the fallback.
    Refused(Error),
    /// The coordinator could not be reached, or the handshake broke.
    Failed(Error),
}

/// The open socket as seen by the heartbeat and outcome senders.
#[derive(Debug)]
pub(crate) struct WsLink {
    out: mpsc::UnboundedSender<ClientMessage>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<ServerMessage>>>>,
    seq: AtomicU64,
    closed: CancellationToken,
}

impl WsLink {
    fn new(out: mpsc::UnboundedSender<ClientMessage>) -> Self {
        Self {
            out,
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
            closed: CancellationToken::new(),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    fn close(&self) {
        self.closed.cancel();
        let pending: Vec<_> = lock(&self.pending).drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Err(Error::Unreachable {
                message: "the WebSocket closed before the answer".into(),
            }));
        }
    }

    fn resolve(&self, seq: u64, answer: Result<ServerMessage>) {
        if let Some(tx) = lock(&self.pending).remove(&seq) {
            let _ = tx.send(answer);
        }
    }

    async fn request(
        &self,
        build: impl FnOnce(u64) -> ClientMessage,
        timeout: Duration,
    ) -> Result<ServerMessage> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(seq, tx);
        if self.is_closed() || self.out.send(build(seq)).is_err() {
            lock(&self.pending).remove(&seq);
            return Err(Error::Unreachable {
                message: "the WebSocket is closed".into(),
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::Unreachable {
                message: "the WebSocket closed before the answer".into(),
            }),
            Err(_) => {
                lock(&self.pending).remove(&seq);
                Err(Error::Timeout(timeout))
            }
        }
    }

    pub(crate) async fn heartbeat(
        &self,
        leases: Vec<HeartbeatItem>,
        timeout: Duration,
    ) -> Result<Vec<HeartbeatResult>> {
        match self
            .request(|seq| ClientMessage::Heartbeat { seq, leases }, timeout)
            .await?
        {
            ServerMessage::HeartbeatAck { leases, .. } => Ok(leases),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn outcomes(
        &self,
        outcomes: Vec<OutcomeReport>,
        timeout: Duration,
    ) -> Result<Vec<OutcomeResult>> {
        match self
            .request(|seq| ClientMessage::Outcomes { seq, outcomes }, timeout)
            .await?
        {
            ServerMessage::OutcomesAck { results, .. } => Ok(results),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(msg: &ServerMessage) -> Error {
    Error::Protocol(format!("unexpected answer on the WebSocket: {msg:?}"))
}

/// `ws(s)://…/v1/workers/connect` for an `http(s)://…` base.
pub(crate) fn socket_url(base: &str) -> String {
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}/v1/workers/connect")
}

/// Opens the socket.
pub(crate) async fn connect(
    cfg: &SessionConfig,
    http: &HttpApi,
) -> std::result::Result<Socket, ConnectError> {
    let url = socket_url(http.base());
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Refused(Error::InvalidArgument(e.to_string())))?;
    if let Some(key) = http.api_key() {
        let value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|e| ConnectError::Refused(Error::InvalidArgument(e.to_string())))?;
        request.headers_mut().insert("authorization", value);
    }
    if let Some(tenant) = &cfg.tenant {
        let value = HeaderValue::from_str(tenant)
            .map_err(|e| ConnectError::Refused(Error::InvalidArgument(e.to_string())))?;
        request
            .headers_mut()
            .insert(crate::transport::http::TENANT_HEADER, value);
    }
    let attempt = handshake(request);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Err(_) => Err(ConnectError::Failed(Error::Timeout(HANDSHAKE_TIMEOUT))),
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(WsError::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned())
                .unwrap_or_default();
            let err = Error::Api {
                status,
                code: leasehold_proto::ErrorCode::Unknown,
                message: format!("WebSocket upgrade refused: {body}"),
                details: serde_json::Value::Null,
                request_id: String::new(),
                retry_after: None,
            };
            if matches!(status, 502..=504) {
                Err(ConnectError::Failed(err))
            } else {
                Err(ConnectError::Refused(err))
            }
        }
        Ok(Err(e)) => Err(ConnectError::Failed(Error::Unreachable {
            message: crate::error::error_chain(&e),
        })),
    }
}

/// The WebSocket handshake, on a TCP connection with Nagle's algorithm off: with it on, a frame
/// sent while the previous one is still unacknowledged waits for the coordinator's delayed ACK
/// (~40 ms on Linux), which stalled credit and outcome frames.
async fn handshake(request: Request) -> std::result::Result<(Socket, Response), WsError> {
    tokio_tungstenite::connect_async_with_config(request, None, true).await
}

/// Whether an error ends a worker session for good (the coordinator refused its configuration
/// or credentials) rather than calling for a reconnect.
pub(crate) fn is_fatal(err: &Error) -> bool {
    match err {
        Error::Api { status, .. } => matches!(status, 400 | 401 | 403 | 404 | 405 | 422),
        Error::InvalidArgument(_) => true,
        _ => false,
    }
}

async fn send(
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    msg: &ClientMessage,
) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => sink.send(Message::text(text)).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a WebSocket frame");
            false
        }
    }
}

/// Runs one socket until it closes. `Ok` means reconnect; `Err` is fatal for the session.
pub(crate) async fn run_session(
    coordinator: &CoordinatorLink,
    intake: &dyn Intake,
    socket: Socket,
) -> Result<()> {
    let cfg = &coordinator.cfg;
    let (mut sink, mut stream) = socket.split();
    let (tenants, tenant_weights) = cfg.pool();
    let hello = ClientMessage::Hello {
        worker_id: cfg.worker_id.clone(),
        queues: cfg.queues.clone(),
        lease_ttl_ms: u64::try_from(cfg.lease_ttl.as_millis()).unwrap_or(u64::MAX),
        worker_version: Some(cfg.worker_version.clone()),
        tenant: cfg.tenant.clone(),
        tenants,
        tenant_weights,
    };
    if !send(&mut sink, &hello).await {
        return Ok(());
    }
    let welcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Message::Text(text)) => {
                    return Some(ServerMessage::from_json(&text));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        None
    })
    .await;
    match welcome {
        Ok(Some(Ok(ServerMessage::Welcome { session_id }))) => {
            tracing::info!(%session_id, worker_id = %cfg.worker_id, "WebSocket session open");
        }
        Ok(Some(Ok(ServerMessage::Error { error, .. }))) => {
            let err = Error::from_body(error.code.http_status(), error);
            return if is_fatal(&err) {
                Err(err)
            } else {
                tracing::warn!(error = %err, "coordinator refused the session; will reconnect");
                Ok(())
            };
        }
        Ok(Some(Ok(other))) => {
            tracing::warn!(?other, "expected welcome; will reconnect");
            return Ok(());
        }
        Ok(Some(Err(e))) => {
            tracing::warn!(error = %e, "cannot decode the coordinator's first frame; will reconnect");
            return Ok(());
        }
        Ok(None) | Err(_) => {
            tracing::warn!("no welcome from the coordinator; will reconnect");
            return Ok(());
        }
    }

    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let link = Arc::new(WsLink::new(out_tx));
    coordinator.opened(Some(link.clone()));
    let mut active = intake.taken();
    let mut outstanding: usize = 0;
    let mut drained = false;
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let batch = credit_batch(cfg.concurrency);
    let most = super::claim_most(cfg.concurrency);
    // Since when fewer than `batch` free slots wait to be granted.
    let mut short_since: Option<Instant> = None;
    let result = loop {
        if intake.draining().is_cancelled() && !drained {
            drained = true;
            if !send(&mut sink, &ClientMessage::Drain).await {
                break Ok(());
            }
        }
        if !drained {
            // The watch only wakes this loop; the engine says how many leases it would take.
            active.borrow_and_update();
            // The coordinator claims all outstanding credit at once: keeping it within one
            // claim's worth keeps each claim short (`claim_most`).
            let want = intake.free_slots().min(most).saturating_sub(outstanding);
            let waited = short_since.is_some_and(|t| t.elapsed() >= CREDIT_COALESCE);
            if want >= batch || (want > 0 && waited) {
                let n = u32::try_from(want).unwrap_or(u32::MAX);
                if !send(&mut sink, &ClientMessage::Credit { n }).await {
                    break Ok(());
                }
                outstanding += want;
                short_since = None;
            } else if want > 0 {
                short_since.get_or_insert_with(Instant::now);
            } else {
                short_since = None;
            }
        }
        let coalesce_until = short_since.map(|t| t + CREDIT_COALESCE);
        tokio::select! {
            () = intake.stopping().cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                break Ok(());
            }
            () = intake.draining().cancelled(), if !drained => {}
            () = tokio::time::sleep_until(coalesce_until.unwrap_or_else(Instant::now)), if coalesce_until.is_some() => {}
            changed = active.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
            }
            msg = out_rx.recv() => match msg {
                Some(msg) => {
                    if !send(&mut sink, &msg).await {
                        break Ok(());
                    }
                }
                None => break Ok(()),
            },
            frame = stream.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match ServerMessage::from_json(&text) {
                        Ok(msg) => {
                            if let Some(end) = handle(intake, &link, msg, &mut outstanding) {
                                break end;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot decode a WebSocket frame; ignoring it"),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "coordinator closed the WebSocket");
                        break Ok(());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "WebSocket broke");
                        break Ok(());
                    }
                    None => break Ok(()),
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > 3 * PING_EVERY {
                    tracing::warn!("WebSocket silent for too long; reconnecting");
                    break Ok(());
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break Ok(());
                }
            }
        }
    };
    link.close();
    coordinator.opened(None);
    result
}

/// Handles one frame; `Some` ends the session.
fn handle(
    intake: &dyn Intake,
    link: &WsLink,
    msg: ServerMessage,
    outstanding: &mut usize,
) -> Option<Result<()>> {
    match msg {
        ServerMessage::Leases { leases } => {
            *outstanding = outstanding.saturating_sub(leases.len());
            intake.accept(leases, Instant::now());
        }
        ServerMessage::HeartbeatAck { seq, .. } | ServerMessage::OutcomesAck { seq, .. } => {
            link.resolve(seq, Ok(msg));
        }
        ServerMessage::Error {
            seq: Some(seq),
            error,
        } => {
            link.resolve(seq, Err(Error::from_body(error.code.http_status(), error)));
        }
        ServerMessage::Error { seq: None, error } => {
            let err = Error::from_body(error.code.http_status(), error);
            if is_fatal(&err) {
                return Some(Err(err));
            }
            tracing::warn!(error = %err, "coordinator ended the WebSocket session; reconnecting");
            return Some(Ok(()));
        }
        ServerMessage::Welcome { .. } => {}
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "ws://{}/v1/workers/connect",
            listener.local_addr().expect("addr")
        );
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            tokio_tungstenite::accept_async(tcp)
                .await
                .expect("server handshake")
        });
        let (socket, _) = handshake(url.into_client_request().expect("request"))
            .await
            .expect("handshake");
        let MaybeTlsStream::Plain(tcp) = socket.get_ref() else {
            panic!("expected a plain TCP stream");
        };
        assert!(
            tcp.nodelay().expect("getsockopt"),
            "TCP_NODELAY must be set"
        );
        drop(server.await.expect("server task"));
    }

    #[test]
    fn socket_urls() {
        assert_eq!(
            socket_url("http://127.0.0.1:7070"),
            "ws://127.0.0.1:7070/v1/workers/connect"
        );
        assert_eq!(
            socket_url("https://lh.example"),
            "wss://lh.example/v1/workers/connect"
        );
    }
}
