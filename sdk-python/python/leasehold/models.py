"""Typed views of what the coordinator returns, and of what is enqueued."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import Seconds, _seconds

__all__ = [
    "Artifact",
    "Backoff",
    "CancellationResult",
    "Enqueued",
    "FailureClass",
    "FailureClasses",
    "JobInfo",
    "JobPage",
    "JobSpec",
    "JobStats",
    "QueueInfo",
    "QueueSLO",
    "ReplayResult",
    "RunInfo",
    "RunJob",
    "RunPage",
    "RunSummary",
    "SLOMeasure",
    "SLOObjective",
    "SLOReport",
    "StatsPoint",
    "WorkerInfo",
]

_TERMINAL = frozenset({"succeeded", "dead", "cancelled"})


@dataclass(frozen=True)
class Artifact:
    """An artifact in a job's manifest: name, ``sha256:<hex>`` digest, size and media type."""

    name: str
    digest: str
    size: int
    media_type: str

    @classmethod
    def _from_json(cls, d: Mapping[str, Any]) -> Artifact:
        return cls(str(d["name"]), str(d["digest"]), int(d["size"]), str(d["media_type"]))


@dataclass(frozen=True)
class JobInfo:
    """A job as the coordinator reports it. ``raw`` holds every field of the wire form."""

    id: str
    queue: str
    kind: str
    state: str
    payload: Any
    attempt: int
    max_attempts: int
    priority: int
    result: Any
    last_error: Optional[Dict[str, Any]]
    progress: Any
    checkpoint: Any
    cancel_requested: bool
    artifacts: List[Artifact]
    idempotency_key: Optional[str]
    correlation_id: Optional[str]
    run_id: Optional[str]
    worker_id: Optional[str]
    created_at: str
    finished_at: Optional[str]
    raw: Dict[str, Any] = field(repr=False, compare=False)
    timeout: Optional[float] = None
    """The longest one attempt may run, in seconds (the job's own; its queue's default applies
    at claim when this is ``None``)."""
    deadline_at: Optional[str] = None
    """When the current (or last) attempt's run time runs out, if it has one."""

    @property
    def done(self) -> bool:
        """Whether the job reached a terminal state (succeeded, dead or cancelled)."""
        return self.state in _TERMINAL

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> JobInfo:
        return cls(
            id=d["id"],
            queue=d["queue"],
            kind=d["kind"],
            state=d["state"],
            payload=d.get("payload"),
            attempt=int(d.get("attempt", 0)),
            max_attempts=int(d.get("max_attempts", 0)),
            priority=int(d.get("priority", 0)),
            result=d.get("result"),
            last_error=d.get("last_error"),
            progress=d.get("progress"),
            checkpoint=d.get("checkpoint"),
            cancel_requested=bool(d.get("cancel_requested", False)),
            artifacts=[Artifact._from_json(a) for a in d.get("artifacts") or []],
            idempotency_key=d.get("idempotency_key"),
            correlation_id=d.get("correlation_id"),
            run_id=d.get("run_id"),
            worker_id=d.get("worker_id"),
            created_at=d.get("created_at", ""),
            finished_at=d.get("finished_at"),
            raw=d,
            timeout=None if d.get("timeout_ms") is None else int(d["timeout_ms"]) / 1000,
            deadline_at=d.get("deadline_at"),
        )


@dataclass(frozen=True)
class Enqueued:
    """An enqueued job; ``replayed`` is true when the coordinator already had a job with the same
    idempotency key and returned that one instead."""

    job: JobInfo
    replayed: bool


@dataclass(frozen=True)
class JobPage:
    """A page of jobs, newest first; pass ``next_cursor`` to get the next page."""

    jobs: List[JobInfo]
    next_cursor: Optional[str]


@dataclass(frozen=True)
class QueueInfo:
    """A queue: whether it is paused, and its depth per job state."""

    name: str
    paused: bool
    depth: Dict[str, int]


@dataclass(frozen=True)
class RunInfo:
    """A run (a DAG of jobs) with its aggregate status."""

    id: str
    status: str
    name: Optional[str]
    jobs: List[Dict[str, Any]]
    raw: Dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class RunSummary:
    """A run in a listing (:meth:`Client.list_runs`): its record and how many of its jobs are in
    each state (states with none left out), without the jobs themselves (:meth:`Client.get_run`
    has them). Times are RFC 3339 text, as the coordinator sends them."""

    id: str
    status: str
    name: Optional[str]
    project: Optional[str]
    correlation_id: Optional[str]
    created_at: str
    updated_at: str
    cancelled_at: Optional[str]
    jobs: Dict[str, int]
    raw: Dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> RunSummary:
        return cls(
            id=d["id"],
            status=d["status"],
            name=d.get("name"),
            project=d.get("project"),
            correlation_id=d.get("correlation_id"),
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            cancelled_at=d.get("cancelled_at"),
            jobs={str(k): int(v) for k, v in (d.get("jobs") or {}).items()},
            raw=d,
        )


@dataclass(frozen=True)
class RunPage:
    """A page of runs, newest first; pass ``next_cursor`` to get the next page."""

    runs: List[RunSummary]
    next_cursor: Optional[str]


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the coordinators saw it claim and heartbeat (:meth:`Client.workers`).

    ``transport`` is ``"websocket"`` or ``"http"``; ``connected``: seen within the last minute
    and its session (if any) not closed since; ``leases``: the tenant's jobs it holds now. Times
    are RFC 3339 text."""

    worker_id: str
    transport: str
    queues: List[str]
    version: Optional[str]
    first_seen_at: str
    last_seen_at: str
    last_heartbeat_at: Optional[str]
    connected: bool
    leases: int

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> WorkerInfo:
        return cls(
            worker_id=d["worker_id"],
            transport=d["transport"],
            queues=list(d.get("queues") or []),
            version=d.get("version"),
            first_seen_at=d["first_seen_at"],
            last_seen_at=d["last_seen_at"],
            last_heartbeat_at=d.get("last_heartbeat_at"),
            connected=bool(d["connected"]),
            leases=int(d["leases"]),
        )


@dataclass(frozen=True)
class CancellationResult:
    """What :meth:`Client.cancel_jobs` did: ``matched`` jobs (their ids in ``job_ids``, newest
    first), of which ``cancelled`` were cancelled or asked to stop (0 on a dry run; fewer than
    ``matched`` when some ended meanwhile). ``audit_event_id``: the audit event recording it
    (``None`` on a dry run)."""

    dry_run: bool
    matched: int
    cancelled: int
    job_ids: List[str]
    audit_event_id: Optional[int]

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> CancellationResult:
        return cls(
            dry_run=bool(d["dry_run"]),
            matched=int(d["matched"]),
            cancelled=int(d["cancelled"]),
            job_ids=list(d["job_ids"]),
            audit_event_id=d.get("audit_event_id"),
        )


@dataclass(frozen=True)
class ReplayResult:
    """What :meth:`Client.replay_jobs` did: ``matched`` jobs (their ids in ``job_ids``, newest
    first), of which ``replayed`` went back to the queue (0 on a dry run; fewer than ``matched``
    when some changed state meanwhile). ``audit_event_id``: the audit event recording it
    (``None`` on a dry run)."""

    dry_run: bool
    matched: int
    replayed: int
    job_ids: List[str]
    audit_event_id: Optional[int]

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> ReplayResult:
        return cls(
            dry_run=bool(d["dry_run"]),
            matched=int(d["matched"]),
            replayed=int(d["replayed"]),
            job_ids=list(d["job_ids"]),
            audit_event_id=d.get("audit_event_id"),
        )


@dataclass(frozen=True)
class StatsPoint:
    """One queue's counts in one minute (starting ``at``): attempts ``leased``, jobs
    ``succeeded``, attempts ``failed`` (expired leases and timeouts too), jobs ended ``dead`` and
    ``cancelled``."""

    at: str
    queue: str
    leased: int
    succeeded: int
    failed: int
    dead: int
    cancelled: int

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> StatsPoint:
        return cls(
            at=d["at"],
            queue=d["queue"],
            leased=int(d["leased"]),
            succeeded=int(d["succeeded"]),
            failed=int(d["failed"]),
            dead=int(d["dead"]),
            cancelled=int(d["cancelled"]),
        )


@dataclass(frozen=True)
class JobStats:
    """The tenant's jobs per minute and queue from ``since`` to ``until`` (now), oldest first;
    minutes with nothing are left out (:meth:`Client.stats`)."""

    since: str
    until: str
    bucket_secs: int
    points: List[StatsPoint]

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> JobStats:
        return cls(
            since=d["since"],
            until=d["until"],
            bucket_secs=int(d["bucket_secs"]),
            points=[StatsPoint._from_json(p) for p in d["points"]],
        )


@dataclass(frozen=True)
class FailureClass:
    """Failed attempts of one error ``class_`` (``error.class``; ``lease_expired``, ``timeout``) in
    one queue, the latest in the minute ``last_at``."""

    queue: str
    class_: str
    count: int
    last_at: str

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> FailureClass:
        return cls(queue=d["queue"], class_=d["class"], count=int(d["count"]), last_at=d["last_at"])


@dataclass(frozen=True)
class FailureClasses:
    """The tenant's failed attempts by queue and class, most first (:meth:`Client.failures`)."""

    since: str
    until: str
    classes: List[FailureClass]

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> FailureClasses:
        return cls(since=d["since"], until=d["until"], classes=[FailureClass._from_json(c) for c in d["classes"]])


@dataclass(frozen=True)
class SLOObjective:
    """A queue's objectives: the share of ended jobs that must succeed, and the share of leases
    that must come within ``pickup_ms`` of the job becoming due."""

    success_ratio: float
    pickup_ms: int
    pickup_ratio: float


@dataclass(frozen=True)
class SLOMeasure:
    """How one objective fares: ``good`` of ``total`` events met it. ``ratio`` and ``burn_rate``
    (the share that missed over the share allowed to miss; above 1 spends the error budget
    before the window ends) are ``None`` when nothing was counted."""

    good: int
    total: int
    ratio: Optional[float]
    burn_rate: Optional[float]

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> SLOMeasure:
        return cls(good=int(d["good"]), total=int(d["total"]), ratio=d.get("ratio"), burn_rate=d.get("burn_rate"))


@dataclass(frozen=True)
class QueueSLO:
    """One queue's objectives (``configured``: set for the queue or the tenant rather than the
    defaults) and how its ``success`` and ``pickup`` fare."""

    queue: str
    objective: SLOObjective
    configured: bool
    success: SLOMeasure
    pickup: SLOMeasure

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> QueueSLO:
        o = d["objective"]
        return cls(
            queue=d["queue"],
            objective=SLOObjective(float(o["success_ratio"]), int(o["pickup_ms"]), float(o["pickup_ratio"])),
            configured=bool(d["configured"]),
            success=SLOMeasure._from_json(d["success"]),
            pickup=SLOMeasure._from_json(d["pickup"]),
        )


@dataclass(frozen=True)
class SLOReport:
    """Each queue with activity in the window of ``window_secs`` (or objectives of its own), by
    name (:meth:`Client.slo`)."""

    window_secs: int
    queues: List[QueueSLO]

    @classmethod
    def _from_json(cls, d: Dict[str, Any]) -> SLOReport:
        return cls(window_secs=int(d["window_secs"]), queues=[QueueSLO._from_json(q) for q in d["queues"]])


@dataclass(frozen=True)
class Backoff:
    """A job's retry backoff: ``initial`` seconds, times ``multiplier`` per attempt, capped at
    ``max_delay`` seconds; each delay is drawn uniformly below that ceiling (full jitter)."""

    initial: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 600.0

    def _to_json(self) -> Dict[str, Any]:
        for name in ("initial", "multiplier", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Backoff.{name} must be a number, got {type(value).__name__}")
            if not 0 <= value < float("inf"):
                raise ValueError(f"Backoff.{name} must be finite and non-negative, got {value}")
        return {
            "initial_ms": round(self.initial * 1000),
            "multiplier": float(self.multiplier),
            "max_delay_ms": round(self.max_delay * 1000),
        }


def _dumps(what: str, value: Any) -> str:
    """JSON text of ``value``, with a clear ``TypeError``/``ValueError`` when it has none."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except TypeError as e:
        raise TypeError(f"{what} must be JSON-serializable: {e}") from None
    except ValueError as e:
        raise ValueError(f"{what} must be JSON-serializable: {e}") from None


def _opt_str(name: str, value: Optional[str]) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _opt_int(name: str, value: Optional[int]) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue (for :meth:`Client.enqueue_many`; :meth:`Client.enqueue` takes the same
    fields as keyword arguments).

    Without an ``idempotency_key`` the SDK assigns a fresh one per call, so the call is safe to
    retry; ``deterministic_key=True`` on the client call derives it from queue, kind and
    payload instead (the same job enqueued twice becomes one).

    ``timeout`` (seconds or a ``timedelta``, whole milliseconds, 1 s to 7 days) is the longest one
    attempt may run: past it the worker's handler is cancelled (``cancel_reason`` is
    ``"timed_out"``) and the attempt fails with class ``timeout``, retried like any failure.
    Default: the queue's default timeout, else none.

    ``limit_keys`` are keys the tenant's limits apply to besides the job's queue and kind, each
    ``<prefix>:<value>`` such as ``"host:api.example.com"`` (at most 8).
    """

    kind: str
    payload: Any = None
    queue: str = "default"
    priority: int = 0
    max_attempts: Optional[int] = None
    run_at: Optional[datetime.datetime] = None
    idempotency_key: Optional[str] = None
    correlation_id: Optional[str] = None
    project: Optional[str] = None
    backoff: Optional[Backoff] = None
    timeout: Optional[Seconds] = None
    limit_keys: Sequence[str] = ()

    def _to_json(self) -> Dict[str, Any]:
        if not isinstance(self.kind, str):
            raise TypeError(f"kind must be a string, got {type(self.kind).__name__}")
        if not isinstance(self.queue, str):
            raise TypeError(f"queue must be a string, got {type(self.queue).__name__}")
        d: Dict[str, Any] = {
            "kind": self.kind,
            "queue": self.queue,
            "payload": json.loads(_dumps("payload", self.payload)),
            "priority": _opt_int("priority", self.priority),
        }
        if self.max_attempts is not None:
            d["max_attempts"] = _opt_int("max_attempts", self.max_attempts)
        if self.run_at is not None:
            if not isinstance(self.run_at, datetime.datetime):
                raise TypeError(f"run_at must be a datetime, got {type(self.run_at).__name__}")
            if self.run_at.tzinfo is None:
                raise ValueError("run_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
            d["run_at"] = self.run_at.astimezone(datetime.timezone.utc).isoformat()
        for name in ("idempotency_key", "correlation_id", "project"):
            value = _opt_str(name, getattr(self, name))
            if value is not None:
                d[name] = value
        if self.backoff is not None:
            if not isinstance(self.backoff, Backoff):
                raise TypeError(f"backoff must be a leasehold.Backoff, got {type(self.backoff).__name__}")
            d["backoff"] = self.backoff._to_json()
        if self.timeout is not None:
            d["timeout_ms"] = _timeout_ms(self.timeout)
        keys = _limit_keys(self.limit_keys)
        if keys:
            d["limit_keys"] = keys
        return d


def _limit_keys(keys: Sequence[str]) -> List[str]:
    """A job's ``limit_keys`` as the wire takes them (the coordinator checks their form)."""
    if isinstance(keys, str):
        raise TypeError("limit_keys must be a list of keys, not a string")
    out = list(keys)
    for key in out:
        if not isinstance(key, str):
            raise TypeError(f"limit_keys must be strings, got {type(key).__name__}")
    return out


@dataclass(frozen=True)
class RunJob:
    """One job of a run: ``key`` names it within the run; ``depends_on`` lists the keys it waits
    for."""

    key: str
    kind: str
    payload: Any = None
    depends_on: Sequence[str] = ()
    queue: str = "default"
    priority: int = 0
    max_attempts: Optional[int] = None
    backoff: Optional[Backoff] = None
    timeout: Optional[Seconds] = None

    def _to_json(self) -> Dict[str, Any]:
        if isinstance(self.depends_on, str):
            raise TypeError("depends_on must be a list of keys, not a string")
        d: Dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "payload": json.loads(_dumps("payload", self.payload)),
            "depends_on": list(self.depends_on),
            "queue": self.queue,
            "priority": _opt_int("priority", self.priority),
        }
        if self.max_attempts is not None:
            d["max_attempts"] = _opt_int("max_attempts", self.max_attempts)
        if self.backoff is not None:
            d["backoff"] = self.backoff._to_json()
        if self.timeout is not None:
            d["timeout_ms"] = _timeout_ms(self.timeout)
        return d


def _timeout_ms(timeout: Seconds) -> int:
    """A job's ``timeout`` as the wire's ``timeout_ms`` (the coordinator checks its range)."""
    return round(_seconds("timeout", timeout) * 1000)
