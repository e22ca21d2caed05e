//! A fake [`Link`] for the engine's scenario tests: leases are pushed by the test, heartbeats
//! and outcomes are recorded with the (paused) time they were sent and answered as the test
//! says.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use leasehold_proto::{
    HeartbeatItem, HeartbeatResult, HeartbeatStatus, Lease, OutcomeReport, OutcomeResult,
    OutcomeStatus,
};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::link::{Intake, Link};
use crate::util::lock;

/// How the fake answers heartbeats.
#[derive(Debug, Clone)]
pub(crate) enum Beats {
    /// Every lease extended.
    Extend,
    /// The coordinator cannot be reached.
    Unreachable,
    /// These leases get this status; the others are extended.
    Answer(HashMap<Uuid, HeartbeatStatus>),
}

/// One heartbeat request, as sent.
#[derive(Debug, Clone)]
pub(crate) struct Beat {
    /// Since the link was made.
    pub(crate) at: Duration,
    pub(crate) items: Vec<HeartbeatItem>,
}

/// One outcome request, as sent.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Since the link was made.
    pub(crate) at: Duration,
    pub(crate) reports: Vec<OutcomeReport>,
}

pub(crate) struct FakeLink {
    born: Instant,
    intake: watch::Sender<Option<Arc<dyn Intake>>>,
    beats_mode: Mutex<Beats>,
    beats: Mutex<Vec<Beat>>,
    sent: Mutex<Vec<Sent>>,
    /// While false, outcome requests wait for an answer (a slow coordinator).
    answering: watch::Sender<bool>,
    opened: watch::Sender<u64>,
}

impl fmt::Debug for FakeLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLink").finish_non_exhaustive()
    }
}

impl FakeLink {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            intake: watch::channel(None).0,
            beats_mode: Mutex::new(Beats::Extend),
            beats: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            answering: watch::channel(true).0,
            opened: watch::channel(0).0,
        })
    }

    /// The engine as the link sees it, once the session's intake task has started.
    pub(crate) async fn intake(&self) -> Arc<dyn Intake> {
        let mut rx = self.intake.subscribe();
        let ready = rx.wait_for(Option::is_some).await.expect("link alive");
        ready.clone().expect("attached")
    }

    /// Delivers leases, as a push from the coordinator would.
    pub(crate) async fn push(&self, leases: Vec<Lease>) {
        self.intake().await.accept(leases, Instant::now());
    }

    pub(crate) fn answer_beats(&self, mode: Beats) {
        *lock(&self.beats_mode) = mode;
    }

    /// Holds (false) or lets through (true) the answers to outcome requests.
    pub(crate) fn answer_outcomes(&self, answering: bool) {
        self.answering.send_replace(answering);
    }

    /// Bumps the connection count, as a reconnected socket would.
    pub(crate) fn reconnect(&self) {
        self.opened.send_modify(|n| *n += 1);
    }

    pub(crate) fn beats(&self) -> Vec<Beat> {
        lock(&self.beats).clone()
    }

    pub(crate) fn sent(&self) -> Vec<Sent> {
        lock(&self.sent).clone()
    }

    /// Every outcome sent, in order.
    pub(crate) fn reports(&self) -> Vec<OutcomeReport> {
        self.sent().into_iter().flat_map(|s| s.reports).collect()
    }

    fn since(&self) -> Duration {
        Instant::now() - self.born
    }
}

impl Link for FakeLink {
    fn run_intake(self: Arc<Self>, intake: Arc<dyn Intake>) -> BoxFuture<'static, ()> {
        async move {
            self.intake.send_replace(Some(intake.clone()));
            tokio::select! {
                () = intake.draining().cancelled() => {}
                () = intake.stopping().cancelled() => {}
            }
        }
        .boxed()
    }

    fn heartbeat(
        &self,
        items: Vec<HeartbeatItem>,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<HeartbeatResult>>> {
        lock(&self.beats).push(Beat {
            at: self.since(),
            items: items.clone(),
        });
        let mode = lock(&self.beats_mode).clone();
        let answer = match mode {
            Beats::Unreachable => Err(Error::Unreachable {
                message: "fake: no route".into(),
            }),
            Beats::Extend => Ok(items.iter().map(|i| extended(i.job_id)).collect()),
            Beats::Answer(statuses) => Ok(items
                .iter()
                .map(|i| match statuses.get(&i.job_id) {
                    Some(&status) => HeartbeatResult {
                        job_id: i.job_id,
                        status,
                        expires_at: None,
                    },
                    None => extended(i.job_id),
                })
                .collect()),
        };
        async move { answer }.boxed()
    }

    fn outcomes(
        &self,
        reports: Vec<OutcomeReport>,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<OutcomeResult>>> {
        lock(&self.sent).push(Sent {
            at: self.since(),
            reports: reports.clone(),
        });
        let mut answering = self.answering.subscribe();
        async move {
            let _ = answering.wait_for(|open| *open).await;
            Ok(reports
                .iter()
                .map(|r| OutcomeResult {
                    job_id: r.job_id,
                    status: OutcomeStatus::Ok,
                    state: None,
                })
                .collect())
        }
        .boxed()
    }

    fn connections(&self) -> watch::Receiver<u64> {
        self.opened.subscribe()
    }
}

fn extended(job_id: Uuid) -> HeartbeatResult {
    HeartbeatResult {
        job_id,
        status: HeartbeatStatus::Ok,
        expires_at: Some(chrono::Utc::now()),
    }
}

/// A fresh lease of a new job with this TTL and run-time limit.
pub(crate) fn lease(ttl: Duration, timeout: Option<Duration>) -> Lease {
    let id = Uuid::new_v4();
    let now = chrono::Utc::now();
    let timeout_ms = timeout.map(|t| u64::try_from(t.as_millis()).expect("ms"));
    serde_json::from_value(json!({
        "job": {
            "id": id, "tenant": "default", "queue": "q", "kind": "k", "state": "leased",
            "payload": {"n": 1}, "priority": 0, "attempt": 1, "max_attempts": 3,
            "fencing_token": 1, "run_at": now, "created_at": now, "updated_at": now,
            "started_at": now, "finished_at": null, "lease_expires_at": now,
            "idempotency_key": null, "correlation_id": null, "project": null, "run_id": null,
            "inputs_hash": "h", "backoff": null, "timeout_ms": timeout_ms, "deadline_at": null,
            "worker_id": "w", "worker_version": null, "cancel_requested": false,
            "cancel_reason": null, "checkpoint": null, "progress": null, "result": null,
            "last_error": null, "artifacts": []
        },
        "fencing_token": 1,
        "expires_at": now,
        "lease_ttl_ms": u64::try_from(ttl.as_millis()).expect("ms"),
        "timeout_ms": timeout_ms,
        "attempt": 1,
        "checkpoint": null,
        "retry": {"max_attempts": 3, "backoff": null}
    }))
    .expect("a lease")
}
