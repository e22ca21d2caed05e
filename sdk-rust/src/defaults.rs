//! The worker runner's defaults, decided once. The Rust [`crate::Worker`] and
//! [`crate::SessionConfig`] use them; the Python skin reads them from its native module
//! (`leasehold._native.DEFAULT_*`), the C ABI hands them out (`lh_worker_defaults`) and the Go
//! skin takes them from there. `proto/vectors/worker_defaults.json` states them for every
//! language's tests, so a skin that decides its own fails its suite.

use std::time::Duration;

/// Most leases held (and handlers running) at once.
pub const CONCURRENCY: usize = 10;
/// Lease length; heartbeats run every third of it.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// Longest HTTP long poll.
pub const POLL_WAIT: Duration = Duration::from_secs(10);
/// On shutdown, how long running handlers get to finish before their leases are released.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cancelled handler gets to wind down before it is abandoned.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);
