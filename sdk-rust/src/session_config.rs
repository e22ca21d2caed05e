//! The session's configuration: [`SessionConfig`] with its defaults and validation, the
//! [`Transport`] choice, and [`sdk_version`]. Re-exported from [`crate::session`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

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

/// Everything a [`WorkerSession`](crate::WorkerSession) needs. Build with
/// [`SessionConfig::new`] and adjust the public fields.
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
    /// A worker pool shared by these tenants instead of one (`tenant` unset): the coordinator
    /// interleaves their jobs fairly by `tenant_weights`. Only the coordinator's own key (or a
    /// keyless coordinator) may run one. Empty (the default): one tenant.
    pub tenants: Vec<String>,
    /// Shares of the pool's tenants (1 to 1000; default 1 each).
    pub tenant_weights: BTreeMap<String, u32>,
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
    /// Take fewer jobs at once while they fail with overload classes or run slow, between
    /// `min` and `concurrency` ([`crate::adaptive`]); `None` (the default): always
    /// `concurrency`.
    pub adaptive_concurrency: Option<crate::AdaptiveConcurrency>,
    /// Seed of the jitter generator (tests); default from OS entropy.
    pub rng_seed: Option<u64>,
    /// Hold a few leases beyond `concurrency` while jobs are short, so that a slot that frees
    /// starts its next job at once instead of a claim's round trip later
    /// ([`crate::engine`]'s prefetch). The consumer of
    /// [`WorkerSession::next_job`](crate::WorkerSession::next_job) must then run at most
    /// `concurrency` jobs at once, as [`crate::Worker`] does. Default `false`; the
    /// [`crate::Worker`] turns it on.
    pub prefetch: bool,
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
            concurrency: crate::defaults::CONCURRENCY,
            lease_ttl: crate::defaults::LEASE_TTL,
            worker_id: default_worker_id(),
            worker_version: sdk_version().to_owned(),
            tenant: None,
            tenants: Vec::new(),
            tenant_weights: BTreeMap::new(),
            api_key: None,
            transport: Transport::Auto,
            retry_policy: RetryPolicy::default(),
            poll_wait: crate::defaults::POLL_WAIT,
            request_timeout: crate::transport::http::DEFAULT_TIMEOUT,
            staging_dir: std::env::temp_dir(),
            adaptive_concurrency: None,
            rng_seed: None,
            prefetch: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
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
        if !self.tenants.is_empty() && self.tenant.is_some() {
            return Err(Error::InvalidArgument(
                "name one tenant or a pool's tenants, not both".into(),
            ));
        }
        if self.tenants.len() > 100 {
            return Err(Error::InvalidArgument("a pool has 1 to 100 tenants".into()));
        }
        for t in &self.tenants {
            crate::validate::queue_name(t)
                .map_err(|_| Error::InvalidArgument(format!("bad tenant name {t:?}")))?;
        }
        for (t, w) in &self.tenant_weights {
            if !self.tenants.contains(t) {
                return Err(Error::InvalidArgument(format!(
                    "tenant weight for {t:?}, which is not one of the pool's tenants"
                )));
            }
            if !(1..=1000).contains(w) {
                return Err(Error::InvalidArgument(format!(
                    "the weight of {t:?} must be between 1 and 1000"
                )));
            }
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
        if let Some(a) = &self.adaptive_concurrency {
            a.validate(self.concurrency)?;
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

    /// The tenant heartbeats and outcomes name: `*` (each job's own) for a shared pool.
    pub(crate) fn reporting_tenant(&self) -> Option<String> {
        match self.tenants.is_empty() {
            true => self.tenant.clone(),
            false => Some(leasehold_proto::EACH_JOBS_TENANT.to_owned()),
        }
    }

    /// The pool's tenants and weights as a claim or a hello sends them.
    pub(crate) fn pool(&self) -> (Option<Vec<String>>, Option<BTreeMap<String, u32>>) {
        if self.tenants.is_empty() {
            return (None, None);
        }
        let weights = (!self.tenant_weights.is_empty()).then(|| self.tenant_weights.clone());
        (Some(self.tenants.clone()), weights)
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
