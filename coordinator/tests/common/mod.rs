//! Shared set-up for the coordinator's suites: a store per backend, each test on fresh data.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use leasehold_coordinator::store::{PostgresStore, SqliteStore, SqliteSync, Store};

/// Removes a SQLite test directory on drop.
pub struct DirGuard(pub PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh temp dir, removed on drop.
pub fn temp_dir(label: &str) -> DirGuard {
    let dir = std::env::temp_dir().join(format!(
        "leasehold-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    DirGuard(dir)
}

/// A fresh SQLite store in its own temp dir.
pub async fn sqlite_store() -> (Arc<dyn Store>, DirGuard) {
    let guard = temp_dir("store");
    let dir = guard.0.clone();
    let store = SqliteStore::open(&dir.join("t.db"), SqliteSync::Normal)
        .await
        .expect("open sqlite");
    (Arc::new(store), guard)
}

/// A fresh PostgreSQL store in its own schema, or `None` when PostgreSQL is not configured
/// (which fails instead under `LEASEHOLD_REQUIRE_PG=1`).
pub async fn pg_store(test: &str) -> Option<(Arc<dyn Store>, PostgresStore)> {
    let base = leasehold_testkit::postgres_url(test)?;
    let url = leasehold_testkit::fresh_schema(&base)
        .await
        .expect("fresh schema");
    let store = PostgresStore::connect(&url)
        .await
        .expect("connect postgres");
    Some((Arc::new(store.clone()), store))
}

/// Declares each listed `async fn name(store: Arc<dyn Store>)` as a test on SQLite and on
/// PostgreSQL: the same body, both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = $crate::common::sqlite_store().await;
                    super::$name(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some((store, _pg)) =
                        $crate::common::pg_store(concat!(module_path!(), "::", stringify!($name))).await
                    {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}
