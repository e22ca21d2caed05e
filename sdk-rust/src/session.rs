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

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::job::{CancelReason, LeasedJob};
use crate::link::Link;
use crate::retry::RetryPolicy;
use crate::transport::CoordinatorLink;
use crate::transport::http::HttpApi;
use crate::util::lock;

pub use crate::session_config::{SessionConfig, Transport, sdk_version};

/// A worker's live session with the coordinator. See the module docs.
///
/// Must be started inside a Tokio runtime; its background tasks run there until
/// [`WorkerSession::shutdown`] completes or the session is dropped (dropping skips the graceful
/// drain: held leases simply expire).
#[derive(Debug)]
pub struct WorkerSession {
    core: Arc<Engine>,
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
        let http = Arc::new(HttpApi::new(
            &config.url,
            config.api_key.clone(),
            config.tenant.clone(),
            config.request_timeout,
            RetryPolicy::transport(),
        )?);
        let link = Arc::new(CoordinatorLink::new(config.clone(), http.clone()));
        Ok(Self::start_on(&handle, config, http, link))
    }

    /// Starts the session's tasks on `handle` with the engine reaching the coordinator through
    /// `link` (the scenario tests pass a fake one).
    pub(crate) fn start_on(
        handle: &tokio::runtime::Handle,
        config: SessionConfig,
        http: Arc<HttpApi>,
        link: Arc<dyn Link>,
    ) -> Self {
        let core = Engine::new(config, http, link.clone());
        tracing::info!(
            worker_id = %core.cfg.worker_id,
            queues = ?core.cfg.queues,
            concurrency = core.cfg.concurrency,
            lease_ttl = ?core.cfg.lease_ttl,
            "worker session starting"
        );
        let tasks = vec![
            handle.spawn(link.run_intake(core.clone())),
            handle.spawn(crate::heartbeat::run(core.clone())),
            handle.spawn(crate::outcomes::run(core.clone())),
        ];
        Self {
            core,
            tasks: Mutex::new(tasks),
        }
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
                _ => {
                    job.context().shared.hand_out();
                    return Ok(Some(job));
                }
            }
        }
    }

    /// Leases not yet ended (queued or running).
    pub fn active(&self) -> usize {
        lock(&self.core.state).active
    }

    /// How many jobs the session takes at once now: `concurrency`, or less while
    /// [`SessionConfig::adaptive_concurrency`] holds it back.
    pub fn concurrency_limit(&self) -> usize {
        self.core.concurrency_limit()
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
