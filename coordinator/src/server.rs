//! Start-up and shutdown: open the store, bind, serve until SIGTERM or Ctrl-C, then let
//! in-flight requests finish (long-polls return at once).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::ServeArgs;
use crate::http::{AppState, app};
use crate::store::{PostgresStore, SqliteStore, Store, StoreError};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database URL is neither `postgres://` nor `sqlite:`.
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite://…")]
    BadUrl(String),
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// An environment setting is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The socket could not be bound or served.
    #[error("cannot serve on the socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens the store named by `url`, retrying PostgreSQL for up to `patience` while it starts.
pub async fn open_store(
    url: &str,
    args: &ServeArgs,
    patience: Duration,
) -> Result<(Arc<dyn Store>, Option<PostgresStore>), ServeError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let deadline = tokio::time::Instant::now() + patience;
        let mut delay = Duration::from_millis(200);
        loop {
            match PostgresStore::connect(url).await {
                Ok(store) => return Ok((Arc::new(store.clone()), Some(store))),
                Err(StoreError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "database not reachable yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(3));
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else if url.starts_with("sqlite:") {
        if !args.data_dir.as_os_str().is_empty() {
            std::fs::create_dir_all(&args.data_dir)?;
        }
        let store = SqliteStore::open_url(url, args.sqlite_synchronous).await?;
        Ok((Arc::new(store), None))
    } else {
        Err(ServeError::BadUrl(redact_url(url)))
    }
}

/// Runs the coordinator until a shutdown signal.
pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    crate::redaction::install(leasehold_proto::redact::Redactor::new(&args.redact_fields));
    let url = args.resolved_database_url();
    let (store, pg) =
        open_store(&url, &args, Duration::from_secs(args.connect_timeout_secs)).await?;
    let access = args.access_config();
    let (mut state, shutdown_tx) = AppState::new(store.clone(), args.data_dir.clone());
    state.access = crate::http::access::Access::new(access);
    state.max_artifact_bytes = args.max_artifact_bytes;
    state.max_body_bytes = args.max_body_bytes;
    state.job_gauges =
        std::sync::Arc::new(crate::metrics::JobGauges::new(args.metrics_tenant_label));
    state.backpressure =
        std::sync::Arc::new(crate::admission::Backpressure::new(args.max_queued_jobs));
    state.retention = std::sync::Arc::new(crate::retention::Retention::new(
        args.retention.config(&args.data_dir),
    ));
    if let Some(pg) = &pg
        && args.pg_listen
    {
        crate::notify::spawn_pg_listener(pg, state.ready.clone(), state.shutdown.clone());
    }
    // Without LISTEN, nothing tells this replica of the others' writes: parked claimers poll.
    let unheard = pg.is_some() && !args.pg_listen;
    state.wake_poll = args
        .wake_poll_ms
        .or(unheard.then_some(crate::leasing::DEFAULT_WAKE_POLL_MS))
        .map(Duration::from_millis);
    crate::stats::spawn(store.clone(), state.clock.clone(), state.shutdown.clone());
    if let crate::retention::Window::After(every) = args.retention.retention_interval {
        crate::retention::spawn(state.sweeper(), every);
    }
    let listener = TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    tracing::info!(
        listen = %local,
        api_key = state.access.config().requires_key(),
        database = %redact_url(&url),
        backend = store.backend().as_str(),
        "leasehold coordinator ready"
    );
    let router = app(state);
    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
    let server =
        crate::connections::serve(listener, router, args.connection_limits(), async move {
            shutdown_signal().await;
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: streams end, in-flight requests finish"
            );
            // Ends SSE streams, WebSocket sessions and long polls.
            let _ = shutdown_tx.send(true);
            let _ = signalled_tx.send(());
        });
    // Graceful shutdown waits for every connection; one whose client stopped reading never
    // drains. Past the grace period the server future is dropped and `main` returns, which
    // closes what is left (the runtime drops the connection tasks).
    let deadline = async {
        if signalled.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "in-flight requests did not finish within the shutdown grace period; closing them"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://user:s3cret@db:5432/x"),
            "postgres://user:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://leasehold.db"), "sqlite://leasehold.db");
    }
}
