//! API keys on SQLite (see `store/keys.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::rows::{from_micros, micros};
use crate::store::{KeyRecords, KeyRow, StoreResult};

fn key_row(r: &SqliteRow) -> StoreResult<KeyRow> {
    let opt = |col: &str| -> StoreResult<Option<DateTime<Utc>>> {
        r.try_get::<Option<i64>, _>(col)?
            .map(from_micros)
            .transpose()
    };
    let scopes: String = r.try_get("scopes")?;
    Ok(KeyRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        tenant: r.try_get("tenant")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        token_sha256: r.try_get("token_sha256")?,
        created_at: from_micros(r.try_get("created_at")?)?,
        expires_at: opt("expires_at")?,
        revoked_at: opt("revoked_at")?,
        last_used_at: opt("last_used_at")?,
    })
}

#[async_trait]
impl KeyRecords for SqliteStore {
    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, tenant, scopes, token_sha256, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.tenant)
        .bind(row.scopes.join(" "))
        .bind(&row.token_sha256)
        .bind(micros(row.created_at))
        .bind(row.expires_at.map(micros))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_keys(&self, tenant: Option<&str>) -> StoreResult<Vec<KeyRow>> {
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(&self.reader)
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
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) \
             WHERE id = ?2 AND (?3 IS NULL OR tenant = ?3) RETURNING *",
        )
        .bind(micros(now))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn touch_keys(&self, used: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = ?1 \
                 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
            )
            .bind(micros(*at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
