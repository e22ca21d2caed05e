//! How a job's outcome fared: [`OutcomeReceipt`], answered with an [`OutcomeAck`] once the
//! coordinator recorded or refused the outcome, or with the [`NotSentReason`] it never left.

use leasehold_proto::{JobState, OutcomeStatus};
use tokio::sync::oneshot;

/// Why an outcome was never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotSentReason {
    /// The coordinator said the lease was lost before the outcome was ready.
    LeaseLost,
    /// The lease deadline passed (monotonic clock) before the outcome could be delivered.
    LeaseExpired,
    /// The worker released the job while shutting down.
    Released,
    /// The session closed first.
    SessionClosed,
    /// The attempt's run time ran out: the SDK reported a `timeout` failure in place of this
    /// outcome (a handler never reports success past its timeout).
    TimedOut,
}

/// How the coordinator received an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutcomeAck {
    /// Recorded; the job's state afterwards.
    Recorded {
        /// The job's state after the outcome (`succeeded`, `queued` for a retry, `dead`,
        /// `cancelled`).
        state: Option<JobState>,
    },
    /// Refused: the lease was no longer ours (`lease_lost`) or the job is gone (`not_found`).
    Rejected {
        /// Why.
        status: OutcomeStatus,
        /// The job's current state, when known.
        state: Option<JobState>,
    },
    /// Never sent.
    NotSent(NotSentReason),
    /// The coordinator refused the request carrying it (a 4xx such as 413 for a result over its
    /// size limit, or 422), and refused the failure the SDK reported in its place too (or the
    /// refusal was not one a failure can answer); nothing was recorded, the lease will expire and
    /// the job run again.
    Invalid {
        /// The coordinator's explanation.
        message: String,
    },
    /// The coordinator refused the outcome itself (a 4xx other than a lease refusal: 413 for a
    /// result over its size limit, 422, …), so the SDK reported a non-retryable failure in its
    /// place, which was recorded: the job ends (`dead`) with this cause instead of its lease
    /// expiring and the job running again.
    RecordedAsFailure {
        /// The error class recorded: `result_too_large` (a result refused as too large) or
        /// `outcome_refused` (any other refusal).
        class: String,
        /// The message recorded: what was refused and the coordinator's explanation (naming the
        /// limit when the coordinator did).
        message: String,
        /// The job's state afterwards (`dead`, or `cancelled` if a cancel was requested).
        state: Option<JobState>,
    },
}

/// Tells how an outcome fared, once it has been acknowledged, refused or dropped. Waiting for
/// it is optional: the outcome is delivered either way, so it may simply be dropped.
#[derive(Debug)]
pub struct OutcomeReceipt {
    rx: oneshot::Receiver<OutcomeAck>,
}

impl OutcomeReceipt {
    pub(crate) fn new(rx: oneshot::Receiver<OutcomeAck>) -> Self {
        Self { rx }
    }

    pub(crate) fn ready(ack: OutcomeAck) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(ack);
        Self { rx }
    }

    /// Waits until the outcome has settled.
    pub async fn wait(self) -> OutcomeAck {
        self.rx
            .await
            .unwrap_or(OutcomeAck::NotSent(NotSentReason::SessionClosed))
    }

    /// Non-blocking check: `Some` once the outcome has settled.
    pub fn try_ack(&mut self) -> Option<OutcomeAck> {
        match self.rx.try_recv() {
            Ok(ack) => Some(ack),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                Some(OutcomeAck::NotSent(NotSentReason::SessionClosed))
            }
        }
    }
}
