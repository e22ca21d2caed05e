//! The C ABI of the Leasehold worker SDK: `libleasehold_c.a` / `libleasehold_c.so` and
//! `include/leasehold.h` (generated from this crate by cbindgen; `tests/header.rs` fails when the
//! committed header is stale).
//!
//! A thin skin over the Rust core (`leasehold`): every protocol behaviour — transport, credit,
//! heartbeats, fencing, outcome batching, retries, artifacts, drain — is the core's; this crate
//! converts types, maps errors to codes and manages lifetimes. Its conventions (after
//! rustls-ffi) are written down in `sdk-c/README.md`:
//!
//! - every symbol starts with `lh_`; opaque handles (`lh_worker`, `lh_job`, `lh_client`,
//!   `lh_cancel`) are made and freed only by the library;
//! - every fallible function returns an [`lh_result`] with stable numbers; details of the last
//!   failure on the calling thread come from `lh_last_error`;
//! - every export runs inside a panic boundary: a panic becomes `LH_PANIC`, never an unwind
//!   into C;
//! - every pointer is checked for NULL; outputs are written only on success;
//! - bytes and strings go as pointer plus length; what the library allocates, the library
//!   frees (`lh_bytes_free`, `lh_job_free`, …).
//!
//! Rust owns every thread: each worker (and client) handle runs a Tokio runtime of its own,
//! which keeps held leases alive with heartbeats while the caller's threads pull jobs with
//! `lh_worker_next` and end them.

pub mod cancel;
pub mod client;
pub mod ending;
pub mod error;
pub mod job;
pub mod job_artifacts;
pub mod mem;
pub mod util;
pub mod worker;
mod worker_core;

pub use cancel::lh_cancel;
pub use client::lh_client;
pub use error::lh_result;
pub use job::{lh_ack, lh_cancel_reason, lh_job, lh_job_info, lh_outcome};
pub use mem::{lh_bytes, lh_str};
pub use worker::lh_worker;
