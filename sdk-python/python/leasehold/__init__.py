"""Leasehold worker SDK for Python.

    import leasehold

    worker = leasehold.Worker("http://127.0.0.1:7070", queues=["default"], concurrency=8)

    @worker.task("greet")
    def greet(ctx: leasehold.Context) -> dict:
        return {"greeting": f"hello, {ctx.payload['name']}"}

    worker.run()  # until SIGINT/SIGTERM, then drains

The protocol (claims, coalesced heartbeats, fencing, lease-loss cancellation, retries with
jitter, idempotency keys, artifact hashing, drain) runs in the Rust core, with the GIL
released; this package is the Pythonic surface over it.
"""

from __future__ import annotations

from . import _native
from .algorithms import canonical_json, digest, idempotency_key, manifest_digest
from .client import AsyncClient, Client, TimeFilter
from .context import ArtifactSource, AsyncContext, Context
from .errors import (
    CoordinatorError,
    Fatal,
    JobCancelled,
    LeaseholdError,
    LeaseLost,
    Retry,
    Throttled,
    WaitTimeout,
    WorkerClosed,
)
from .models import (
    Artifact,
    Backoff,
    CancellationResult,
    Enqueued,
    FailureClass,
    FailureClasses,
    JobInfo,
    JobPage,
    JobSpec,
    JobStats,
    QueueInfo,
    QueueSLO,
    ReplayResult,
    RunInfo,
    RunJob,
    RunPage,
    RunSummary,
    SLOMeasure,
    SLOObjective,
    SLOReport,
    StatsPoint,
    WorkerInfo,
)
from .worker import AdaptiveConcurrency, Worker

__version__: str = _native.__version__

__all__ = [
    "AdaptiveConcurrency",
    "Artifact",
    "ArtifactSource",
    "AsyncClient",
    "AsyncContext",
    "Backoff",
    "CancellationResult",
    "Client",
    "Context",
    "CoordinatorError",
    "Enqueued",
    "FailureClass",
    "FailureClasses",
    "Fatal",
    "JobCancelled",
    "JobInfo",
    "JobPage",
    "JobSpec",
    "JobStats",
    "LeaseLost",
    "LeaseholdError",
    "QueueInfo",
    "QueueSLO",
    "ReplayResult",
    "Retry",
    "RunInfo",
    "RunJob",
    "RunPage",
    "RunSummary",
    "SLOMeasure",
    "SLOObjective",
    "SLOReport",
    "StatsPoint",
    "Throttled",
    "TimeFilter",
    "WaitTimeout",
    "Worker",
    "WorkerClosed",
    "WorkerInfo",
    "__version__",
    "canonical_json",
    "digest",
    "idempotency_key",
    "manifest_digest",
]
