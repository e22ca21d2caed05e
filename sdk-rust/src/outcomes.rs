//! The outcome flusher: sends queued outcomes in batches (up to 1000 per request), one batch
//! in flight at a time, so that batches grow with load. A batch that cannot be delivered goes
//! back to the front of the queue and is retried with jittered backoff; an outcome whose lease
//! deadline passes meanwhile is dropped, never sent late. An outcome the coordinator refuses
//! outright (a result over its size limit, …) is answered with a non-retryable failure naming
//! the refusal (see [`Engine::refuse`]), so the job ends with that cause instead of running again.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::engine::Engine;
use crate::retry::RetryPolicy;

/// Most outcomes per request (the coordinator's cap).
const MAX_BATCH: usize = 1000;

pub(crate) async fn run(core: Arc<Engine>) {
    let timeout = core.cfg.request_timeout;
    let backoff = RetryPolicy::reconnect();
    let mut failures = 0u32;
    // After a batch is refused as a whole, send that many outcomes one at a time to isolate the
    // culprit instead of failing its neighbours.
    let mut singles = 0usize;
    loop {
        let max = if singles > 0 { 1 } else { MAX_BATCH };
        let batch = core.take_outcomes(max, Instant::now());
        singles = singles.saturating_sub(batch.len());
        if batch.is_empty() {
            tokio::select! {
                () = core.stop.cancelled() => return,
                () = core.outcomes_queued.notified() => {}
                // Re-check now and then: deadlines of queued outcomes pass without a wake-up.
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        // A failure or release must not lose the checkpoint set just before it.
        let dirty = core.dirty_before_outcome(&batch);
        let hb_ok = dirty.is_empty()
            || crate::heartbeat::beat_for(&core, &dirty, core.cfg.lease_ttl / 2).await;
        let result = if hb_ok {
            let reports = batch.iter().map(|p| p.report.clone()).collect();
            core.send_outcomes(reports, timeout).await
        } else {
            Err(crate::error::Error::Unreachable {
                message: "checkpoint heartbeat before the outcome failed".into(),
            })
        };
        match result {
            Ok(results) => {
                failures = 0;
                core.apply_outcomes(batch, results);
            }
            Err(err) if !err.is_retryable() => {
                if batch.len() > 1 {
                    singles = batch.len();
                    core.requeue(batch);
                } else {
                    // Reported as a failure instead when it can be; dropped otherwise.
                    core.refuse(batch, &err);
                }
            }
            Err(err) => {
                failures += 1;
                let n = batch.len();
                core.requeue(batch);
                let delay = core.jitter(&backoff, failures).min(core.cfg.lease_ttl / 4);
                tracing::warn!(error = %err, outcomes = n, ?delay, "delivering outcomes failed; will retry");
                tokio::select! {
                    () = core.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
