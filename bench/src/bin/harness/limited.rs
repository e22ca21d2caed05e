//! W8, W1 under limits: the W1 burn-down with a rate limit and a concurrency limit on its
//! queue (docs/flow-control.md). The figure is the achieved rate against the configured one:
//! a limit that leaks leases more than its budget (`burst + rate × seconds`), or that starves
//! the workers far below it, shows here.

use anyhow::{Context, bail};
use serde_json::json;

use crate::driver::{Handler, WorkerCfg};
use crate::workloads::{Bench, Variant};

/// The configured limits: leases per second, burst, leases held at once.
const RATE: f64 = 2000.0;
const BURST: u32 = 100;
const CONCURRENCY: u32 = 200;

impl Bench<'_> {
    /// W8: `RATE`/s × 5 s of jobs (at most `w8_jobs`) burnt down by W1's workers under a rate
    /// limit and a concurrency limit on their queue.
    pub(crate) async fn w8_limited(&self) -> Variant {
        let s = self.sizes;
        let jobs = s.w8_jobs.min((RATE * 5.0) as u64);
        let cfg = WorkerCfg {
            queue: "w8".into(),
            slots: s.w1_claimers * s.w1_batch * 2,
            batch: s.w1_batch,
            claimers: s.w1_claimers,
            wait_ms: 200,
            handler: Handler::Noop,
            tenants: Vec::new(),
        };
        let variant =
            format!("{jobs} jobs, rate {RATE}/s burst {BURST}, concurrency {CONCURRENCY}");
        let result = async {
            let limit = self
                .producer
                .http
                .put(format!("{}/v1/limits/queue:w8", self.producer.url))
                .json(
                    &json!({"rate": RATE, "burst": BURST, "concurrency": CONCURRENCY,
                              "reason": "bench W8", "ticket": "bench"}),
                )
                .send()
                .await
                .context("setting the W8 limits")?;
            if !limit.status().is_success() {
                bail!(
                    "setting the W8 limits: {}",
                    limit.text().await.unwrap_or_default()
                );
            }
            let mut m = self.burn_down(&cfg, jobs).await?;
            let secs = m.secs;
            let achieved = jobs as f64 / secs;
            let budget = (f64::from(BURST) + RATE * secs) / secs;
            if achieved > budget * 1.01 {
                bail!("{achieved:.0} leases/s against a budget of {budget:.0}/s");
            }
            m.extra.insert("configured_rate".into(), RATE);
            m.extra
                .insert("achieved_over_configured".into(), achieved / RATE);
            Ok(m)
        }
        .await;
        let mut settings = cfg.settings();
        settings.insert(
            "limits".into(),
            format!("queue:w8 rate {RATE}/s burst {BURST} concurrency {CONCURRENCY}"),
        );
        Variant {
            workload: "W8",
            variant,
            settings,
            result,
        }
    }
}
