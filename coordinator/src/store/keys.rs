//! API keys' rows (`crate::keys`): their own trait, a supertrait of [`super::Store`], beside the
//! v1 store. Only the SHA-256 of a token is stored.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::detached::on_own_task;
use super::{Detached, StoreResult};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// Public id (`k_…`).
    pub id: String,
    /// Its label.
    pub name: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// Scope names.
    pub scopes: Vec<String>,
    /// SHA-256 of the token.
    pub token_sha256: Vec<u8>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was last used (as last recorded).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Stores API keys.
#[async_trait]
pub trait KeyRecords: Send + Sync {
    /// Stores a new key.
    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()>;

    /// Keys, newest first: one tenant's, or every tenant's (`None`).
    async fn list_keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRow>>;

    /// Revokes key `id` (of `tenant` when given) at `now`, once: revoking again keeps the first
    /// time. `None` when there is no such key (for that tenant).
    async fn revoke_key(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<KeyRow>>;

    /// Records when keys were last used (never moving a time back).
    async fn touch_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()>;
}

#[async_trait]
impl KeyRecords for Detached {
    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()> {
        let (store, row) = (self.0.clone(), row.clone());
        on_own_task(async move { store.insert_key(&row).await }).await
    }

    async fn list_keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRow>> {
        self.0.list_keys(tenant).await
    }

    async fn revoke_key(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<KeyRow>> {
        let (store, tenant, id) = (self.0.clone(), tenant.map(str::to_owned), id.to_owned());
        on_own_task(async move { store.revoke_key(tenant.as_deref(), &id, now).await }).await
    }

    async fn touch_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        let (store, used) = (self.0.clone(), used.to_vec());
        on_own_task(async move { store.touch_keys(&used).await }).await
    }
}
