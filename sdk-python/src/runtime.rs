//! The Tokio runtime the SDK runs on — one per process, rebuilt in a `fork()` child — and the
//! two bridges from Python into it: blocking calls that release the GIL and still honour Ctrl-C,
//! and asyncio awaitables.
//!
//! Why not `pyo3_async_runtimes::tokio`'s runtime: it lives in a process-wide `OnceLock`, so a
//! child forked after first use would inherit a runtime whose threads do not exist and hang.
//! Ours is keyed by pid, and every handle remembers the pid that made it ([`Owner`]) so that
//! using a parent's worker in a child raises instead of hanging.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{self, ContextExt};
use tokio::runtime::Runtime;

/// How often a blocking call wakes to let Python run signal handlers (Ctrl-C).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

/// This process's runtime, built on first use (and again in a forked child, whose inherited
/// runtime has no threads; the stale one is leaked on purpose: dropping it would wait for them).
pub(crate) fn runtime() -> PyResult<&'static Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, rt)) = *slot
        && owner == pid
    {
        return Ok(rt);
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get().clamp(2, 4))
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("leasehold-rt")
        .enable_all()
        .build()
        .map_err(|e| {
            PyRuntimeError::new_err(format!("leasehold: cannot start its runtime: {e}"))
        })?;
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// The process that made a handle. Background threads do not survive `fork()`, so a handle
/// used in another process fails with a clear error instead of waiting forever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pid: u32,
    what: &'static str,
}

impl Owner {
    /// A handle of kind `what` made by this process.
    pub(crate) fn here(what: &'static str) -> Self {
        Self {
            pid: std::process::id(),
            what,
        }
    }

    /// Fails when called from a process other than the one that made the handle.
    pub(crate) fn check(&self) -> PyResult<()> {
        let now = std::process::id();
        if now == self.pid {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err(format!(
                "leasehold: this {} was created in process {} and cannot be used after fork() \
                 (its background threads stay in the parent); create a new {} in process {now}",
                self.what, self.pid, self.what
            )))
        }
    }
}

/// Runs `fut` to completion from the calling Python thread with the GIL released, waking every
/// 50 ms to run Python's signal handlers: Ctrl-C raises `KeyboardInterrupt` here (and drops the
/// work). `fut` is polled right here (inside the runtime's context) rather than spawned: one task
/// and one cross-thread hand-off fewer per call, which is most of the cost of a short call.
pub(crate) fn block<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    F: Future<Output = PyResult<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    let mut fut = Box::pin(fut);
    loop {
        // The timer is made inside `block_on`, where the runtime's clock is in context.
        let waited =
            py.detach(|| rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut fut).await }));
        match waited {
            Ok(out) => return out,
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// An asyncio awaitable for `fut`, run on the runtime. Cancelling the awaitable drops `fut`.
pub(crate) fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    runtime()?;
    generic::future_into_py::<PerProcessRuntime, _, T>(py, fut)
}

/// [`runtime`] as a `pyo3_async_runtimes` runtime.
struct PerProcessRuntime;

/// A spawned task's failure, or no runtime to spawn on.
#[derive(Debug)]
enum SpawnError {
    Join(tokio::task::JoinError),
    NoRuntime,
}

impl generic::JoinError for SpawnError {
    fn is_panic(&self) -> bool {
        matches!(self, Self::Join(e) if e.is_panic())
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        match self {
            Self::Join(e) if e.is_panic() => e.into_panic(),
            Self::Join(_) => Box::new("leasehold task cancelled"),
            Self::NoRuntime => Box::new("leasehold runtime unavailable"),
        }
    }
}

type Joined = Pin<Box<dyn Future<Output = Result<(), SpawnError>> + Send>>;

fn joined(handle: Option<tokio::task::JoinHandle<()>>) -> Joined {
    Box::pin(async move {
        match handle {
            Some(h) => h.await.map_err(SpawnError::Join),
            None => Err(SpawnError::NoRuntime),
        }
    })
}

impl generic::Runtime for PerProcessRuntime {
    type JoinError = SpawnError;
    type JoinHandle = Joined;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        joined(runtime().ok().map(|rt| rt.spawn(fut)))
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        joined(runtime().ok().map(|rt| rt.spawn_blocking(f)))
    }
}

tokio::task_local! {
    static TASK_LOCALS: TaskLocals;
}

impl ContextExt for PerProcessRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(Clone::clone).ok()
    }
}
