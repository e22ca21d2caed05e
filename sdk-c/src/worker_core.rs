//! What a worker handle and its job handles share: the session, the runtime it runs on, and
//! the queue of cancellation events. Jobs keep it alive past `lh_worker_free`, so that their
//! heartbeats and outcomes still flow until each job is freed.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use leasehold::WorkerSession;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::mem::CText;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct EventState {
    queue: VecDeque<u64>,
    closed: bool,
}

/// Tags of jobs whose cancellation fired, waiting for `lh_worker_next_cancellation`.
#[derive(Debug, Default)]
pub(crate) struct Events {
    state: Mutex<EventState>,
    ready: Condvar,
}

impl Events {
    /// Queues `tag` unless its job has ended (`done` fired) or the queue is closed.
    pub(crate) fn push_unless_done(&self, tag: u64, done: &CancellationToken) {
        let mut st = lock(&self.state);
        if !st.closed && !done.is_cancelled() {
            st.queue.push_back(tag);
            self.ready.notify_one();
        }
    }

    /// Marks the job ended (`done`) and forgets an event of it not read yet, atomically with
    /// respect to [`Events::push_unless_done`]: once this returns, `tag` is never reported.
    pub(crate) fn finish(&self, tag: u64, done: &CancellationToken) {
        let mut st = lock(&self.state);
        done.cancel();
        st.queue.retain(|t| *t != tag);
    }

    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
    }

    /// The next tag, `Ok(None)` on timeout, `Err` once closed and empty.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<Option<u64>, ()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = lock(&self.state);
        loop {
            if let Some(tag) = st.queue.pop_front() {
                return Ok(Some(tag));
            }
            if st.closed {
                return Err(());
            }
            st = match deadline {
                None => self.ready.wait(st).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    self.ready
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// What a worker handle and its jobs share. Dropped (runtime stopped) when the worker handle
/// and every job handle are freed.
#[derive(Debug)]
pub(crate) struct WorkerCore {
    pub(crate) session: ManuallyDrop<WorkerSession>,
    pub(crate) events: Option<Arc<Events>>,
    pub(crate) next_tag: AtomicU64,
    pub(crate) worker_id: CText,
    pub(crate) rt: ManuallyDrop<Runtime>,
}

impl WorkerCore {
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.rt
    }

    pub(crate) fn next_tag(&self) -> u64 {
        self.next_tag.fetch_add(1, Ordering::Relaxed)
    }
}

impl Drop for WorkerCore {
    fn drop(&mut self) {
        if let Some(events) = &self.events {
            events.close();
        }
        // SAFETY: dropped exactly once, here; neither field is used afterwards. The session goes
        // first (it stops its tasks), then the runtime that ran them.
        unsafe {
            ManuallyDrop::drop(&mut self.session);
            let rt = ManuallyDrop::take(&mut self.rt);
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_deliver_in_order_then_close() {
        let e = Events::default();
        let live = CancellationToken::new();
        let ended = CancellationToken::new();
        e.push_unless_done(1, &live);
        e.push_unless_done(2, &live);
        e.push_unless_done(9, &ended);
        e.finish(9, &ended);
        e.push_unless_done(9, &ended);
        assert_eq!(e.wait(Some(Duration::ZERO)), Ok(Some(1)));
        assert_eq!(e.wait(None), Ok(Some(2)));
        assert_eq!(e.wait(Some(Duration::from_millis(5))), Ok(None));
        e.push_unless_done(3, &live);
        e.close();
        assert_eq!(e.wait(None), Ok(Some(3)));
        assert_eq!(e.wait(None), Err(()));
        e.push_unless_done(4, &live);
        assert_eq!(e.wait(None), Err(()));
    }
}
