//! W7, DAG step latency: how long a run's next step takes to reach an idle worker once the step
//! before it is reported.
//!
//! One worker, as an SDK runs it: a claimer that long-polls (`wait_ms` 20 s, parked while
//! nothing is ready) and hands each lease to the handler; the handler reports it at once in a
//! one-outcome `POST /v1/leases/outcomes`, as the SDKs flush a single finished job. Runs are 6-step
//! chains, one at a time. A step's latency is from the moment its parent's report is sent to
//! the moment its lease reaches the worker: the outcome's transaction (which unblocks the child),
//! the wake-up of the parked claimer, and its claim. The first step of each run is not counted
//! (it is an enqueue, W4's business).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::report::Percentiles;
use crate::workloads::{Bench, Variant};

/// Steps per run.
const STEPS: usize = 6;
/// The claimer's long poll: far longer than any step should take.
const WAIT_MS: u64 = 20_000;

impl Bench<'_> {
    /// W7: `sizes.dag_runs` chains of [`STEPS`] steps worked by one parked worker.
    pub(crate) async fn w7_dag_steps(&self) -> Variant {
        let runs = self.sizes.dag_runs;
        let variant = format!("{STEPS}-step chain, parked worker, {runs} runs");
        let mut settings = std::collections::BTreeMap::new();
        settings.insert(
            "report".into(),
            "one-outcome POST /v1/leases/outcomes".into(),
        );
        settings.insert("claim".into(), format!("max_jobs 1, wait_ms {WAIT_MS}"));
        let result = async {
            let http = &self.producer.http;
            let url = self.producer.url.clone();
            let queue = "w7-dag";
            let (tx, mut rx) = mpsc::unbounded_channel::<(Value, Instant)>();
            let claimer = {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    loop {
                        let body = json!({"worker_id": "w7", "queues": [queue], "max_jobs": 1,
                                          "wait_ms": WAIT_MS, "lease_ttl_ms": 60_000});
                        let Ok(r) = http
                            .post(format!("{url}/v1/leases"))
                            .json(&body)
                            .send()
                            .await
                        else {
                            return;
                        };
                        let Ok(answer) = r.json::<Value>().await else {
                            return;
                        };
                        let arrived = Instant::now();
                        for lease in answer["leases"].as_array().into_iter().flatten() {
                            if tx.send((lease.clone(), arrived)).is_err() {
                                return;
                            }
                        }
                    }
                })
            };
            let probe = self.probe_with(Vec::new());
            let mark = probe.begin().await;
            let mut latencies = Vec::with_capacity(runs * (STEPS - 1));
            let outcome = async {
                for _ in 0..runs {
                    let jobs: Vec<Value> = (0..STEPS)
                        .map(|i| {
                            let deps: Vec<String> = if i == 0 {
                                vec![]
                            } else {
                                vec![format!("s{}", i - 1)]
                            };
                            json!({"key": format!("s{i}"), "kind": "noop", "queue": queue,
                                   "depends_on": deps})
                        })
                        .collect();
                    let r = http
                        .post(format!("{url}/v1/runs"))
                        .json(&json!({"jobs": jobs}))
                        .send()
                        .await?;
                    if r.status() != 201 {
                        bail!("run not created: {}", r.status());
                    }
                    let mut sent: Option<Instant> = None;
                    for _ in 0..STEPS {
                        let (lease, arrived) = tokio::time::timeout(self.sizes.patience, rx.recv())
                            .await
                            .context("a step never reached the worker")?
                            .context("the claimer stopped")?;
                        if let Some(sent) = sent {
                            latencies.push(arrived.duration_since(sent).as_nanos() as u64);
                        }
                        sent = Some(Instant::now());
                        let report = json!({"outcomes": [{"job_id": lease["job"]["id"],
                            "fencing_token": lease["fencing_token"], "outcome": "complete",
                            "result": null}]});
                        let r = http
                            .post(format!("{url}/v1/leases/outcomes"))
                            .json(&report)
                            .send()
                            .await?;
                        let answer: Value = r.json().await?;
                        if answer["results"][0]["state"] != "succeeded" {
                            bail!("step not recorded: {answer}");
                        }
                    }
                }
                Ok(())
            }
            .await;
            claimer.abort();
            outcome?;
            let steps = latencies.len() as u64;
            let mut m = probe.end(mark, steps, None).await;
            m.jobs_per_s = None;
            m.latency_ms = Percentiles::from_ns(latencies);
            let waits = m.latency_ms.as_ref().map_or(0.0, |p| p.max);
            if waits >= Duration::from_millis(WAIT_MS).as_secs_f64() * 1000.0 * 0.9 {
                bail!("a step waited for the long poll to end ({waits} ms): no wake-up");
            }
            Ok(m)
        }
        .await;
        Variant {
            workload: "W7",
            variant,
            settings,
            result,
        }
    }
}
