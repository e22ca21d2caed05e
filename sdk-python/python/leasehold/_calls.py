"""What each client call sends to the Rust core and how its answer decodes: :class:`_Call`
values built by :class:`_Operations`, shared by :class:`~leasehold.Client` and
:class:`~leasehold.AsyncClient`, with the checks of their arguments.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Sequence, TypeVar, Union

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
    RunSummary,
    SLOReport,
    WorkerInfo,
    _dumps,
    _opt_int,
    _opt_str,
)

T = TypeVar("T")
PathLike = Union[str, "os.PathLike[str]"]
TimeFilter = Union[str, datetime.datetime, datetime.timedelta]
"""A listing's ``since``/``until``: RFC 3339 text or a span back from now (``"90s"``, ``"15m"``,
``"24h"``, ``"7d"``), a timezone-aware ``datetime``, or a ``timedelta`` back from now."""


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


def _when(name: str, value: Optional[TimeFilter]) -> Optional[str]:
    """A :data:`TimeFilter` as the coordinator takes it (it checks the text's form)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc))")
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, datetime.timedelta):
        if value < datetime.timedelta(0):
            raise ValueError(f"{name} must be a non-negative span back from now, got {value}")
        return f"{round(value.total_seconds())}s"
    raise TypeError(f"{name} must be a string, datetime or timedelta, got {type(value).__name__}")


def _window(value: Optional[Union[str, datetime.timedelta]]) -> Optional[str]:
    """An SLO window: a span (``"1h"``) or a ``timedelta`` (the coordinator checks its range)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime.timedelta):
        return f"{round(value.total_seconds())}s"
    raise TypeError(f"window must be a string or timedelta, got {type(value).__name__}")


def _selection(
    queue: Optional[str],
    kind: Optional[str],
    state: Optional[str],
    run_id: Optional[str],
    correlation_id: Optional[str],
    since: Optional[TimeFilter],
    until: Optional[TimeFilter],
    limit: Optional[int],
) -> Dict[str, Any]:
    """The job filter shared by listings and bulk actions, as JSON (``None`` values left out)."""
    d: Dict[str, Any] = {
        "queue": _opt_str("queue", queue),
        "kind": _opt_str("kind", kind),
        "state": _opt_str("state", state),
        "run_id": _opt_str("run_id", run_id),
        "correlation_id": _opt_str("correlation_id", correlation_id),
        "since": _when("since", since),
        "until": _when("until", until),
        "limit": _opt_int("limit", limit),
    }
    return {k: v for k, v in d.items() if v is not None}


def _justified(
    selection: Dict[str, Any], dry_run: bool, reason: Optional[str], ticket: Optional[str]
) -> Dict[str, Any]:
    """A bulk action's body: the filter, ``dry_run``, and the required reason and ticket (the
    core refuses a missing or blank one by name, before anything is sent)."""
    request = dict(selection, dry_run=bool(dry_run))
    for name, value in (("reason", reason), ("ticket", ticket)):
        if _opt_str(name, value) is not None:
            request[name] = value
    return {"request": request}


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
    def list(selection: Dict[str, Any], cursor: Optional[str]) -> _Call[JobPage]:
        return _Call(
            "list",
            dict(selection, cursor=_opt_str("cursor", cursor)),
            lambda d: JobPage([JobInfo._from_json(j) for j in d["jobs"]], d.get("next_cursor")),
        )

    @staticmethod
    def list_runs(
        status: Optional[str],
        name: Optional[str],
        project: Optional[str],
        correlation_id: Optional[str],
        since: Optional[TimeFilter],
        until: Optional[TimeFilter],
        limit: Optional[int],
        cursor: Optional[str],
    ) -> _Call[RunPage]:
        args = {
            "status": _opt_str("status", status),
            "name": _opt_str("name", name),
            "project": _opt_str("project", project),
            "correlation_id": _opt_str("correlation_id", correlation_id),
            "since": _when("since", since),
            "until": _when("until", until),
            "limit": _opt_int("limit", limit),
            "cursor": _opt_str("cursor", cursor),
        }
        return _Call(
            "list_runs",
            args,
            lambda d: RunPage([RunSummary._from_json(r) for r in d["runs"]], d.get("next_cursor")),
        )

    @staticmethod
    def workers(since: Optional[TimeFilter]) -> _Call[List[WorkerInfo]]:
        return _Call("workers", {"since": _when("since", since)}, lambda d: [WorkerInfo._from_json(w) for w in d])

    @staticmethod
    def cancel_jobs(
        selection: Dict[str, Any], dry_run: bool, reason: Optional[str], ticket: Optional[str]
    ) -> _Call[CancellationResult]:
        return _Call("cancel_jobs", _justified(selection, dry_run, reason, ticket), CancellationResult._from_json)

    @staticmethod
    def replay_jobs(
        selection: Dict[str, Any], dry_run: bool, reason: Optional[str], ticket: Optional[str]
    ) -> _Call[ReplayResult]:
        return _Call("replay_jobs", _justified(selection, dry_run, reason, ticket), ReplayResult._from_json)

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
    def stats(since: Optional[TimeFilter], queue: Optional[str]) -> _Call[JobStats]:
        args = {"since": _when("since", since), "queue": _opt_str("queue", queue)}
        return _Call("stats", args, JobStats._from_json)

    @staticmethod
    def failures(since: Optional[TimeFilter], queue: Optional[str]) -> _Call[FailureClasses]:
        args = {"since": _when("since", since), "queue": _opt_str("queue", queue)}
        return _Call("failures", args, FailureClasses._from_json)

    @staticmethod
    def slo(window: Optional[Union[str, datetime.timedelta]]) -> _Call[SLOReport]:
        return _Call("slo", {"window": _window(window)}, SLOReport._from_json)

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
