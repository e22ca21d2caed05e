//! Who stored which artifact blob. The bytes are shared on disk (content-addressed, stored once),
//! but each tenant sees only the digests it uploaded itself: `GET` of another tenant's digest is
//! 404 and a `PUT` of bytes another tenant stored answers as a new upload, so no tenant can learn
//! what another stored. Its own trait, a supertrait of [`super::Store`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::detached::on_own_task;
use super::{Detached, StoreResult};

/// Stores which tenant uploaded which blob.
#[async_trait]
pub trait ArtifactOwners: Send + Sync {
    /// Records that `tenant` stored the blob `digest` at `now` (refreshing the time when it had
    /// already). True when the tenant had not stored it before.
    async fn own_artifact(
        &self,
        tenant: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Whether `tenant` stored the blob `digest`.
    async fn owns_artifact(&self, tenant: &str, digest: &str) -> StoreResult<bool>;

    /// Forgets every tenant's ownership of the collected blobs `digests` recorded before
    /// `before` (a tenant that stored one again since keeps it); the number of rows forgotten.
    async fn forget_artifact_owners(
        &self,
        digests: &[String],
        before: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

#[async_trait]
impl ArtifactOwners for Detached {
    async fn own_artifact(
        &self,
        tenant: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (store, tenant, digest) = (self.0.clone(), tenant.to_owned(), digest.to_owned());
        on_own_task(async move { store.own_artifact(&tenant, &digest, now).await }).await
    }

    async fn owns_artifact(&self, tenant: &str, digest: &str) -> StoreResult<bool> {
        self.0.owns_artifact(tenant, digest).await
    }

    async fn forget_artifact_owners(
        &self,
        digests: &[String],
        before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let (store, digests) = (self.0.clone(), digests.to_vec());
        on_own_task(async move { store.forget_artifact_owners(&digests, before).await }).await
    }
}
