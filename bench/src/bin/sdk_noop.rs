//! A Rust SDK worker with a no-op handler, for `bench/sdk-ratio` (the peer the Python and Go
//! SDKs are compared with): `sdk_noop URL QUEUE CONCURRENCY`. Prints `ready` once the worker is
//! built, runs until SIGTERM or Ctrl-C, then drains.

use anyhow::{Context, Result};
use leasehold::{HandlerError, JobContext, Worker};
use serde_json::Value;

async fn noop(_ctx: JobContext) -> Result<Value, HandlerError> {
    Ok(Value::Null)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: sdk_noop URL QUEUE CONCURRENCY";
    let url = args.next().context(usage)?;
    let queue = args.next().context(usage)?;
    let concurrency: usize = args.next().context(usage)?.parse().context(usage)?;
    let worker = Worker::builder(url)
        .queues([queue])
        .concurrency(concurrency)
        .handler("noop", noop)
        .build()?;
    println!("ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
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
