//! Direct hand-off: a job enqueued while a claimer is parked in a long poll on its queue is
//! leased to that claimer in the enqueue's own transaction and answered to it at once.
//!
//! Without it an idle worker's pickup is two transactions apart — the enqueue commits, wakes
//! the claimer, and the claimer's claim commits — each with its round trips and its WAL flush
//! (bench/README.md, W4). With it the enqueue writes the job already leased (with both its
//! `enqueued` and `leased` events, as the two transactions would) and the claimer's long poll
//! returns that lease without touching the database again.
//!
//! A claimer *parks* here after a claim that found nothing and before it sleeps; an enqueue
//! *takes* the oldest parked claimer of the job's tenant and queue (first come, first served),
//! so two enqueues never hand off to one claimer. Whatever goes wrong after the take is safe:
//! a [`Taken`] dropped without a lease (the job was not ready, its queue paused, its key a
//! replay, a database error) makes the claimer query again, as a wake-up would; a lease the
//! claimer can no longer receive (it gave up or went away) comes back to [`Taken::deliver`]'s
//! caller, which releases it. A lease delivered in the instant before a parked claimer goes away
//! goes to the claimer's stray handler ([`Parking::on_stray`]), which releases it too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use leasehold_proto::Lease;
use tokio::sync::oneshot;

use crate::store::ClaimParams;

/// Claimers parked in a long poll, oldest first. Cheap to clone (one shared registry).
#[derive(Debug, Clone, Default)]
pub struct Handoffs {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    parked: VecDeque<Parked>,
}

#[derive(Debug)]
struct Parked {
    id: u64,
    params: ClaimParams,
    tx: oneshot::Sender<Box<Lease>>,
}

/// What becomes of a lease delivered to a claimer that went away before it looked.
pub type StrayHandler = Box<dyn FnOnce(Lease) + Send>;

/// A claimer's place in the registry; leaving it (drop) unparks the claimer.
pub struct Parking {
    id: u64,
    rx: oneshot::Receiver<Box<Lease>>,
    handoffs: Handoffs,
    /// Unparked already (by [`Parking::leave`]): the drop that follows has nothing to do.
    left: bool,
    on_stray: Option<StrayHandler>,
}

impl std::fmt::Debug for Parking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parking")
            .field("id", &self.id)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

/// A parked claimer taken by an enqueue: hand it a lease, or drop it to make it query again.
#[derive(Debug)]
pub struct Taken {
    params: ClaimParams,
    tx: oneshot::Sender<Box<Lease>>,
}

impl Handoffs {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding the lock; a poisoned registry is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks a claimer with `params` (one job per hand-off, whatever its `max_jobs`).
    pub fn park(&self, params: &ClaimParams) -> Parking {
        let (tx, rx) = oneshot::channel();
        let mut reg = self.registry();
        reg.next_id += 1;
        let id = reg.next_id;
        reg.parked.push_back(Parked {
            id,
            params: params.clone(),
            tx,
        });
        Parking {
            id,
            rx,
            handoffs: self.clone(),
            left: false,
            on_stray: None,
        }
    }

    /// Takes the oldest parked claimer of `tenant` that claims from `queue`, if any.
    pub fn take(&self, tenant: &str, queue: &str) -> Option<Taken> {
        let mut reg = self.registry();
        // A claimer whose request ended unparks itself on drop, so closed senders are rare;
        // skip one anyway rather than hand it a lease.
        reg.parked.retain(|p| !p.tx.is_closed());
        let at = reg.parked.iter().position(|p| {
            // A shared pool's claimers are left out: only a claim splits their leases fairly.
            p.params.tenant == tenant
                && p.params.pool.is_none()
                && p.params
                    .queues
                    .binary_search_by(|q| q.as_str().cmp(queue))
                    .is_ok()
        })?;
        let p = reg.parked.remove(at)?;
        Some(Taken {
            params: p.params,
            tx: p.tx,
        })
    }

    /// How many claimers are parked (for tests and metrics).
    pub fn parked(&self) -> usize {
        self.registry().parked.len()
    }
}

impl Parking {
    /// Sets what to do with a lease delivered in the instant before this claimer goes away
    /// without looking (its request cancelled, its session closed): release it, so its job runs
    /// again now rather than after the lease expires. Without a handler the lease is dropped
    /// and expires.
    pub fn on_stray(mut self, handler: impl FnOnce(Lease) + Send + 'static) -> Self {
        self.on_stray = Some(Box::new(handler));
        self
    }

    /// Waits for a handed-off lease. `None` when the enqueue that took this claimer had no
    /// lease for it after all: the claimer should query again (it is no longer parked).
    pub async fn recv(&mut self) -> Option<Lease> {
        (&mut self.rx).await.ok().map(|lease| *lease)
    }

    /// Leaves the registry and returns a lease handed off before that, if any (when another
    /// wake-up won the race with [`Parking::recv`]). Once it returns no hand-off can reach the
    /// claimer: a `deliver` racing with it either lands here or fails, and its caller releases
    /// the lease. (Looking with `try_recv` and then dropping would lose a lease delivered
    /// between the two: it would sit in the dropped channel, leased, until its lease expired.)
    pub fn leave(mut self) -> Option<Lease> {
        self.unpark();
        self.rx.try_recv().ok().map(|lease| *lease)
    }

    fn unpark(&mut self) {
        if std::mem::replace(&mut self.left, true) {
            return;
        }
        let id = self.id;
        self.handoffs.registry().parked.retain(|p| p.id != id);
        // Closed, a late `deliver` fails (its caller releases the lease) instead of leaving
        // the lease in the channel.
        self.rx.close();
    }
}

impl Drop for Parking {
    /// A claimer that goes away while parked (its request was cancelled) unparks. A lease
    /// delivered in the instant before, which nobody will answer with, goes to the stray
    /// handler.
    fn drop(&mut self) {
        // After `leave` this finds nothing: `leave` unparked and took what had come.
        self.unpark();
        if let Ok(lease) = self.rx.try_recv()
            && let Some(handler) = self.on_stray.take()
        {
            handler(*lease);
        }
    }
}

impl Taken {
    /// What the claimer asked for: its worker, lease length and version go on the lease.
    pub fn params(&self) -> &ClaimParams {
        &self.params
    }

    /// Answers the claimer's long poll with `lease`; gives the lease back when the claimer is
    /// gone (its caller must then release it).
    pub fn deliver(self, lease: Lease) -> Result<(), Box<Lease>> {
        self.tx.send(Box::new(lease))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(tenant: &str, queues: &[&str]) -> ClaimParams {
        let mut queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        queues.sort();
        ClaimParams {
            tenant: tenant.into(),
            worker_id: "w".into(),
            worker_version: None,
            queues,
            max_jobs: 1,
            lease_ttl_ms: 30_000,
            ungated: false,
            pool: None,
        }
    }

    #[test]
    fn takes_the_oldest_matching_claimer_once() {
        let h = Handoffs::new();
        let _other_tenant = h.park(&params("t2", &["a"]));
        let _other_queue = h.park(&params("t1", &["b"]));
        let first = h.park(&params("t1", &["a", "c"]));
        let _second = h.park(&params("t1", &["a"]));
        assert_eq!(h.parked(), 4);
        let taken = h.take("t1", "a").expect("a claimer of t1/a");
        assert_eq!(taken.params().queues, ["a", "c"]);
        assert_eq!(h.parked(), 3);
        drop(first);
        assert_eq!(h.parked(), 3, "a taken claimer is no longer parked");
        assert!(h.take("t1", "a").is_some(), "the second claimer");
        assert!(h.take("t1", "a").is_none(), "no claimer left for t1/a");
        assert!(h.take("t3", "a").is_none());
    }

    #[test]
    fn dropping_a_parking_unparks() {
        let h = Handoffs::new();
        let p = h.park(&params("t", &["q"]));
        drop(p);
        assert_eq!(h.parked(), 0);
        assert!(h.take("t", "q").is_none());
    }

    #[tokio::test]
    async fn a_dropped_take_makes_the_claimer_query_again() {
        let h = Handoffs::new();
        let mut p = h.park(&params("t", &["q"]));
        drop(h.take("t", "q"));
        assert!(p.recv().await.is_none());
    }

    fn lease() -> Lease {
        let now = chrono::Utc::now();
        let job = leasehold_proto::Job {
            id: uuid::Uuid::now_v7(),
            tenant: "t".into(),
            queue: "q".into(),
            kind: "k".into(),
            state: leasehold_proto::JobState::Leased,
            payload: serde_json::json!({}),
            priority: 0,
            attempt: 1,
            max_attempts: 3,
            fencing_token: 1,
            run_at: now,
            created_at: now,
            updated_at: now,
            started_at: Some(now),
            finished_at: None,
            lease_expires_at: Some(now),
            idempotency_key: None,
            correlation_id: None,
            project: None,
            run_id: None,
            inputs_hash: "sha256:0".into(),
            backoff: None,
            timeout_ms: None,
            deadline_at: None,
            worker_id: Some("w".into()),
            worker_version: None,
            cancel_requested: false,
            cancel_reason: None,
            checkpoint: None,
            progress: None,
            result: None,
            last_error: None,
            artifacts: Vec::new(),
            limit_keys: Vec::new(),
        };
        Lease {
            job,
            fencing_token: 1,
            expires_at: now,
            lease_ttl_ms: 30_000,
            timeout_ms: None,
            deadline_at: None,
            attempt: 1,
            checkpoint: None,
            retry: leasehold_proto::RetryHints {
                max_attempts: 3,
                backoff: None,
            },
        }
    }

    #[tokio::test]
    async fn a_delivered_lease_reaches_the_parked_claimer() {
        let h = Handoffs::new();
        let mut p = h.park(&params("t", &["q"]));
        let sent = lease();
        h.take("t", "q")
            .expect("parked")
            .deliver(sent.clone())
            .expect("claimer waiting");
        assert_eq!(p.recv().await, Some(sent));
    }

    #[test]
    fn a_lease_delivered_after_the_claimers_last_look_is_taken_when_it_leaves() {
        let h = Handoffs::new();
        let mut p = h.park(&params("t", &["q"]));
        let taken = h.take("t", "q").expect("parked");
        // The claimer woke for another reason and found nothing handed off yet …
        assert!(p.rx.try_recv().is_err());
        // … then the enqueue delivers before the claimer is gone.
        let sent = lease();
        taken
            .deliver(sent.clone())
            .expect("the claimer has not left yet");
        assert_eq!(
            p.leave(),
            Some(sent),
            "the lease reaches the claimer, not the void"
        );
    }

    #[test]
    fn a_lease_for_a_claimer_that_left_comes_back() {
        let h = Handoffs::new();
        let p = h.park(&params("t", &["q"]));
        let taken = h.take("t", "q").expect("parked");
        assert_eq!(p.leave(), None);
        let sent = lease();
        assert_eq!(taken.deliver(sent.clone()), Err(Box::new(sent)));
    }

    #[test]
    fn a_lease_delivered_just_before_the_claimer_went_away_goes_to_its_stray_handler() {
        let h = Handoffs::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = h
            .park(&params("t", &["q"]))
            .on_stray(move |lease| tx.send(lease).expect("the test listens"));
        let sent = lease();
        h.take("t", "q")
            .expect("parked")
            .deliver(sent.clone())
            .expect("the claimer has not gone yet");
        drop(p);
        assert_eq!(
            rx.try_recv().ok(),
            Some(sent),
            "released, not left to expire"
        );
        assert_eq!(h.parked(), 0);
    }

    #[test]
    fn a_claimer_that_goes_away_empty_handed_calls_no_stray_handler() {
        let h = Handoffs::new();
        let (tx, rx) = std::sync::mpsc::channel::<Lease>();
        let p = h
            .park(&params("t", &["q"]))
            .on_stray(move |lease| tx.send(lease).expect("the test listens"));
        drop(p);
        assert!(rx.try_recv().is_err());
        // Nor one that took its lease when it left.
        let (tx, rx) = std::sync::mpsc::channel::<Lease>();
        let p = h
            .park(&params("t", &["q"]))
            .on_stray(move |lease| tx.send(lease).expect("the test listens"));
        h.take("t", "q")
            .expect("parked")
            .deliver(lease())
            .expect("waiting");
        assert!(p.leave().is_some());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_lease_for_a_claimer_gone_comes_back() {
        let h = Handoffs::new();
        let p = h.park(&params("t", &["q"]));
        let taken = h.take("t", "q").expect("parked");
        drop(p);
        let sent = lease();
        assert_eq!(taken.deliver(sent.clone()), Err(Box::new(sent)));
    }
}
