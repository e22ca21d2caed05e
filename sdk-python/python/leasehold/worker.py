"""Run handlers for leased jobs: :class:`Worker`.

A worker is a Rust worker session (claims, coalesced heartbeats, fencing, lease-loss
cancellation, outcome batching, drain — on its own threads, GIL released) plus, in Python, a
pool of threads for ``def`` handlers and one asyncio loop for ``async def`` handlers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import threading
import types
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

from . import _native
from .context import AsyncContext, Context
from .errors import Fatal, JobCancelled, LeaseLost, Retry, WorkerClosed, _seconds
from .models import _dumps

__all__ = ["Worker"]

log = logging.getLogger("leasehold")

F = TypeVar("F", bound=Callable[..., Any])

_TRANSPORTS = ("auto", "websocket", "http")
# Failure messages are kept short: the coordinator stores them on the job.
_MAX_MESSAGE = 4000


class _Handler:
    __slots__ = ("fn", "is_async")

    def __init__(self, fn: Callable[..., Any], is_async: bool) -> None:
        self.fn = fn
        self.is_async = is_async


def _message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_MAX_MESSAGE]


def _settle(job: _native.Job, exc: Optional[BaseException], result: Any) -> None:
    """Maps how the handler ended to the core's ending; what each ending means for the job (an
    operator's cancel, a lost lease, a timeout) is decided there (``LeasedJob::settle``)."""
    if exc is None:
        try:
            text = _dumps("the handler's result", result)
        except (TypeError, ValueError) as e:
            job.settle("failed", message=str(e)[:_MAX_MESSAGE], error_class=type(e).__name__, fatal=True)
            return
        job.settle("returned", result_json=text)
        return
    if isinstance(exc, Retry):
        job.settle("failed", message=str(exc)[:_MAX_MESSAGE], error_class=exc.error_class, after=exc.after)
        return
    if isinstance(exc, Fatal):
        job.settle("failed", message=str(exc)[:_MAX_MESSAGE], error_class=exc.error_class, fatal=True)
        return
    if isinstance(exc, (JobCancelled, LeaseLost)) or not isinstance(exc, Exception):
        # The handler acknowledged a cancellation (or was interrupted): no outcome of its own.
        job.settle("stopped")
        return
    log.warning("job %s (%s) failed", job.id, job.kind, exc_info=exc)
    job.settle("failed", message=_message(exc), error_class=type(exc).__name__)


class _Loop:
    """The asyncio loop ``async def`` handlers run on, in its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="leasehold-asyncio", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def _wind_down(self, grace: float) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()

    def close(self, grace: float) -> None:
        if not self.loop.is_closed() and self.thread.is_alive():
            done = asyncio.run_coroutine_threadsafe(self._wind_down(grace), self.loop)
            try:
                done.result(grace + 1.0)
            except Exception:
                log.debug("asyncio loop wind-down did not finish", exc_info=True)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(grace + 1.0)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


def _pool(
    tenant: Optional[str], tenants: Optional[Sequence[str]], weights: Optional[Mapping[str, int]]
) -> Tuple[Optional[List[str]], Optional[Dict[str, int]]]:
    """Checks a shared pool's ``tenants`` and ``tenant_weights`` (the rules the coordinator applies)."""
    if tenants is None:
        if weights is not None:
            raise ValueError("tenant_weights are the shares of a pool's tenants; name those")
        return None, None
    if isinstance(tenants, (str, bytes)):
        raise TypeError("tenants must be a list of tenant names, not a single string")
    names = list(tenants)
    if tenant is not None:
        raise ValueError("name one tenant or a pool's tenants, not both")
    if not 1 <= len(names) <= 100:
        raise ValueError(f"a pool has 1 to 100 tenants, got {len(names)}")
    for t in names:
        if not isinstance(t, str) or not _native.is_name(t):
            raise ValueError(f"tenant name {t!r} must be {_native.NAME_RULE}")
    shares = dict(weights or {})
    for t, w in shares.items():
        if t not in names:
            raise ValueError(f"tenant_weights names {t!r}, which is not one of the pool's tenants")
        if isinstance(w, bool) or not isinstance(w, int) or not 1 <= w <= 1000:
            raise ValueError(f"the weight of {t!r} must be an int between 1 and 1000, got {w!r}")
    return names, shares or None


@dataclass(frozen=True)
class AdaptiveConcurrency:
    """How a :class:`Worker` adapts how many jobs it runs at once (bounded AIMD, in the Rust core).

    The limit starts at the worker's ``concurrency`` (the most). A failure of one of ``classes``
    (default ``throttled`` — :class:`~leasehold.Throttled` — and ``timeout``) halves it, at most
    once a second; a success slower than ``latency_target`` seconds (when set) lowers it by a
    tenth; other successes raise it by one per ``limit`` of them. It never goes below ``min``.
    """

    min: int = 1
    latency_target: Optional[float] = None
    classes: Optional[Sequence[str]] = None

    def _native_args(self, concurrency: int) -> Dict[str, Any]:
        if isinstance(self.min, bool) or not isinstance(self.min, int) or not 1 <= self.min <= concurrency:
            raise ValueError(
                f"adaptive_concurrency.min must be an int between 1 and concurrency ({concurrency}), got {self.min!r}"
            )
        target = None if self.latency_target is None else _seconds("latency_target", self.latency_target)
        if target is not None and target <= 0:
            raise ValueError(f"adaptive_concurrency.latency_target must be positive, got {target}")
        if isinstance(self.classes, (str, bytes)):
            raise TypeError("adaptive_concurrency.classes must be a list of failure classes, not a single string")
        classes = None if self.classes is None else [str(c) for c in self.classes]
        return {"adaptive_min": self.min, "adaptive_latency_target": target, "adaptive_classes": classes}


class Worker:
    """Takes jobs from ``queues`` and runs the handler registered for each job's kind.

    Args:
        url: the coordinator, ``http(s)://host:port``.
        queues: queue names to take jobs from.
        concurrency: most jobs run at once (leases held at once). Every default is the SDK
            core's (``leasehold._native.DEFAULT_*``), shared with the Rust and Go workers.
        lease_ttl: lease length in seconds; the SDK heartbeats every third of it.
        drain_timeout: on stop, how long running handlers get to finish before their jobs are
            released (released jobs run again elsewhere; no attempt is spent).
        cancel_grace: how long a cancelled ``async def`` handler gets to wind down.
        worker_id: this worker's stable id (default ``<host>-<pid>-<random>``).
        app_version: your application's version, recorded with each outcome.
        tenant, api_key: credentials, when the coordinator requires them.
        adaptive_concurrency: run fewer jobs at once while they fail with overload classes or
            run slow, and more again as they recover (:class:`AdaptiveConcurrency`).
        tenants, tenant_weights: serve a worker pool shared by these tenants instead of one
            (``tenant`` unset), interleaved fairly by weight (1 to 1000, default 1); it needs
            the coordinator's own key. Each job's ``tenant`` says whose it is.
        transport: ``"auto"`` (WebSocket, falling back to HTTP long-poll), ``"websocket"`` or
            ``"http"``.
        poll_wait: longest HTTP long-poll, in seconds.
        staging_dir: where streamed artifacts are staged while hashed (default: temp dir).
        prefetch: while jobs are short (under 100 ms on average), hold leases beyond the
            running jobs (about 50 ms of the handlers' work, at most three times
            ``concurrency``), so that a handler that ends starts the next job at
            once instead of a claim's round trip later; never more than ``concurrency``
            handlers run at once. Turn it off when another worker of the same queue should get
            every job this one cannot start at once.

    Register handlers with :meth:`task`, then call :meth:`run`.
    """

    def __init__(
        self,
        url: str,
        *,
        queues: Sequence[str] = ("default",),
        concurrency: int = _native.DEFAULT_CONCURRENCY,
        lease_ttl: float = _native.DEFAULT_LEASE_TTL,
        drain_timeout: float = _native.DEFAULT_DRAIN_TIMEOUT,
        cancel_grace: float = _native.DEFAULT_CANCEL_GRACE,
        worker_id: Optional[str] = None,
        app_version: Optional[str] = None,
        tenant: Optional[str] = None,
        api_key: Optional[str] = None,
        transport: str = "auto",
        poll_wait: float = _native.DEFAULT_POLL_WAIT,
        staging_dir: Optional[Union[str, os.PathLike[str]]] = None,
        tenants: Optional[Sequence[str]] = None,
        tenant_weights: Optional[Mapping[str, int]] = None,
        adaptive_concurrency: Optional[AdaptiveConcurrency] = None,
        prefetch: bool = True,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if isinstance(queues, (str, bytes)):
            raise TypeError("queues must be a list of queue names, not a single string")
        queue_list = list(queues)
        if not queue_list:
            raise ValueError("name at least one queue")
        for q in queue_list:
            if not isinstance(q, str):
                raise TypeError(f"queue names must be strings, got {type(q).__name__}")
            if not _native.is_name(q):
                raise ValueError(f"queue name {q!r} must be {_native.NAME_RULE}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, got {type(concurrency).__name__}")
        if not 1 <= concurrency <= 10_000:
            raise ValueError(f"concurrency must be between 1 and 10000, got {concurrency}")
        if not isinstance(prefetch, bool):
            raise TypeError(f"prefetch must be True or False, got {type(prefetch).__name__}")
        if transport not in _TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(_TRANSPORTS)}, got {transport!r}")
        ttl = _seconds("lease_ttl", lease_ttl)
        if not 1.0 <= ttl <= 86_400.0:
            raise ValueError(f"lease_ttl must be between 1 s and 24 h, got {ttl}")
        self._url = url
        self._queues = queue_list
        self._concurrency = concurrency
        self._lease_ttl = ttl
        self._drain_timeout = _seconds("drain_timeout", drain_timeout)
        self._cancel_grace = _seconds("cancel_grace", cancel_grace)
        self._poll_wait = _seconds("poll_wait", poll_wait)
        self._worker_id = worker_id
        self._app_version = app_version
        self._tenant = tenant
        self._tenants, self._tenant_weights = _pool(tenant, tenants, tenant_weights)
        if adaptive_concurrency is not None and not isinstance(adaptive_concurrency, AdaptiveConcurrency):
            raise TypeError("adaptive_concurrency must be a leasehold.AdaptiveConcurrency")
        self._adaptive: Dict[str, Any] = (
            {} if adaptive_concurrency is None else adaptive_concurrency._native_args(concurrency)
        )
        self._api_key = api_key
        self._transport = transport
        self._prefetch = prefetch
        self._staging_dir = None if staging_dir is None else os.fspath(staging_dir)
        self._handlers: Dict[str, _Handler] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._signalled = False
        self._session: Optional[_native.Session] = None
        self._pid: Optional[int] = None
        self._failure: Optional[BaseException] = None

    def task(self, kind: str) -> Callable[[F], F]:
        """Registers the decorated function as the handler of jobs of ``kind``.

        A ``def`` handler gets a :class:`~leasehold.Context` and runs on a worker thread; an
        ``async def`` handler gets an :class:`~leasehold.AsyncContext` and runs on the worker's
        asyncio loop. Its return value (JSON-serializable) is the job's result; raising
        :class:`~leasehold.Retry` or any other exception retries the job, :class:`~leasehold.Fatal`
        ends it ``dead``.
        """
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a string, got {type(kind).__name__}")
        if not _native.is_kind(kind):
            raise ValueError(f"kind {kind!r} must be {_native.KIND_RULE}")

        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"@task({kind!r}) must decorate a function, got {type(fn).__name__}")
            with self._lock:
                if kind in self._handlers:
                    raise ValueError(f"a handler for kind {kind!r} is already registered")
                self._handlers[kind] = _Handler(fn, inspect.iscoroutinefunction(fn))
            return fn

        return register

    @property
    def worker_id(self) -> Optional[str]:
        """This worker's id (known once :meth:`run` has started, unless given)."""
        session = self._session
        return session.worker_id if session is not None else self._worker_id

    @property
    def concurrency_limit(self) -> int:
        """How many jobs the worker takes at once now: ``concurrency``, or less while an
        :class:`AdaptiveConcurrency` limit holds it back."""
        session = self._session
        return session.concurrency_limit() if session is not None else self._concurrency

    def stop(self) -> None:
        """Asks a running :meth:`run` to drain and return. Safe from any thread or handler."""
        self._stop.set()

    def run(self) -> None:
        """Takes and runs jobs until :meth:`stop`, SIGINT or SIGTERM, then drains: no new
        jobs, running handlers get ``drain_timeout`` to finish, the rest are released (they run
        again elsewhere, no attempt spent), and every outcome is delivered. A second SIGINT or
        SIGTERM stops at once (running jobs are released).

        Raises :class:`~leasehold.CoordinatorError` if the coordinator refuses this worker
        (bad credentials or configuration).
        """
        if not self._handlers:
            raise ValueError("register at least one handler with @worker.task(kind) before run()")
        with self._lock:
            if self._session is not None:
                if self._pid != os.getpid():
                    raise RuntimeError(
                        f"leasehold: this Worker is running in process {self._pid} and cannot be used "
                        f"after fork(); create a new Worker in process {os.getpid()}"
                    )
                raise RuntimeError("this Worker is already running")
            session = _native.Session(
                self._url,
                self._queues,
                concurrency=self._concurrency,
                lease_ttl=self._lease_ttl,
                worker_id=self._worker_id,
                app_version=self._app_version,
                tenant=self._tenant,
                tenants=self._tenants,
                tenant_weights=self._tenant_weights,
                **self._adaptive,
                api_key=self._api_key,
                transport=self._transport,
                poll_wait=self._poll_wait,
                staging_dir=self._staging_dir,
                prefetch=self._prefetch,
            )
            self._session = session
            self._pid = os.getpid()
            self._failure = None
            self._signalled = False
            self._stop.clear()
        loop = _Loop() if any(h.is_async for h in self._handlers.values()) else None
        # One permit per running handler: prefetched leases wait in the session until one ends.
        slots = threading.BoundedSemaphore(self._concurrency)
        threads = [
            threading.Thread(target=self._pull, args=(session, loop, slots), name=f"leasehold-worker-{i}", daemon=True)
            for i in range(self._concurrency)
        ]
        restore = self._install_signal_handlers()
        try:
            for t in threads:
                t.start()
            log.info("worker %s taking jobs from %s", session.worker_id, ", ".join(self._queues))
            while not (self._stop.wait(0.1) or self._signalled):
                pass
            self._drain(session)
        except BaseException:
            # Second Ctrl-C (or an error while draining): give every lease back at once.
            session.shutdown(0.0)
            raise
        finally:
            restore()
            if loop is not None:
                loop.close(self._cancel_grace)
            with self._lock:
                self._session = None
        if self._failure is not None:
            raise self._failure

    def _drain(self, session: _native.Session) -> None:
        # The core drains, waits for the running handlers (woken by each one that ends, never
        # polled), releases the rest and flushes every outcome; a second signal interrupts it.
        session.drain()
        if session.active():
            log.info("draining: waiting up to %.0f s for %d running jobs", self._drain_timeout, session.active())
        released = session.shutdown(self._drain_timeout)
        if released:
            log.warning("drain timeout: released %d running jobs", released)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: Optional[types.FrameType]) -> None:
            if self._signalled:
                raise KeyboardInterrupt
            self._signalled = True
            log.warning("%s: draining (send it again to stop at once)", signal.Signals(signum).name)

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for s, h in previous.items():
                signal.signal(s, h)

        return restore

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc
        self._stop.set()

    def _pull(self, session: _native.Session, loop: Optional[_Loop], slots: threading.BoundedSemaphore) -> None:
        # A thread runs a ``def`` handler itself, and hands an ``async def`` one to the loop and
        # takes the next job at once: the permit, taken before the job, is what keeps the async
        # handlers (with prefetched leases waiting) to ``concurrency`` at once.
        while True:
            slots.acquire()
            try:
                jobs = session.next_jobs(1, None)
            except WorkerClosed:
                slots.release()
                return
            except BaseException as e:  # noqa: BLE001 - reported by run()
                slots.release()
                self._fail(e)
                return
            if not jobs:
                slots.release()
            for job in jobs:
                handler = self._handlers.get(job.kind)
                if handler is not None and handler.is_async and loop is not None:
                    loop.submit(self._run_async(job, handler.fn, slots))
                    continue
                try:
                    if handler is None:
                        job.settle(
                            "failed",
                            message=f"no handler registered for kind {job.kind!r} on this worker",
                            error_class="unknown_kind",
                            fatal=True,
                        )
                    else:
                        self._run_sync(job, handler.fn)
                finally:
                    slots.release()

    def _run_sync(self, job: _native.Job, fn: Callable[[Context], Any]) -> None:
        try:
            result = fn(Context(job))
        except BaseException as e:  # noqa: BLE001 - every ending is reported
            _settle(job, e, None)
        else:
            _settle(job, None, result)

    async def _run_async(
        self, job: _native.Job, fn: Callable[[AsyncContext], Any], slots: threading.BoundedSemaphore
    ) -> None:
        try:
            await self._run_handler(job, fn)
        finally:
            slots.release()

    async def _run_handler(self, job: _native.Job, fn: Callable[[AsyncContext], Any]) -> None:
        try:
            task: asyncio.Future[Any] = asyncio.ensure_future(fn(AsyncContext(job)))
        except BaseException as e:  # noqa: BLE001 - the handler failed before awaiting
            _settle(job, e, None)
            return
        cancelled: asyncio.Future[None] = asyncio.ensure_future(job.cancelled_async())
        try:
            await asyncio.wait([task, cancelled], return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=self._cancel_grace)
                if not task.done():
                    log.warning("job %s: handler ignored its cancellation; abandoning it", job.id)
                    job.settle("abandoned")
                    return
            if task.cancelled():
                _settle(job, asyncio.CancelledError(), None)
            else:
                _settle(job, task.exception(), None if task.exception() else task.result())
        finally:
            cancelled.cancel()
