//! End-to-end suites against real coordinator processes (and real PostgreSQL): the SDK's
//! behaviour and faults, two replicas, a database outage, shutdown, the README walkthroughs run
//! verbatim. One binary, one module per behaviour (one link instead of twelve); run one module
//! with `cargo test -p leasehold-testkit --test e2e MODULE::` (e.g. `sdk_behaviour::`).
#![allow(clippy::unwrap_used, missing_docs)]

mod postgres_outage;
mod readme_operating;
mod readme_walkthrough;
mod sdk_behaviour;
mod sdk_client;
mod sdk_faults;
mod sdk_prefetch;
mod sdk_runs;
mod sdk_throttle;
mod sdk_throughput;
mod sdk_timeouts;
mod serve_binary;
mod shutdown;
mod two_replica_feeds;
mod two_replicas;
