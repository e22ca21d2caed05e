//! `lh_client`: enqueue, inspect, cancel, retry and wait for jobs; for operators, list jobs and
//! runs by filter, list workers, cancel or replay the jobs a filter selects, and read job
//! statistics, failure classes and SLO reports. Answers are the coordinator's JSON, handed over
//! as `lh_bytes`.

use std::ffi::c_char;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::time::Duration;

use leasehold::proto::{JobState, NewJob};
use leasehold::{Client, JobSpec, ListJobs};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::cancel::{self, block_on, lh_cancel, runtime, to_timeout};
use crate::error::{Failure, guard, guard_void, lh_result};
use crate::mem::{Out, free_handle, handle, lh_bytes, opt_text, parse_json, text};
use crate::worker::PolicyJson;

pub mod operators;

/// The configuration `lh_client_new` takes, as JSON (see sdk-c/README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientConfig {
    url: String,
    api_key: Option<String>,
    tenant: Option<String>,
    timeout_ms: Option<u64>,
    retry_policy: Option<PolicyJson>,
    threads: Option<usize>,
}

/// A job to enqueue: the coordinator's `NewJob` plus `deterministic_key`. Unknown keys are
/// refused, as by the coordinator (serde cannot refuse them beside a flattened struct, hence the
/// hand-written `Deserialize`).
#[derive(Debug)]
struct JobJson {
    job: NewJob,
    /// Derive the idempotency key from queue, kind and payload (`leasehold-idem-v1`).
    deterministic_key: bool,
}

impl<'de> Deserialize<'de> for JobJson {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::deserialize(de)?;
        let deterministic_key = match fields.remove("deterministic_key") {
            None => false,
            Some(v) => bool::deserialize(v)
                .map_err(|e| D::Error::custom(format!("deterministic_key: {e}")))?,
        };
        let job =
            NewJob::deserialize(serde_json::Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(Self {
            job,
            deterministic_key,
        })
    }
}

impl From<JobJson> for JobSpec {
    fn from(j: JobJson) -> Self {
        let spec = JobSpec::from(j.job);
        if j.deterministic_key {
            spec.deterministic_key()
        } else {
            spec
        }
    }
}

#[derive(Debug, Serialize)]
struct EnqueuedJson<'a> {
    #[serde(flatten)]
    job: &'a leasehold::proto::Job,
    replayed: bool,
}

/// The filters `lh_client_list` takes, as JSON (every key optional; unknown keys refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobQuery {
    queue: Option<String>,
    state: Option<JobState>,
    kind: Option<String>,
    run_id: Option<Uuid>,
    correlation_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl From<JobQuery> for ListJobs {
    fn from(q: JobQuery) -> Self {
        let mut l = ListJobs::default();
        l.queue = q.queue;
        l.state = q.state;
        l.kind = q.kind;
        l.run_id = q.run_id;
        l.correlation_id = q.correlation_id;
        l.since = q.since;
        l.until = q.until;
        l.limit = q.limit;
        l.cursor = q.cursor;
        l
    }
}

/// A query given as JSON, or its defaults when `json` is NULL or `len` is 0.
///
/// # Safety
/// `json` is NULL or valid for reads of `len` bytes.
unsafe fn opt_query<T: DeserializeOwned + Default>(
    json: *const c_char,
    len: usize,
    what: &str,
) -> Result<T, Failure> {
    if json.is_null() || len == 0 {
        return Ok(T::default());
    }
    // SAFETY: per the contract.
    unsafe { parse_json(json, len, what) }
}

/// A client of one coordinator, with a small runtime of its own. Every function taking a
/// `const lh_client *` may be called from several threads at once.
#[allow(non_camel_case_types)]
#[derive(Debug)]
pub struct lh_client {
    client: Client,
    rt: ManuallyDrop<Runtime>,
}

impl Drop for lh_client {
    fn drop(&mut self) {
        // SAFETY: taken exactly once, here.
        let rt = unsafe { ManuallyDrop::take(&mut self.rt) };
        rt.shutdown_timeout(Duration::from_secs(2));
    }
}

fn to_bytes<T: Serialize>(value: &T) -> Result<lh_bytes, Failure> {
    serde_json::to_vec(value)
        .map(lh_bytes::from_vec)
        .map_err(|e| Failure::new(lh_result::LH_INTERNAL, e.to_string()))
}

/// # Safety
/// `(id, len)` is valid for reads.
unsafe fn parse_job_id(id: *const c_char, len: usize) -> Result<Uuid, Failure> {
    if id.is_null() {
        return Err(Failure::null("job_id"));
    }
    // SAFETY: per the contract.
    let s = unsafe { text(id, len, "job_id") }?;
    Uuid::parse_str(s).map_err(|e| Failure::invalid(format!("job_id {s:?} is not a UUID: {e}")))
}

/// Makes a client from its JSON configuration (`{"url": …}` plus optional `api_key`, `tenant`,
/// `timeout_ms`, `retry_policy`, `threads`). Sends nothing yet.
///
/// # Safety
/// `config_json` is valid for reads of `len` bytes; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_new(
    config_json: *const c_char,
    len: usize,
    out: *mut *mut lh_client,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: per the contract.
        let cfg: ClientConfig = unsafe { parse_json(config_json, len, "config_json") }?;
        let mut builder = Client::builder(cfg.url);
        if let Some(k) = cfg.api_key {
            builder = builder.api_key(k);
        }
        if let Some(t) = cfg.tenant {
            builder = builder.tenant(t);
        }
        if let Some(ms) = cfg.timeout_ms {
            builder = builder.timeout(Duration::from_millis(ms));
        }
        if let Some(p) = cfg.retry_policy {
            builder = builder.retry_policy(p.into());
        }
        let rt = runtime(Some(cfg.threads.unwrap_or(1)), "leasehold-client")?;
        let client = {
            let _enter = rt.enter();
            builder.build()
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                rt.shutdown_background();
                return Err(e.into());
            }
        };
        out.write(crate::mem::into_handle(lh_client {
            client,
            rt: ManuallyDrop::new(rt),
        }));
        Ok(())
    })
}

/// Enqueues one job. `job_json` is the coordinator's job body (`{"kind": …, "queue": …,
/// "payload": …, "priority", "max_attempts", "run_at", "idempotency_key", "correlation_id",
/// "project", "tenant", "backoff", "timeout_ms"}`) plus optionally `"deterministic_key": true`. Safe to retry:
/// the call carries one idempotency key (yours, the deterministic one, or a fresh UUIDv4) on
/// every attempt. Writes the job with `"replayed"` (true when the key matched an earlier job) as
/// JSON to `*out`.
///
/// # Safety
/// `client` is NULL or live; `job_json` is valid for reads of `len` bytes; `cancel` is NULL or
/// live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_enqueue(
    client: *const lh_client,
    job_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let job: JobJson = unsafe { parse_json(job_json, len, "job_json") }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let done = block_on(&c.rt, cancel, async {
            Ok(c.client.enqueue(JobSpec::from(job)).await?)
        })?;
        out.write(to_bytes(&EnqueuedJson {
            job: &done.job,
            replayed: done.replayed,
        })?);
        Ok(())
    })
}

/// Enqueues a JSON array of jobs (each as for `lh_client_enqueue`), 1000 per transaction, and
/// writes the array of enqueued jobs (each with `"replayed"`) in request order.
///
/// # Safety
/// As `lh_client_enqueue`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_enqueue_many(
    client: *const lh_client,
    jobs_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let jobs: Vec<JobJson> = unsafe { parse_json(jobs_json, len, "jobs_json") }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let done = block_on(&c.rt, cancel, async {
            Ok(c.client
                .enqueue_many(jobs.into_iter().map(JobSpec::from))
                .await?)
        })?;
        out.write(to_bytes(&done)?);
        Ok(())
    })
}

/// Writes the job with id `job_id` (`len` bytes, a UUID) as JSON. `LH_NOT_FOUND` if unknown.
///
/// # Safety
/// `client` is NULL or live; `job_id` is valid for reads of `len` bytes; `cancel` is NULL or
/// live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_get(
    client: *const lh_client,
    job_id: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let id = unsafe { parse_job_id(job_id, len) }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let job = block_on(&c.rt, cancel, async { Ok(c.client.get(id).await?) })?;
        out.write(to_bytes(&job)?);
        Ok(())
    })
}

/// Cancels a job (at once when queued, at its next heartbeat when leased; cancelling a
/// cancelled job is not an error), with an optional `reason` (NULL or empty: none), and writes
/// the job as JSON.
///
/// # Safety
/// As `lh_client_get`; `reason` is NULL or valid for reads of `reason_len` bytes.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn lh_client_cancel(
    client: *const lh_client,
    job_id: *const c_char,
    len: usize,
    reason: *const c_char,
    reason_len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let id = unsafe { parse_job_id(job_id, len) }?;
        let reason = unsafe { opt_text(reason, reason_len, "reason") }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let job = block_on(&c.rt, cancel, async {
            Ok(c.client.cancel(id, reason).await?)
        })?;
        out.write(to_bytes(&job)?);
        Ok(())
    })
}

/// Sends a `dead` or `cancelled` job back to `queued` with a fresh attempt budget; writes it.
///
/// # Safety
/// As `lh_client_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_retry(
    client: *const lh_client,
    job_id: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let id = unsafe { parse_job_id(job_id, len) }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let job = block_on(&c.rt, cancel, async { Ok(c.client.retry(id).await?) })?;
        out.write(to_bytes(&job)?);
        Ok(())
    })
}

/// Waits up to `timeout_ms` (negative: no limit) until the job is terminal (`succeeded`,
/// `dead`, `cancelled`) and writes it as JSON. `LH_TIMEOUT` if it is not by then, with a last
/// error naming the job's state at the deadline (`job … still queued after 60s (attempt 0 of
/// 25)`); `LH_TIMEOUT` with another message means the coordinator itself did not answer.
///
/// # Safety
/// As `lh_client_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_wait(
    client: *const lh_client,
    job_id: *const c_char,
    len: usize,
    timeout_ms: i64,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let id = unsafe { parse_job_id(job_id, len) }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let limit = to_timeout(timeout_ms).unwrap_or(Duration::from_secs(10 * 365 * 24 * 3600));
        let job = block_on(&c.rt, cancel, async { Ok(c.client.wait(id, limit).await?) })?;
        out.write(to_bytes(&job)?);
        Ok(())
    })
}

/// Writes every queue with its depth per state as a JSON array.
///
/// # Safety
/// `client` is NULL or live; `cancel` is NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_queues(
    client: *const lh_client,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let cancel = unsafe { cancel::optional(cancel) };
        let queues = block_on(&c.rt, cancel, async { Ok(c.client.queues().await?) })?;
        out.write(to_bytes(&queues)?);
        Ok(())
    })
}

/// Writes a page of jobs, newest first, as JSON (`{"jobs": […], "next_cursor": …}`).
/// `query_json` (NULL or empty: no filter) may hold `queue`, `state`, `kind`, `run_id`,
/// `correlation_id`, `since` and `until` (each an RFC 3339 time or a span back from now: `90s`,
/// `15m`, `24h`, `7d`), `limit` (default 50, at most 500) and `cursor` (the previous page's
/// `next_cursor`); an unknown key is `LH_INVALID_JSON`.
///
/// # Safety
/// `client` is NULL or live; `query_json` is NULL or valid for reads of `len` bytes; `cancel` is
/// NULL or live; `out` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_list(
    client: *const lh_client,
    query_json: *const c_char,
    len: usize,
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
) -> lh_result {
    // SAFETY: per the contract.
    unsafe {
        json_call(
            client,
            (query_json, len, Argument::Query),
            cancel,
            out,
            |client, q: JobQuery| async move { client.list(&ListJobs::from(q)).await },
        )
    }
}

/// Whether a call's JSON argument may be left out (a query: its defaults) or not (a request).
#[derive(Clone, Copy)]
enum Argument {
    Query,
    Request,
}

/// The shape of every call here: the client, its JSON argument, the call, and its answer
/// written to `out` as JSON.
///
/// # Safety
/// `client` is NULL or live; `json` is valid for reads of `len` bytes (or NULL with `len` 0 for
/// a query); `cancel` is NULL or live; `out` is NULL or valid for a write.
unsafe fn json_call<'a, A, T, F, Fut>(
    client: *const lh_client,
    (json, len, argument): (*const c_char, usize, Argument),
    cancel: *const lh_cancel,
    out: *mut lh_bytes,
    call: F,
) -> lh_result
where
    A: DeserializeOwned + Default,
    T: Serialize,
    F: FnOnce(&'a Client, A) -> Fut,
    Fut: Future<Output = leasehold::Result<T>> + 'a,
{
    guard(|| {
        // SAFETY: per the contract (all of the below).
        let c: &'a lh_client = unsafe { handle(client, "client") }?;
        let out = unsafe { Out::new(out, "out") }?;
        let arg: A = match argument {
            Argument::Query => unsafe { opt_query(json, len, "query_json") }?,
            Argument::Request => unsafe { parse_json(json, len, "request_json") }?,
        };
        let cancel = unsafe { cancel::optional(cancel) };
        let answer = block_on(&c.rt, cancel, async { Ok(call(&c.client, arg).await?) })?;
        out.write(to_bytes(&answer)?);
        Ok(())
    })
}

/// Frees a client. NULL is ignored.
///
/// # Safety
/// `client` is NULL or a live handle that no other thread is using, and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lh_client_free(client: *mut lh_client) {
    // SAFETY: per the contract.
    guard_void(|| unsafe { free_handle(client) });
}
