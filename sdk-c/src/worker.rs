//! `lh_worker`: a [`WorkerSession`] on a runtime of its own, driven by the caller pulling jobs.

use std::ffi::c_char;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use leasehold::{Error, RetryPolicy, SessionConfig, Transport, WorkerSession};
use serde::Deserialize;

use crate::cancel::{block_on, runtime, to_timeout};
use crate::error::{Failure, guard, guard_void, lh_result};
use crate::job::lh_job;
use crate::mem::{CText, Out, free_handle, handle, into_handle, lh_str, parse_json};
use crate::worker_core::{Events, WorkerCore};

/// A retry policy as JSON (`leasehold-retry-v1`, see proto/vectors/README.md).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyJson {
    pub(crate) initial_ms: u64,
    pub(crate) multiplier: f64,
    pub(crate) max_delay_ms: u64,
    pub(crate) max_attempts: u32,
}

impl From<PolicyJson> for RetryPolicy {
    fn from(p: PolicyJson) -> Self {
        RetryPolicy {
            initial: Duration::from_millis(p.initial_ms),
            multiplier: p.multiplier,
            max_delay: Duration::from_millis(p.max_delay_ms),
            max_attempts: p.max_attempts,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TransportJson {
    Auto,
    Websocket,
    Http,
}

/// The configuration `lh_worker_new` takes, as JSON. Unknown fields are refused, so that a typo
/// fails loudly. See sdk-c/README.md for the meaning and defaults of each field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerConfig {
    url: String,
    queues: Vec<String>,
    concurrency: Option<usize>,
    lease_ttl_ms: Option<u64>,
    worker_id: Option<String>,
    app_version: Option<String>,
    tenant: Option<String>,
    tenants: Option<Vec<String>>,
    tenant_weights: Option<std::collections::BTreeMap<String, u32>>,
    api_key: Option<String>,
    transport: Option<TransportJson>,
    poll_wait_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    staging_dir: Option<String>,
    retry_policy: Option<PolicyJson>,
    rng_seed: Option<u64>,
    threads: Option<usize>,
    adaptive_concurrency: Option<AdaptiveJson>,
    #[serde(default)]
    cancel_events: bool,
    #[serde(default)]
    prefetch: bool,
}

/// `adaptive_concurrency` in the worker configuration (`leasehold::AdaptiveConcurrency`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdaptiveJson {
    min: usize,
    latency_target_ms: Option<u64>,
    classes: Option<Vec<String>>,
}

impl WorkerConfig {
    fn session_config(self) -> SessionConfig {
        let mut cfg = SessionConfig::new(self.url, self.queues);
        if let Some(n) = self.concurrency {
            cfg.concurrency = n;
        }
        if let Some(ms) = self.lease_ttl_ms {
            cfg.lease_ttl = Duration::from_millis(ms);
        }
        if let Some(id) = self.worker_id {
            cfg.worker_id = id;
        }
        // The Rust core's version, then this layer's, then the application's.
        let mut version = format!(
            "{} leasehold-c/{}",
            leasehold::sdk_version(),
            env!("CARGO_PKG_VERSION")
        );
        if let Some(app) = self.app_version.filter(|a| !a.is_empty()) {
            version.push(' ');
            version.push_str(&app);
        }
        cfg.worker_version = version;
        cfg.tenant = self.tenant;
        // The caller then runs at most `concurrency` jobs at once (sdk-c/README.md).
        cfg.prefetch = self.prefetch;
        cfg.adaptive_concurrency = self.adaptive_concurrency.map(|a| {
            let mut adaptive = leasehold::AdaptiveConcurrency::new(a.min);
            if let Some(ms) = a.latency_target_ms {
                adaptive = adaptive.latency_target(Duration::from_millis(ms));
            }
            if let Some(classes) = a.classes {
                adaptive = adaptive.classes(classes);
            }
            adaptive
        });
        cfg.tenants = self.tenants.unwrap_or_default();
        cfg.tenant_weights = self.tenant_weights.unwrap_or_default();
        cfg.api_key = self.api_key;
        cfg.transport = match self.transport {
            None | Some(TransportJson::Auto) => Transport::Auto,
            Some(TransportJson::Websocket) => Transport::WebSocket,
            Some(TransportJson::Http) => Transport::Http,
        };
        if let Some(ms) = self.poll_wait_ms {
            cfg.poll_wait = Duration::from_millis(ms);
        }
        if let Some(ms) = self.request_timeout_ms {
            cfg.request_timeout = Duration::from_millis(ms);
        }
        if let Some(dir) = self.staging_dir {
            cfg.staging_dir = dir.into();
        }
        if let Some(p) = self.retry_policy {
            cfg.retry_policy = p.into();
        }
        cfg.rng_seed = self.rng_seed;
        cfg
    }
}

/// A worker: one session with the coordinator (transport, credit, heartbeats, outcome batching,
/// lease watchdog) on a runtime of its own. Every function taking a `const lh_worker *` may be
/// called from several threads at once; `lh_worker_free` may not overlap any of them.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct lh_worker {
    core: Arc<WorkerCore>,
}

impl Drop for lh_worker {
    fn drop(&mut self) {
        // Jobs still held keep the session (and its heartbeats) alive until they are freed, but
        // a freed worker takes no more leases.
        self.core.session.drain();
    }
}

/// Starts a worker from its JSON configuration (`len` bytes at `config_json`; see
/// sdk-c/README.md): validates it, starts the runtime's threads and begins connecting. Leases
/// start to arrive at once; pull them with `lh_worker_next`. An unreachable coordinator is not
/// an error here: the session keeps reconnecting with backoff.
///
/// Errors: `LH_NULL_ARGUMENT`, `LH_INVALID_JSON` (not JSON, an unknown field, a wrong type),
/// `LH_INVALID_ARGUMENT` (a bad URL, queue name, concurrency, lease TTL …).
///
/// # Safety
/// `config_json` is valid for reads of `len` bytes; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_new(
    config_json: *const c_char,
    len: usize,
    out: *mut *mut lh_worker,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: per the contract.
        let cfg: WorkerConfig = unsafe { parse_json(config_json, len, "config_json") }?;
        let threads = cfg.threads;
        let events = cfg.cancel_events.then(|| Arc::new(Events::default()));
        let session_cfg = cfg.session_config();
        let rt = runtime(threads, "leasehold-worker")?;
        let session = {
            let _enter = rt.enter();
            WorkerSession::start(session_cfg)
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                rt.shutdown_background();
                return Err(e.into());
            }
        };
        let worker_id = CText::new(session.worker_id());
        let core = Arc::new(WorkerCore {
            session: ManuallyDrop::new(session),
            events,
            next_tag: AtomicU64::new(1),
            worker_id,
            rt: ManuallyDrop::new(rt),
        });
        out.write(into_handle(lh_worker { core }));
        Ok(())
    })
}

/// This worker's id (borrowed; valid until `lh_worker_free`).
///
/// # Safety
/// `worker` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_id(worker: *const lh_worker, out: *mut lh_str) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let w = unsafe { handle(worker, "worker") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.write(w.core.worker_id.as_lh_str());
        Ok(())
    })
}

/// Waits up to `timeout_ms` milliseconds (negative: no limit) for the next leased job and
/// writes a new job handle to `*out`. The job's lease is kept alive by heartbeats until it is
/// ended (`lh_job_complete`, `lh_job_fail`, `lh_job_cancelled`, `lh_job_release`) or freed
/// (which releases it). Free every job with `lh_job_free`.
///
/// Returns `LH_TIMEOUT` when no job came in time, `LH_CLOSED` once the worker drains or shuts
/// down, or the error that stopped the session (the coordinator refused its configuration or
/// credentials) once. Several threads may wait at once; each job goes to one of them.
///
/// # Safety
/// `worker` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_next(
    worker: *const lh_worker,
    timeout_ms: i64,
    out: *mut *mut lh_job,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let w = unsafe { handle(worker, "worker") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        let timeout = to_timeout(timeout_ms);
        let next = block_on(w.core.runtime(), None, async {
            w.core.session.next_job(timeout).await.map_err(|e| match e {
                Error::SessionClosed => Failure::new(
                    lh_result::LH_CLOSED,
                    "the worker is draining or shut down: no more jobs",
                ),
                other => other.into(),
            })
        })?;
        let Some(leased) = next else {
            return Err(Failure::new(
                lh_result::LH_TIMEOUT,
                "no job was leased within the timeout",
            ));
        };
        out.write(into_handle(lh_job::new(leased, w.core.clone())));
        Ok(())
    })
}

/// With `"cancel_events": true` in the configuration: waits up to `timeout_ms` (negative: no
/// limit) until the cancellation of one of this worker's unended jobs fires (cancel requested,
/// lease lost or expired, shutdown) and writes that job's tag (`lh_job_get_info`'s `tag`) to
/// `*tag`. Each job is reported at most once; a job ended or freed first is never reported.
/// One thread can thus watch every running job without polling.
///
/// Returns `LH_TIMEOUT`, or `LH_CLOSED` once `lh_worker_shutdown` has finished and every event
/// was read; `LH_INVALID_ARGUMENT` when the worker was made without `cancel_events`.
///
/// # Safety
/// `worker` is NULL or live; `tag` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_next_cancellation(
    worker: *const lh_worker,
    timeout_ms: i64,
    tag: *mut u64,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let w = unsafe { handle(worker, "worker") }?;
        // SAFETY: per the contract.
        let out = unsafe { Out::new(tag, "tag") }?;
        let events = w.core.events.as_ref().ok_or_else(|| {
            Failure::invalid("this worker was created without \"cancel_events\": true")
        })?;
        match events.wait(to_timeout(timeout_ms)) {
            Ok(Some(t)) => {
                out.write(t);
                Ok(())
            }
            Ok(None) => Err(Failure::new(
                lh_result::LH_TIMEOUT,
                "no cancellation within the timeout",
            )),
            Err(()) => Err(Failure::new(
                lh_result::LH_CLOSED,
                "the worker is shut down: no more cancellations",
            )),
        }
    })
}

/// Stops taking new leases: queued jobs no caller has taken yet are released, waiting
/// `lh_worker_next` calls return `LH_CLOSED`. Jobs already taken keep running and can still be
/// ended. Does not block; idempotent.
///
/// # Safety
/// `worker` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_drain(worker: *const lh_worker) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let w = unsafe { handle(worker, "worker") }?;
        w.core.session.drain();
        Ok(())
    })
}

/// Graceful shutdown: drains, waits up to `drain_timeout_ms` for the jobs still running to be
/// ended, releases the rest (their cancellation fires with reason `LH_CANCEL_SHUTDOWN`; no
/// attempt is spent; their late outcomes are dropped), delivers every outcome still queued, and
/// closes the connection. Writes how many jobs had to be released to `*released` unless it is
/// NULL. Blocks; call it from a thread other than those running jobs. The handle stays valid
/// (for `lh_worker_free`); `lh_worker_next` then returns `LH_CLOSED`.
///
/// # Safety
/// `worker` is NULL or live; `released` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_shutdown(
    worker: *const lh_worker,
    drain_timeout_ms: u64,
    released: *mut usize,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let w = unsafe { handle(worker, "worker") }?;
        // SAFETY: per the contract.
        let released_out = unsafe { Out::optional(released) };
        let grace = Duration::from_millis(drain_timeout_ms);
        let n = block_on(w.core.runtime(), None, async {
            Ok(w.core.session.shutdown(grace).await)
        })?;
        if let Some(events) = &w.core.events {
            events.close();
        }
        if let Some(out) = released_out {
            out.write(n);
        }
        Ok(())
    })
}

/// Frees the worker handle. Without a prior `lh_worker_shutdown` nothing is waited for: the
/// worker stops taking leases, jobs not yet pulled are released, and the session ends once every
/// job handle of this worker is freed too (jobs still held keep their heartbeats until then;
/// their leases expire if the session ends first). NULL is ignored.
///
/// # Safety
/// `worker` is NULL or a live handle that no other thread is using, and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_worker_free(worker: *mut lh_worker) {
    // SAFETY: per the contract.
    guard_void(|| unsafe { free_handle(worker) });
}
