//! The coordinator's integration tests, one binary (each test binary links the whole
//! coordinator; one link instead of twenty-odd is most of their build time). One module per
//! behaviour; `common` holds the harnesses they share. Run one module with
//! `cargo test -p leasehold-coordinator --test integration MODULE::` (e.g. `http_api::`).
//!
//! Two suites stay binaries of their own because they read the process-wide metrics recorder:
//! `tests/metrics.rs` and `tests/run_metrics.rs`.
#![allow(clippy::unwrap_used, missing_docs)]

#[macro_use]
mod common;

mod access;
mod audit;
mod backpressure;
mod cli;
mod connections;
mod cross_site;
mod cross_tenant;
mod dag_paths;
mod dag_replay;
mod dag_wakeups;
mod event_hub;
mod feed_gaps;
mod flow;
mod group_commit;
mod handoff;
mod http_api;
mod idempotency;
mod isolation;
mod job_search;
mod job_stats;
mod keys;
mod outcome_checks;
mod provenance;
mod quotas;
mod redaction;
mod retention;
mod run_listing;
mod runbook;
mod runs_and_feeds;
mod schemas;
mod store_batches;
mod store_conformance;
mod store_listings;
mod store_transitions;
mod strict_bodies;
mod timeouts;
mod worker_presence;
mod worker_session;
