"""Enqueue and inspect jobs: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio); for
operators, list jobs and runs by filter, list workers, cancel or replay the jobs a filter
selects, and read job statistics, failure classes and SLO reports.

Both are thin: every call goes to the Rust core's client, which retries transport faults with
exponential backoff and jitter, and sends an idempotency key with every enqueue so a retried
call never creates a second job. Blocking calls release the GIL and honour Ctrl-C.
"""

from __future__ import annotations

import datetime
import json
from typing import Any, Iterable, List, Optional, Sequence, Union

from . import _native
from ._calls import PathLike, T, TimeFilter, _as_timeout, _Call, _Operations, _selection, _spec
from .errors import CoordinatorError, Seconds, _seconds
from .models import (
    Backoff,
    CancellationResult,
    Enqueued,
    FailureClasses,
    JobInfo,
    JobPage,
    JobSpec,
    JobStats,
    QueueInfo,
    ReplayResult,
    RunInfo,
    RunJob,
    RunPage,
    SLOReport,
    WorkerInfo,
)

__all__ = ["AsyncClient", "Client", "TimeFilter"]


class Client:
    """A blocking client of the coordinator at ``url`` (``http(s)://host:port``).

    Safe to share between threads. Raises :class:`~leasehold.CoordinatorError` when the
    coordinator refuses a call (or stays unreachable after the SDK's retries).
    """

    def __init__(
        self, url: str, *, api_key: Optional[str] = None, tenant: Optional[str] = None, timeout: float = 30.0
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        self._native = _native.Client(url, api_key=api_key, tenant=tenant, timeout=_seconds("timeout", timeout))

    def _call(self, call: _Call[T]) -> T:
        return call.decode(json.loads(self._native.call(call.op, call.args)))

    def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: Optional[int] = None,
        run_at: Optional[datetime.datetime] = None,
        idempotency_key: Optional[str] = None,
        deterministic_key: bool = False,
        correlation_id: Optional[str] = None,
        project: Optional[str] = None,
        backoff: Optional[Backoff] = None,
        timeout: Optional[Seconds] = None,
        limit_keys: Sequence[str] = (),
    ) -> Enqueued:
        """Enqueues one job of ``kind`` with a JSON-serializable ``payload``. ``timeout``: the
        longest one attempt may run; ``limit_keys``: keys the tenant's limits apply to, such as
        ``"host:api.example.com"`` (see :class:`~leasehold.JobSpec`)."""
        spec = _spec(
            kind,
            payload,
            queue,
            priority,
            max_attempts,
            run_at,
            idempotency_key,
            correlation_id,
            project,
            backoff,
            timeout,
            limit_keys,
        )
        return self._call(_Operations.enqueue(spec, deterministic_key))

    def enqueue_many(self, jobs: Iterable[JobSpec], *, deterministic_keys: bool = False) -> List[Enqueued]:
        """Enqueues many jobs in request order (1000 per atomic, retry-safe request)."""
        return self._call(_Operations.enqueue_many(jobs, deterministic_keys))

    def get(self, job_id: str) -> JobInfo:
        """One job."""
        return self._call(_Operations.get(job_id))

    def list(
        self,
        *,
        queue: Optional[str] = None,
        state: Optional[str] = None,
        kind: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        run_id: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
    ) -> JobPage:
        """A page of jobs, newest first: of a ``queue``, ``state``, ``kind``, run (``run_id``) or
        ``correlation_id``, enqueued at or after ``since`` and before ``until`` (each RFC 3339
        text or a span back from now such as ``"15m"``, an aware ``datetime`` or a
        ``timedelta`` back from now)."""
        selection = _selection(queue, kind, state, run_id, correlation_id, since, until, limit)
        return self._call(_Operations.list(selection, cursor))

    def cancel(self, job_id: str, reason: Optional[str] = None) -> JobInfo:
        """Cancels a job: at once if waiting, at its next heartbeat if running."""
        return self._call(_Operations.cancel(job_id, reason))

    def retry(self, job_id: str) -> JobInfo:
        """Sends a dead or cancelled job back to the queue with a fresh attempt budget."""
        return self._call(_Operations.retry(job_id))

    def wait(self, job_id: str, timeout: float = 60.0) -> JobInfo:
        """Waits until the job is succeeded, dead or cancelled.

        Raises :class:`~leasehold.WaitTimeout` (a :class:`TimeoutError`) after ``timeout``
        seconds, naming the job's state then (``job … still queued after 60s (attempt 0 of
        25)``; its ``state`` and ``attempt`` attributes carry the same); a plain
        :class:`TimeoutError` means the coordinator itself did not answer."""
        try:
            return self._call(_Operations.wait(job_id, timeout))
        except CoordinatorError as e:
            raise _as_timeout(e) from None

    def submit_run(
        self,
        jobs: Iterable[RunJob],
        *,
        name: Optional[str] = None,
        run_token: Optional[str] = None,
        project: Optional[str] = None,
        correlation_id: Optional[str] = None,
    ) -> RunInfo:
        """Submits a run: a DAG of jobs. Retry-safe (a fresh ``run_token`` is sent if none is
        given)."""
        return self._call(_Operations.submit_run(jobs, name, run_token, project, correlation_id))

    def get_run(self, run_id: str) -> RunInfo:
        """One run with its jobs and aggregate status."""
        return self._call(_Operations.get_run(run_id))

    def cancel_run(self, run_id: str) -> RunInfo:
        """Cancels a run's waiting jobs and asks its running ones to stop."""
        return self._call(_Operations.cancel_run(run_id))

    def list_runs(
        self,
        *,
        status: Optional[str] = None,
        name: Optional[str] = None,
        project: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> RunPage:
        """A page of the tenant's runs, newest first, each with its jobs counted by state: of a
        ``status`` (pending, running, succeeded, failed, cancelled), ``name``, ``project`` or
        ``correlation_id``, submitted at or after ``since`` and before ``until`` (as for
        :meth:`list`)."""
        return self._call(_Operations.list_runs(status, name, project, correlation_id, since, until, limit, cursor))

    def workers(self, *, since: Optional[TimeFilter] = None) -> List[WorkerInfo]:
        """The tenant's workers seen since ``since`` (default: the last hour) or holding leases
        now, by worker id."""
        return self._call(_Operations.workers(since))

    def cancel_jobs(
        self,
        *,
        reason: str,
        ticket: str,
        queue: Optional[str] = None,
        kind: Optional[str] = None,
        state: Optional[str] = None,
        run_id: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
        limit: Optional[int] = None,
        dry_run: bool = False,
    ) -> CancellationResult:
        """Cancels the jobs a filter selects (that of :meth:`list`; ``state`` is ``queued``,
        ``blocked`` or ``leased``, default all three), newest first up to ``limit`` (default
        1000): waiting jobs end cancelled, running ones are asked to stop. ``dry_run`` only
        counts and names them. ``reason`` and ``ticket`` are required (a blank one raises
        :class:`ValueError` naming it, before anything is sent) and recorded in the audit
        trail."""
        selection = _selection(queue, kind, state, run_id, correlation_id, since, until, limit)
        return self._call(_Operations.cancel_jobs(selection, dry_run, reason, ticket))

    def replay_jobs(
        self,
        *,
        reason: str,
        ticket: str,
        queue: Optional[str] = None,
        kind: Optional[str] = None,
        state: Optional[str] = None,
        run_id: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
        limit: Optional[int] = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        """Sends the dead jobs a filter selects (``state="cancelled"``: the cancelled ones) back
        to the queue with a fresh attempt budget, newest first up to ``limit`` (default 1000).
        ``dry_run`` only counts and names them. ``reason`` and ``ticket`` are required, as for
        :meth:`cancel_jobs`."""
        selection = _selection(queue, kind, state, run_id, correlation_id, since, until, limit)
        return self._call(_Operations.replay_jobs(selection, dry_run, reason, ticket))

    def stats(self, *, since: Optional[TimeFilter] = None, queue: Optional[str] = None) -> JobStats:
        """The tenant's jobs per minute and queue from ``since`` (as for :meth:`list`, at most
        ``"8d"``; default: the last hour) to now, of one ``queue`` or all: attempts leased,
        jobs succeeded, attempts failed, jobs dead and cancelled."""
        return self._call(_Operations.stats(since, queue))

    def failures(self, *, since: Optional[TimeFilter] = None, queue: Optional[str] = None) -> FailureClasses:
        """The tenant's failed attempts from ``since`` (default: the last day) by queue and
        error class, most first."""
        return self._call(_Operations.failures(since, queue))

    def slo(self, *, window: Optional[Union[str, datetime.timedelta]] = None) -> SLOReport:
        """Each queue's service-level objectives and how they fare over ``window`` (a span from
        ``"1m"`` to ``"7d"`` or a ``timedelta``; default an hour), with their burn rates."""
        return self._call(_Operations.slo(window))

    def queues(self) -> List[QueueInfo]:
        """Every queue with its depth per state."""
        return self._call(_Operations.queues())

    def pause_queue(self, name: str) -> QueueInfo:
        """Stops new leases on a queue."""
        return self._call(_Operations.pause_queue(name))

    def resume_queue(self, name: str) -> QueueInfo:
        """Resumes a paused queue."""
        return self._call(_Operations.resume_queue(name))

    def download_artifact(self, digest: str, path: PathLike) -> int:
        """Downloads the artifact with ``digest`` to ``path`` (digest verified while streaming;
        nothing is left at ``path`` on failure). Returns its size."""
        return self._call(_Operations.download_artifact(digest, path))


class AsyncClient:
    """The asyncio twin of :class:`Client`: the same methods, as coroutines."""

    def __init__(
        self, url: str, *, api_key: Optional[str] = None, tenant: Optional[str] = None, timeout: float = 30.0
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        self._native = _native.Client(url, api_key=api_key, tenant=tenant, timeout=_seconds("timeout", timeout))

    async def _call(self, call: _Call[T]) -> T:
        answer: str = await self._native.call_async(call.op, call.args)
        return call.decode(json.loads(answer))

    async def enqueue(
        self,
        kind: str,
        payload: Any = None,
        *,
        queue: str = "default",
        priority: int = 0,
        max_attempts: Optional[int] = None,
        run_at: Optional[datetime.datetime] = None,
        idempotency_key: Optional[str] = None,
        deterministic_key: bool = False,
        correlation_id: Optional[str] = None,
        project: Optional[str] = None,
        backoff: Optional[Backoff] = None,
        timeout: Optional[Seconds] = None,
        limit_keys: Sequence[str] = (),
    ) -> Enqueued:
        """See :meth:`Client.enqueue`."""
        spec = _spec(
            kind,
            payload,
            queue,
            priority,
            max_attempts,
            run_at,
            idempotency_key,
            correlation_id,
            project,
            backoff,
            timeout,
            limit_keys,
        )
        return await self._call(_Operations.enqueue(spec, deterministic_key))

    async def enqueue_many(self, jobs: Iterable[JobSpec], *, deterministic_keys: bool = False) -> List[Enqueued]:
        """See :meth:`Client.enqueue_many`."""
        return await self._call(_Operations.enqueue_many(jobs, deterministic_keys))

    async def get(self, job_id: str) -> JobInfo:
        """See :meth:`Client.get`."""
        return await self._call(_Operations.get(job_id))

    async def list(
        self,
        *,
        queue: Optional[str] = None,
        state: Optional[str] = None,
        kind: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        run_id: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
    ) -> JobPage:
        """See :meth:`Client.list`."""
        selection = _selection(queue, kind, state, run_id, correlation_id, since, until, limit)
        return await self._call(_Operations.list(selection, cursor))

    async def cancel(self, job_id: str, reason: Optional[str] = None) -> JobInfo:
        """See :meth:`Client.cancel`."""
        return await self._call(_Operations.cancel(job_id, reason))

    async def retry(self, job_id: str) -> JobInfo:
        """See :meth:`Client.retry`."""
        return await self._call(_Operations.retry(job_id))

    async def wait(self, job_id: str, timeout: float = 60.0) -> JobInfo:
        """See :meth:`Client.wait`."""
        try:
            return await self._call(_Operations.wait(job_id, timeout))
        except CoordinatorError as e:
            raise _as_timeout(e) from None

    async def submit_run(
        self,
        jobs: Iterable[RunJob],
        *,
        name: Optional[str] = None,
        run_token: Optional[str] = None,
        project: Optional[str] = None,
        correlation_id: Optional[str] = None,
    ) -> RunInfo:
        """See :meth:`Client.submit_run`."""
        return await self._call(_Operations.submit_run(jobs, name, run_token, project, correlation_id))

    async def get_run(self, run_id: str) -> RunInfo:
        """See :meth:`Client.get_run`."""
        return await self._call(_Operations.get_run(run_id))

    async def cancel_run(self, run_id: str) -> RunInfo:
        """See :meth:`Client.cancel_run`."""
        return await self._call(_Operations.cancel_run(run_id))

    async def list_runs(
        self,
        *,
        status: Optional[str] = None,
        name: Optional[str] = None,
        project: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> RunPage:
        """See :meth:`Client.list_runs`."""
        return await self._call(
            _Operations.list_runs(status, name, project, correlation_id, since, until, limit, cursor)
        )

    async def workers(self, *, since: Optional[TimeFilter] = None) -> List[WorkerInfo]:
        """See :meth:`Client.workers`."""
        return await self._call(_Operations.workers(since))

    async def cancel_jobs(
        self,
        *,
        reason: str,
        ticket: str,
        queue: Optional[str] = None,
        kind: Optional[str] = None,
        state: Optional[str] = None,
        run_id: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
        limit: Optional[int] = None,
        dry_run: bool = False,
    ) -> CancellationResult:
        """See :meth:`Client.cancel_jobs`."""
        selection = _selection(queue, kind, state, run_id, correlation_id, since, until, limit)
        return await self._call(_Operations.cancel_jobs(selection, dry_run, reason, ticket))

    async def replay_jobs(
        self,
        *,
        reason: str,
        ticket: str,
        queue: Optional[str] = None,
        kind: Optional[str] = None,
        state: Optional[str] = None,
        run_id: Optional[str] = None,
        correlation_id: Optional[str] = None,
        since: Optional[TimeFilter] = None,
        until: Optional[TimeFilter] = None,
        limit: Optional[int] = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        """See :meth:`Client.replay_jobs`."""
        selection = _selection(queue, kind, state, run_id, correlation_id, since, until, limit)
        return await self._call(_Operations.replay_jobs(selection, dry_run, reason, ticket))

    async def stats(self, *, since: Optional[TimeFilter] = None, queue: Optional[str] = None) -> JobStats:
        """See :meth:`Client.stats`."""
        return await self._call(_Operations.stats(since, queue))

    async def failures(self, *, since: Optional[TimeFilter] = None, queue: Optional[str] = None) -> FailureClasses:
        """See :meth:`Client.failures`."""
        return await self._call(_Operations.failures(since, queue))

    async def slo(self, *, window: Optional[Union[str, datetime.timedelta]] = None) -> SLOReport:
        """See :meth:`Client.slo`."""
        return await self._call(_Operations.slo(window))

    async def queues(self) -> List[QueueInfo]:
        """See :meth:`Client.queues`."""
        return await self._call(_Operations.queues())

    async def pause_queue(self, name: str) -> QueueInfo:
        """See :meth:`Client.pause_queue`."""
        return await self._call(_Operations.pause_queue(name))

    async def resume_queue(self, name: str) -> QueueInfo:
        """See :meth:`Client.resume_queue`."""
        return await self._call(_Operations.resume_queue(name))

    async def download_artifact(self, digest: str, path: PathLike) -> int:
        """See :meth:`Client.download_artifact`."""
        return await self._call(_Operations.download_artifact(digest, path))
