//! How leases reach the worker: WebSocket push ([`ws`]) or HTTP long-poll ([`http`]).
//!
//! [`run_connection`] owns the choice. It opens the socket and, while the socket stays up,
//! leases are pushed; when it breaks it reconnects with exponential backoff and full jitter.
//! When the coordinator answers the upgrade with a plain HTTP status (no WebSocket route, or a
//! proxy that does not pass upgrades) and the transport is [`Transport::Auto`], it falls back
//! to long-polling `POST /v1/leases` for good. Heartbeats and outcomes use the socket when it is
//! open and HTTP otherwise, so a broken socket never stops them.

pub(crate) mod http;
pub(crate) mod ws;

use std::sync::Arc;

use leasehold_proto::ClaimRequest;
use tokio::time::Instant;

use crate::engine::Engine;
use crate::retry::RetryPolicy;
use crate::session_config::Transport;

pub(crate) async fn run_connection(core: Arc<Engine>) {
    let mut use_http = core.cfg.transport == Transport::Http;
    let policy = RetryPolicy::reconnect();
    let mut failures = 0u32;
    loop {
        if core.stop.is_cancelled() {
            return;
        }
        if use_http {
            claim_loop(&core).await;
            return;
        }
        if core.drain.is_cancelled() {
            // No new socket once draining: heartbeats and outcomes go over HTTP.
            return;
        }
        let connected = tokio::select! {
            c = ws::connect(&core) => c,
            () = core.stop.cancelled() => return,
            () = core.drain.cancelled() => return,
        };
        let error = match connected {
            Ok(socket) => {
                failures = 0;
                match ws::run_session(&core, socket).await {
                    Ok(()) => None,
                    Err(fatal) => {
                        core.set_fatal(fatal);
                        return;
                    }
                }
            }
            Err(ws::ConnectError::Refused(err)) if core.cfg.transport == Transport::Auto => {
                tracing::warn!(error = %err, "WebSocket unavailable; falling back to HTTP long-poll");
                use_http = true;
                continue;
            }
            Err(ws::ConnectError::Refused(err)) if ws::is_fatal(&err) => {
                core.set_fatal(err);
                return;
            }
            Err(ws::ConnectError::Refused(err) | ws::ConnectError::Failed(err)) => Some(err),
        };
        if core.stop.is_cancelled() || core.drain.is_cancelled() {
            return;
        }
        failures = failures.saturating_add(1);
        let delay = core.jitter(&policy, failures);
        match &error {
            Some(err) => {
                tracing::warn!(error = %err, ?delay, "cannot open the WebSocket; retrying")
            }
            None => tracing::info!(?delay, "WebSocket closed; reconnecting"),
        }
        tokio::select! {
            () = core.stop.cancelled() => return,
            () = core.drain.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Long-polls `POST /v1/leases` for as many jobs as there are free slots, one request at a
/// time, until the session drains. A drain abandons a waiting long-poll: should the coordinator
/// grant a lease in that very instant, the lease simply expires after its TTL.
async fn claim_loop(core: &Arc<Engine>) {
    let mut active = core.taken_tx.subscribe();
    let policy = RetryPolicy::reconnect();
    let mut failures = 0u32;
    loop {
        if core.stop.is_cancelled() || core.drain.is_cancelled() {
            return;
        }
        let free = core.free_slots();
        if free == 0 {
            tokio::select! {
                changed = active.changed() => if changed.is_err() { return },
                () = core.drain.cancelled() => return,
                () = core.stop.cancelled() => return,
            }
            continue;
        }
        let req = ClaimRequest {
            worker_id: core.cfg.worker_id.clone(),
            queues: core.cfg.queues.clone(),
            max_jobs: u32::try_from(free.min(1000)).unwrap_or(1000),
            lease_ttl_ms: u64::try_from(core.cfg.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            wait_ms: u64::try_from(core.cfg.poll_wait.as_millis()).unwrap_or(60_000),
            worker_version: Some(core.cfg.worker_version.clone()),
            tenant: core.cfg.tenant.clone(),
        };
        let result = tokio::select! {
            r = core.http.claim(&req) => r,
            () = core.drain.cancelled() => return,
            () = core.stop.cancelled() => return,
        };
        match result {
            Ok(answer) => {
                failures = 0;
                core.accept_leases(answer.leases, Instant::now());
            }
            Err(err) if ws::is_fatal(&err) => {
                core.set_fatal(err);
                return;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let delay = core.jitter(&policy, failures);
                tracing::warn!(error = %err, ?delay, "claiming leases failed; retrying");
                tokio::select! {
                    () = core.drain.cancelled() => return,
                    () = core.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
