//! API keys on PostgreSQL (see `store/keys.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::store::{KeyRecords, KeyRow, StoreResult};

fn key_row(r: &PgRow) -> StoreResult<KeyRow> {
    let scopes: String = r.try_get("scopes")?;
    Ok(KeyRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        tenant: r.try_get("tenant")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        token_sha256: r.try_get("token_sha256")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

#[async_trait]
impl KeyRecords for PostgresStore {
    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, tenant, scopes, token_sha256, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.tenant)
        .bind(row.scopes.join(" "))
        .bind(&row.token_sha256)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn list_keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRow>> {
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE $1::text IS NULL OR tenant = $1 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(key_row).collect()
    }

    async fn revoke_key(
        &self,
        tenant: Option<&str>,
        id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<KeyRow>> {
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE id = $2 AND ($3::text IS NULL OR tenant = $3) RETURNING *",
        )
        .bind(now)
        .bind(id)
        .bind(tenant)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn touch_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        let (ids, times): (Vec<String>, Vec<DateTime<Utc>>) = used.iter().cloned().unzip();
        sqlx::query(
            "UPDATE api_keys k SET last_used_at = u.at \
             FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at) \
             WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)",
        )
        .bind(&ids)
        .bind(&times)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
