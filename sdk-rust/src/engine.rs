//! The engine shared by a session's background tasks and its jobs: [`Engine`] and the [`State`]
//! of the leases it holds — taking leases in, ending them, building failure outcomes, releasing
//! what is left at shutdown, draining, and sending heartbeats and outcomes over the socket or
//! HTTP. The heartbeat and outcome bookkeeping on the same state lives in [`crate::bookkeeping`].

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use leasehold_proto::{
    FailureInfo, HeartbeatItem, HeartbeatResult, Lease, OutcomeKind, OutcomeReport, OutcomeResult,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::adaptive::{Controller, Signal};
use crate::error::{Error, HandlerError, Result};
use crate::job::{
    CancelReason, JobContext, JobShared, LeasedJob, NotSentReason, OutcomeAck, OutcomeReceipt,
    Settle,
};
use crate::link::{Intake, Link};
use crate::retry::{RetryPolicy, SplitMix64};
use crate::session_config::SessionConfig;
use crate::transport::http::HttpApi;
use crate::util::lock;

/// The error class of an attempt whose run time ran out.
pub(crate) const TIMEOUT_CLASS: &str = "timeout";

/// Prefetch (`SessionConfig::prefetch`) holds leases beyond the running ones only while jobs
/// run less than this on average. A prefetched lease waits for a slot, and its lease and run
/// time count while it waits; for long jobs the wait would save little and hold a job from
/// other workers.
pub(crate) const PREFETCH_BELOW: Duration = Duration::from_millis(100);

/// Prefetch holds about this much of the slots' work ahead: enough to cover a refill (credit,
/// claim transaction, push) that runs long on a loaded coordinator or database, and so the
/// longest a prefetched lease waits for a slot.
pub(crate) const PREFETCH_AHEAD: Duration = Duration::from_millis(50);

/// Prefetch never holds more than this many times `concurrency` beyond the running leases.
pub(crate) const PREFETCH_MOST: usize = 3;

/// Where a held lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Queued or running.
    Active,
    /// Its outcome is queued or in flight.
    Ending,
    /// Lost or expired; its handler may still run, its outcome will be dropped.
    Lost(NotSentReason),
    /// Released by a shutdown; a late outcome from its handler is dropped.
    Released,
    /// Its run time ran out: the `timeout` failure is queued or in flight in the handler's
    /// place; the handler may still run, its own ending is dropped.
    TimedOut,
}

#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) job: Arc<JobShared>,
    pub(crate) deadline: Instant,
    /// When the lease arrived (an outcome's latency counts from here).
    pub(crate) received: Instant,
    pub(crate) phase: Phase,
    /// The attempt's run-time limits, when its lease has a timeout.
    pub(crate) run: Option<RunLimit>,
}

/// When, on the monotonic clock, a lease with a timeout is cancelled and reported. Counted
/// from the lease's arrival, which is later than the coordinator's start of it (the
/// coordinator's deadline comes first): the failure is sent `min(timeout/5, 2 s)` before the
/// timeout runs out here, the handler's cancellation fires `min(timeout/10, 5 s)` before that.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunLimit {
    pub(crate) cancel_at: Instant,
    pub(crate) report_at: Instant,
}

impl RunLimit {
    pub(crate) fn new(received: Instant, timeout: Duration) -> Self {
        let report_at = received + timeout - (timeout / 5).min(Duration::from_secs(2));
        let grace = (timeout / 10).min(Duration::from_secs(5));
        Self {
            cancel_at: report_at - grace,
            report_at,
        }
    }
}

impl Held {
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(self.job.lease.lease_ttl_ms.max(1000))
    }
}

/// An outcome waiting to be sent.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) report: OutcomeReport,
    pub(crate) receipt: Option<oneshot::Sender<OutcomeAck>>,
    /// A failure sent in place of an outcome the coordinator refused (see [`Engine::refuse`]);
    /// never replaced in turn.
    pub(crate) replacement: bool,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) held: HashMap<Uuid, Held>,
    /// Leases not yet ended (slots in use).
    pub(crate) active: usize,
    pub(crate) outcomes: VecDeque<Pending>,
    /// Outcomes taken by the flusher and not yet answered.
    pub(crate) in_flight: usize,
    /// The adaptive concurrency limit, when the session adapts (`crate::adaptive`).
    pub(crate) adaptive: Option<Controller>,
    /// Moving average of the jobs' run time in ms, from the moment the session handed the job
    /// out to its ending (prefetch decides on it; time spent waiting for a slot is not run time).
    pub(crate) run_ms: Option<f64>,
}

/// The engine shared by the session's tasks and its jobs.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) cfg: SessionConfig,
    pub(crate) http: Arc<HttpApi>,
    staging_dir: Arc<Path>,
    pub(crate) state: Mutex<State>,
    pub(crate) ready_tx: Mutex<Option<mpsc::UnboundedSender<LeasedJob>>>,
    pub(crate) ready_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<LeasedJob>>,
    /// Slots in use, published for the claim loop, the credit writer and the drain.
    pub(crate) active_tx: watch::Sender<usize>,
    /// Slots counted as taken (see `taken`), for the claim loop and the credit writer.
    pub(crate) taken_tx: watch::Sender<usize>,
    /// Outcomes waiting and in flight, published for the drain.
    pub(crate) pending_tx: watch::Sender<usize>,
    pub(crate) outcomes_queued: Notify,
    /// Wakes the heartbeat task's watchdog: a lease with a timeout arrived (its limits may come
    /// before the next beat).
    pub(crate) watchdog: Notify,
    /// Fired when the session stops taking leases.
    pub(crate) drain: CancellationToken,
    /// Fired when every task must end.
    pub(crate) stop: CancellationToken,
    /// How the engine reaches the coordinator.
    pub(crate) link: Arc<dyn Link>,
    rng: Mutex<SplitMix64>,
    pub(crate) fatal: Mutex<Option<Error>>,
    me: Weak<Engine>,
}

impl Engine {
    /// An engine for `cfg` that reaches the coordinator through `link`; `http` serves the
    /// jobs' artifact uploads.
    pub(crate) fn new(cfg: SessionConfig, http: Arc<HttpApi>, link: Arc<dyn Link>) -> Arc<Self> {
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let rng = cfg
            .rng_seed
            .map_or_else(SplitMix64::from_entropy, SplitMix64::new);
        let staging_dir: Arc<Path> = Arc::from(cfg.staging_dir.as_path());
        let adaptive = cfg
            .adaptive_concurrency
            .clone()
            .map(|a| Controller::new(a, cfg.concurrency));
        Arc::new_cyclic(|me| Self {
            http,
            staging_dir,
            state: Mutex::new(State {
                adaptive,
                ..State::default()
            }),
            ready_tx: Mutex::new(Some(ready_tx)),
            ready_rx: tokio::sync::Mutex::new(ready_rx),
            active_tx: watch::channel(0).0,
            taken_tx: watch::channel(0).0,
            pending_tx: watch::channel(0).0,
            outcomes_queued: Notify::new(),
            watchdog: Notify::new(),
            drain: CancellationToken::new(),
            stop: CancellationToken::new(),
            link,
            rng: Mutex::new(rng),
            fatal: Mutex::new(None),
            me: me.clone(),
            cfg,
        })
    }

    pub(crate) fn publish(&self, st: &State) {
        self.active_tx.send_replace(st.active);
        let unacked = st.outcomes.len() + st.in_flight;
        self.pending_tx.send_replace(unacked);
        self.taken_tx.send_replace(self.taken(st));
    }

    /// Slots counted as taken: leases not yet ended, plus backpressure from outcomes not yet
    /// acknowledged beyond one `concurrency`'s worth. A coordinator slow to record outcomes
    /// thus slows the intake of new leases instead of letting held leases (and heartbeats)
    /// grow without bound until they time out. Slots an adaptive limit withholds count too, so
    /// both transports ask for fewer leases.
    fn taken(&self, st: &State) -> usize {
        st.active + self.holding_back(st)
    }

    /// Slots withheld beyond the leases held: the outcome backlog and the adaptive limit.
    fn holding_back(&self, st: &State) -> usize {
        let unacked = st.outcomes.len() + st.in_flight;
        let withheld = st
            .adaptive
            .as_ref()
            .map_or(0, |a| self.cfg.concurrency.saturating_sub(a.limit()));
        unacked.saturating_sub(self.cfg.concurrency) + withheld
    }

    /// Leases held beyond `concurrency` (queued for a slot): while prefetch is on and jobs run
    /// less than [`PREFETCH_BELOW`], as many as the slots get through in [`PREFETCH_AHEAD`] at
    /// the jobs' average run time, at most [`PREFETCH_MOST`] × `concurrency`; none while
    /// anything holds slots back ([`Self::holding_back`]), nor before the first job ended.
    /// Slots free at `concurrency / run time` while a refill takes a few ms, and tens of ms
    /// when a claim or an outcome batch waits for a busy database (docs/sdk.md, "Prefetch",
    /// has what less held ahead cost).
    fn prefetch(&self, st: &State) -> usize {
        let Some(run_ms) = st.run_ms else {
            return 0;
        };
        if !self.cfg.prefetch
            || run_ms >= PREFETCH_BELOW.as_secs_f64() * 1000.0
            || self.holding_back(st) > 0
        {
            return 0;
        }
        let most = PREFETCH_MOST * self.cfg.concurrency;
        let ahead = PREFETCH_AHEAD.as_secs_f64() * 1000.0 / run_ms.max(f64::EPSILON);
        // Saturates at `most` for jobs of (nearly) no time.
        ((self.cfg.concurrency as f64 * ahead) as usize).min(most)
    }

    /// How many jobs the session takes at once now: `concurrency`, or less while an adaptive
    /// limit holds it back.
    pub(crate) fn concurrency_limit(&self) -> usize {
        lock(&self.state)
            .adaptive
            .as_ref()
            .map_or(self.cfg.concurrency, Controller::limit)
    }

    /// Leases the session would take now: free slots, plus the prefetch allowance.
    pub(crate) fn free_slots(&self) -> usize {
        let st = lock(&self.state);
        (self.cfg.concurrency + self.prefetch(&st)).saturating_sub(self.taken(&st))
    }

    /// Takes in leases from either transport.
    pub(crate) fn accept_leases(&self, leases: Vec<Lease>, received: Instant) {
        if leases.is_empty() {
            return;
        }
        let mut ready = Vec::with_capacity(leases.len());
        let mut timed = false;
        {
            let mut st = lock(&self.state);
            let refuse = self.drain.is_cancelled() || self.stop.is_cancelled();
            for lease in leases {
                let ttl = Duration::from_millis(lease.lease_ttl_ms.max(1000));
                // The coordinator started the lease a little before we saw it: keep a margin.
                let deadline = received + ttl - ttl / 10;
                let run = lease
                    .timeout_ms
                    .map(|ms| RunLimit::new(received, Duration::from_millis(ms)));
                timed |= run.is_some();
                let shared = Arc::new(JobShared::new(
                    lease,
                    self.http.clone(),
                    self.staging_dir.clone(),
                    &self.cfg.worker_id,
                ));
                let id = shared.id();
                if st
                    .held
                    .get(&id)
                    .is_some_and(|h| h.job.token() == shared.token())
                {
                    tracing::warn!(job_id = %id, "the same lease was delivered twice; ignoring the copy");
                    continue;
                }
                if refuse {
                    st.held.insert(
                        id,
                        Held {
                            job: shared.clone(),
                            deadline,
                            received,
                            phase: Phase::Ending,
                            run,
                        },
                    );
                    st.outcomes.push_back(Pending {
                        report: OutcomeReport {
                            job_id: id,
                            fencing_token: shared.token(),
                            outcome: OutcomeKind::Release,
                        },
                        receipt: None,
                        replacement: false,
                    });
                    continue;
                }
                st.held.insert(
                    id,
                    Held {
                        job: shared.clone(),
                        deadline,
                        received,
                        phase: Phase::Active,
                        run,
                    },
                );
                st.active += 1;
                let settle: Weak<dyn Settle> = self.me.clone();
                ready.push(LeasedJob::new(shared, settle));
            }
            self.publish(&st);
        }
        self.outcomes_queued.notify_one();
        if timed {
            self.watchdog.notify_one();
        }
        let tx = lock(&self.ready_tx).clone();
        for job in ready {
            {
                let _enter = job.span().enter();
                tracing::debug!("leased");
            }
            if let Some(tx) = &tx {
                // A send fails only once the session is closing: the job drops and releases.
                let _ = tx.send(job);
            }
        }
    }

    /// Ends a job's lease with `outcome` (called once per [`LeasedJob`]). Once the job's run
    /// time has run out ([`CancelReason::TimedOut`]) whatever the handler ends with is replaced
    /// by the `timeout` failure.
    pub(crate) fn end(&self, job: &Arc<JobShared>, outcome: OutcomeKind) -> OutcomeReceipt {
        let (tx, rx) = oneshot::channel();
        let timed_out = job.reason() == Some(CancelReason::TimedOut);
        let mut st = lock(&self.state);
        st.active = st.active.saturating_sub(1);
        let id = job.id();
        let mut queued = false;
        let mut since = None;
        let ack = match st.held.get_mut(&id) {
            Some(h) if h.job.token() == job.token() => match h.phase {
                Phase::Active => {
                    h.phase = Phase::Ending;
                    queued = true;
                    since = Some((h.received, job.handed_out().unwrap_or(h.received)));
                    None
                }
                Phase::Lost(reason) => {
                    st.held.remove(&id);
                    Some(OutcomeAck::NotSent(reason))
                }
                Phase::Released => Some(OutcomeAck::NotSent(NotSentReason::Released)),
                Phase::Ending => Some(OutcomeAck::NotSent(NotSentReason::SessionClosed)),
                Phase::TimedOut => Some(OutcomeAck::NotSent(NotSentReason::TimedOut)),
            },
            // The timeout failure was delivered in its place already.
            _ if timed_out => Some(OutcomeAck::NotSent(NotSentReason::TimedOut)),
            // Released at shutdown, and that release was delivered already.
            _ if job.reason() == Some(CancelReason::Shutdown) => {
                Some(OutcomeAck::NotSent(NotSentReason::Released))
            }
            // Replaced by a newer lease of the same job, or already forgotten.
            _ => Some(OutcomeAck::NotSent(NotSentReason::LeaseLost)),
        };
        if queued {
            let (outcome, replacement) = if timed_out {
                (self.timeout_failure(job), true)
            } else {
                (outcome, false)
            };
            if let Some((received, handed_out)) = since {
                let ms = handed_out.elapsed().as_secs_f64() * 1000.0;
                st.run_ms = Some(st.run_ms.map_or(ms, |avg| avg + (ms - avg) / 8.0));
                if let Some(adaptive) = st.adaptive.as_mut() {
                    adapt(adaptive, &outcome, received);
                }
            }
            st.outcomes.push_back(Pending {
                report: OutcomeReport {
                    job_id: id,
                    fencing_token: job.token(),
                    outcome,
                },
                receipt: Some(tx),
                replacement,
            });
        } else if let Some(ack) = ack {
            let _enter = job.span().enter();
            tracing::debug!(?ack, "outcome not sent");
            let _ = tx.send(ack);
        }
        self.publish(&st);
        drop(st);
        if queued {
            self.outcomes_queued.notify_one();
        }
        OutcomeReceipt::new(rx)
    }

    /// The failure outcome for `error`, with `retry_at` from the policy when it retries.
    pub(crate) fn failure(&self, ctx: &JobContext, error: &HandlerError) -> OutcomeKind {
        let (retryable, retry_at) = match error {
            HandlerError::Retry { after, .. } => {
                let lease = ctx.lease();
                let attempt = ctx.attempt();
                let delay = match after {
                    Some(d) => Some(*d),
                    None => {
                        let policy = lease.retry.backoff.as_ref().map_or_else(
                            || RetryPolicy {
                                max_attempts: ctx.max_attempts(),
                                ..self.cfg.retry_policy.clone()
                            },
                            |hint| RetryPolicy::from_hint(hint, lease.retry.max_attempts),
                        );
                        policy.next_delay(attempt, &mut lock(&self.rng))
                    }
                };
                let retry_at = delay
                    .filter(|_| attempt < ctx.max_attempts())
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map(|d| Utc::now() + d);
                (true, retry_at)
            }
            HandlerError::Fatal { .. } | HandlerError::Cancelled { .. } => (false, None),
        };
        OutcomeKind::Fail {
            error: FailureInfo {
                class: clip(error.class(), 255),
                message: clip(error.message(), 64 * 1024),
                retryable,
            },
            retry_at,
        }
    }

    /// The failure reported for a job whose run time ran out: retryable, class `timeout`,
    /// retried after the job's backoff.
    pub(crate) fn timeout_failure(&self, job: &Arc<JobShared>) -> OutcomeKind {
        let limit = job
            .lease
            .timeout_ms
            .map_or_else(String::new, |ms| format!(" of {ms} ms"));
        let error = HandlerError::retry(format!(
            "run time exceeded: the handler was still running when its timeout{limit} ran out"
        ))
        .with_class(TIMEOUT_CLASS);
        let ctx = JobContext {
            shared: job.clone(),
        };
        self.failure(&ctx, &error)
    }

    /// Shutdown past its grace: gives back every lease still running (no attempt spent) and
    /// fires its cancellation. Late outcomes from those handlers are dropped. A lease whose run
    /// time already ran out is reported as timed out instead: that attempt is spent.
    pub(crate) fn release_remaining(&self) -> usize {
        let mut st = lock(&self.state);
        let mut released = Vec::new();
        for h in st.held.values_mut() {
            if h.phase == Phase::Active {
                let timed_out = h.job.reason() == Some(CancelReason::TimedOut);
                h.phase = if timed_out {
                    Phase::TimedOut
                } else {
                    Phase::Released
                };
                h.job.fire(CancelReason::Shutdown);
                released.push((h.job.clone(), timed_out));
            }
        }
        for (job, timed_out) in &released {
            let outcome = if *timed_out {
                self.timeout_failure(job)
            } else {
                OutcomeKind::Release
            };
            st.outcomes.push_back(Pending {
                report: OutcomeReport {
                    job_id: job.id(),
                    fencing_token: job.token(),
                    outcome,
                },
                receipt: None,
                replacement: *timed_out,
            });
        }
        self.publish(&st);
        drop(st);
        self.outcomes_queued.notify_one();
        released.len()
    }

    /// Stops taking leases: WebSocket `drain`, no more long-polls, queued (unstarted) leases
    /// released, and `next_job` reports the session closed once its queue is empty.
    pub(crate) fn begin_drain(&self) {
        if self.drain.is_cancelled() {
            return;
        }
        tracing::info!(worker_id = %self.cfg.worker_id, "draining: no more leases");
        self.drain.cancel();
        drop(lock(&self.ready_tx).take());
        if let Ok(mut rx) = self.ready_rx.try_lock() {
            while let Ok(job) = rx.try_recv() {
                drop(job);
            }
        }
    }

    /// Records a fatal error (bad configuration the coordinator refused) and closes the queue.
    pub(crate) fn set_fatal(&self, err: Error) {
        tracing::error!(error = %err, "worker session failed");
        lock(&self.fatal).get_or_insert(err);
        drop(lock(&self.ready_tx).take());
        self.drain.cancel();
    }

    /// Sends heartbeat entries to the coordinator.
    pub(crate) async fn send_heartbeat(
        &self,
        items: Vec<HeartbeatItem>,
        timeout: Duration,
    ) -> Result<Vec<HeartbeatResult>> {
        self.link.heartbeat(items, timeout).await
    }

    /// Sends outcomes to the coordinator.
    pub(crate) async fn send_outcomes(
        &self,
        outcomes: Vec<OutcomeReport>,
        timeout: Duration,
    ) -> Result<Vec<OutcomeResult>> {
        self.link.outcomes(outcomes, timeout).await
    }

    pub(crate) fn jitter(&self, policy: &RetryPolicy, attempt: u32) -> Duration {
        policy.delay(attempt, &mut lock(&self.rng))
    }
}

impl Settle for Engine {
    fn end(&self, job: &Arc<JobShared>, outcome: OutcomeKind) -> OutcomeReceipt {
        Engine::end(self, job, outcome)
    }

    fn failure(&self, ctx: &JobContext, error: &HandlerError) -> OutcomeKind {
        Engine::failure(self, ctx, error)
    }
}

impl Intake for Engine {
    fn accept(&self, leases: Vec<Lease>, received: Instant) {
        self.accept_leases(leases, received);
    }

    fn free_slots(&self) -> usize {
        Engine::free_slots(self)
    }

    fn taken(&self) -> watch::Receiver<usize> {
        self.taken_tx.subscribe()
    }

    fn draining(&self) -> &CancellationToken {
        &self.drain
    }

    fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    fn fail(&self, err: Error) {
        self.set_fatal(err);
    }
}

pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        let clean: String = s
            .chars()
            .map(|c| if c.is_control() && max == 255 { ' ' } else { c })
            .collect();
        return if clean.is_empty() {
            "error".to_owned()
        } else {
            clean
        };
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    clip(&s[..end], max)
}

/// Moves an adaptive limit for one ended lease (received at `received`).
fn adapt(adaptive: &mut Controller, outcome: &OutcomeKind, received: Instant) {
    let now = Instant::now();
    let signal = match outcome {
        OutcomeKind::Complete { .. } => Signal::Success {
            latency: now.duration_since(received),
        },
        OutcomeKind::Fail { error, .. } => Signal::Failure {
            class: &error.class,
        },
        OutcomeKind::Release => return,
    };
    if let Some(limit) = adaptive.on_outcome(now.into_std(), signal) {
        tracing::info!(
            limit,
            "adaptive concurrency: now taking at most {limit} jobs at once"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_limits_leave_a_grace_then_a_margin_before_the_timeout() {
        let at = Instant::now();
        let ms = |d: Instant| (d - at).as_millis();
        // Short timeouts: a fifth for delivery, a tenth of grace.
        let one = RunLimit::new(at, Duration::from_secs(1));
        assert_eq!((ms(one.cancel_at), ms(one.report_at)), (700, 800));
        // Long ones: at most 2 s for delivery, at most 5 s of grace.
        let minute = RunLimit::new(at, Duration::from_secs(60));
        assert_eq!(
            (ms(minute.cancel_at), ms(minute.report_at)),
            (53_000, 58_000)
        );
        let hour = RunLimit::new(at, Duration::from_secs(3600));
        assert_eq!(ms(hour.report_at), 3_598_000);
    }
}
