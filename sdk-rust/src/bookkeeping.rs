//! The lease bookkeeping: the [`Engine`] methods the heartbeat and outcome loops call on the held
//! leases — heartbeat entries and their answers, deadline expiry, and the outcome queue's take,
//! requeue, answer and refusal. ("Ledger" names only the coordinator's event ledger.)

use leasehold_proto::{
    ErrorCode, FailureInfo, HeartbeatItem, HeartbeatResult, HeartbeatStatus, OutcomeKind,
    OutcomeReport, OutcomeResult, OutcomeStatus,
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::engine::{Engine, Held, Pending, Phase, clip};
use crate::error::Error;
use crate::job::{CancelReason, NotSentReason, OutcomeAck};
use crate::util::lock;

/// One heartbeat entry with the data versions it carries.
#[derive(Debug)]
pub(crate) struct SentItem {
    pub(crate) item: HeartbeatItem,
    progress_ver: u64,
    checkpoint_ver: u64,
}

impl Engine {
    /// Heartbeat entries for every lease still held at the coordinator (all of them, or just
    /// `only`), carrying progress and checkpoints not yet acknowledged.
    pub(crate) fn heartbeat_items(&self, now: Instant, only: Option<&[Uuid]>) -> Vec<SentItem> {
        let st = lock(&self.state);
        let mut out = Vec::new();
        let mut push = |h: &Held| {
            if matches!(h.phase, Phase::Lost(_)) || h.deadline <= now {
                return;
            }
            let data = lock(&h.job.data);
            let progress = (data.progress_ver > data.progress_acked)
                .then(|| data.progress.clone())
                .flatten();
            let checkpoint = (data.checkpoint_ver > data.checkpoint_acked)
                .then(|| data.checkpoint.clone())
                .flatten();
            out.push(SentItem {
                item: HeartbeatItem {
                    job_id: h.job.id(),
                    fencing_token: h.job.token(),
                    progress,
                    checkpoint,
                },
                progress_ver: data.progress_ver,
                checkpoint_ver: data.checkpoint_ver,
            });
        };
        match only {
            Some(ids) => ids
                .iter()
                .filter_map(|id| st.held.get(id))
                .for_each(&mut push),
            None => st.held.values().for_each(&mut push),
        }
        out
    }

    /// Applies a heartbeat answer; `sent_at` is when the request left (the new deadline counts
    /// from there, which is never later than the coordinator's).
    pub(crate) fn apply_heartbeat(
        &self,
        sent: &[SentItem],
        results: &[HeartbeatResult],
        sent_at: Instant,
    ) {
        if sent.len() != results.len() {
            tracing::warn!(
                sent = sent.len(),
                answered = results.len(),
                "heartbeat answer does not match the request; ignoring it"
            );
            return;
        }
        let mut st = lock(&self.state);
        let mut forget = Vec::new();
        for (s, r) in sent.iter().zip(results) {
            if s.item.job_id != r.job_id {
                tracing::warn!(job_id = %r.job_id, "heartbeat answer out of order; ignoring it");
                continue;
            }
            let Some(h) = st.held.get_mut(&r.job_id) else {
                continue;
            };
            if h.job.token() != s.item.fencing_token {
                continue;
            }
            match r.status {
                HeartbeatStatus::Ok | HeartbeatStatus::CancelRequested => {
                    h.deadline = h.deadline.max(sent_at + h.ttl());
                    {
                        let mut data = lock(&h.job.data);
                        data.progress_acked = data.progress_acked.max(s.progress_ver);
                        data.checkpoint_acked = data.checkpoint_acked.max(s.checkpoint_ver);
                    }
                    if r.status == HeartbeatStatus::CancelRequested && h.phase == Phase::Active {
                        h.job.fire(CancelReason::CancelRequested);
                    }
                }
                HeartbeatStatus::Lost => match h.phase {
                    Phase::Active => {
                        h.phase = Phase::Lost(NotSentReason::LeaseLost);
                        h.job.fire(CancelReason::LeaseLost);
                    }
                    // Its outcome may have been recorded a moment ago: let the outcome answer.
                    Phase::Ending | Phase::TimedOut => {}
                    Phase::Released => forget.push(r.job_id),
                    Phase::Lost(_) => {}
                },
            }
        }
        for id in forget {
            st.held.remove(&id);
        }
    }

    /// Marks leases past their deadline as expired (firing their cancellation), cancels the
    /// handlers whose run time is running out and reports a `timeout` failure for those still
    /// running at their report time; returns the earliest of these instants still ahead.
    pub(crate) fn expire_overdue(&self, now: Instant) -> Option<Instant> {
        let mut st = lock(&self.state);
        let mut earliest: Option<Instant> = None;
        let mut next = |at: Instant| earliest = Some(earliest.map_or(at, |e| e.min(at)));
        let mut forget = Vec::new();
        let mut timed_out = Vec::new();
        for (id, h) in &mut st.held {
            if h.deadline <= now {
                match h.phase {
                    Phase::Active => {
                        h.phase = Phase::Lost(NotSentReason::LeaseExpired);
                        h.job.fire(CancelReason::LeaseExpired);
                    }
                    Phase::Released => forget.push(*id),
                    Phase::Ending | Phase::Lost(_) | Phase::TimedOut => {}
                }
                continue;
            }
            if matches!(h.phase, Phase::Active | Phase::Ending | Phase::TimedOut) {
                next(h.deadline);
            }
            let Some(run) = h.run.filter(|_| h.phase == Phase::Active) else {
                continue;
            };
            if run.report_at <= now {
                h.phase = Phase::TimedOut;
                h.job.fire(CancelReason::TimedOut);
                timed_out.push(h.job.clone());
            } else if run.cancel_at <= now {
                h.job.fire(CancelReason::TimedOut);
                next(run.report_at);
            } else {
                next(run.cancel_at);
            }
        }
        for id in forget {
            st.held.remove(&id);
        }
        for job in &timed_out {
            let _enter = job.span().enter();
            tracing::warn!("the handler outlived its timeout; reporting a timeout failure for it");
            st.outcomes.push_back(Pending {
                report: OutcomeReport {
                    job_id: job.id(),
                    fencing_token: job.token(),
                    outcome: self.timeout_failure(job),
                },
                receipt: None,
                replacement: true,
            });
        }
        if !timed_out.is_empty() {
            self.publish(&st);
            drop(st);
            self.outcomes_queued.notify_one();
        }
        earliest
    }

    /// Takes up to `max` outcomes to send, dropping those whose lease deadline has passed.
    pub(crate) fn take_outcomes(&self, max: usize, now: Instant) -> Vec<Pending> {
        let mut st = lock(&self.state);
        let mut batch = Vec::new();
        while batch.len() < max {
            let Some(p) = st.outcomes.pop_front() else {
                break;
            };
            let id = p.report.job_id;
            let live = st
                .held
                .get(&id)
                .filter(|h| h.job.token() == p.report.fencing_token)
                .map(|h| h.deadline > now);
            match live {
                Some(true) => batch.push(p),
                Some(false) => {
                    if let Some(h) = st.held.remove(&id) {
                        let _enter = h.job.span().enter();
                        tracing::warn!(
                            "lease deadline passed before the outcome could be delivered; dropping it"
                        );
                    }
                    if let Some(tx) = p.receipt {
                        let _ = tx.send(OutcomeAck::NotSent(NotSentReason::LeaseExpired));
                    }
                }
                None => {
                    if let Some(tx) = p.receipt {
                        let _ = tx.send(OutcomeAck::NotSent(NotSentReason::LeaseLost));
                    }
                }
            }
        }
        st.in_flight += batch.len();
        self.publish(&st);
        batch
    }

    /// Ids in `batch` whose failure or release should carry unsent progress or checkpoints
    /// first.
    pub(crate) fn dirty_before_outcome(&self, batch: &[Pending]) -> Vec<Uuid> {
        let st = lock(&self.state);
        batch
            .iter()
            .filter(|p| !matches!(p.report.outcome, OutcomeKind::Complete { .. }))
            .filter_map(|p| st.held.get(&p.report.job_id))
            .filter(|h| lock(&h.job.data).dirty())
            .map(|h| h.job.id())
            .collect()
    }

    /// Puts an unsent batch back at the front of the queue.
    pub(crate) fn requeue(&self, batch: Vec<Pending>) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(batch.len());
        for p in batch.into_iter().rev() {
            st.outcomes.push_front(p);
        }
        self.publish(&st);
    }

    /// Applies the coordinator's answers to a sent batch.
    pub(crate) fn apply_outcomes(&self, batch: Vec<Pending>, results: Vec<OutcomeResult>) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(batch.len());
        let mut results = results.into_iter();
        for p in batch {
            let id = p.report.job_id;
            let result = results.next().filter(|r| r.job_id == id);
            let span = st
                .held
                .get(&id)
                .filter(|h| h.job.token() == p.report.fencing_token)
                .map(|h| h.job.span().clone());
            if span.is_some() {
                st.held.remove(&id);
            }
            let _enter = span.as_ref().map(tracing::Span::enter);
            let ack = match result {
                Some(OutcomeResult {
                    status: OutcomeStatus::Ok,
                    state,
                    ..
                }) => {
                    tracing::debug!(?state, "outcome recorded");
                    match (p.replacement, &p.report.outcome) {
                        (true, OutcomeKind::Fail { error, .. }) => OutcomeAck::RecordedAsFailure {
                            class: error.class.clone(),
                            message: error.message.clone(),
                            state,
                        },
                        _ => OutcomeAck::Recorded { state },
                    }
                }
                Some(OutcomeResult { status, state, .. }) => {
                    tracing::warn!(
                        ?status,
                        ?state,
                        "outcome refused by the coordinator (lease lost or job gone); nothing changed"
                    );
                    OutcomeAck::Rejected { status, state }
                }
                None => {
                    tracing::warn!("outcome answer missing or out of order");
                    OutcomeAck::NotSent(NotSentReason::SessionClosed)
                }
            };
            if let Some(tx) = p.receipt {
                let _ = tx.send(ack);
            }
        }
        self.publish(&st);
    }

    /// Handles outcomes the coordinator refused outright: a non-retryable error for the request
    /// itself, each outcome sent alone (a refused batch is first split into single outcomes).
    ///
    /// A refused outcome is never dropped silently: unless the refusal is about the lease (409,
    /// `lease_lost`) or is not a 4xx, a non-retryable failure naming the refusal takes its place
    /// at the front of the queue (class `result_too_large` for a 413 on a result,
    /// `outcome_refused` otherwise), so that the job ends `dead` with that cause at once instead
    /// of expiring and running again. Anything else, and a refused replacement, is dropped with
    /// [`OutcomeAck::Invalid`] (its lease will expire).
    pub(crate) fn refuse(&self, batch: Vec<Pending>, err: &Error) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(batch.len());
        for p in batch {
            let id = p.report.job_id;
            let ours = st
                .held
                .get(&id)
                .filter(|h| h.job.token() == p.report.fencing_token)
                .map(|h| h.job.span().clone());
            let failure = ours
                .as_ref()
                .filter(|_| !p.replacement)
                .and_then(|_| replacement(&p.report.outcome, err));
            if let (Some(span), Some(error)) = (&ours, failure) {
                let _enter = span.enter();
                tracing::error!(
                    error = %err,
                    class = %error.class,
                    "the coordinator refused the outcome; reporting a failure in its place"
                );
                st.outcomes.push_front(Pending {
                    report: OutcomeReport {
                        job_id: id,
                        fencing_token: p.report.fencing_token,
                        outcome: OutcomeKind::Fail {
                            error,
                            retry_at: None,
                        },
                    },
                    receipt: p.receipt,
                    replacement: true,
                });
                continue;
            }
            if let Some(span) = &ours {
                let _enter = span.enter();
                tracing::error!(error = %err, "the coordinator refused the outcome; dropping it (its lease will expire)");
                st.held.remove(&id);
            }
            if let Some(tx) = p.receipt {
                let _ = tx.send(OutcomeAck::Invalid {
                    message: err.to_string(),
                });
            }
        }
        self.publish(&st);
    }
}

/// The failure to report in place of `outcome` refused with `err`, when there is one: a 4xx
/// other than a lease refusal, on a completion or a failure.
fn replacement(outcome: &OutcomeKind, err: &Error) -> Option<FailureInfo> {
    let Error::Api {
        status,
        code,
        message,
        ..
    } = err
    else {
        return None;
    };
    if !(400..500).contains(status) || *status == 409 || *code == ErrorCode::LeaseLost {
        return None;
    }
    let too_large = *status == 413 || *code == ErrorCode::PayloadTooLarge;
    let said = format!("{status} {}: {}", code.as_str(), clip(message, 4096));
    let (class, message) = match outcome {
        OutcomeKind::Complete { result, .. } if too_large => {
            let size = serde_json::to_vec(result).map_or(0, |v| v.len());
            (
                "result_too_large",
                format!(
                    "the coordinator refused the result ({size} bytes as JSON) as too large: {said}"
                ),
            )
        }
        OutcomeKind::Complete { .. } => (
            "outcome_refused",
            format!("the coordinator refused the completion: {said}"),
        ),
        OutcomeKind::Fail { error, .. } => (
            "outcome_refused",
            format!(
                "the coordinator refused the failure report (class {:?}): {said}",
                error.class
            ),
        ),
        OutcomeKind::Release => return None,
    };
    Some(FailureInfo {
        class: class.to_owned(),
        message,
        retryable: false,
    })
}

#[cfg(test)]
mod tests {
    use leasehold_proto::FailureInfo;

    use super::*;

    fn api(status: u16, code: ErrorCode, message: &str) -> Error {
        Error::Api {
            status,
            code,
            message: message.to_owned(),
            details: serde_json::Value::Null,
            request_id: "r".to_owned(),
            retry_after: None,
        }
    }

    fn complete(result: serde_json::Value) -> OutcomeKind {
        OutcomeKind::Complete {
            result,
            artifacts: vec![],
            manifest_digest: None,
        }
    }

    #[test]
    fn a_refused_result_becomes_a_final_failure_naming_the_cause() {
        let too_big = api(413, ErrorCode::PayloadTooLarge, "the limit is 10");
        let f = replacement(&complete(serde_json::json!("0123456789")), &too_big)
            .expect("a 413 on a result is answered");
        assert_eq!(f.class, "result_too_large");
        assert!(!f.retryable);
        assert_eq!(
            f.message,
            "the coordinator refused the result (12 bytes as JSON) as too large: \
             413 payload_too_large: the limit is 10"
        );
        let invalid = api(422, ErrorCode::ValidationFailed, "artifacts[0].name is bad");
        let f = replacement(&complete(serde_json::json!(1)), &invalid).expect("a 422 is answered");
        assert_eq!(f.class, "outcome_refused");
        assert!(
            f.message
                .ends_with("422 validation_failed: artifacts[0].name is bad")
        );
        let failure = OutcomeKind::Fail {
            error: FailureInfo {
                class: "Boom".into(),
                message: "m".into(),
                retryable: true,
            },
            retry_at: None,
        };
        let f = replacement(&failure, &too_big).expect("a refused failure is answered");
        assert_eq!(f.class, "outcome_refused");
        assert!(f.message.contains("\"Boom\""), "{}", f.message);
    }

    #[test]
    fn lease_refusals_and_non_4xx_errors_are_not_answered_with_a_failure() {
        let result = complete(serde_json::json!(1));
        for err in [
            api(409, ErrorCode::InvalidState, "not leased"),
            api(409, ErrorCode::LeaseLost, "stale token"),
            api(500, ErrorCode::Internal, "oops"),
            Error::Protocol("garbled".into()),
        ] {
            assert_eq!(replacement(&result, &err), None, "{err}");
        }
        let too_big = api(413, ErrorCode::PayloadTooLarge, "big");
        assert_eq!(replacement(&OutcomeKind::Release, &too_big), None);
    }
}
