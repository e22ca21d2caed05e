//! Runs worked end to end by the Rust SDK against a real coordinator process, on SQLite and on
//! PostgreSQL (where one-outcome batches, what the SDK sends when one job finishes, once left a
//! run hanging), over both transports: a 3-step chain ends `succeeded`; one whose first step
//! fails fatally ends `failed` with its descendants `cancelled` (`upstream_failed`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use anyhow::Result;
use leasehold::{Client, HandlerError, JobContext, Transport, Worker};
use leasehold_testkit::sdk::{RunningWorker, eventually, init_tracing};
use leasehold_testkit::{Coordinator, fresh_schema, postgres_url};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(30);

/// A coordinator on SQLite, or on a fresh PostgreSQL schema (`None` when PostgreSQL is not
/// configured, which fails instead under `LEASEHOLD_REQUIRE_PG=1`).
async fn coordinator(pg: Option<&str>) -> Result<Option<Coordinator>> {
    match pg {
        None => Ok(Some(Coordinator::spawn(None).await?)),
        Some(test) => match postgres_url(test) {
            Some(base) => Ok(Some(
                Coordinator::spawn(Some(&fresh_schema(&base).await?)).await?,
            )),
            None => Ok(None),
        },
    }
}

/// Submits a chain a → b → c of `kind` in `queue`, works it with the SDK and returns the run as
/// it ended.
async fn work_chain(coord: &Coordinator, transport: Transport, kind: &str) -> Result<Value> {
    let queue = format!("chain-{}", uuid::Uuid::new_v4().simple());
    let jobs: Vec<Value> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let deps: Vec<&str> = if i == 0 {
                vec![]
            } else {
                vec![["a", "b"][i - 1]]
            };
            // Only the root has the failing kind; the others would succeed if they ran.
            let kind = if i == 0 { kind } else { "ok" };
            json!({"key": k, "kind": kind, "queue": queue, "depends_on": deps})
        })
        .collect();
    let http = reqwest::Client::new();
    let run: Value = http
        .post(format!("{}/v1/runs", coord.url))
        .json(&json!({"jobs": jobs}))
        .send()
        .await?
        .json()
        .await?;
    let id: uuid::Uuid = run["id"].as_str().unwrap().parse()?;
    let running = RunningWorker::start(
        Worker::builder(&coord.url)
            .queues([queue.as_str()])
            .concurrency(4)
            .transport(transport)
            .poll_wait(Duration::from_secs(20))
            .handler("ok", |_: JobContext| async move { Ok(json!("done")) })
            .handler("boom", |_: JobContext| async move {
                Err::<Value, _>(HandlerError::fatal("bad input"))
            })
            .build()?,
    );
    let client = Client::new(&coord.url)?;
    let ended = eventually("the run to end", PATIENCE, || async {
        let run = client.get_run(id).await?;
        Ok(run.status.is_terminal().then_some(run))
    })
    .await;
    running.stop().await?;
    Ok(serde_json::to_value(ended?)?)
}

fn states(run: &Value) -> Vec<(String, Value)> {
    run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["key"].as_str().unwrap().to_owned(),
                json!([j["state"], j["cancel_reason"]]),
            )
        })
        .collect()
}

async fn chain_succeeds(pg: Option<&str>, transport: Transport) -> Result<()> {
    init_tracing();
    let Some(coord) = coordinator(pg).await? else {
        return Ok(());
    };
    let run = work_chain(&coord, transport, "ok").await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    Ok(())
}

async fn fatal_root_cancels_the_rest(pg: Option<&str>, transport: Transport) -> Result<()> {
    init_tracing();
    let Some(coord) = coordinator(pg).await? else {
        return Ok(());
    };
    let run = work_chain(&coord, transport, "boom").await?;
    assert_eq!(run["status"], "failed", "{run}");
    assert_eq!(
        states(&run),
        [
            ("a".into(), json!(["dead", null])),
            ("b".into(), json!(["cancelled", "upstream_failed"])),
            ("c".into(), json!(["cancelled", "upstream_failed"])),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn chain_succeeds_on_postgres_over_http() -> Result<()> {
    chain_succeeds(Some("sdk_runs::ok_pg_http"), Transport::Http).await
}

#[tokio::test]
async fn chain_succeeds_on_postgres_over_websocket() -> Result<()> {
    chain_succeeds(Some("sdk_runs::ok_pg_ws"), Transport::WebSocket).await
}

#[tokio::test]
async fn chain_succeeds_on_sqlite_over_http() -> Result<()> {
    chain_succeeds(None, Transport::Http).await
}

#[tokio::test]
async fn fatal_root_cancels_the_rest_on_postgres_over_http() -> Result<()> {
    fatal_root_cancels_the_rest(Some("sdk_runs::boom_pg_http"), Transport::Http).await
}

#[tokio::test]
async fn fatal_root_cancels_the_rest_on_postgres_over_websocket() -> Result<()> {
    fatal_root_cancels_the_rest(Some("sdk_runs::boom_pg_ws"), Transport::WebSocket).await
}

#[tokio::test]
async fn fatal_root_cancels_the_rest_on_sqlite_over_websocket() -> Result<()> {
    fatal_root_cancels_the_rest(None, Transport::WebSocket).await
}
