//! How leases reach the worker: WebSocket push ([`ws`]) or HTTP long-poll ([`http`]), behind
//! the engine's [`Link`] seam.
//!
//! [`CoordinatorLink::run_intake`] owns the choice. It opens the socket and, while the socket
//! stays up, leases are pushed; when it breaks it reconnects with exponential backoff and full
//! jitter. When the coordinator answers the upgrade with a plain HTTP status (no WebSocket
//! route, or a proxy that does not pass upgrades) and the transport is [`Transport::Auto`], it
//! falls back to long-polling `POST /v1/leases` for good. Heartbeats and outcomes use the
//! socket when it is open and HTTP otherwise, so a broken socket never stops them.

pub(crate) mod http;
pub(crate) mod ws;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use leasehold_proto::{ClaimRequest, HeartbeatItem, HeartbeatResult, OutcomeReport, OutcomeResult};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Result;
use crate::link::{Intake, Link};
use crate::retry::{RetryPolicy, SplitMix64};
use crate::session_config::{SessionConfig, Transport};
use crate::util::lock;
use http::HttpApi;
use ws::WsLink;

/// The real link: a WebSocket to the coordinator, HTTP beside it.
#[derive(Debug)]
pub(crate) struct CoordinatorLink {
    cfg: SessionConfig,
    http: Arc<HttpApi>,
    /// The open WebSocket, if any.
    ws: watch::Sender<Option<Arc<WsLink>>>,
    /// Sockets opened so far (see [`Link::connections`]).
    opened: watch::Sender<u64>,
    /// Reconnect jitter.
    rng: Mutex<SplitMix64>,
}

impl CoordinatorLink {
    pub(crate) fn new(cfg: SessionConfig, http: Arc<HttpApi>) -> Self {
        // Its own stream, apart from the engine's retry jitter, yet reproducible with a seed.
        let rng = cfg.rng_seed.map_or_else(SplitMix64::from_entropy, |seed| {
            SplitMix64::new(seed ^ 0x6c69_6e6b_6a69_7474)
        });
        Self {
            cfg,
            http,
            ws: watch::channel(None).0,
            opened: watch::channel(0).0,
            rng: Mutex::new(rng),
        }
    }

    /// The WebSocket if one is open.
    fn socket(&self) -> Option<Arc<WsLink>> {
        self.ws.borrow().clone().filter(|l| !l.is_closed())
    }

    fn jitter(&self, policy: &RetryPolicy, attempt: u32) -> Duration {
        policy.delay(attempt, &mut lock(&self.rng))
    }

    fn opened(&self, link: Option<Arc<WsLink>>) {
        let open = link.is_some();
        self.ws.send_replace(link);
        if open {
            self.opened.send_modify(|n| *n += 1);
        }
    }

    async fn send_heartbeat(
        &self,
        items: Vec<HeartbeatItem>,
        timeout: Duration,
    ) -> Result<Vec<HeartbeatResult>> {
        if let Some(ws) = self.socket() {
            match ws.heartbeat(items.clone(), timeout).await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, "heartbeat over the socket failed; trying HTTP");
                }
                Err(e) => return Err(e),
            }
        }
        let req = leasehold_proto::HeartbeatRequest {
            worker_id: self.cfg.worker_id.clone(),
            leases: items,
            tenant: self.cfg.reporting_tenant(),
        };
        Ok(self.http.heartbeat(&req, timeout).await?.leases)
    }

    async fn send_outcomes(
        &self,
        outcomes: Vec<OutcomeReport>,
        timeout: Duration,
    ) -> Result<Vec<OutcomeResult>> {
        if let Some(ws) = self.socket() {
            match ws.outcomes(outcomes.clone(), timeout).await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_retryable() => {
                    tracing::debug!(error = %e, "outcomes over the socket failed; trying HTTP");
                }
                Err(e) => return Err(e),
            }
        }
        let req = leasehold_proto::OutcomesRequest {
            outcomes,
            tenant: self.cfg.reporting_tenant(),
        };
        self.http.outcomes(&req, timeout).await
    }
}

impl Link for CoordinatorLink {
    fn run_intake(self: Arc<Self>, intake: Arc<dyn Intake>) -> BoxFuture<'static, ()> {
        async move { run_connection(&self, intake.as_ref()).await }.boxed()
    }

    fn heartbeat(
        &self,
        items: Vec<HeartbeatItem>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<HeartbeatResult>>> {
        self.send_heartbeat(items, timeout).boxed()
    }

    fn outcomes(
        &self,
        reports: Vec<OutcomeReport>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<OutcomeResult>>> {
        self.send_outcomes(reports, timeout).boxed()
    }

    fn connections(&self) -> watch::Receiver<u64> {
        self.opened.subscribe()
    }
}

async fn run_connection(link: &CoordinatorLink, intake: &dyn Intake) {
    let mut use_http = link.cfg.transport == Transport::Http;
    let policy = RetryPolicy::reconnect();
    let mut failures = 0u32;
    let (drain, stop) = (intake.draining(), intake.stopping());
    loop {
        if stop.is_cancelled() {
            return;
        }
        if use_http {
            claim_loop(link, intake).await;
            return;
        }
        if drain.is_cancelled() {
            // No new socket once draining: heartbeats and outcomes go over HTTP.
            return;
        }
        let connected = tokio::select! {
            c = ws::connect(&link.cfg, &link.http) => c,
            () = stop.cancelled() => return,
            () = drain.cancelled() => return,
        };
        let error = match connected {
            Ok(socket) => {
                failures = 0;
                match ws::run_session(link, intake, socket).await {
                    Ok(()) => None,
                    Err(fatal) => {
                        intake.fail(fatal);
                        return;
                    }
                }
            }
            Err(ws::ConnectError::Refused(err)) if link.cfg.transport == Transport::Auto => {
                tracing::warn!(error = %err, "WebSocket unavailable; falling back to HTTP long-poll");
                use_http = true;
                continue;
            }
            Err(ws::ConnectError::Refused(err)) if ws::is_fatal(&err) => {
                intake.fail(err);
                return;
            }
            Err(ws::ConnectError::Refused(err) | ws::ConnectError::Failed(err)) => Some(err),
        };
        if stop.is_cancelled() || drain.is_cancelled() {
            return;
        }
        failures = failures.saturating_add(1);
        let delay = link.jitter(&policy, failures);
        match &error {
            Some(err) => {
                tracing::warn!(error = %err, ?delay, "cannot open the WebSocket; retrying")
            }
            None => tracing::info!(?delay, "WebSocket closed; reconnecting"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = drain.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Most leases one claim asks for: the slots' worth (`concurrency`, at most the coordinator's
/// batch limit of 1000); prefetch fills the rest of its allowance in further claims. A claim's
/// transaction grows with its size, and slots that free while it commits wait for all of it:
/// with quick jobs the allowance made one claim four slots' worth (400 leases at 100 slots,
/// 28 ms on a loaded PostgreSQL while every handler sat idle, against 10–21 ms for 100), and
/// W1's burn-down claims of up to 1000 (docs/postgres-hot-path.md §14).
pub(crate) fn claim_most(concurrency: usize) -> usize {
    concurrency.clamp(1, 1000)
}

/// Long-polls `POST /v1/leases` for as many jobs as there are free slots (at most
/// [`claim_most`]), one request at a time, until the session drains. A drain abandons a
/// waiting long-poll: should the coordinator grant a lease in that very instant, the lease
/// simply expires after its TTL.
async fn claim_loop(link: &CoordinatorLink, intake: &dyn Intake) {
    let mut taken = intake.taken();
    let policy = RetryPolicy::reconnect();
    let mut failures = 0u32;
    let (drain, stop) = (intake.draining(), intake.stopping());
    let cfg = &link.cfg;
    loop {
        if stop.is_cancelled() || drain.is_cancelled() {
            return;
        }
        let free = intake.free_slots();
        if free == 0 {
            tokio::select! {
                changed = taken.changed() => if changed.is_err() { return },
                () = drain.cancelled() => return,
                () = stop.cancelled() => return,
            }
            continue;
        }
        let (tenants, tenant_weights) = cfg.pool();
        let req = ClaimRequest {
            worker_id: cfg.worker_id.clone(),
            queues: cfg.queues.clone(),
            max_jobs: u32::try_from(free.min(claim_most(cfg.concurrency))).unwrap_or(1000),
            lease_ttl_ms: u64::try_from(cfg.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            wait_ms: u64::try_from(cfg.poll_wait.as_millis()).unwrap_or(60_000),
            worker_version: Some(cfg.worker_version.clone()),
            tenant: cfg.tenant.clone(),
            tenants,
            tenant_weights,
        };
        let result = tokio::select! {
            r = link.http.claim(&req) => r,
            () = drain.cancelled() => return,
            () = stop.cancelled() => return,
        };
        match result {
            Ok(answer) => {
                failures = 0;
                intake.accept(answer.leases, Instant::now());
            }
            Err(err) if ws::is_fatal(&err) => {
                intake.fail(err);
                return;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = link.jitter(&policy, failures);
                tracing::warn!(error = %err, ?delay, "claiming leases failed; retrying");
                tokio::select! {
                    () = drain.cancelled() => return,
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
