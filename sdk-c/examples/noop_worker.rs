//! The Rust SDK's `Worker` with a no-op handler: the baseline the Go package's throughput is
//! compared with (sdk-c/go/bench_test.go runs both against one coordinator).
//!
//! Run with:
//!
//! ```text
//! cargo build -p leasehold-c --example noop_worker
//! target/debug/examples/noop_worker http://127.0.0.1:7070 QUEUE CONCURRENCY
//! ```
//!
//! It prints `ready` once the worker runs, completes every `noop` job of QUEUE with `null`, and
//! drains on SIGTERM or Ctrl-C.

use std::time::Duration;

use leasehold::{HandlerError, JobContext, Worker};
use serde_json::Value;

async fn noop(_ctx: JobContext) -> Result<Value, HandlerError> {
    Ok(Value::Null)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: noop_worker URL QUEUE CONCURRENCY")?;
    let queue = args
        .next()
        .ok_or("usage: noop_worker URL QUEUE CONCURRENCY")?;
    let concurrency: usize = args.next().unwrap_or_else(|| "200".into()).parse()?;
    let worker = Worker::builder(url)
        .queues([queue])
        .concurrency(concurrency)
        .lease_ttl(Duration::from_secs(10))
        .handler("noop", noop)
        .build()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("ready");
    worker
        .run(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}
