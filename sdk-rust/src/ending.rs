//! What a handler's ending means, decided once for every skin. The Rust [`crate::Worker`], the
//! Python worker (through `_native.Job.settle`) and the C ABI (`lh_job_settle`, which the Go
//! worker calls) map their language's endings — a value returned, an error or exception
//! raised, a panic, a stop without an outcome, a handler abandoned after its cancel grace — to
//! an [`Ending`], and [`LeasedJob::settle`] turns it into the job's one outcome.

use crate::error::HandlerError;
use crate::job::{CancelReason, LeasedJob, OutcomeReceipt};

/// How a handler ended.
#[derive(Debug)]
pub enum Ending {
    /// It returned this result.
    Returned(serde_json::Value),
    /// It failed; the error says whether a retry can help, and when.
    Failed(HandlerError),
    /// It panicked (or crashed in a way its language cannot classify): a retryable failure of
    /// class `panic` with this message.
    Panicked(String),
    /// It stopped without an outcome of its own (it acknowledged a cancellation, or its lease
    /// was already gone).
    Stopped,
    /// It ignored its cancellation past the cancel grace and was left running.
    Abandoned,
}

impl LeasedJob {
    /// Ends the job as `ending` means:
    ///
    /// | ending | job cancelled by an operator | otherwise |
    /// | --- | --- | --- |
    /// | `Returned(v)` | completed with `v` | completed with `v` |
    /// | `Failed(e)` | reported cancelled | failed with `e` (retried per `e` and the policy) |
    /// | `Panicked(m)` | reported cancelled | retryable failure, class `panic` |
    /// | `Stopped`, `Abandoned` | reported cancelled | released (no attempt spent) |
    ///
    /// The core overrides where the lease itself decided: a lease past its run time reports
    /// its `timeout` failure whatever the ending, and one that is lost or was released at
    /// shutdown sends nothing.
    pub fn settle(self, ending: Ending) -> OutcomeReceipt {
        let cancel_requested =
            self.context().cancel_reason() == Some(CancelReason::CancelRequested);
        match ending {
            Ending::Returned(value) => self.complete(value),
            Ending::Failed(_) | Ending::Panicked(_) | Ending::Stopped | Ending::Abandoned
                if cancel_requested =>
            {
                self.report_cancelled()
            }
            Ending::Failed(error) => self.fail(error),
            Ending::Panicked(message) => {
                self.fail(HandlerError::retry(message).with_class("panic"))
            }
            Ending::Stopped | Ending::Abandoned => self.release(),
        }
    }
}
