//! Leasehold's coordinator: a thin HTTP service over one database that issues fenced job leases
//! and records results and events. It never runs user code; every heavy behaviour (retries,
//! heartbeats, hashing) lives in the worker SDK.
//!
//! [`http::app`] builds the router; [`server::serve`] runs it on a socket with graceful
//! shutdown; [`store`] holds the SQLite and PostgreSQL implementations of one [`store::Store`]
//! trait.

pub mod admission;
pub mod audit;
pub mod blobs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod flow;
pub mod handoff;
pub mod http;
pub mod keys;
mod leasing;
pub mod metrics;
pub mod notify;
pub mod outage;
mod planning;
pub mod presence;
pub mod ready;
pub mod redaction;
pub mod retention;
pub mod server;
pub mod stats;
pub mod store;
pub mod validate;

pub use http::{AppState, app};
