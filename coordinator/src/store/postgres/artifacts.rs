//! Artifact owners on PostgreSQL (see `store/artifacts.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::{ArtifactOwners, StoreResult};

#[async_trait]
impl ArtifactOwners for PostgresStore {
    async fn own_artifact(
        &self,
        tenant: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        // `xmax = 0` only on a row this statement inserted (an update sets it).
        let inserted: bool = sqlx::query_scalar(
            "INSERT INTO artifact_owners (tenant, digest, stored_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, digest) \
             DO UPDATE SET stored_at = GREATEST(artifact_owners.stored_at, excluded.stored_at) \
             RETURNING xmax = 0",
        )
        .bind(tenant)
        .bind(digest)
        .bind(now)
        .fetch_one(self.pool())
        .await?;
        Ok(inserted)
    }

    async fn owns_artifact(&self, tenant: &str, digest: &str) -> StoreResult<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM artifact_owners WHERE tenant = $1 AND digest = $2")
                .bind(tenant)
                .bind(digest)
                .fetch_optional(self.pool())
                .await?;
        Ok(found.is_some())
    }

    async fn forget_artifact_owners(
        &self,
        digests: &[String],
        before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        if digests.is_empty() {
            return Ok(0);
        }
        let done =
            sqlx::query("DELETE FROM artifact_owners WHERE digest = ANY($1) AND stored_at < $2")
                .bind(digests)
                .bind(before)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }
}
