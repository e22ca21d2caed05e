//! The seam between the engine and the coordinator.
//!
//! The engine ([`crate::engine`]) keeps the leases a worker holds and decides what happens to
//! them; a [`Link`] carries its words to the coordinator and back: it delivers leases to an
//! [`Intake`] for as long as the session takes them, and sends heartbeats and outcomes. The
//! real link ([`crate::transport::CoordinatorLink`]) pushes over a WebSocket and falls back to
//! HTTP; the engine's scenario tests drive a fake one on paused time. Neither side names the
//! other's types: the engine sees this trait, the transport sees [`Intake`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use leasehold_proto::{HeartbeatItem, HeartbeatResult, Lease, OutcomeReport, OutcomeResult};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How the engine reaches the coordinator.
pub(crate) trait Link: Send + Sync + Debug {
    /// Delivers leases to `intake` until the session drains or stops (or fails for good, which
    /// it reports through [`Intake::fail`]).
    fn run_intake(self: Arc<Self>, intake: Arc<dyn Intake>) -> BoxFuture<'static, ()>;

    /// Extends leases; one answer per entry, in order.
    fn heartbeat(
        &self,
        items: Vec<HeartbeatItem>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<HeartbeatResult>>>;

    /// Reports outcomes; one answer per report, in order.
    fn outcomes(
        &self,
        reports: Vec<OutcomeReport>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<OutcomeResult>>>;

    /// Counts the push connections opened so far: when it changes the heartbeat beats at once,
    /// since the leases may have gone without one while the link was down.
    fn connections(&self) -> watch::Receiver<u64>;
}

/// What a link sees of the engine: where leases go, and when to take fewer or none.
pub(crate) trait Intake: Send + Sync {
    /// Takes in leases that arrived at `received` (their deadlines count from there).
    fn accept(&self, leases: Vec<Lease>, received: Instant);

    /// Slots free right now (concurrency minus leases held and outcome backpressure).
    fn free_slots(&self) -> usize;

    /// Slots taken, republished on every change: the link asks for more when it drops.
    fn taken(&self) -> watch::Receiver<usize>;

    /// Fired when the session takes no more leases.
    fn draining(&self) -> &CancellationToken;

    /// Fired when every task of the session must end.
    fn stopping(&self) -> &CancellationToken;

    /// Ends the session with an error no retry can fix (credentials or configuration refused).
    fn fail(&self, err: Error);
}
