//! W9, fairness across tenants (docs/flow-control.md): a trickle of one tenant's jobs arrives
//! open-loop while a worker pool is busy with another tenant's flood. The figure is the
//! trickle's pickup latency (intended arrival → handler start), in three variants:
//!
//! - `alone`: the pool has only the trickle (the floor);
//! - `flood, shared pool`: the flood's tenant and the trickle's share the pool's workers, which
//!   claim for both (`tenants`): the trickle should wait about as long as alone;
//! - `flood, one queue`: the same jobs in one tenant's queue, as without tenants: the trickle
//!   waits behind the flood.
//!
//! The workers are slow on purpose (`SLOTS` handlers of `SLEEP_MS`): the flood must outlast the
//! trickle, and the pool is full whenever the trickle arrives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::driver::{Driver, Handler, RawHttp, Sink, WorkerCfg, unix_ns};
use crate::report::Percentiles;
use crate::workloads::{Bench, Variant, job};

/// Handlers that run at once, and how long each sleeps: the pool works 1000 jobs/s.
const SLOTS: usize = 50;
const SLEEP_MS: u64 = 50;
/// The trickle's arrivals per second.
const TRICKLE_RATE: f64 = 20.0;

/// Which tenants the jobs and the workers are.
#[derive(Clone, Copy)]
enum Setup {
    Alone,
    SharedPool,
    OneQueue,
}

impl Bench<'_> {
    /// W9's three variants.
    pub(crate) async fn w9_fairness(&self) -> Vec<Variant> {
        vec![
            self.w9(Setup::Alone).await,
            self.w9(Setup::SharedPool).await,
            self.w9(Setup::OneQueue).await,
        ]
    }

    async fn w9(&self, setup: Setup) -> Variant {
        let s = self.sizes;
        let (label, queue, flood) = match setup {
            Setup::Alone => ("alone", "w9-alone", 0),
            Setup::SharedPool => ("flood, shared pool", "w9-pool", s.w9_flood),
            Setup::OneQueue => ("flood, one queue", "w9-one", s.w9_flood),
        };
        let (flood_tenant, trickle_tenant) = match setup {
            Setup::OneQueue => ("default", "default"),
            _ => ("w9-flood", "w9-trickle"),
        };
        let cfg = WorkerCfg {
            queue: queue.into(),
            slots: SLOTS,
            batch: 10,
            claimers: 2,
            wait_ms: 1_000,
            handler: Handler::Sleep(Duration::from_millis(SLEEP_MS)),
            tenants: match setup {
                Setup::OneQueue => Vec::new(),
                _ => vec![flood_tenant.into(), trickle_tenant.into()],
            },
        };
        let count = ((TRICKLE_RATE * s.w9_secs).round() as u64).max(1);
        let variant = format!(
            "{label}: {count} trickle jobs at {TRICKLE_RATE}/s, flood {flood}, {SLOTS} slots × {SLEEP_MS} ms"
        );
        let result = async {
            let mut i = 0;
            while i < flood {
                let n = 1000.min(flood - i);
                let jobs: Vec<Value> = (i..i + n)
                    .map(|k| tenant_job(queue, flood_tenant, k, 0))
                    .collect();
                self.producer.enqueue_jobs(jobs).await?;
                i += n;
            }
            let sink = Sink::new();
            let driver = RawHttp {
                http: self.producer.http.clone(),
            };
            let url = self.producer.url.clone();
            let running = driver.start(&url, &cfg, sink.clone()).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let probe = self.probe_with(Vec::new());
            let mark = probe.begin().await;
            let errors = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let period = 1e9 / TRICKLE_RATE;
            let first = unix_ns() + 20_000_000;
            for k in 0..count {
                let intended = first + (k as f64 * period) as u64;
                let now = unix_ns();
                if intended > now {
                    tokio::time::sleep(Duration::from_nanos(intended - now)).await;
                }
                let body = tenant_job(queue, trickle_tenant, k, intended);
                let (p, errs) = (self.producer.clone(), errors.clone());
                tokio::spawn(async move {
                    if p.enqueue_one(&body).await.is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            let waited = sink.wait_timed_starts(count as usize, s.patience).await;
            let secs = started.elapsed().as_secs_f64();
            let mut m = probe.end(mark, count, Some(secs)).await;
            running.stop().await;
            waited?;
            m.jobs_per_s = Some(TRICKLE_RATE);
            m.latency_ms = Percentiles::from_ns(sink.take_latencies());
            m.extra.insert("flood_jobs".into(), flood as f64);
            m.extra.insert(
                "errors".into(),
                (errors.load(Ordering::Relaxed) + sink.errors.load(Ordering::Relaxed)) as f64,
            );
            Ok(m)
        }
        .await;
        Variant {
            workload: "W9",
            variant,
            settings: cfg.settings(),
            result,
        }
    }
}

/// A job of `tenant` (the coordinator is keyless: the body's tenant is obeyed).
fn tenant_job(queue: &str, tenant: &str, i: u64, t: u64) -> Value {
    let mut body = job(queue, i, t);
    body["tenant"] = json!(tenant);
    body
}
