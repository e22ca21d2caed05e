//! Artifact owners on SQLite (see `store/artifacts.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use super::rows::micros;
use crate::store::{ArtifactOwners, StoreError, StoreResult};

#[async_trait]
impl ArtifactOwners for SqliteStore {
    async fn own_artifact(
        &self,
        tenant: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let inserted = sqlx::query(
            "INSERT INTO artifact_owners (tenant, digest, stored_at) VALUES (?, ?, ?) \
             ON CONFLICT (tenant, digest) DO NOTHING",
        )
        .bind(tenant)
        .bind(digest)
        .bind(micros(now))
        .execute(&self.writer)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            sqlx::query(
                "UPDATE artifact_owners SET stored_at = MAX(stored_at, ?) \
                 WHERE tenant = ? AND digest = ?",
            )
            .bind(micros(now))
            .bind(tenant)
            .bind(digest)
            .execute(&self.writer)
            .await?;
        }
        Ok(inserted)
    }

    async fn owns_artifact(&self, tenant: &str, digest: &str) -> StoreResult<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM artifact_owners WHERE tenant = ? AND digest = ?")
                .bind(tenant)
                .bind(digest)
                .fetch_optional(&self.reader)
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
        let wanted =
            serde_json::to_string(digests).map_err(|e| StoreError::Internal(e.to_string()))?;
        let done = sqlx::query(
            "DELETE FROM artifact_owners \
             WHERE digest IN (SELECT value FROM json_each(?)) AND stored_at < ?",
        )
        .bind(wanted)
        .bind(micros(before))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}
