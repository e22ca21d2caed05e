//! The keys in force, cached: a request is checked against memory, not the database. The cache
//! is reloaded when it is older than [`REFRESH`] (so a key created or revoked on another replica
//! counts within that time; on this one at once), and the reload writes the last-used times
//! gathered since the previous one, so using a key costs no write per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use super::{Grant, Principal, Scopes, digest, token_id};
use crate::store::{KeyRow, Store};

/// How old the cache may grow before a request reloads it.
pub const REFRESH: Duration = Duration::from_secs(2);

/// The answer for a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Who the caller is.
    Allowed(Principal),
    /// Refused (401), with the reason to tell the caller.
    Refused(&'static str),
    /// The keys cannot be read (the database is down and never answered): 503.
    Unavailable,
}

#[derive(Debug)]
struct Entry {
    digest: [u8; 32],
    grant: Grant,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Snapshot {
    keys: HashMap<String, Entry>,
    /// When it was read; `None` until the first read (or after a change on this replica).
    loaded: Option<Instant>,
    /// Whether it was ever read.
    ever: bool,
}

/// The created keys, cached (see the module docs).
pub struct KeyRing {
    store: Arc<dyn Store>,
    snapshot: RwLock<Snapshot>,
    reload: tokio::sync::Mutex<()>,
    used: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeyRing {
    /// A ring over `store`'s keys, read on first use.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            snapshot: RwLock::new(Snapshot::default()),
            reload: tokio::sync::Mutex::new(()),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the cache: the next check reads the keys again (after a create or revoke here).
    pub fn invalidate(&self) {
        write(&self.snapshot).loaded = None;
    }

    /// Whether no key was ever created, as last read (a coordinator without
    /// `ORCHESTRATOR_API_KEY` is then keyless).
    pub fn is_empty(&self) -> bool {
        read(&self.snapshot).keys.is_empty()
    }

    /// Who `presented` is. `root` is the digest of `ORCHESTRATOR_API_KEY`, if set.
    pub async fn verify(
        &self,
        root: Option<&[u8; 32]>,
        presented: Option<&str>,
        now: DateTime<Utc>,
    ) -> Verdict {
        if !self.fresh().await {
            return Verdict::Unavailable;
        }
        let snapshot = read(&self.snapshot);
        if root.is_none() && snapshot.keys.is_empty() {
            return Verdict::Allowed(Principal::Open);
        }
        let Some(presented) = presented else {
            return Verdict::Refused("missing API key");
        };
        let got = digest(presented);
        if root.is_some_and(|r| bool::from(r.ct_eq(&got))) {
            return Verdict::Allowed(Principal::Root);
        }
        let Some(entry) = token_id(presented).and_then(|id| snapshot.keys.get(id)) else {
            return Verdict::Refused("wrong API key");
        };
        if !bool::from(entry.digest.ct_eq(&got)) {
            return Verdict::Refused("wrong API key");
        }
        if entry.revoked {
            return Verdict::Refused("this API key was revoked");
        }
        if entry.expires_at.is_some_and(|at| at <= now) {
            return Verdict::Refused("this API key has expired");
        }
        let grant = entry.grant.clone();
        drop(snapshot);
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(grant.id.clone(), now);
        Verdict::Allowed(Principal::Key(grant))
    }

    /// Reloads the keys when the cache is stale; false when they were never read and cannot be.
    async fn fresh(&self) -> bool {
        let (stale, ever) = {
            let s = read(&self.snapshot);
            (s.loaded.is_none_or(|at| at.elapsed() >= REFRESH), s.ever)
        };
        if !stale {
            return true;
        }
        // One reload at a time; the others keep the cache they have, unless there is none.
        let _reloading = if ever {
            match self.reload.try_lock() {
                Ok(guard) => guard,
                Err(_) => return true,
            }
        } else {
            self.reload.lock().await
        };
        if read(&self.snapshot)
            .loaded
            .is_some_and(|at| at.elapsed() < REFRESH)
        {
            return true;
        }
        self.flush_used().await;
        match self.store.list_keys(None).await {
            Ok(rows) => {
                let keys = rows.into_iter().filter_map(entry).collect();
                *write(&self.snapshot) = Snapshot {
                    keys,
                    loaded: Some(Instant::now()),
                    ever: true,
                };
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the API keys; keeping the cached ones");
                ever
            }
        }
    }

    async fn flush_used(&self) {
        let used: Vec<(String, DateTime<Utc>)> = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .collect();
        if used.is_empty() {
            return;
        }
        if let Err(e) = self.store.touch_keys(&used).await {
            tracing::debug!(error = %e, "cannot record when API keys were last used");
        }
    }
}

fn entry(row: KeyRow) -> Option<(String, Entry)> {
    let digest: [u8; 32] = row.token_sha256.as_slice().try_into().ok()?;
    // A scope this version does not know (written by a newer one) is left out, never widened.
    let scopes = Scopes::parse(
        row.scopes
            .iter()
            .filter(|s| super::Scope::parse(s).is_some()),
    )
    .unwrap_or_default();
    Some((
        row.id.clone(),
        Entry {
            digest,
            grant: Grant {
                id: row.id,
                name: row.name,
                tenant: row.tenant,
                scopes,
            },
            expires_at: row.expires_at,
            revoked: row.revoked_at.is_some(),
        },
    ))
}
