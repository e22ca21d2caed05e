//! Shared set-up for the coordinator's suites: a store per backend, each test on fresh data.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod api;
pub mod clocked;
pub mod dag;
pub mod events;
pub mod keyed;
pub mod rows;

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

/// The artifact digest of `bytes`: `sha256:<64 lowercase hex>`.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        leasehold_coordinator::blobs::hex(&sha2::Sha256::digest(bytes))
    )
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

/// A router served on a real socket (for SSE, WebSocket and CORS tests).
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Artifacts dir guard.
    pub _dir: DirGuard,
    /// Keeps long-polls and streams alive until dropped.
    pub _shutdown: tokio::sync::watch::Sender<bool>,
}

/// Serves `app(state)` for `store`, letting `configure` adjust the state first.
pub async fn serve_with(
    store: Arc<dyn Store>,
    configure: impl FnOnce(&mut leasehold_coordinator::AppState),
) -> Served {
    let dir = temp_dir("served");
    let (mut state, shutdown) = leasehold_coordinator::AppState::new(store, dir.0.clone());
    configure(&mut state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // The coordinator's own accept loop, with its default limits.
    let app = leasehold_coordinator::app(state);
    tokio::spawn(leasehold_coordinator::connections::serve(
        listener,
        app,
        Default::default(),
        std::future::pending(),
    ));
    Served {
        url: format!("http://127.0.0.1:{}", addr.port()),
        _dir: dir,
        _shutdown: shutdown,
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default)]
pub struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads server-sent events from a streaming response, one at a time.
pub struct SseReader {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            stream: Box::pin(response.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` at end of stream or after `wait`.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<Sse> {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Sse::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() && ev.event.is_none() {
                    continue; // a comment (keep-alive)
                }
                ev.data = data.join("\n");
                return Some(ev);
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}
