//! A Rust SDK worker with a no-op handler, for `bench/sdk-ratio` (the peer the Python and Go
//! SDKs are compared with) and the harness's SDK rows: `sdk_noop URL QUEUE CONCURRENCY
//! [SLEEP_MS]` (with SLEEP_MS, each job sleeps that long: W3's I/O-bound job). Prints `ready`
//! once the worker is built, runs until SIGTERM or Ctrl-C, then drains; with SLEEP_MS it then
//! prints how busy its handlers were (`busy … body_ms …`, see `leasehold_bench::busy`).

use std::time::Duration;

use anyhow::{Context, Result};
use leasehold::{HandlerError, JobContext, Worker};
use leasehold_bench::busy::Busy;
use leasehold_bench::pause::Timers;
use serde_json::Value;

static BUSY: Busy = Busy::new();

async fn noop(_ctx: JobContext) -> Result<Value, HandlerError> {
    Ok(Value::Null)
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: sdk_noop URL QUEUE CONCURRENCY [SLEEP_MS]";
    let url = args.next().context(usage)?;
    let queue = args.next().context(usage)?;
    let concurrency: usize = args.next().context(usage)?.parse().context(usage)?;
    let pause = match args.next() {
        Some(ms) => Some(Duration::from_millis(ms.parse().context(usage)?)),
        None => None,
    };
    anyhow::ensure!(args.next().is_none(), "{usage}");
    let builder = Worker::builder(url)
        .queues([queue])
        .concurrency(concurrency);
    let builder = match pause {
        None => builder.handler("noop", noop),
        // Kernel timers the runtime polls like sockets, kept between jobs: precise, no thread
        // per job (bench/README.md, "W3's job body").
        Some(pause) => {
            let timers = Timers::new();
            builder.handler("noop", move |_ctx: JobContext| {
                let timers = timers.clone();
                async move {
                    let started = BUSY.start();
                    timers
                        .pause(pause)
                        .await
                        .map_err(|e| HandlerError::retry(e.to_string()))?;
                    BUSY.end(started);
                    Ok::<_, HandlerError>(Value::Null)
                }
            })
        }
    };
    let worker = builder.build()?;
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
    if let Some(report) = BUSY.report() {
        println!("{report}");
    }
    Ok(())
}
