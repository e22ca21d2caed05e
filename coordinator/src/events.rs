//! The live event feed. One tailer per process reads the settled end of the ledger every
//! 100 ms and fans new events out over a bounded broadcast channel. A listener first catches
//! up from the database, then follows the broadcast; if it falls more than the channel's
//! capacity behind, it is told so with a `resync` marker and catches up from the database again
//! — a slow consumer costs only itself, never the coordinator or other listeners.

use std::sync::Arc;
use std::time::Duration;

use leasehold_proto::Event;
use tokio::sync::{broadcast, watch};

use crate::store::{EventFilter, Store, StoreResult};

/// Events buffered per listener before it must resync from the database.
pub const LISTENER_BUFFER: usize = 1024;
/// Page size for catch-up reads.
const PAGE: u32 = 500;
/// Ids the tailer steps over per tick while nobody listens.
const SKIP_PAGE: u32 = 10_000;
/// How far behind the ledger's settled end the tailer starts.
const STARTUP_OVERLAP: i64 = 1000;

/// Fan-out of new ledger events.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Event>>,
    /// True once the tailer knows where it starts; listeners wait for it (see [`Listener`]).
    started: watch::Receiver<bool>,
}

impl EventHub {
    /// Starts the tailer over `store` at the ledger's current end.
    pub fn start(store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) -> Self {
        let (tx, _) = broadcast::channel(LISTENER_BUFFER);
        let (started_tx, started) = watch::channel(false);
        let hub = Self {
            tx: tx.clone(),
            started,
        };
        tokio::spawn(async move {
            let mut last: Option<i64> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                // The cursor keeps moving even while nobody listens, so a listener's catch-up
                // read and this tail always overlap (duplicates are dropped by id), never gap.
                let after = match last {
                    Some(id) => id,
                    // Start a little behind the settled end: a transaction that had taken a lower
                    // id but not yet committed at start-up is still published (listeners drop
                    // what they already have by id).
                    None => match store.last_event_id().await {
                        Ok(id) => {
                            let id = id.saturating_sub(STARTUP_OVERLAP).max(0);
                            last = Some(id);
                            let _ = started_tx.send(true);
                            id
                        }
                        Err(err) => {
                            tracing::debug!(%err, "event tailer cannot read the ledger");
                            continue;
                        }
                    },
                };
                if tx.receiver_count() == 0 {
                    // Nobody listens: move the cursor as a settled read would, without reading
                    // the events (reading and decoding every event cost ~50 µs of coordinator
                    // CPU per job under load). The count is checked again after the read: a
                    // listener that subscribed before the second check is served from `after`
                    // below; one that subscribes later catches up from the database past `end`
                    // itself, so the tail and its catch-up still overlap.
                    match store.settled_event_end(after, SKIP_PAGE).await {
                        Ok(end) if tx.receiver_count() == 0 => {
                            last = Some(after.max(end));
                            continue;
                        }
                        Ok(_) => {}
                        Err(err) => {
                            tracing::debug!(%err, "event tailer cannot read the ledger");
                            continue;
                        }
                    }
                }
                match store
                    .list_events(&EventFilter {
                        after,
                        limit: PAGE,
                        settled: true,
                        ..Default::default()
                    })
                    .await
                {
                    Ok(events) => {
                        for event in events {
                            last = Some(event.id);
                            let _ = tx.send(Arc::new(event));
                        }
                    }
                    Err(err) => tracing::debug!(%err, "event tailer cannot read the ledger"),
                }
            }
        });
        hub
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Waits until the tailer has fixed its starting point. A listener that went live before
    /// that could miss events committed between its catch-up read and the tailer's start.
    pub async fn started(&self) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|s| *s).await;
    }
}

/// Whether `event` passes `filter` (tenant, run, job, queue, types; ids are checked apart).
pub fn matches(filter: &EventFilter, event: &Event) -> bool {
    filter.tenant.as_ref().is_none_or(|t| *t == event.tenant)
        && filter.run_id.is_none_or(|r| event.run_id == Some(r))
        && filter.job_id.is_none_or(|j| event.job_id == Some(j))
        && filter
            .queue
            .as_ref()
            .is_none_or(|q| event.queue.as_ref() == Some(q))
        && (filter.types.is_empty() || filter.types.contains(&event.kind))
}

/// What a listener gets next.
#[derive(Debug)]
pub enum Delivery {
    /// An event (in id order, never repeated).
    Event(Arc<Event>),
    /// The listener fell behind the live buffer; events continue from the database.
    Resync {
        /// Last id delivered before the resync.
        last_id: i64,
    },
}

/// One listener: catch-up from the database, then the live broadcast, with resync on lag.
pub struct Listener {
    store: Arc<dyn Store>,
    hub: EventHub,
    filter: EventFilter,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    backlog: std::collections::VecDeque<Arc<Event>>,
    resync_pending: bool,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("after", &self.filter.after)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Events matching `filter`, strictly after `filter.after`.
    pub fn new(store: Arc<dyn Store>, hub: EventHub, mut filter: EventFilter) -> Self {
        filter.limit = PAGE;
        filter.settled = true;
        Self {
            store,
            hub,
            filter,
            live: None,
            backlog: Default::default(),
            resync_pending: false,
        }
    }

    /// Reads the first page of the catch-up now, so that a stream answers 503 before it starts
    /// when the database is unreachable, as every other route does.
    pub async fn open(&mut self) -> StoreResult<()> {
        if self.live.is_none() && self.backlog.is_empty() {
            self.catch_up().await?;
        }
        Ok(())
    }

    /// One page from the database; goes live once a page is not full.
    async fn catch_up(&mut self) -> StoreResult<()> {
        self.hub.started().await;
        // Subscribe before reading, so nothing published meanwhile is lost; duplicates are
        // dropped by id in `next`.
        let rx = self.hub.subscribe();
        let page = self.store.list_events(&self.filter).await?;
        let full = page.len() == PAGE as usize;
        self.backlog.extend(page.into_iter().map(Arc::new));
        if !full {
            self.live = Some(rx);
        }
        Ok(())
    }

    /// The next delivery; waits for new events. Errors only when the database fails during
    /// catch-up (the caller may retry).
    pub async fn next(&mut self) -> StoreResult<Delivery> {
        loop {
            if self.resync_pending {
                self.resync_pending = false;
                return Ok(Delivery::Resync {
                    last_id: self.filter.after,
                });
            }
            if let Some(e) = self.backlog.pop_front() {
                self.filter.after = e.id;
                return Ok(Delivery::Event(e));
            }
            if self.live.is_none() {
                self.catch_up().await?;
                continue;
            }
            let Some(rx) = self.live.as_mut() else {
                continue;
            };
            match rx.recv().await {
                Ok(e) if e.id > self.filter.after && matches(&self.filter, &e) => {
                    self.filter.after = e.id;
                    return Ok(Delivery::Event(e));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.live = None;
                    self.resync_pending = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.live = None;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The last id delivered.
    pub fn last_id(&self) -> i64 {
        self.filter.after
    }
}
