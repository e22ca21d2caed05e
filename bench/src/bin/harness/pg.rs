//! PostgreSQL administration for the benchmark: databases per system, session settings per
//! row, transaction counts, and the server's processes.

use anyhow::{Context, Result};
use sqlx::{Connection, PgConnection, Row};

use leasehold_bench::procstat::PgServer;

/// The benchmark's PostgreSQL: an admin URL (may create databases) and what we learned.
#[derive(Debug, Clone)]
pub(crate) struct Pg {
    /// URL of a database we may connect to for administration.
    pub(crate) admin_url: String,
    /// The server's processes, for CPU and RSS accounting.
    pub(crate) server: Option<PgServer>,
    /// `SELECT version()`.
    pub(crate) version: String,
    /// Whether the cluster is private to this run (made by bench/run).
    pub(crate) private: bool,
}

/// `url` with its database name replaced by `db`.
pub(crate) fn with_db(url: &str, db: &str) -> Result<String> {
    let mut u = reqwest::Url::parse(url).context("bad PostgreSQL URL")?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// `url` whose connections use `schema` as their search path.
pub(crate) fn with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

impl Pg {
    /// Connects once to learn the version and the postmaster.
    pub(crate) async fn open(admin_url: &str, private: bool) -> Result<Self> {
        let mut conn = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut conn)
            .await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        // Read the backend's parent while the backend lives: after `close` it exits, and a
        // run that lost that race measured no database CPU at all.
        let server = PgServer::from_backend(backend as u32, private);
        conn.close().await?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            server,
            version,
            private,
        })
    }

    /// Creates (drops first) database `db` and returns its URL; when we may not create
    /// databases, falls back to the admin database and says so.
    pub(crate) async fn fresh_database(&self, db: &str) -> Result<(String, Option<String>)> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let drop = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        let create = match drop {
            Ok(_) => sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&mut conn)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        conn.close().await?;
        match create {
            Ok(()) => Ok((with_db(&self.admin_url, db)?, None)),
            Err(e) => Ok((
                self.admin_url.clone(),
                Some(format!(
                    "could not create database {db} ({e}); using the given database"
                )),
            )),
        }
    }

    /// Sets `synchronous_commit` for every new connection to the database of `url`.
    pub(crate) async fn set_synchronous_commit(&self, url: &str, on: bool) -> Result<()> {
        let mut conn = PgConnection::connect(url).await?;
        let value = if on { "on" } else { "off" };
        sqlx::query(&format!(
            "ALTER DATABASE \"{}\" SET synchronous_commit = {value}",
            current_db(&mut conn).await?
        ))
        .execute(&mut conn)
        .await
        .context("ALTER DATABASE … SET synchronous_commit")?;
        conn.close().await?;
        // Check from a new session that the setting took.
        let mut conn = PgConnection::connect(url).await?;
        let got: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        anyhow::ensure!(got == value, "synchronous_commit is {got}, wanted {value}");
        Ok(())
    }

    /// The next transaction id the server will assign: the difference of two readings is the
    /// number of write transactions in between (read-only ones take no id), cluster-wide.
    pub(crate) async fn next_xid(&self) -> Result<i64> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let row = sqlx::query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x")
            .fetch_one(&mut conn)
            .await?;
        let x: String = row.try_get("x")?;
        conn.close().await?;
        Ok(x.parse()?)
    }

    /// A server setting, as text.
    pub(crate) async fn setting(&self, name: &str) -> Result<String> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        let v: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok(v)
    }
}

async fn current_db(conn: &mut PgConnection) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT current_database()")
        .fetch_one(conn)
        .await?)
}

/// Creates a fresh schema in the database of `url`, returning a URL that uses it.
pub(crate) async fn fresh_schema(url: &str) -> Result<(String, String)> {
    let schema = format!("b_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok((with_schema(url, &schema), schema))
}

/// Drops a schema made by [`fresh_schema`].
pub(crate) async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
