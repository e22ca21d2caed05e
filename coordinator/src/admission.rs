//! Whether an enqueue (a job, a batch, a run) is taken in: the coordinator-wide high-water mark
//! (`--max-queued-jobs`), which sheds enqueues with 429 `overloaded` before the store
//! saturates, and the count of refused enqueues by reason. A tenant's own quota (`max_queued`)
//! is exact and is checked by the store inside the enqueue's transaction
//! (`crate::store::QuotaRecords`); its refusal is counted here too.
//!
//! The mark is deliberately approximate. Counting the waiting jobs on every enqueue would put a
//! scan of the backlog on the hottest path, so the count is taken at most once per
//! [`Backpressure::refresh`] (a second) with the statement `/metrics` uses
//! (`Store::live_state_counts`, one partial index per state), and enqueues in between compare
//! against it: up to a second's worth of enqueues may pass the mark before shedding starts, and
//! shedding stops up to a second after the backlog drained below it. Waiting, here as in a
//! quota, is `queued` plus `blocked`. A request that is shed is refused before the store is
//! asked anything, so an idempotent replay can be shed too; retried later, it replays.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leasehold_proto::{ErrorCode, JobState};

use crate::error::{ApiError, ApiResult, RETRY_AFTER_DETAIL};
use crate::store::{StateCount, Store, StoreResult};

/// `Retry-After` of a `quota_exceeded` refusal: a backlog drains at its workers' pace, so asking
/// again at once mostly repeats the refusal.
pub const QUOTA_RETRY_AFTER_SECS: u64 = 5;
/// `Retry-After` of an `overloaded` refusal: the count the mark compares with is taken again
/// after this long.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;
/// How old the count of waiting jobs may be before an enqueue takes it again.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(1);

/// Why an enqueue was refused, as `leasehold_enqueues_refused_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the tenant's `max_queued` (429 `quota_exceeded`).
    Quota,
    /// Over the coordinator's `--max-queued-jobs` (429 `overloaded`).
    Overloaded,
}

impl Refusal {
    /// Every reason, for registering the counter at zero.
    pub const ALL: [Refusal; 2] = [Refusal::Quota, Refusal::Overloaded];

    /// The metric's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Quota => "quota",
            Refusal::Overloaded => "overloaded",
        }
    }
}

/// Counts `err` in `leasehold_enqueues_refused_total` when it is an enqueue's refusal (quota or
/// load), and hands it back: `.map_err(admission::counted)` on an enqueue's result.
pub(crate) fn counted(err: ApiError) -> ApiError {
    let reason = match err.code {
        ErrorCode::QuotaExceeded => Refusal::Quota,
        ErrorCode::Overloaded => Refusal::Overloaded,
        _ => return err,
    };
    metrics::counter!(crate::metrics::ENQUEUES_REFUSED, "reason" => reason.as_str()).increment(1);
    err
}

/// The coordinator-wide high-water mark of waiting jobs. Cheap to share (one per server).
#[derive(Debug)]
pub struct Backpressure {
    /// Shed enqueues while at least this many jobs wait (`None`: never).
    mark: Option<u64>,
    /// How old the count may be.
    refresh: Duration,
    /// The last count of waiting jobs, across tenants.
    waiting: AtomicU64,
    /// When that count was taken (`None`: never yet).
    counted_at: Mutex<Option<Instant>>,
    /// Held by the one request taking a new count; the others use the last one meanwhile.
    counting: tokio::sync::Mutex<()>,
}

impl Default for Backpressure {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Backpressure {
    /// Sheds enqueues while at least `mark` jobs wait (`None`: off), counting at most once a
    /// second.
    pub fn new(mark: Option<u64>) -> Self {
        Self::with_refresh(mark, DEFAULT_REFRESH)
    }

    /// As [`Backpressure::new`], counting at most once per `refresh` (tests use zero: every
    /// enqueue counts, and the mark is exact).
    pub fn with_refresh(mark: Option<u64>, refresh: Duration) -> Self {
        Self {
            mark,
            refresh,
            waiting: AtomicU64::new(0),
            counted_at: Mutex::new(None),
            counting: tokio::sync::Mutex::new(()),
        }
    }

    /// The mark, if one is set.
    pub fn mark(&self) -> Option<u64> {
        self.mark
    }

    /// How old the count may be.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// Ok when enqueues may go on; 429 `overloaded` (with `Retry-After`) when the last count of
    /// waiting jobs is at the mark or above. Counted in `leasehold_enqueues_refused_total`.
    pub(crate) async fn admit(&self, store: &dyn Store) -> ApiResult<()> {
        let Some(mark) = self.mark else {
            return Ok(());
        };
        let waiting = self.waiting(|| async { waiting_jobs(store).await }).await;
        if waiting < mark {
            return Ok(());
        }
        Err(counted(
            ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "the coordinator is shedding enqueues: {waiting} jobs are waiting, at or \
                     above its mark of {mark} (--max-queued-jobs); nothing was stored. Retry \
                     in {OVERLOADED_RETRY_AFTER_SECS} s"
                ),
            )
            .with_details(serde_json::json!({
                "mark": mark,
                "waiting": waiting,
                RETRY_AFTER_DETAIL: OVERLOADED_RETRY_AFTER_SECS,
            })),
        ))
    }

    /// The waiting jobs as last counted, counting again first (with `count`) when the last
    /// count is older than the refresh period and no other request is counting. A failed count
    /// keeps the last one (the enqueue itself will meet the database's trouble).
    async fn waiting<F, Fut>(&self, count: F) -> u64
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = StoreResult<u64>>,
    {
        let stale = |at: Option<Instant>| at.is_none_or(|at| at.elapsed() >= self.refresh);
        let never = self.counted_at().is_none();
        if stale(self.counted_at()) {
            // The very first count is waited for; later ones are taken by whoever comes first
            // while the others go on with the last count.
            let guard = if never {
                Some(self.counting.lock().await)
            } else {
                self.counting.try_lock().ok()
            };
            if guard.is_some() && stale(self.counted_at()) {
                let started = Instant::now();
                match count().await {
                    Ok(n) => {
                        self.waiting.store(n, Ordering::Relaxed);
                        if let Ok(mut at) = self.counted_at.lock() {
                            *at = Some(started);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "could not count waiting jobs for --max-queued-jobs")
                    }
                }
            }
        }
        self.waiting.load(Ordering::Relaxed)
    }

    fn counted_at(&self) -> Option<Instant> {
        self.counted_at.lock().ok().and_then(|at| *at)
    }
}

/// Jobs `queued` or `blocked` across tenants and queues.
async fn waiting_jobs(store: &dyn Store) -> StoreResult<u64> {
    Ok(sum_waiting(&store.live_state_counts().await?))
}

fn sum_waiting(counts: &[StateCount]) -> u64 {
    counts
        .iter()
        .filter(|c| matches!(c.state, JobState::Queued | JobState::Blocked))
        .map(|c| u64::try_from(c.count).unwrap_or(0))
        .sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn waiting_is_queued_plus_blocked_across_tenants() {
        let count = |tenant: &str, state, count| StateCount {
            tenant: tenant.into(),
            queue: "q".into(),
            state,
            count,
        };
        let counts = [
            count("a", JobState::Queued, 3),
            count("b", JobState::Queued, 4),
            count("a", JobState::Blocked, 2),
            count("a", JobState::Leased, 100),
        ];
        assert_eq!(sum_waiting(&counts), 9);
    }

    #[tokio::test]
    async fn the_count_is_taken_at_most_once_per_refresh() {
        let counted = AtomicUsize::new(0);
        let count = || async {
            let n = counted.fetch_add(1, Ordering::SeqCst) as u64;
            Ok(10 + n)
        };
        let slow = Backpressure::with_refresh(Some(5), Duration::from_secs(3600));
        assert_eq!(slow.waiting(count).await, 10);
        assert_eq!(slow.waiting(count).await, 10, "the first count serves");
        assert_eq!(counted.load(Ordering::SeqCst), 1);

        let eager = Backpressure::with_refresh(Some(5), Duration::ZERO);
        assert_eq!(eager.waiting(count).await, 11);
        assert_eq!(eager.waiting(count).await, 12, "every call counts");
    }

    #[tokio::test]
    async fn a_failed_count_keeps_the_last_one() {
        let marks = Backpressure::with_refresh(Some(5), Duration::ZERO);
        assert_eq!(marks.waiting(|| async { Ok(7) }).await, 7);
        let failed = || async { Err(crate::store::StoreError::Unavailable("down".into())) };
        assert_eq!(marks.waiting(failed).await, 7);
    }
}
