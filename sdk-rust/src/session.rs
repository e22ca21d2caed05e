//! The worker session: the protocol engine every SDK drives.
//!
//! A [`WorkerSession`] owns the connection to the coordinator (WebSocket push, or HTTP
//! long-poll when the socket cannot be opened), grants credit for free slots, queues the leases
//! it receives, keeps them alive with one coalesced heartbeat per interval, batches outcomes, and
//! cancels jobs whose lease is lost, cancelled or past its deadline. Callers *pull* jobs with
//! [`WorkerSession::next_job`] and end each one on its [`LeasedJob`]: this is the shape the
//! Python and C/Go skins drive from their own threads; [`crate::Worker`] drives it with async
//! handlers.
//!
//! Slots: a slot is taken from the moment a lease arrives until its [`LeasedJob`] is ended or
//! dropped; the session never holds more than `concurrency` leases that are not yet ended.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use leasehold_proto::{
    FailureInfo, HeartbeatItem, HeartbeatResult, HeartbeatStatus, Lease, OutcomeKind,
    OutcomeReport, OutcomeResult, OutcomeStatus,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::{Error, HandlerError, Result};
use crate::job::{
    CancelReason, JobContext, JobShared, LeasedJob, NotSentReason, OutcomeAck, OutcomeReceipt,
};
use crate::retry::{RetryPolicy, SplitMix64};
use crate::transport::http::HttpApi;
use crate::transport::ws::WsLink;
use crate::util::lock;

/// Which transport a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// WebSocket push; HTTP long-poll when the coordinator refuses the upgrade (an older
    /// coordinator or a proxy without WebSocket support). The default.
    #[default]
    Auto,
    /// WebSocket only (reconnecting forever).
    WebSocket,
    /// HTTP long-poll only.
    Http,
}

/// Everything a [`WorkerSession`] needs. Build with [`SessionConfig::new`] and adjust the
/// public fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// Coordinator base URL, `http(s)://host:port`.
    pub url: String,
    /// Queues to take jobs from.
    pub queues: Vec<String>,
    /// Most leases held at once (free slots are granted as credit). Default 10.
    pub concurrency: usize,
    /// Lease length; heartbeats run every third of it. Default 30 s; the coordinator accepts
    /// 1 s to 24 h.
    pub lease_ttl: Duration,
    /// Stable id of this worker process. Default `<hostname>-<pid>-<random>`.
    pub worker_id: String,
    /// Recorded with each outcome: SDK name and version plus the application's own version.
    pub worker_version: String,
    /// Tenant; default `default`.
    pub tenant: Option<String>,
    /// Sent as `Authorization: Bearer …`.
    pub api_key: Option<String>,
    /// Transport choice.
    pub transport: Transport,
    /// Job retry policy when a lease carries no backoff hint of its own.
    pub retry_policy: RetryPolicy,
    /// Longest HTTP long-poll. Default 10 s.
    pub poll_wait: Duration,
    /// Timeout of one HTTP request (long-polls add their wait). Default 30 s.
    pub request_timeout: Duration,
    /// Where artifacts are staged while hashed. Default the system temp dir.
    pub staging_dir: PathBuf,
    /// Seed of the jitter generator (tests); default from OS entropy.
    pub rng_seed: Option<u64>,
}

impl SessionConfig {
    /// Defaults for `url` and `queues`.
    pub fn new<I, S>(url: impl Into<String>, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            url: url.into(),
            queues: queues.into_iter().map(Into::into).collect(),
            concurrency: 10,
            lease_ttl: Duration::from_secs(30),
            worker_id: default_worker_id(),
            worker_version: sdk_version().to_owned(),
            tenant: None,
            api_key: None,
            transport: Transport::Auto,
            retry_policy: RetryPolicy::default(),
            poll_wait: Duration::from_secs(10),
            request_timeout: crate::transport::http::DEFAULT_TIMEOUT,
            staging_dir: std::env::temp_dir(),
            rng_seed: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.queues.is_empty() || self.queues.len() > 100 {
            return Err(Error::InvalidArgument("name 1 to 100 queues".into()));
        }
        for q in &self.queues {
            crate::validate::queue_name(q)?;
        }
        if let Some(t) = &self.tenant {
            crate::validate::queue_name(t)
                .map_err(|_| Error::InvalidArgument(format!("bad tenant name {t:?}")))?;
        }
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err(Error::InvalidArgument(
                "concurrency must be between 1 and 10000".into(),
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl > Duration::from_secs(86_400) {
            return Err(Error::InvalidArgument(
                "lease_ttl must be between 1 s and 24 h".into(),
            ));
        }
        crate::validate::label("worker_id", &self.worker_id)?;
        crate::validate::label("worker_version", &self.worker_version)?;
        if self.poll_wait > Duration::from_secs(60) {
            return Err(Error::InvalidArgument(
                "poll_wait must be at most 60 s".into(),
            ));
        }
        Ok(())
    }

    /// Heartbeat period: a third of the lease TTL.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.lease_ttl / 3).max(Duration::from_millis(100))
    }
}

/// `leasehold-rust/<version>`.
pub fn sdk_version() -> &'static str {
    concat!("leasehold-rust/", env!("CARGO_PKG_VERSION"))
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.len() < 200 && !h.chars().any(char::is_control))
        .unwrap_or_else(|| "worker".to_owned());
    let tag = Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &tag[..8])
}

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
}

#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) job: Arc<JobShared>,
    pub(crate) deadline: Instant,
    pub(crate) phase: Phase,
}

impl Held {
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.job.lease.lease_ttl_ms.max(1000))
    }
}

/// An outcome waiting to be sent.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) report: OutcomeReport,
    pub(crate) receipt: Option<oneshot::Sender<OutcomeAck>>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) held: HashMap<Uuid, Held>,
    /// Leases not yet ended (slots in use).
    pub(crate) active: usize,
    pub(crate) outcomes: VecDeque<Pending>,
    /// Outcomes taken by the flusher and not yet answered.
    pub(crate) in_flight: usize,
}

/// One heartbeat entry with the data versions it carries.
#[derive(Debug)]
pub(crate) struct SentItem {
    pub(crate) item: HeartbeatItem,
    progress_ver: u64,
    checkpoint_ver: u64,
}

/// The engine shared by the session's tasks and its jobs.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) cfg: SessionConfig,
    pub(crate) http: Arc<HttpApi>,
    staging_dir: Arc<Path>,
    pub(crate) state: Mutex<State>,
    ready_tx: Mutex<Option<mpsc::UnboundedSender<LeasedJob>>>,
    ready_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<LeasedJob>>,
    /// Slots in use, published for the claim loop, the credit writer and the drain.
    pub(crate) active_tx: watch::Sender<usize>,
    /// Slots counted as taken (see `taken`), for the claim loop and the credit writer.
    pub(crate) taken_tx: watch::Sender<usize>,
    /// Outcomes waiting and in flight, published for the drain.
    pub(crate) pending_tx: watch::Sender<usize>,
    pub(crate) outcomes_queued: Notify,
    /// Fired when the session stops taking leases.
    pub(crate) drain: CancellationToken,
    /// Fired when every task must end.
    pub(crate) stop: CancellationToken,
    /// The open WebSocket, if any.
    pub(crate) ws: watch::Sender<Option<Arc<WsLink>>>,
    rng: Mutex<SplitMix64>,
    fatal: Mutex<Option<Error>>,
    me: Weak<Core>,
}

impl Core {
    fn new(cfg: SessionConfig) -> Result<Arc<Self>> {
        let http = Arc::new(HttpApi::new(
            &cfg.url,
            cfg.api_key.clone(),
            cfg.tenant.clone(),
            cfg.request_timeout,
            RetryPolicy::transport(),
        )?);
        let (ready_tx, ready_rx) = mpsc::unbounded_channel();
        let rng = cfg
            .rng_seed
            .map_or_else(SplitMix64::from_entropy, SplitMix64::new);
        let staging_dir: Arc<Path> = Arc::from(cfg.staging_dir.as_path());
        Ok(Arc::new_cyclic(|me| Self {
            http,
            staging_dir,
            state: Mutex::new(State::default()),
            ready_tx: Mutex::new(Some(ready_tx)),
            ready_rx: tokio::sync::Mutex::new(ready_rx),
            active_tx: watch::channel(0).0,
            taken_tx: watch::channel(0).0,
            pending_tx: watch::channel(0).0,
            outcomes_queued: Notify::new(),
            drain: CancellationToken::new(),
            stop: CancellationToken::new(),
            ws: watch::channel(None).0,
            rng: Mutex::new(rng),
            fatal: Mutex::new(None),
            me: me.clone(),
            cfg,
        }))
    }

    fn publish(&self, st: &State) {
        self.active_tx.send_replace(st.active);
        let unacked = st.outcomes.len() + st.in_flight;
        self.pending_tx.send_replace(unacked);
        self.taken_tx.send_replace(self.taken(st));
    }

    /// Slots counted as taken: leases not yet ended, plus backpressure from outcomes not yet
    /// acknowledged beyond one `concurrency`'s worth. A coordinator slow to record outcomes
    /// thus slows the intake of new leases instead of letting held leases (and heartbeats)
    /// grow without bound until they time out.
    fn taken(&self, st: &State) -> usize {
        let unacked = st.outcomes.len() + st.in_flight;
        st.active + unacked.saturating_sub(self.cfg.concurrency)
    }

    /// Free slots right now.
    pub(crate) fn free_slots(&self) -> usize {
        let taken = self.taken(&lock(&self.state));
        self.cfg.concurrency.saturating_sub(taken)
    }

    /// Takes in leases from either transport.
    pub(crate) fn accept_leases(&self, leases: Vec<Lease>, received: Instant) {
        if leases.is_empty() {
            return;
        }
        let mut ready = Vec::with_capacity(leases.len());
        {
            let mut st = lock(&self.state);
            let refuse = self.drain.is_cancelled() || self.stop.is_cancelled();
            for lease in leases {
                let ttl = Duration::from_millis(lease.lease_ttl_ms.max(1000));
                // The coordinator started the lease a little before we saw it: keep a margin.
                let deadline = received + ttl - ttl / 10;
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
                            phase: Phase::Ending,
                        },
                    );
                    st.outcomes.push_back(Pending {
                        report: OutcomeReport {
                            job_id: id,
                            fencing_token: shared.token(),
                            outcome: OutcomeKind::Release,
                        },
                        receipt: None,
                    });
                    continue;
                }
                st.held.insert(
                    id,
                    Held {
                        job: shared.clone(),
                        deadline,
                        phase: Phase::Active,
                    },
                );
                st.active += 1;
                ready.push(LeasedJob::new(shared, self.me.clone()));
            }
            self.publish(&st);
        }
        self.outcomes_queued.notify_one();
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

    /// Ends a job's lease with `outcome` (called once per [`LeasedJob`]).
    pub(crate) fn end(&self, job: &JobShared, outcome: OutcomeKind) -> OutcomeReceipt {
        let (tx, rx) = oneshot::channel();
        let mut st = lock(&self.state);
        st.active = st.active.saturating_sub(1);
        let id = job.id();
        let mut queued = false;
        let ack = match st.held.get_mut(&id) {
            Some(h) if h.job.token() == job.token() => match h.phase {
                Phase::Active => {
                    h.phase = Phase::Ending;
                    queued = true;
                    None
                }
                Phase::Lost(reason) => {
                    st.held.remove(&id);
                    Some(OutcomeAck::NotSent(reason))
                }
                Phase::Released => Some(OutcomeAck::NotSent(NotSentReason::Released)),
                Phase::Ending => Some(OutcomeAck::NotSent(NotSentReason::SessionClosed)),
            },
            // Replaced by a newer lease of the same job, or already forgotten.
            _ => Some(OutcomeAck::NotSent(NotSentReason::LeaseLost)),
        };
        if queued {
            st.outcomes.push_back(Pending {
                report: OutcomeReport {
                    job_id: id,
                    fencing_token: job.token(),
                    outcome,
                },
                receipt: Some(tx),
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
                    Phase::Ending => {}
                    Phase::Released => forget.push(r.job_id),
                    Phase::Lost(_) => {}
                },
            }
        }
        for id in forget {
            st.held.remove(&id);
        }
    }

    /// Marks leases past their deadline as expired (firing their cancellation) and returns the
    /// earliest deadline still ahead.
    pub(crate) fn expire_overdue(&self, now: Instant) -> Option<Instant> {
        let mut st = lock(&self.state);
        let mut earliest: Option<Instant> = None;
        let mut forget = Vec::new();
        for (id, h) in &mut st.held {
            if h.deadline <= now {
                match h.phase {
                    Phase::Active => {
                        h.phase = Phase::Lost(NotSentReason::LeaseExpired);
                        h.job.fire(CancelReason::LeaseExpired);
                    }
                    Phase::Released => forget.push(*id),
                    Phase::Ending | Phase::Lost(_) => {}
                }
            } else if matches!(h.phase, Phase::Active | Phase::Ending) {
                earliest = Some(earliest.map_or(h.deadline, |e| e.min(h.deadline)));
            }
        }
        for id in forget {
            st.held.remove(&id);
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
                    OutcomeAck::Recorded { state }
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

    /// Drops outcomes the coordinator refused outright (a 4xx for the request itself).
    pub(crate) fn refuse(&self, batch: Vec<Pending>, err: &Error) {
        let mut st = lock(&self.state);
        st.in_flight = st.in_flight.saturating_sub(batch.len());
        for p in batch {
            if st
                .held
                .get(&p.report.job_id)
                .is_some_and(|h| h.job.token() == p.report.fencing_token)
            {
                st.held.remove(&p.report.job_id);
            }
            if let Some(tx) = p.receipt {
                let _ = tx.send(OutcomeAck::Invalid {
                    message: err.to_string(),
                });
            }
        }
        self.publish(&st);
    }

    /// Shutdown past its grace: gives back every lease still running (no attempt spent) and
    /// fires its cancellation. Late outcomes from those handlers are dropped.
    pub(crate) fn release_remaining(&self) -> usize {
        let mut st = lock(&self.state);
        let mut released = Vec::new();
        for h in st.held.values_mut() {
            if h.phase == Phase::Active {
                h.phase = Phase::Released;
                h.job.fire(CancelReason::Shutdown);
                released.push((h.job.id(), h.job.token()));
            }
        }
        for (job_id, fencing_token) in &released {
            st.outcomes.push_back(Pending {
                report: OutcomeReport {
                    job_id: *job_id,
                    fencing_token: *fencing_token,
                    outcome: OutcomeKind::Release,
                },
                receipt: None,
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

    /// The WebSocket if one is open.
    pub(crate) fn socket(&self) -> Option<Arc<WsLink>> {
        self.ws.borrow().clone().filter(|l| !l.is_closed())
    }

    /// Sends heartbeat entries over the socket, falling back to HTTP.
    pub(crate) async fn send_heartbeat(
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
            tenant: self.cfg.tenant.clone(),
        };
        Ok(self.http.heartbeat(&req, timeout).await?.leases)
    }

    /// Sends outcomes over the socket, falling back to HTTP.
    pub(crate) async fn send_outcomes(
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
            tenant: self.cfg.tenant.clone(),
        };
        self.http.outcomes(&req, timeout).await
    }

    pub(crate) fn jitter(&self, policy: &RetryPolicy, attempt: u32) -> Duration {
        policy.delay(attempt, &mut lock(&self.rng))
    }
}

fn clip(s: &str, max: usize) -> String {
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

/// A worker's live session with the coordinator. See the module docs.
///
/// Must be started inside a Tokio runtime; its background tasks run there until
/// [`WorkerSession::shutdown`] completes or the session is dropped (dropping skips the graceful
/// drain: held leases simply expire).
#[derive(Debug)]
pub struct WorkerSession {
    core: Arc<Core>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl WorkerSession {
    /// Validates `config` and starts connecting. Fails with [`Error::InvalidArgument`] on bad
    /// configuration or when called outside a Tokio runtime.
    pub fn start(config: SessionConfig) -> Result<Self> {
        config.validate()?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidArgument("WorkerSession::start must run inside a Tokio runtime".into())
        })?;
        let core = Core::new(config)?;
        tracing::info!(
            worker_id = %core.cfg.worker_id,
            queues = ?core.cfg.queues,
            concurrency = core.cfg.concurrency,
            lease_ttl = ?core.cfg.lease_ttl,
            "worker session starting"
        );
        let tasks = vec![
            handle.spawn(crate::transport::run_connection(core.clone())),
            handle.spawn(crate::heartbeat::run(core.clone())),
            handle.spawn(crate::outcomes::run(core.clone())),
        ];
        Ok(Self {
            core,
            tasks: Mutex::new(tasks),
        })
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.core.cfg.worker_id
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.core.cfg
    }

    /// The next leased job, waiting up to `timeout` (`None`: until one comes). `Ok(None)` on
    /// timeout; [`Error::SessionClosed`] once the session drains or closes (or the error that
    /// stopped it, once).
    pub async fn next_job(&self, timeout: Option<Duration>) -> Result<Option<LeasedJob>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut rx = match deadline {
            Some(d) => match tokio::time::timeout_at(d, self.core.ready_rx.lock()).await {
                Ok(rx) => rx,
                Err(_) => return Ok(None),
            },
            None => self.core.ready_rx.lock().await,
        };
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(None),
                },
                None => rx.recv().await,
            };
            let Some(job) = next else {
                return Err(lock(&self.core.fatal)
                    .take()
                    .unwrap_or(Error::SessionClosed));
            };
            if self.core.drain.is_cancelled() {
                // Queued before the drain began: give it back unrun.
                drop(job);
                continue;
            }
            match job.cancel_reason() {
                Some(CancelReason::LeaseLost | CancelReason::LeaseExpired) => drop(job),
                _ => return Ok(Some(job)),
            }
        }
    }

    /// Leases not yet ended (queued or running).
    pub fn active(&self) -> usize {
        lock(&self.core.state).active
    }

    /// Stops taking new leases (sends `drain`, ends long-polls) and releases queued ones that no
    /// caller has taken yet. Running jobs continue. Idempotent.
    pub fn drain(&self) {
        self.core.begin_drain();
    }

    /// Graceful shutdown: [`drain`](Self::drain), wait up to `grace` for running jobs to end,
    /// release the rest (their cancellation fires with [`CancelReason::Shutdown`]; no attempt is
    /// spent), deliver every outcome still queued (bounded by the leases' deadlines), then close
    /// the connection. Returns how many leases had to be released.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.core.begin_drain();
        let until = Instant::now() + grace;
        let mut active = self.core.active_tx.subscribe();
        let _ = tokio::time::timeout_at(until, active.wait_for(|n| *n == 0)).await;
        let released = self.core.release_remaining();
        if released > 0 {
            tracing::warn!(released, "grace period over: released running jobs");
        }
        // Outcomes are dropped by the flusher once their lease deadline passes, so this wait
        // ends by then at the latest; the extra bound covers a stuck flusher.
        let flush_bound = Instant::now() + self.core.cfg.lease_ttl + Duration::from_secs(1);
        let mut pending = self.core.pending_tx.subscribe();
        let _ = tokio::time::timeout_at(flush_bound, pending.wait_for(|n| *n == 0)).await;
        self.core.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = lock(&self.tasks).drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!(worker_id = %self.core.cfg.worker_id, "worker session closed");
        released
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        self.core.stop.cancel();
        self.core.drain.cancel();
        drop(lock(&self.core.ready_tx).take());
    }
}
