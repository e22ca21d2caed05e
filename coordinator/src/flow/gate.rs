//! The gate a gated claim passes its candidates through, in claim order: a candidate is leased
//! when every bucket it falls in has room (a token of each rate limit, a free slot of each
//! concurrency limit), and then takes that room; otherwise it stays queued and the gate notes
//! which limit held it back and when a token returns. Pure: the stores load what it needs
//! (the buckets' levels, the leases held) inside the claim's transaction and save what it
//! changed.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::Rule;
use super::adaptive;
use super::blackout;
use super::breaker::{self, Verdict};
use super::keys::LimitKey;

/// A bucket: a limit's key and the bucket within it.
pub type BucketId = (String, String);

/// A bucket's state as stored: its token bucket's level (rate limits) and its circuit
/// breaker (limits with one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    /// Tokens left at `refilled_at`.
    pub tokens: f64,
    /// When it was last refilled.
    pub refilled_at: DateTime<Utc>,
    /// Consecutive counted failures.
    pub failures: u32,
    /// When the breaker opened; `None` while closed.
    pub opened_at: Option<DateTime<Utc>>,
    /// When the current half-open probe was leased.
    pub probe_at: Option<DateTime<Utc>>,
    /// The fraction of the configured rate it ran at when last adjusted (adaptive limits).
    pub factor: f64,
    /// When a throttle last adjusted it; `None` at the configured rate.
    pub adjusted_at: Option<DateTime<Utc>>,
}

impl Level {
    /// A bucket never met: full (`burst` tokens) and closed.
    pub fn fresh(burst: f64, now: DateTime<Utc>) -> Self {
        Self {
            tokens: burst,
            refilled_at: now,
            failures: 0,
            opened_at: None,
            probe_at: None,
            factor: 1.0,
            adjusted_at: None,
        }
    }
}

/// Why a claim leased fewer jobs than it found ready.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    /// The limits (keys) that held a candidate back, sorted.
    pub limits: Vec<String>,
    /// The earliest a rate limit that held a candidate back has a token again.
    pub retry_at: Option<DateTime<Utc>>,
    /// Whether a concurrency limit held a candidate back (a slot frees when a lease ends).
    pub by_concurrency: bool,
}

impl Held {
    /// What a shared pool's claim held back: `prev` (of the tenants claimed before) and `held`
    /// (of `tenant`), its limits named `<tenant>/<limit>`, the earliest retry.
    pub fn merge(prev: Option<Held>, held: Held, tenant: &str) -> Held {
        let mut merged = prev.unwrap_or_default();
        merged
            .limits
            .extend(held.limits.iter().map(|l| format!("{tenant}/{l}")));
        merged.limits.sort();
        merged.retry_at = match (merged.retry_at, held.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        merged.by_concurrency |= held.by_concurrency;
        merged
    }
}

/// One claim's pass over its candidates.
#[derive(Debug)]
pub struct Gate<'r> {
    now: DateTime<Utc>,
    rules: &'r [Rule],
    /// Levels of rate buckets, refilled to `now` on first use.
    levels: HashMap<BucketId, Level>,
    /// Rate buckets whose level this claim changed.
    touched: BTreeSet<BucketId>,
    /// Leases held per concurrency bucket (those granted by this claim included).
    leased: HashMap<BucketId, u64>,
    held: BTreeSet<String>,
    retry_at: Option<DateTime<Utc>>,
    by_concurrency: bool,
    /// The leases the claim asks for.
    batch: u32,
}

impl<'r> Gate<'r> {
    /// A gate for `rules` (a tenant's limits) at `now`.
    pub fn new(now: DateTime<Utc>, rules: &'r [Rule]) -> Self {
        Self {
            now,
            rules,
            levels: HashMap::new(),
            touched: BTreeSet::new(),
            leased: HashMap::new(),
            held: BTreeSet::new(),
            retry_at: None,
            by_concurrency: false,
            batch: 1,
        }
    }

    /// The gate of a claim that asks for `max_jobs` leases: a rate limit that holds it back
    /// names as the time to ask again when its bucket holds that many tokens (at most its
    /// burst), not the next single token, so a throttled claimer wakes for a batch instead of
    /// claiming one job at a time (W8 on PostgreSQL: 587 leases/s of 2000, a claim per token).
    pub fn with_batch(mut self, max_jobs: u32) -> Self {
        self.batch = max_jobs.max(1);
        self
    }

    /// Whether some limit counts leases held (the store must then pass every leased job of the
    /// tenant to [`Gate::count_lease`] first).
    pub fn counts_leases(&self) -> bool {
        self.rules.iter().any(|r| r.concurrency.is_some())
    }

    /// Counts a lease held by a job with `keys` (see `flow::keys::job_keys`).
    pub fn count_lease(&mut self, keys: &[String]) {
        for rule in self.rules.iter().filter(|r| r.concurrency.is_some()) {
            for bucket in rule.matcher.buckets(keys) {
                *self
                    .leased
                    .entry((rule.key.clone(), bucket.to_owned()))
                    .or_default() += 1;
            }
        }
    }

    /// Stops counting the lease of a job with `keys`: a claim is taking over its expired lease
    /// (the slot it held is the one the job is leased in again, or freed when it goes `dead`).
    pub fn uncount_lease(&mut self, keys: &[String]) {
        for rule in self.rules.iter().filter(|r| r.concurrency.is_some()) {
            for bucket in rule.matcher.buckets(keys) {
                if let Some(n) = self.leased.get_mut(&(rule.key.clone(), bucket.to_owned())) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// The buckets with a stored state (rate limits and breakers) the jobs with these keys fall
    /// in: the states the store loads (with [`Gate::load_level`]) before [`Gate::admit`].
    pub fn stateful_buckets<'k>(
        &self,
        jobs: impl IntoIterator<Item = &'k [String]>,
    ) -> Vec<BucketId> {
        let mut out = BTreeSet::new();
        for keys in jobs {
            for rule in self
                .rules
                .iter()
                .filter(|r| r.rate.is_some() || r.breaker.is_some())
            {
                for bucket in rule.matcher.buckets(keys) {
                    out.insert((rule.key.clone(), bucket.to_owned()));
                }
            }
        }
        out.into_iter().collect()
    }

    /// A bucket's stored level (a bucket never loaded starts full).
    pub fn load_level(&mut self, bucket: BucketId, level: Level) {
        self.levels.insert(bucket, level);
    }

    /// The level of `bucket` of `rule` refilled to now.
    fn level(&mut self, rule: &Rule, bucket: &str) -> &mut Level {
        let burst = f64::from(rule.burst.unwrap_or(1));
        let now = self.now;
        let id = (rule.key.clone(), bucket.to_owned());
        let fresh = !self.touched.contains(&id);
        let level = self
            .levels
            .entry(id)
            .or_insert_with(|| Level::fresh(burst, now));
        if fresh {
            *level = refilled(rule, *level, now);
        }
        level
    }

    /// The leases this claim may grant at most, whatever its candidates: the room left in the
    /// limits that cover every job of `queues` (`*`, or the queue's own `queue:` key when the
    /// claim names one queue), from the states loaded so far; `None` when no limit covers them
    /// all. A gated claim reads no more candidates than this allows (plus some slack for
    /// candidates other limits hold back).
    pub fn room_for(&self, queues: &[String]) -> Option<u64> {
        let mut room: Option<u64> = None;
        for rule in self.rules {
            let Some(bucket) = covering_bucket(rule, queues) else {
                continue;
            };
            let id = (rule.key.clone(), bucket);
            let burst = f64::from(rule.burst.unwrap_or(1));
            let level = match self.levels.get(&id) {
                Some(level) if !self.touched.contains(&id) => refilled(rule, *level, self.now),
                Some(level) => *level,
                None => Level::fresh(burst, self.now),
            };
            let mut r = u64::MAX;
            if blackout::on_until(&rule.blackouts, self.now).is_some() {
                r = 0;
            }
            if let Some(max) = rule.concurrency {
                let held = self.leased.get(&id).copied().unwrap_or(0);
                r = r.min(u64::from(max).saturating_sub(held));
            }
            if rule.rate.is_some() {
                r = r.min(level.tokens.max(0.0).floor() as u64);
            }
            if rule.breaker.is_some()
                && let Verdict::Hold { .. } = breaker::verdict(rule, &level, self.now)
            {
                r = 0;
            }
            room = Some(room.map_or(r, |x| x.min(r)));
        }
        room
    }

    /// The stateful buckets of the limits that cover every job of `queues` (see
    /// [`Gate::room_for`]): the states to load before asking it.
    pub fn covering_buckets(&self, queues: &[String]) -> Vec<BucketId> {
        self.rules
            .iter()
            .filter(|r| r.rate.is_some() || r.breaker.is_some())
            .filter_map(|r| covering_bucket(r, queues).map(|b| (r.key.clone(), b)))
            .collect()
    }

    /// The tokens in `bucket` of `rule` now (refilled; nothing drawn), for operators.
    pub fn tokens(&mut self, rule: &Rule, bucket: &str) -> f64 {
        let tokens = self.level(rule, bucket).tokens;
        self.touched.insert((rule.key.clone(), bucket.to_owned()));
        tokens
    }

    /// Whether a job with `keys` may be leased now; if so it takes its room in every bucket.
    /// If not, the limits that held it back are noted.
    pub fn admit(&mut self, keys: &[String]) -> bool {
        let rules = self.rules;
        let mut blocked = false;
        for rule in rules {
            if !rule.blackouts.is_empty()
                && !rule.matcher.buckets(keys).is_empty()
                && let Some(until) = blackout::on_until(&rule.blackouts, self.now)
            {
                blocked = true;
                self.held.insert(rule.key.clone());
                self.retry_at = Some(self.retry_at.map_or(until, |t| t.min(until)));
            }
            for bucket in rule.matcher.buckets(keys) {
                if let Some(max) = rule.concurrency {
                    let held = self
                        .leased
                        .get(&(rule.key.clone(), bucket.to_owned()))
                        .copied()
                        .unwrap_or(0);
                    if held >= u64::from(max) {
                        blocked = true;
                        self.by_concurrency = true;
                        self.held.insert(rule.key.clone());
                    }
                }
                if rule.breaker.is_some() {
                    let now = self.now;
                    let state = *self.level(rule, bucket);
                    self.touched.insert((rule.key.clone(), bucket.to_owned()));
                    if let Verdict::Hold { until } = breaker::verdict(rule, &state, now) {
                        blocked = true;
                        self.held.insert(rule.key.clone());
                        self.retry_at = Some(self.retry_at.map_or(until, |t| t.min(until)));
                    }
                }
                if let Some(rate) = rule.rate {
                    let now = self.now;
                    let tokens = self.level(rule, bucket).tokens;
                    self.touched.insert((rule.key.clone(), bucket.to_owned()));
                    if tokens < 1.0 {
                        blocked = true;
                        self.held.insert(rule.key.clone());
                        let wanted = f64::from(self.batch.min(rule.burst.unwrap_or(1)).max(1));
                        let wait = (wanted - tokens) / rate;
                        let at = now + chrono::Duration::microseconds((wait * 1e6).ceil() as i64);
                        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
                    }
                }
            }
        }
        if blocked {
            return false;
        }
        for rule in rules {
            for bucket in rule.matcher.buckets(keys) {
                if rule.concurrency.is_some() {
                    *self
                        .leased
                        .entry((rule.key.clone(), bucket.to_owned()))
                        .or_default() += 1;
                }
                if rule.rate.is_some() {
                    self.level(rule, bucket).tokens -= 1.0;
                }
                if rule.breaker.is_some() {
                    let now = self.now;
                    let state = self.level(rule, bucket);
                    if let Verdict::Probe = breaker::verdict(rule, state, now) {
                        // The one lease a half-open breaker lets through until it reports.
                        state.probe_at = Some(now);
                    }
                    self.touched.insert((rule.key.clone(), bucket.to_owned()));
                }
            }
        }
        true
    }

    /// What held candidates back, if anything did.
    pub fn held(&self) -> Option<Held> {
        (!self.held.is_empty()).then(|| Held {
            limits: self.held.iter().cloned().collect(),
            retry_at: self.retry_at,
            by_concurrency: self.by_concurrency,
        })
    }

    /// The rate buckets this claim refilled or drew from, with their new levels: to save.
    pub fn changed_levels(&self) -> Vec<(BucketId, Level)> {
        self.touched
            .iter()
            .filter_map(|id| self.levels.get(id).map(|level| (id.clone(), *level)))
            .collect()
    }
}

/// The bucket of `rule` every job of `queues` falls in, if there is one.
fn covering_bucket(rule: &Rule, queues: &[String]) -> Option<String> {
    match &rule.matcher {
        LimitKey::All => Some("*".to_owned()),
        LimitKey::Exact(key) if queues.len() == 1 && *key == format!("queue:{}", queues[0]) => {
            Some(key.clone())
        }
        LimitKey::Prefix(p) if p == "queue:" && queues.len() == 1 => {
            Some(format!("queue:{}", queues[0]))
        }
        _ => None,
    }
}

/// `level` of `rule` refilled to `now`. Time only moves a level forward: a claim whose `now`
/// was read before it waited for the limits' lock (or a replica whose clock lags) adds nothing
/// and leaves the refill time where it was, so no interval is ever credited twice. A limit
/// lowered since keeps at most its new burst.
fn refilled(rule: &Rule, mut level: Level, now: DateTime<Utc>) -> Level {
    let (rate, burst) = (rule.rate.unwrap_or(0.0), f64::from(rule.burst.unwrap_or(1)));
    if now > level.refilled_at {
        let secs = (now - level.refilled_at)
            .num_microseconds()
            .unwrap_or(i64::MAX) as f64
            / 1e6;
        let factor = if rule.adaptive {
            adaptive::factor(&level, now)
        } else {
            1.0
        };
        level.tokens += rate * factor * secs;
        level.refilled_at = now;
    }
    level.tokens = level.tokens.min(burst);
    level
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use leasehold_proto::LimitSpec;

    use super::*;
    use crate::flow::keys::job_keys;

    fn rule(key: &str, rate: Option<f64>, burst: Option<u32>, concurrency: Option<u32>) -> Rule {
        Rule::new(
            key,
            &LimitSpec {
                rate,
                burst,
                concurrency,
                breaker: None,
                blackouts: Vec::new(),
                adaptive: false,
            },
        )
        .expect("present")
    }

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + ms)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn a_rate_limit_spends_its_burst_then_refills_at_its_rate() {
        let rules = [rule("queue:mail", Some(2.0), Some(3), None)];
        let mail = job_keys("mail", "send", &[]);
        let other = job_keys("other", "send", &[]);
        let mut gate = Gate::new(t(0), &rules);
        let granted = (0..5).filter(|_| gate.admit(&mail)).count();
        assert_eq!(granted, 3, "the bucket starts full: burst 3");
        assert!(gate.admit(&other), "other queues are not limited");
        let held = gate.held().expect("present");
        assert_eq!(held.limits, ["queue:mail"]);
        assert_eq!(held.retry_at, Some(t(500)), "one token every 500 ms");
        assert!(!held.by_concurrency);
        let saved = gate.changed_levels();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].1.tokens, 0.0);

        // 1.25 s later: 2.5 tokens, two leases, the next token at 1.5 s.
        let mut gate = Gate::new(t(1250), &rules);
        gate.load_level(saved[0].0.clone(), saved[0].1);
        assert_eq!((0..5).filter(|_| gate.admit(&mail)).count(), 2);
        assert_eq!(gate.held().expect("present").retry_at, Some(t(1500)));
        // Long idle: never more than the burst.
        let mut gate = Gate::new(t(60_000), &rules);
        gate.load_level(saved[0].0.clone(), saved[0].1);
        assert_eq!((0..10).filter(|_| gate.admit(&mail)).count(), 3);
    }

    #[test]
    fn a_claim_that_read_its_time_before_another_spent_credits_nothing_twice() {
        let rules = [rule("*", Some(10.0), Some(1), None)];
        let keys = job_keys("q", "k", &[]);
        // The later claim committed first, at 1 s.
        let stored = Level {
            tokens: 0.0,
            ..Level::fresh(1.0, t(1000))
        };
        let mut gate = Gate::new(t(950), &rules);
        gate.load_level(("*".into(), "*".into()), stored);
        assert!(!gate.admit(&keys), "no token: time did not move forward");
        assert_eq!(
            gate.changed_levels()[0].1,
            stored,
            "the refill time stays at 1 s"
        );
    }

    #[test]
    fn a_throttled_claim_is_told_when_its_batch_is_ready() {
        let rules = [rule("queue:q", Some(100.0), Some(50), None)];
        let keys = job_keys("q", "k", &[]);
        let mut gate = Gate::new(t(0), &rules).with_batch(20);
        assert_eq!((0..60).filter(|_| gate.admit(&keys)).count(), 50);
        assert_eq!(
            gate.held().expect("held").retry_at,
            Some(t(200)),
            "20 tokens at 100/s"
        );
        let mut gate = Gate::new(t(0), &rules).with_batch(500);
        assert_eq!((0..60).filter(|_| gate.admit(&keys)).count(), 50);
        assert_eq!(
            gate.held().expect("held").retry_at,
            Some(t(500)),
            "at most the burst"
        );
    }

    #[test]
    fn the_room_of_limits_covering_a_whole_claim_bounds_it() {
        let rules = [
            rule("queue:w8", Some(10.0), Some(5), None),
            rule("*", None, None, Some(3)),
            rule("host:*", Some(1.0), Some(1), None),
        ];
        let q = |name: &str| vec![name.to_owned()];
        let mut gate = Gate::new(t(0), &rules);
        assert_eq!(
            gate.room_for(&q("w8")),
            Some(3),
            "the concurrency of `*` is the least"
        );
        gate.count_lease(&job_keys("w8", "k", &[]));
        assert_eq!(gate.room_for(&q("w8")), Some(2));
        let only_rate = [rule("queue:w8", Some(10.0), Some(5), None)];
        let mut gate = Gate::new(t(0), &only_rate);
        assert_eq!(gate.room_for(&q("w8")), Some(5), "a full bucket");
        assert_eq!(
            gate.room_for(&q("other")),
            None,
            "no limit covers that queue"
        );
        assert_eq!(gate.room_for(&["w8".to_owned(), "x".to_owned()]), None);
        for _ in 0..5 {
            assert!(gate.admit(&job_keys("w8", "k", &[])));
        }
        assert_eq!(gate.room_for(&q("w8")), Some(0));
    }

    #[test]
    fn a_concurrency_limit_counts_held_leases_and_those_it_grants() {
        let rules = [rule("host:*", None, None, Some(2))];
        let a = job_keys("q", "k", &["host:a".into()]);
        let b = job_keys("q", "k", &["host:b".into()]);
        let mut gate = Gate::new(t(0), &rules);
        assert!(gate.counts_leases());
        gate.count_lease(&a);
        assert!(gate.admit(&a));
        assert!(!gate.admit(&a), "host:a holds 2 now");
        assert!(
            gate.admit(&b) && gate.admit(&b) && !gate.admit(&b),
            "host:b has its own"
        );
        let held = gate.held().expect("present");
        assert_eq!(held.limits, ["host:*"]);
        assert_eq!(held.retry_at, None);
        assert!(held.by_concurrency);
        assert!(gate.changed_levels().is_empty());
    }

    #[test]
    fn a_job_held_by_one_limit_takes_nothing_from_the_others() {
        let rules = [
            rule("*", Some(10.0), Some(10), None),
            rule("kind:scrape", None, None, Some(1)),
        ];
        let scrape = job_keys("q", "scrape", &[]);
        let mail = job_keys("q", "mail", &[]);
        let mut gate = Gate::new(t(0), &rules);
        assert!(gate.admit(&scrape));
        assert!(!gate.admit(&scrape), "one scrape at a time");
        assert!(gate.admit(&mail));
        let levels = gate.changed_levels();
        assert_eq!(levels[0].1.tokens, 8.0, "the held scrape spent no token");
        assert_eq!(
            gate.stateful_buckets([scrape.as_slice(), mail.as_slice()]),
            [("*".to_owned(), "*".to_owned())]
        );
    }
}
