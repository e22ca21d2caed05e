//! The Leasehold worker SDK: the one place where the worker protocol lives.
//!
//! - [`Worker`]: async handlers per job kind, run with bounded concurrency, drained gracefully.
//! - [`WorkerSession`]: the protocol engine underneath, driven by *pulling* jobs
//!   ([`WorkerSession::next_job`]) — what the Python and C/Go SDKs wrap. It owns the transport
//!   (WebSocket push with automatic fallback to HTTP long-poll, reconnecting with jittered
//!   backoff), grants credit for free slots, sends one coalesced heartbeat per interval for all
//!   held leases, batches outcomes, and cancels jobs whose lease is lost, cancelled, or past its
//!   deadline on the monotonic clock.
//! - [`JobContext`] / [`LeasedJob`]: one job — payload, attempt, idempotency key, checkpoints,
//!   progress, cancellation, artifacts — and its single ending.
//! - [`Client`]: enqueue (safely retried), inspect, cancel, retry, wait; for operators, list
//!   jobs and runs by filter, list workers, and cancel or replay the jobs a filter selects.
//! - [`RetryPolicy`], [`idempotency`], [`artifact`]: the canonical, cross-language algorithms,
//!   pinned by the vectors in `proto/vectors/`.
//!
//! ```no_run
//! use leasehold::{Client, HandlerError, JobContext, JobSpec, Worker};
//! use serde_json::{Value, json};
//!
//! async fn greet(ctx: JobContext) -> Result<Value, HandlerError> {
//!     let name = ctx.payload()["name"].as_str().unwrap_or("world").to_owned();
//!     Ok(json!({ "greeting": format!("hello, {name}") }))
//! }
//!
//! # async fn demo() -> leasehold::Result<()> {
//! let client = Client::new("http://127.0.0.1:7070")?;
//! let job = client.enqueue(JobSpec::new("greet", json!({"name": "Ada"})).queue("demo")).await?;
//!
//! let worker = Worker::builder("http://127.0.0.1:7070")
//!     .queues(["demo"])
//!     .handler("greet", greet)
//!     .build()?;
//! let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(worker.run(async { let _ = stop_rx.await; }));
//!
//! let done = client.wait(job.job.id, std::time::Duration::from_secs(10)).await?;
//! assert_eq!(done.result, Some(json!({"greeting": "hello, Ada"})));
//! let _ = stop_tx.send(());
//! # let _ = running.await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod adaptive;
pub mod artifact;
mod bookkeeping;
mod client;
pub mod defaults;
mod ending;
mod engine;
mod error;
mod heartbeat;
pub mod idempotency;
mod job;
mod link;
mod outcomes;
mod receipt;
pub mod retry;
#[cfg(test)]
mod scenarios;
mod session;
mod session_config;
mod transport;
mod util;
mod validate;
mod worker;

pub use leasehold_proto as proto;

pub use adaptive::AdaptiveConcurrency;
pub use client::{Client, ClientBuilder, Enqueued, JobSpec, ListJobs, ListRuns};
pub use ending::Ending;
pub use error::{Error, HandlerError, Result};
pub use job::{CancelReason, JobContext, LeasedJob, NotSentReason, OutcomeAck, OutcomeReceipt};
pub use retry::{RetryPolicy, SplitMix64};
pub use session::{SessionConfig, Transport, WorkerSession, sdk_version};
pub use worker::{Worker, WorkerBuilder};
