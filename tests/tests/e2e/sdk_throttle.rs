//! The throttle signal end to end through the Rust SDK: a handler that meets an upstream
//! throttle returns `HandlerError::throttled`; the coordinator records a retryable failure of
//! class `throttled`, retries the job after the asked delay, and halves the effective rate of
//! the adaptive limit the job falls under (docs/flow-control.md).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Result;
use leasehold::proto::JobState;
use leasehold::{Client, HandlerError, JobContext, JobSpec, Transport, Worker};
use leasehold_testkit::Coordinator;
use leasehold_testkit::sdk::{RunningWorker, eventually, init_tracing};
use serde_json::json;

#[tokio::test]
async fn a_throttled_handler_slows_its_adaptive_limit_down() -> Result<()> {
    init_tracing();
    let coord = Coordinator::spawn(None).await?;
    let http = reqwest::Client::new();
    let put = http
        .put(format!("{}/v1/limits/host:*", coord.url))
        .json(&json!({"rate": 40.0, "adaptive": true, "reason": "vendor quota", "ticket": "OPS-1"}))
        .send()
        .await?;
    assert_eq!(put.status(), 200, "{}", put.text().await?);

    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let running = RunningWorker::start(
        Worker::builder(&coord.url)
            .queues(["vendor"])
            .transport(Transport::WebSocket)
            .handler("call", move |ctx: JobContext| {
                let seen = seen.clone();
                async move {
                    if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                        // The vendor answered 429 with Retry-After: 1.
                        return Err(HandlerError::throttled(
                            "429 from api.example.com",
                            Duration::from_millis(300),
                        ));
                    }
                    Ok(json!({"attempt": ctx.attempt()}))
                }
            })
            .build()?,
    );
    let client = Client::new(&coord.url)?;
    let job = client
        .enqueue(
            JobSpec::new("call", json!({}))
                .queue("vendor")
                .limit_key("host:api.example.com"),
        )
        .await?;
    assert_eq!(job.job.limit_keys, ["host:api.example.com"]);
    let id = job.job.id;
    let done = eventually("the job succeeds", Duration::from_secs(30), || async {
        let job = client.get(id).await?;
        Ok((job.state == JobState::Succeeded).then_some(job))
    })
    .await?;
    assert_eq!(done.attempt, 2, "retried once");
    assert_eq!(done.result, Some(json!({"attempt": 2})));

    let limit: serde_json::Value = http
        .get(format!("{}/v1/limits/host:*", coord.url))
        .send()
        .await?
        .json()
        .await?;
    let bucket = &limit["buckets"][0];
    assert_eq!(bucket["bucket"], "host:api.example.com", "{limit}");
    let rate = bucket["effective_rate"].as_f64().unwrap();
    // Halved by the throttle, then regaining 2% of 40/s per second: about 20/s.
    assert!(
        (20.0..24.0).contains(&rate),
        "effective rate {rate}: {limit}"
    );
    let metrics = http
        .get(format!("{}/metrics", coord.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("leasehold_limit_throttles_total{limit=\"host:*\"} 1"),
        "{metrics}"
    );
    running.stop().await
}
