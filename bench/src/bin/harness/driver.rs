//! Drivers: what works the jobs. A driver is one row dimension of the table; the raw-HTTP
//! driver below speaks the v1 protocol directly. The SDK drivers (Rust in-process; Python and
//! Go as child processes) plug in behind the same [`Driver`] trait: start workers with a slot
//! count, a claim batch size and a handler, report handler starts and acknowledged outcomes to
//! the [`Sink`], and name the processes they run in (for CPU and RSS accounting).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

/// Wall-clock nanoseconds since the epoch (the clock payload timestamps use; shared across
/// processes, unlike `Instant`).
pub(crate) fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What a handler does with a job.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handler {
    /// Returns at once.
    Noop,
    /// Sleeps this long (an I/O-bound job).
    Sleep(Duration),
}

/// How to run the workers of one workload.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCfg {
    pub(crate) queue: String,
    /// Jobs that may run at once.
    pub(crate) slots: usize,
    /// Most leases per claim request (and the ceiling's batch size).
    pub(crate) batch: usize,
    /// Claim requests that may be in flight at once.
    pub(crate) claimers: usize,
    /// Long-poll wait of a claim.
    pub(crate) wait_ms: u64,
    pub(crate) handler: Handler,
    /// A worker pool shared by these tenants (raw-HTTP driver only; empty: one tenant).
    pub(crate) tenants: Vec<String>,
}

impl WorkerCfg {
    pub(crate) fn settings(&self) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        s.insert("slots".into(), self.slots.to_string());
        s.insert("claim_batch".into(), self.batch.to_string());
        s.insert("claimers".into(), self.claimers.to_string());
        s.insert("wait_ms".into(), self.wait_ms.to_string());
        if !self.tenants.is_empty() {
            s.insert("pool_tenants".into(), self.tenants.join(","));
        }
        s.insert(
            "handler".into(),
            match self.handler {
                Handler::Noop => "noop".into(),
                Handler::Sleep(d) => format!("sleep {} ms (timerfd)", d.as_millis()),
            },
        );
        s
    }
}

/// Where workers report progress.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    /// Outcomes the coordinator acknowledged.
    pub(crate) completed: AtomicU64,
    /// Handler starts.
    pub(crate) started: AtomicU64,
    /// Failed requests (retried).
    pub(crate) errors: AtomicU64,
    /// Handler start minus the payload's `t` (ns), when `t` is set.
    pub(crate) latencies_ns: Mutex<Vec<u64>>,
    changed: Notify,
}

impl Sink {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A handler starts on a job with this payload.
    pub(crate) fn on_start(&self, payload: &Value) {
        self.started.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = payload.get("t").and_then(Value::as_u64)
            && t > 0
        {
            let now = unix_ns();
            if let Ok(mut l) = self.latencies_ns.lock() {
                l.push(now.saturating_sub(t));
            }
        }
    }

    /// `n` outcomes were acknowledged.
    pub(crate) fn on_completed(&self, n: u64) {
        self.completed.fetch_add(n, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    /// Waits until `target` outcomes are acknowledged, or `patience` runs out.
    pub(crate) async fn wait_completed(&self, target: u64, patience: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.changed.notified();
            if self.completed() >= target {
                return Ok(());
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "only {} of {target} jobs completed within {patience:?} ({} request errors)",
                    self.completed(),
                    self.errors.load(Ordering::Relaxed)
                );
            }
        }
    }

    /// Waits until `n` handlers started on jobs whose payload carries `t`, or `patience` runs
    /// out.
    pub(crate) async fn wait_timed_starts(&self, n: usize, patience: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let seen = self.latencies_ns.lock().map(|l| l.len()).unwrap_or(0);
            if seen >= n {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("only {seen} of {n} timed jobs started within {patience:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn take_latencies(&self) -> Vec<u64> {
        self.latencies_ns
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// Workers that are running.
#[async_trait]
pub(crate) trait Running: Send {
    /// Processes other than the harness that run workers (empty when in-process).
    fn pids(&self) -> Vec<u32>;
    /// Stops the workers (in-flight work may be abandoned: the workload is over); what they
    /// said of themselves on the way out, for the row's notes (the Rust SDK's sleeping worker:
    /// how busy its handlers were, `leasehold_bench::busy`).
    async fn stop(self: Box<Self>) -> BTreeMap<String, f64>;
}

/// A way to work jobs: one row dimension.
#[async_trait]
pub(crate) trait Driver: Send + Sync {
    /// Short name for the table (`raw-http`, `rust-sdk`, …).
    fn name(&self) -> String;
    /// Starts workers against the coordinator at `url`.
    async fn start(&self, url: &str, cfg: &WorkerCfg, sink: Arc<Sink>) -> Result<Box<dyn Running>>;
}

/// The raw-HTTP driver: claims with `POST /v1/leases` (up to `batch` per request, `claimers`
/// requests in flight, long-poll), runs handlers on Tokio tasks bounded by `slots`, and flushes
/// outcomes in batches through `POST /v1/leases/outcomes` (at most 2 flushes in flight) —
/// what an SDK does, without the SDK.
#[derive(Debug, Clone)]
pub(crate) struct RawHttp {
    pub(crate) http: reqwest::Client,
}

#[derive(Deserialize)]
struct ClaimResponse {
    leases: Vec<LeaseLite>,
}

#[derive(Deserialize)]
struct LeaseLite {
    job: JobLite,
    fencing_token: i64,
}

#[derive(Deserialize)]
struct JobLite {
    id: String,
    #[serde(default)]
    payload: Value,
}

struct RawRunning {
    stop: watch::Sender<bool>,
    claimers: Vec<JoinHandle<()>>,
    flusher: JoinHandle<()>,
    patience: Duration,
}

#[async_trait]
impl Running for RawRunning {
    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Lets every claim request in flight finish (a long poll returns within `wait_ms`) rather
    /// than cutting connections: a claim cancelled mid-transaction by a client disconnect has
    /// been seen to wedge the SQLite store's writer (see bench/README.md).
    async fn stop(self: Box<Self>) -> BTreeMap<String, f64> {
        let _ = self.stop.send(true);
        for mut t in self.claimers {
            if tokio::time::timeout(self.patience, &mut t).await.is_err() {
                t.abort();
            }
        }
        let mut f = self.flusher;
        if tokio::time::timeout(self.patience, &mut f).await.is_err() {
            f.abort();
        }
        BTreeMap::new()
    }
}

const FLUSHES_IN_FLIGHT: usize = 2;

#[async_trait]
impl Driver for RawHttp {
    fn name(&self) -> String {
        "raw-http".into()
    }

    async fn start(&self, url: &str, cfg: &WorkerCfg, sink: Arc<Sink>) -> Result<Box<dyn Running>> {
        let slots = Arc::new(Semaphore::new(cfg.slots));
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut claimers = Vec::new();
        // W3's job body (bench/README.md): kernel timers kept between jobs.
        let timers = leasehold_bench::pause::Timers::new();
        for c in 0..cfg.claimers {
            let timers = timers.clone();
            let (http, url, cfg, sink, slots, tx, mut stop) = (
                self.http.clone(),
                url.to_owned(),
                cfg.clone(),
                sink.clone(),
                slots.clone(),
                tx.clone(),
                stop_rx.clone(),
            );
            claimers.push(tokio::spawn(async move {
                let worker_id = format!("bench-{c}");
                loop {
                    if *stop.borrow() {
                        return;
                    }
                    let first = tokio::select! {
                        p = slots.clone().acquire_owned() => p,
                        _ = stop.changed() => return,
                    };
                    let Ok(first) = first else {
                        return;
                    };
                    let mut permits = vec![first];
                    while permits.len() < cfg.batch {
                        match slots.clone().try_acquire_owned() {
                            Ok(p) => permits.push(p),
                            Err(_) => break,
                        }
                    }
                    let mut body = json!({
                        "worker_id": worker_id,
                        "queues": [cfg.queue],
                        "max_jobs": permits.len(),
                        "wait_ms": cfg.wait_ms,
                        "lease_ttl_ms": 60_000,
                    });
                    if !cfg.tenants.is_empty() {
                        body["tenants"] = json!(cfg.tenants);
                    }
                    let resp = http
                        .post(format!("{url}/v1/leases"))
                        .json(&body)
                        .send()
                        .await
                        .and_then(reqwest::Response::error_for_status);
                    let parsed = match resp {
                        Ok(r) => r.json::<ClaimResponse>().await.ok(),
                        Err(_) => None,
                    };
                    let Some(claimed) = parsed else {
                        sink.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    permits.truncate(claimed.leases.len());
                    for (lease, permit) in claimed.leases.into_iter().zip(permits) {
                        sink.on_start(&lease.job.payload);
                        let outcome = json!({
                            "job_id": lease.job.id,
                            "fencing_token": lease.fencing_token,
                            "outcome": "complete",
                        });
                        match cfg.handler {
                            Handler::Noop => {
                                let _ = tx.send(outcome);
                                drop(permit);
                            }
                            Handler::Sleep(d) => {
                                let (tx, timers) = (tx.clone(), timers.clone());
                                tokio::spawn(async move {
                                    // Should the kernel timer fail, Tokio's (never shorter)
                                    // stands in: a job must not end early and flatter the row.
                                    if timers.pause(d).await.is_err() {
                                        tokio::time::sleep(d).await;
                                    }
                                    let _ = tx.send(outcome);
                                    drop(permit);
                                });
                            }
                        }
                    }
                }
            }));
        }
        drop(tx);
        let (http, url) = (self.http.clone(), url.to_owned());
        // A pool's outcomes act for each job's own tenant.
        let tenant = (!cfg.tenants.is_empty()).then_some("*");
        let flusher = tokio::spawn(async move {
            let in_flight = Arc::new(Semaphore::new(FLUSHES_IN_FLIGHT));
            loop {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let Some(first) = rx.recv().await else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < 1000 {
                    match rx.try_recv() {
                        Ok(o) => batch.push(o),
                        Err(_) => break,
                    }
                }
                let (http, url, sink) = (http.clone(), url.clone(), sink.clone());
                tokio::spawn(async move {
                    let n = batch.len() as u64;
                    let body = match tenant {
                        Some(t) => json!({ "outcomes": batch, "tenant": t }),
                        None => json!({ "outcomes": batch }),
                    };
                    loop {
                        let r = http
                            .post(format!("{url}/v1/leases/outcomes"))
                            .json(&body)
                            .send()
                            .await
                            .and_then(reqwest::Response::error_for_status);
                        match r {
                            Ok(r) => {
                                let _ = r.bytes().await;
                                sink.on_completed(n);
                                break;
                            }
                            Err(_) => {
                                sink.errors.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Ok(Box::new(RawRunning {
            stop: stop_tx,
            claimers,
            flusher,
            patience: Duration::from_millis(cfg.wait_ms) + Duration::from_secs(5),
        }))
    }
}
