//! W1–W5 against a running coordinator, through a [`Driver`] (workers) and raw HTTP
//! (producer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::driver::{Driver, Handler, Sink, WorkerCfg, unix_ns};
use crate::measure::Probe;
use crate::report::{Measurement, Percentiles};

/// Sizes per mode.
#[derive(Debug, Clone)]
pub(crate) struct Sizes {
    /// W1's jobs for the raw-HTTP and ceiling rows (the pair bench/baseline.json guards).
    pub(crate) w1_jobs: u64,
    /// Times the raw-HTTP and ceiling W1 rows are measured per run (smoke: 3, so that the
    /// guard's ratio is a median of three, not one noisy burn-down).
    pub(crate) w1_repeats: usize,
    /// W1's jobs for the SDK and peer rows (smaller than `w1_jobs` in smoke mode only).
    pub(crate) w1_side_jobs: u64,
    /// W8's jobs.
    pub(crate) w8_jobs: u64,
    pub(crate) w1_claimers: usize,
    pub(crate) w1_batch: usize,
    pub(crate) w2_secs: f64,
    pub(crate) w2_depth: u64,
    pub(crate) w3_jobs: [(usize, u64); 2],
    pub(crate) w4_rates: Vec<f64>,
    pub(crate) w4_secs: f64,
    pub(crate) w5_secs: f64,
    pub(crate) w5_bulk_rows: u64,
    /// W6 (depth): claim latency at 1k queued and at this many queued (0: skipped).
    pub(crate) w6_big: u64,
    /// W7 (DAG step latency): chains worked, one after the other.
    pub(crate) dag_runs: usize,
    /// W9 (fairness across tenants): the flood's jobs, and how long the trickle arrives.
    pub(crate) w9_flood: u64,
    pub(crate) w9_secs: f64,
    pub(crate) patience: Duration,
    /// Leasehold workloads to run (`W1`…`W9`); empty: all of them.
    pub(crate) only: Vec<String>,
}

impl Sizes {
    /// Whether the Leasehold workload `w` (e.g. `"W1"`) is to run.
    pub(crate) fn wants(&self, w: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o.eq_ignore_ascii_case(w))
    }

    pub(crate) fn for_mode(mode: &str) -> Self {
        match mode {
            "smoke" => Self {
                w1_jobs: 5000,
                w1_repeats: 3,
                w1_side_jobs: 400,
                w8_jobs: 400,
                w1_claimers: 4,
                w1_batch: 100,
                w2_secs: 2.0,
                w2_depth: 500,
                w3_jobs: [(10, 50), (100, 200)],
                w4_rates: vec![10.0, 100.0, 1000.0],
                w4_secs: 0.5,
                w5_secs: 0.3,
                w5_bulk_rows: 1000,
                w6_big: 5000,
                dag_runs: 3,
                w9_flood: 600,
                w9_secs: 0.4,
                patience: Duration::from_secs(30),
                only: Vec::new(),
            },
            "quick" => Self {
                w1_jobs: 20_000,
                w1_repeats: 1,
                w1_side_jobs: 20_000,
                w8_jobs: 10_000,
                w1_claimers: 4,
                w1_batch: 100,
                w2_secs: 4.0,
                w2_depth: 5000,
                w3_jobs: [(10, 1_000), (100, 10_000)],
                w4_rates: vec![10.0, 100.0, 1000.0],
                w4_secs: 1.5,
                w5_secs: 1.0,
                w5_bulk_rows: 10_000,
                w6_big: 0,
                dag_runs: 40,
                w9_flood: 5000,
                w9_secs: 3.0,
                patience: Duration::from_secs(120),
                only: Vec::new(),
            },
            _ => Self {
                w1_jobs: 100_000,
                w1_repeats: 1,
                w1_side_jobs: 100_000,
                w8_jobs: 10_000,
                w1_claimers: 4,
                w1_batch: 100,
                w2_secs: 60.0,
                w2_depth: 5000,
                w3_jobs: [(10, 10_000), (100, 10_000)],
                w4_rates: vec![10.0, 100.0, 1000.0],
                w4_secs: 20.0,
                w5_secs: 10.0,
                w5_bulk_rows: 100_000,
                w6_big: 1_000_000,
                dag_runs: 200,
                w9_flood: 100_000,
                w9_secs: 20.0,
                patience: Duration::from_secs(1800),
                only: Vec::new(),
            },
        }
    }
}

const PAD: &str = "0123456789abcdef0123";

/// A job of about 50 bytes of JSON payload; `t` (unix ns) is the intended arrival for W4.
pub(crate) fn job(queue: &str, i: u64, t: u64) -> Value {
    json!({"queue": queue, "kind": "noop", "payload": {"i": i, "t": t, "pad": PAD}})
}

/// The producer side, over raw HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Producer {
    pub(crate) http: reqwest::Client,
    pub(crate) url: String,
}

impl Producer {
    pub(crate) async fn enqueue_batch(&self, queue: &str, from: u64, n: u64) -> Result<()> {
        self.enqueue_jobs((from..from + n).map(|i| job(queue, i, 0)).collect())
            .await
    }

    /// Enqueues `jobs` in one batch request.
    pub(crate) async fn enqueue_jobs(&self, jobs: Vec<Value>) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/jobs", self.url))
            .json(&json!({ "jobs": jobs }))
            .send()
            .await?;
        ensure!(r.status().is_success(), "enqueue batch: {}", r.status());
        let _ = r.bytes().await?;
        Ok(())
    }

    pub(crate) async fn enqueue_one(&self, body: &Value) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/v1/jobs", self.url))
            .json(body)
            .send()
            .await?;
        ensure!(r.status().is_success(), "enqueue: {}", r.status());
        let _ = r.bytes().await?;
        Ok(())
    }

    /// Enqueues `n` jobs in batches of `batch`, returning rows/s.
    pub(crate) async fn fill(&self, queue: &str, n: u64, batch: u64) -> Result<f64> {
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            let k = batch.min(n - i);
            self.enqueue_batch(queue, i, k).await?;
            i += k;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }
}

/// How W5's single-job enqueues reach the coordinator.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EnqueueVia {
    /// `POST /v1/jobs` with a JSON body, straight from reqwest.
    RawHttp,
    /// The Rust SDK's `Client::enqueue`.
    RustSdk,
}

/// Everything a workload needs.
#[derive(Clone)]
pub(crate) struct Bench<'a> {
    pub(crate) producer: Producer,
    pub(crate) driver: &'a dyn Driver,
    pub(crate) probe: Probe,
    pub(crate) sizes: &'a Sizes,
}

/// One measured variant of a workload.
pub(crate) struct Variant {
    pub(crate) workload: &'static str,
    pub(crate) variant: String,
    pub(crate) settings: std::collections::BTreeMap<String, String>,
    pub(crate) result: Result<Measurement>,
}

impl Bench<'_> {
    pub(crate) fn probe_with(&self, pids: Vec<u32>) -> Probe {
        let mut p = self.probe.clone();
        p.worker_pids = pids;
        p
    }

    /// W1: enqueue N jobs in batches of 1000, then time the workers until the last outcome
    /// is acknowledged (committed).
    pub(crate) async fn w1(&self) -> Variant {
        let s = self.sizes;
        let cfg = WorkerCfg {
            queue: "w1".into(),
            slots: s.w1_claimers * s.w1_batch * 2,
            batch: s.w1_batch,
            claimers: s.w1_claimers,
            wait_ms: 200,
            handler: Handler::Noop,
            tenants: Vec::new(),
        };
        let variant = format!("{} jobs, {}×{}", s.w1_jobs, s.w1_claimers, s.w1_batch);
        let result = self.burn_down(&cfg, s.w1_jobs).await;
        Variant {
            workload: "W1",
            variant,
            settings: cfg.settings(),
            result,
        }
    }

    /// Enqueues `jobs` jobs on `cfg.queue` in batches of 1000, then times `cfg`'s workers until
    /// the last outcome is acknowledged (committed): W1 and W8.
    pub(crate) async fn burn_down(&self, cfg: &WorkerCfg, jobs: u64) -> Result<Measurement> {
        let enqueue_rate = self.producer.fill(&cfg.queue, jobs, 1000).await?;
        let sink = Sink::new();
        let mut mark = self.probe.begin().await;
        // Timed from when the workers are up (an SDK process has printed `ready`; an
        // in-process driver has spawned its tasks), like bench/sdk-ratio.
        let running = self
            .driver
            .start(&self.producer.url, cfg, sink.clone())
            .await?;
        let started = Instant::now();
        let probe = self.probe_with(running.pids());
        probe.exclude_worker_startup(&mut mark);
        let waited = sink.wait_completed(jobs, self.sizes.patience).await;
        let secs = started.elapsed().as_secs_f64();
        let mut m = probe.end(mark, jobs, Some(secs)).await;
        running.stop().await;
        waited?;
        m.extra.insert("enqueue_rows_per_s".into(), enqueue_rate);
        m.extra
            .insert("errors".into(), sink.errors.load(Ordering::Relaxed) as f64);
        Ok(m)
    }

    /// W2: a producer holds the queue depth near `w2_depth` for `w2_secs`; the figure is the
    /// median completion rate over 2-s windows.
    pub(crate) async fn w2(&self) -> Variant {
        let s = self.sizes;
        let cfg = WorkerCfg {
            queue: "w2".into(),
            slots: s.w1_claimers * s.w1_batch * 2,
            batch: s.w1_batch,
            claimers: s.w1_claimers,
            wait_ms: 200,
            handler: Handler::Noop,
            tenants: Vec::new(),
        };
        let variant = format!("depth {}, {} s", s.w2_depth, s.w2_secs);
        let result = async {
            self.producer.fill("w2", s.w2_depth, 1000).await?;
            let enqueued = Arc::new(AtomicU64::new(s.w2_depth));
            let sink = Sink::new();
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let producer = {
                let (p, enqueued, sink, stop, depth) = (
                    self.producer.clone(),
                    enqueued.clone(),
                    sink.clone(),
                    stop.clone(),
                    s.w2_depth,
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let e = enqueued.load(Ordering::Relaxed);
                        let in_queue = e.saturating_sub(sink.completed());
                        if in_queue < depth {
                            let n = (depth - in_queue).min(1000);
                            p.enqueue_batch("w2", e, n).await?;
                            enqueued.fetch_add(n, Ordering::Relaxed);
                        } else {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                    anyhow::Ok(())
                })
            };
            let mark = self.probe.begin().await;
            let running = self
                .driver
                .start(&self.producer.url, &cfg, sink.clone())
                .await?;
            let probe = self.probe_with(running.pids());
            let started = Instant::now();
            let window = Duration::from_secs_f64(2.0_f64.min(s.w2_secs / 2.0));
            let mut rates = Vec::new();
            let mut last = sink.completed();
            let c0 = last;
            while started.elapsed().as_secs_f64() + window.as_secs_f64() <= s.w2_secs + 1e-9 {
                tokio::time::sleep(window).await;
                let now = sink.completed();
                rates.push((now - last) as f64 / window.as_secs_f64());
                last = now;
            }
            let secs = started.elapsed().as_secs_f64();
            let done = sink.completed() - c0;
            let mut m = probe.end(mark, done, Some(secs)).await;
            stop.store(true, Ordering::Relaxed);
            running.stop().await;
            producer.await.context("producer")??;
            let spread = crate::report::Spread::of(rates.clone()).context("no window")?;
            m.jobs_per_s = Some(spread.median);
            m.extra.insert("window_min".into(), spread.min);
            m.extra.insert("window_max".into(), spread.max);
            m.extra.insert("windows".into(), rates.len() as f64);
            m.extra
                .insert("errors".into(), sink.errors.load(Ordering::Relaxed) as f64);
            Ok(m)
        }
        .await;
        Variant {
            workload: "W2",
            variant,
            settings: cfg.settings(),
            result,
        }
    }

    /// W3: jobs that sleep 10 ms, at `slots` slots; efficiency against slots / 10 ms.
    pub(crate) async fn w3(&self, slots: usize, jobs: u64) -> Variant {
        let s = self.sizes;
        let queue = format!("w3-{slots}");
        let cfg = WorkerCfg {
            queue: queue.clone(),
            slots,
            batch: slots.min(100),
            claimers: 2,
            wait_ms: 200,
            handler: Handler::Sleep(Duration::from_millis(10)),
            tenants: Vec::new(),
        };
        let variant = format!("{jobs} jobs × 10 ms, {slots} slots");
        let result = async {
            self.producer.fill(&queue, jobs, 1000).await?;
            let sink = Sink::new();
            let mut mark = self.probe.begin().await;
            // Timed from when the workers are up, as W1 is.
            let running = self
                .driver
                .start(&self.producer.url, &cfg, sink.clone())
                .await?;
            let started = Instant::now();
            let probe = self.probe_with(running.pids());
            probe.exclude_worker_startup(&mut mark);
            let waited = sink.wait_completed(jobs, s.patience).await;
            let secs = started.elapsed().as_secs_f64();
            let mut m = probe.end(mark, jobs, Some(secs)).await;
            // The Rust SDK's worker: its handlers' mean number running and mean time.
            m.extra.extend(running.stop().await);
            waited?;
            let ideal = slots as f64 / 0.010;
            m.extra.insert("ideal_per_s".into(), ideal);
            m.extra
                .insert("efficiency".into(), m.jobs_per_s.unwrap_or(0.0) / ideal);
            Ok(m)
        }
        .await;
        Variant {
            workload: "W3",
            variant,
            settings: cfg.settings(),
            result,
        }
    }

    /// W4: open-loop arrivals at `rate` jobs/s into idle long-polling workers; latency from
    /// the intended arrival time to the handler's start (no coordinated omission: a producer
    /// thread sleeps to each intended time and hands the request to its own task).
    pub(crate) async fn w4(&self, rate: f64) -> Variant {
        let s = self.sizes;
        let queue = format!("w4-{rate}");
        let cfg = WorkerCfg {
            queue: queue.clone(),
            slots: 100,
            batch: 10,
            claimers: 2,
            wait_ms: 1_000,
            handler: Handler::Noop,
            tenants: Vec::new(),
        };
        let count = ((rate * s.w4_secs).round() as u64).max(1);
        let variant = format!("{rate} jobs/s open loop, {count} arrivals");
        let result = async {
            let sink = Sink::new();
            let running = self
                .driver
                .start(&self.producer.url, &cfg, sink.clone())
                .await?;
            let probe = self.probe_with(running.pids());
            // Let the claimers reach their long-poll wait.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mark = probe.begin().await;
            // Enqueue failures, each with its message: a job never enqueued would otherwise
            // show only as a job that never completed.
            let errors = Arc::new(Mutex::new(Vec::<String>::new()));
            let handle = tokio::runtime::Handle::current();
            let (producer, q, errs) = (self.producer.clone(), queue.clone(), errors.clone());
            let thread = std::thread::spawn(move || {
                let start = unix_ns() + 20_000_000;
                let period = 1e9 / rate;
                for i in 0..count {
                    let intended = start + (i as f64 * period) as u64;
                    let now = unix_ns();
                    if intended > now {
                        std::thread::sleep(Duration::from_nanos(intended - now));
                    }
                    let body = job(&q, i, intended);
                    let (p, errs) = (producer.clone(), errs.clone());
                    handle.spawn(async move {
                        if let Err(e) = p.enqueue_one(&body).await
                            && let Ok(mut errs) = errs.lock()
                        {
                            errs.push(format!("{e:#}"));
                        }
                    });
                }
            });
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("producer thread panicked"))?;
            let waited = sink.wait_completed(count, s.patience).await;
            let mut m = probe.end(mark, count, Some(s.w4_secs)).await;
            running.stop().await;
            let failed = errors.lock().map(|e| e.clone()).unwrap_or_default();
            if let Some(first) = failed.first() {
                anyhow::bail!(
                    "{} of {count} enqueues failed, the first: {first}",
                    failed.len()
                );
            }
            waited?;
            m.jobs_per_s = Some(rate);
            m.latency_ms = Percentiles::from_ns(sink.take_latencies());
            m.extra
                .insert("errors".into(), sink.errors.load(Ordering::Relaxed) as f64);
            Ok(m)
        }
        .await;
        Variant {
            workload: "W4",
            variant,
            settings: cfg.settings(),
            result,
        }
    }

    /// W5a: single-job enqueue requests, closed loop, `clients` at once, each a raw HTTP POST
    /// or a call of the Rust SDK's `Client::enqueue` (one client shared by the callers, as a
    /// web application shares one).
    pub(crate) async fn w5_single(&self, clients: usize, via: EnqueueVia) -> Variant {
        let s = self.sizes;
        let variant = match via {
            EnqueueVia::RawHttp => format!("single-job POST, {clients} client(s)"),
            EnqueueVia::RustSdk => format!("single-job Client::enqueue, {clients} client(s)"),
        };
        let mut settings = std::collections::BTreeMap::new();
        settings.insert("clients".into(), clients.to_string());
        let result = async {
            let sdk = match via {
                EnqueueVia::RawHttp => None,
                EnqueueVia::RustSdk => Some(leasehold::Client::new(self.producer.url.clone())?),
            };
            let probe = self.probe_with(Vec::new());
            let mark = probe.begin().await;
            let deadline = Instant::now() + Duration::from_secs_f64(s.w5_secs);
            let mut tasks = Vec::new();
            for c in 0..clients {
                let (p, sdk) = (self.producer.clone(), sdk.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = (c as u64) << 32;
                    while Instant::now() < deadline {
                        let body = job("w5", i, 0);
                        i += 1;
                        let t = Instant::now();
                        match &sdk {
                            None => p.enqueue_one(&body).await?,
                            Some(client) => {
                                let spec = leasehold::JobSpec::new("noop", body["payload"].clone())
                                    .queue("w5");
                                client.enqueue(spec).await?;
                            }
                        }
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    anyhow::Ok(lat)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            let n = all.len() as u64;
            let mut m = probe.end(mark, n, None).await;
            m.latency_ms = Percentiles::from_ns(all);
            Ok(m)
        }
        .await;
        Variant {
            workload: "W5",
            variant,
            settings,
            result,
        }
    }

    /// W5b: bulk enqueue, one client, `batch` rows per request.
    pub(crate) async fn w5_bulk(&self, batch: u64) -> Variant {
        let s = self.sizes;
        let variant = format!("bulk {batch}/request, {} rows", s.w5_bulk_rows);
        let mut settings = std::collections::BTreeMap::new();
        settings.insert("batch".into(), batch.to_string());
        let result = async {
            let probe = self.probe_with(Vec::new());
            let mark = probe.begin().await;
            let queue = format!("w5-bulk-{batch}");
            self.producer.fill(&queue, s.w5_bulk_rows, batch).await?;
            Ok(probe.end(mark, s.w5_bulk_rows, None).await)
        }
        .await;
        Variant {
            workload: "W5",
            variant,
            settings,
            result,
        }
    }

    /// One claim of one job, timed (ns); the lease is completed so depth stays put.
    async fn timed_claim(&self, queue: &str) -> Result<u64> {
        let t = Instant::now();
        let r = self
            .producer
            .http
            .post(format!("{}/v1/leases", self.producer.url))
            .json(&json!({"worker_id": "w6", "queues": [queue], "max_jobs": 1, "lease_ttl_ms": 60_000}))
            .send()
            .await?;
        ensure!(r.status().is_success(), "claim: {}", r.status());
        let body: Value = r.json().await?;
        let ns = t.elapsed().as_nanos() as u64;
        let lease = &body["leases"][0];
        ensure!(lease.is_object(), "claim returned no lease: {body}");
        let r = self
            .producer
            .http
            .post(format!("{}/v1/leases/outcomes", self.producer.url))
            .json(&json!({"outcomes": [{"job_id": lease["job"]["id"], "fencing_token": lease["fencing_token"], "outcome": "complete"}]}))
            .send()
            .await?;
        ensure!(r.status().is_success(), "complete: {}", r.status());
        Ok(ns)
    }

    /// W6: claim latency (one job per claim, 30 samples) with 1000 jobs queued and with
    /// `w6_big` queued, and the coordinator's peak RSS while the queue grows.
    pub(crate) async fn w6(&self) -> Variant {
        let s = self.sizes;
        let big = s.w6_big;
        let variant = format!("claim latency at 1k vs {big} queued");
        let mut settings = std::collections::BTreeMap::new();
        settings.insert("samples".into(), "30 claims of 1 job at each depth".into());
        let result = async {
            let probe = self.probe_with(Vec::new());
            let mark = probe.begin().await;
            self.producer.fill("w6", 1000, 1000).await?;
            let mut small = Vec::new();
            for _ in 0..30 {
                small.push(self.timed_claim("w6").await?);
            }
            let started = Instant::now();
            let mut i = 1000;
            while i < big {
                let k = 1000.min(big - i);
                self.producer.enqueue_batch("w6", i, k).await?;
                i += k;
            }
            let fill_rate = (big - 1000) as f64 / started.elapsed().as_secs_f64();
            let mut large = Vec::new();
            for _ in 0..30 {
                large.push(self.timed_claim("w6").await?);
            }
            let mut m = probe.end(mark, big, None).await;
            m.jobs_per_s = None;
            let ps = Percentiles::from_ns(small).context("no samples")?;
            let pl = Percentiles::from_ns(large).context("no samples")?;
            m.extra.insert("claim_p50_ms_at_1k".into(), ps.p50);
            m.extra.insert("claim_p50_ms_at_big".into(), pl.p50);
            m.extra.insert("claim_p50_ratio".into(), pl.p50 / ps.p50);
            m.extra.insert("fill_rows_per_s".into(), fill_rate);
            m.latency_ms = Some(pl);
            Ok(m)
        }
        .await;
        Variant {
            workload: "W6",
            variant,
            settings,
            result,
        }
    }
}
