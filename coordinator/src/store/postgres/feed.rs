//! Where the live event feed may safely read up to on PostgreSQL.
//!
//! Event ids come from a sequence when the event is inserted, not when its transaction commits:
//! a transaction may take id 3, another id 4 and commit first, so for a while 4 is visible and 3
//! is not. A reader that delivered 4 and resumed "after 4" would never see 3. (Gating on the
//! writing transaction's id does not help: a transaction takes its xid at its first write and
//! its event id later, so event ids do not follow xids.)
//!
//! The rule here is exact: the feed reads ids in order and stops at the first **hole** (an id
//! not visible while a higher one is). A hole is either an event still in flight or one that
//! never will be (its transaction rolled back: a sequence value is never given back). It is
//! decided by watching the transactions themselves:
//!
//! 1. When a hole is first seen, nothing is decided. A transaction takes its id while building
//!    the row and its xid when writing it, microseconds later; after [`MARGIN`] the holder of
//!    any id below the highest visible one has its xid.
//! 2. Then the highest id visible is noted, and after that read a fresh transaction id `X` is
//!    taken (`pg_current_xact_id()`, which hands out the next one). Every transaction that could
//!    still commit one of the missing ids below the noted id took its xid before `X`. (A
//!    snapshot's `xmax` does not do: it is the latest *completed* xid plus one, and running
//!    transactions above it are not listed.)
//! 3. Once no transaction older than `X` runs any more (`pg_snapshot_xmin` of a later read has
//!    reached it), the ids still missing below the noted id will never appear: the feed steps
//!    over them. Ids that did commit in the meantime are visible in that same read.
//!
//! A long transaction that wrote an event therefore holds the live feed back until it ends (it
//! never loses an event); a rolled-back one delays it by about [`MARGIN`] plus a tick.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Row;

use super::PostgresStore;
use crate::store::StoreResult;

/// How long a hole is left alone before its watch starts (step 1 above).
pub(super) const MARGIN: Duration = Duration::from_millis(200);

/// Ids read per statement while looking for the settled end.
const PAGE: i64 = 10_000;

/// Most ids one call walks (a catch-up from far behind goes on in the next call).
const MAX_WALK: i64 = 1_000_000;

/// The hole the feed waits at, and what is known about it (steps 1 and 2).
#[derive(Debug, Default)]
pub(super) struct HoleWatch {
    /// The first missing id, and when it was first seen missing.
    seen: Option<(i64, Instant)>,
    /// The highest id visible when the watch started, and the xid taken after that read.
    watch: Option<(i64, i64)>,
}

/// One page of ids after a cursor, with the oldest transaction running when they were read.
struct Page {
    ids: Vec<i64>,
    xmin: i64,
}

/// What a walk found.
#[derive(Debug, PartialEq, Eq)]
struct Walked {
    /// The settled end.
    end: i64,
    /// Whether it stopped at a hole that may still fill.
    at_hole: bool,
    /// The watch of that hole may start, up to this id (step 2): take an xid and call
    /// [`HoleWatch::start`].
    watch_upto: Option<i64>,
}

impl HoleWatch {
    /// Walks `page` (ids sorted, all above `end`): the new settled end is the last id before
    /// the first hole that may still fill. Updates what is known of that hole (module docs).
    fn walk(&mut self, mut end: i64, page: &Page, now: Instant) -> Walked {
        // Ids still missing below this bound will never appear (step 3).
        let permanent_below = match self.watch {
            Some((upto, xid)) if page.xmin >= xid => upto,
            _ => i64::MIN,
        };
        for &id in &page.ids {
            if id == end + 1 || id <= permanent_below {
                end = id;
                continue;
            }
            let hole = end + 1;
            let mut watch_upto = None;
            match self.seen {
                Some((seen, at)) if seen == hole => {
                    let stale = matches!(self.watch, Some((upto, _)) if upto <= hole);
                    if (self.watch.is_none() || stale) && now.duration_since(at) >= MARGIN {
                        watch_upto = page.ids.last().copied();
                    }
                }
                _ => {
                    self.seen = Some((hole, now));
                    if matches!(self.watch, Some((upto, _)) if upto <= hole) {
                        self.watch = None;
                    }
                }
            }
            return Walked {
                end,
                at_hole: true,
                watch_upto,
            };
        }
        Walked {
            end,
            at_hole: false,
            watch_upto: None,
        }
    }

    /// Starts the watch (step 2): ids missing below `upto` are decided once every transaction
    /// older than `xid` has ended.
    fn start(&mut self, upto: i64, xid: i64) {
        let stale = matches!(self.watch, Some((u, _)) if u < upto);
        if self.watch.is_none() || stale {
            self.watch = Some((upto, xid));
        }
    }
}

/// The shared state of one store's feed (all readers of a replica go through it): the hole
/// watch, and the settled watermark — every id up to it is visible or will never exist — so
/// that a reader catching up from far behind starts past the holes already decided instead of
/// deciding them again (and two readers never fight over the one watch).
#[derive(Debug)]
pub(super) struct Feed {
    watch: Mutex<HoleWatch>,
    /// -1 until the first read fixes it.
    settled: AtomicI64,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            watch: Mutex::default(),
            settled: AtomicI64::new(-1),
        }
    }
}

impl PostgresStore {
    fn lock_watch(&self) -> std::sync::MutexGuard<'_, HoleWatch> {
        self.feed
            .watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn id_page(&self, after: i64, limit: i64) -> StoreResult<Page> {
        // One statement: the ids and the snapshot bounds come from the same snapshot.
        let row = sqlx::query(
            "SELECT ARRAY(SELECT id FROM events WHERE id > $1 ORDER BY id LIMIT $2) AS ids, \
                    pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin",
        )
        .bind(after)
        .bind(limit)
        .fetch_one(self.pool())
        .await?;
        Ok(Page {
            ids: row.try_get("ids")?,
            xmin: row.try_get("xmin")?,
        })
    }

    /// The highest id up to which every event after `after` is visible or will never exist, at
    /// most `limit` ids further (`limit` 0: up to [`MAX_WALK`]).
    pub(super) async fn settled_end(&self, after: i64, limit: i64) -> StoreResult<i64> {
        let mut watermark = self.feed.settled.load(Ordering::Acquire);
        if watermark < 0 {
            watermark = self.last_settled_event_id().await?;
        }
        // Everything up to the watermark is decided: start there when behind it, and move it
        // only from a walk that started inside the decided prefix.
        let mut cap = if limit > 0 { limit } else { MAX_WALK };
        if after < watermark && limit > 0 {
            // Within the decided prefix, `limit` ids further is arithmetic: ids are unique, so
            // that is at most `limit` events too. (Reading the ids to count them shipped up to
            // `limit` of them per call: 30 ms of the database per stats roll-up step.)
            if watermark - after >= limit {
                return Ok(after + limit);
            }
            cap = limit - (watermark - after);
        }
        let start = after.max(watermark);
        let end = self.walk_from(start, cap).await?;
        if after <= watermark {
            self.feed.settled.fetch_max(end, Ordering::AcqRel);
        }
        Ok(end)
    }

    async fn walk_from(&self, start: i64, cap: i64) -> StoreResult<i64> {
        let mut end = start;
        loop {
            let want = PAGE.min(cap - (end - start)).max(1);
            let page = self.id_page(end, want).await?;
            let full = page.ids.len() as i64 == want;
            let walked = self.lock_watch().walk(end, &page, Instant::now());
            end = walked.end;
            if let Some(upto) = walked.watch_upto {
                // After the read that saw `upto`: a fresh xid bounds every possible writer.
                let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
                    .fetch_one(self.pool())
                    .await?;
                self.lock_watch().start(upto, xid);
            }
            if walked.at_hole || !full || end - start >= cap {
                return Ok(end);
            }
        }
    }

    /// The newest id below which every event is settled, and the watermark's first value: the
    /// settled end of the last 1000 ids (a transaction that took an id further back and is still
    /// open when the coordinator starts is not waited for).
    pub(super) async fn last_settled_event_id(&self) -> StoreResult<i64> {
        let max: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM events")
            .fetch_one(self.pool())
            .await?;
        let from = max.map_or(0, |m| (m - 1000).max(0));
        let known = self.feed.settled.load(Ordering::Acquire);
        let end = self.walk_from(from.max(known), MAX_WALK).await?;
        self.feed.settled.fetch_max(end, Ordering::AcqRel);
        Ok(end.max(known))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[i64], xmin: i64) -> Page {
        Page {
            ids: ids.to_vec(),
            xmin,
        }
    }

    fn walked(end: i64, at_hole: bool, watch_upto: Option<i64>) -> Walked {
        Walked {
            end,
            at_hole,
            watch_upto,
        }
    }

    #[test]
    fn contiguous_ids_settle_and_a_hole_stops_the_walk() {
        let mut w = HoleWatch::default();
        let t = Instant::now();
        assert_eq!(w.walk(0, &page(&[1, 2, 3], 10), t), walked(3, false, None));
        assert_eq!(w.walk(0, &page(&[1, 2, 4], 10), t), walked(2, true, None));
    }

    #[test]
    fn a_hole_is_stepped_over_only_once_its_writers_have_ended() {
        let mut w = HoleWatch::default();
        let t0 = Instant::now();
        // Seen: nothing decided yet, however old the transactions are.
        assert_eq!(w.walk(2, &page(&[4, 5], 100), t0), walked(2, true, None));
        // Within the margin: still nothing.
        assert_eq!(
            w.walk(2, &page(&[4, 5], 120), t0 + MARGIN / 2),
            walked(2, true, None)
        );
        // After the margin: the watch may start, up to the highest id read.
        assert_eq!(
            w.walk(2, &page(&[4, 5, 6], 100), t0 + MARGIN),
            walked(2, true, Some(6))
        );
        w.start(6, 140);
        // Transactions older than 140 still run: wait.
        assert_eq!(
            w.walk(2, &page(&[4, 5, 6], 139), t0 + MARGIN * 2),
            walked(2, true, None)
        );
        // They ended and 3 is still missing: it never comes; the walk goes on.
        assert_eq!(
            w.walk(2, &page(&[4, 5, 6, 7], 140), t0 + MARGIN * 3),
            walked(7, false, None)
        );
    }

    #[test]
    fn a_hole_that_fills_is_read_in_order() {
        let mut w = HoleWatch::default();
        let t0 = Instant::now();
        assert_eq!(w.walk(2, &page(&[4], 100), t0), walked(2, true, None));
        assert_eq!(
            w.walk(2, &page(&[3, 4], 100), t0 + MARGIN),
            walked(4, false, None)
        );
    }

    #[test]
    fn a_watch_covers_only_ids_below_what_was_visible_when_it_started() {
        let mut w = HoleWatch::default();
        let t0 = Instant::now();
        assert_eq!(w.walk(2, &page(&[4], 100), t0), walked(2, true, None));
        assert_eq!(
            w.walk(2, &page(&[4], 100), t0 + MARGIN),
            walked(2, true, Some(4))
        );
        w.start(4, 110);
        // The hole below 4 is decided; a newer hole above it (6) waits for a watch of its own.
        assert_eq!(
            w.walk(2, &page(&[4, 5, 7], 110), t0 + MARGIN),
            walked(5, true, None)
        );
        assert_eq!(
            w.walk(5, &page(&[7], 110), t0 + MARGIN * 2),
            walked(5, true, Some(7))
        );
    }
}
