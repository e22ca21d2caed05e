"""Enqueue and inspect jobs: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both are thin: every call goes to the Rust core's client, which retries transport faults with
exponential backoff and jitter, and sends an idempotency key with every enqueue so a retried
call never creates a second job. Blocking calls release the GIL and honour Ctrl-C.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Sequence, TypeVar, Union

from . import _native
from .errors import CoordinatorError, Seconds, _seconds
from .models import (
    Backoff,
    Enqueued,
    JobInfo,
    JobPage,
    JobSpec,
    QueueInfo,
    RunInfo,
    RunJob,
    _dumps,
)

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]


class _Call(Generic[T]):
    """One operation: its name, its JSON arguments, and how to read the answer."""

    __slots__ = ("args", "decode", "op")

    def __init__(self, op: str, args: Dict[str, Any], decode: Callable[[Any], T]) -> None:
        self.op = op
        self.args = _dumps("arguments", args)
        self.decode = decode


def _job_id(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"job id must be a string, got {type(value).__name__}")
    return value


def _run(d: Dict[str, Any]) -> RunInfo:
    return RunInfo(id=d["id"], status=d["status"], name=d.get("name"), jobs=d.get("jobs", []), raw=d)


def _queue(d: Dict[str, Any]) -> QueueInfo:
    return QueueInfo(name=d["name"], paused=bool(d["paused"]), depth=dict(d.get("depth") or {}))


def _enqueued(d: Dict[str, Any]) -> Enqueued:
    return Enqueued(job=JobInfo._from_json(d), replayed=bool(d.get("replayed", False)))


class _Operations:
    """Builds each operation once for both clients."""

    @staticmethod
    def enqueue(spec: JobSpec, deterministic_key: bool) -> _Call[Enqueued]:
        return _Call(
            "enqueue",
            {"job": spec._to_json(), "deterministic": bool(deterministic_key)},
            lambda d: Enqueued(job=JobInfo._from_json(d["job"]), replayed=bool(d["replayed"])),
        )

    @staticmethod
    def enqueue_many(jobs: Iterable[JobSpec], deterministic_keys: bool) -> _Call[List[Enqueued]]:
        if isinstance(jobs, (str, bytes)) or not isinstance(jobs, Iterable):
            raise TypeError("jobs must be an iterable of leasehold.JobSpec")
        wire = []
        for j in jobs:
            if not isinstance(j, JobSpec):
                raise TypeError(f"jobs must hold leasehold.JobSpec values, got {type(j).__name__}")
            wire.append(j._to_json())
        return _Call(
            "enqueue_many",
            {"jobs": wire, "deterministic": bool(deterministic_keys)},
            lambda d: [_enqueued(e) for e in d],
        )

    @staticmethod
    def get(job_id: str) -> _Call[JobInfo]:
        return _Call("get", {"id": _job_id(job_id)}, JobInfo._from_json)

    @staticmethod
    def list(
        queue: Optional[str], state: Optional[str], kind: Optional[str], limit: Optional[int], cursor: Optional[str]
    ) -> _Call[JobPage]:
        return _Call(
            "list",
            {"queue": queue, "state": state, "kind": kind, "limit": limit, "cursor": cursor},
            lambda d: JobPage([JobInfo._from_json(j) for j in d["jobs"]], d.get("next_cursor")),
        )

    @staticmethod
    def cancel(job_id: str, reason: Optional[str]) -> _Call[JobInfo]:
        return _Call("cancel", {"id": _job_id(job_id), "reason": reason}, JobInfo._from_json)

    @staticmethod
    def retry(job_id: str) -> _Call[JobInfo]:
        return _Call("retry", {"id": _job_id(job_id)}, JobInfo._from_json)

    @staticmethod
    def wait(job_id: str, timeout: float) -> _Call[JobInfo]:
        return _Call("wait", {"id": _job_id(job_id), "timeout": _seconds("timeout", timeout)}, JobInfo._from_json)

    @staticmethod
    def submit_run(
        jobs: Iterable[RunJob],
        name: Optional[str],
        run_token: Optional[str],
        project: Optional[str],
        correlation_id: Optional[str],
    ) -> _Call[RunInfo]:
        wire = []
        for j in jobs:
            if not isinstance(j, RunJob):
                raise TypeError(f"run jobs must be leasehold.RunJob values, got {type(j).__name__}")
            wire.append(j._to_json())
        run: Dict[str, Any] = {"jobs": wire}
        for key, value in (
            ("name", name),
            ("run_token", run_token),
            ("project", project),
            ("correlation_id", correlation_id),
        ):
            if value is not None:
                run[key] = value
        return _Call("submit_run", {"run": run}, _run)

    @staticmethod
    def get_run(run_id: str) -> _Call[RunInfo]:
        return _Call("get_run", {"id": _job_id(run_id)}, _run)

    @staticmethod
    def cancel_run(run_id: str) -> _Call[RunInfo]:
        return _Call("cancel_run", {"id": _job_id(run_id)}, _run)

    @staticmethod
    def queues() -> _Call[List[QueueInfo]]:
        return _Call("queues", {}, lambda d: [_queue(q) for q in d])

    @staticmethod
    def pause_queue(name: str) -> _Call[QueueInfo]:
        return _Call("pause_queue", {"name": name}, _queue)

    @staticmethod
    def resume_queue(name: str) -> _Call[QueueInfo]:
        return _Call("resume_queue", {"name": name}, _queue)

    @staticmethod
    def download_artifact(digest: str, path: PathLike) -> _Call[int]:
        return _Call("download_artifact", {"digest": digest, "path": os.fspath(path)}, int)


def _as_timeout(e: CoordinatorError) -> BaseException:
    return TimeoutError(str(e)) if e.code == "timeout" else e


def _spec(
    kind: str,
    payload: Any,
    queue: str,
    priority: int,
    max_attempts: Optional[int],
    run_at: Optional[datetime.datetime],
    idempotency_key: Optional[str],
    correlation_id: Optional[str],
    project: Optional[str],
    backoff: Optional[Backoff],
    timeout: Optional[Seconds],
    limit_keys: Sequence[str] = (),
) -> JobSpec:
    return JobSpec(
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
    ) -> JobPage:
        """A page of jobs, newest first."""
        return self._call(_Operations.list(queue, state, kind, limit, cursor))

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
    ) -> JobPage:
        """See :meth:`Client.list`."""
        return await self._call(_Operations.list(queue, state, kind, limit, cursor))

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
