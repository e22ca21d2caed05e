"""The throttle signal end to end through the Python SDK: a handler raising
``leasehold.Throttled`` fails its attempt with class ``throttled``, is retried after the asked
delay, and halves the effective rate of the adaptive limit its job falls under."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from typing import Any, Dict, List

import leasehold
from conftest import Coordinator, running


def _limit(coordinator: Coordinator, tenant: str, key: str, method: str, body: Any = None) -> Dict[str, Any]:
    req = urllib.request.Request(
        f"{coordinator.url}/v1/limits/{key}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Leasehold-Tenant": tenant},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        answer: Dict[str, Any] = json.loads(r.read())
        return answer


def test_a_throttled_handler_slows_its_adaptive_limit_down(coordinator: Coordinator, queue: str) -> None:
    # A tenant of its own: the limit gates this tenant's claims only.
    tenant = f"throttle-{uuid.uuid4().hex[:8]}"
    _limit(coordinator, tenant, "host:*", "PUT", {"rate": 40, "adaptive": True, "reason": "vendor", "ticket": "T-1"})
    client = leasehold.Client(coordinator.url, tenant=tenant)
    worker = leasehold.Worker(coordinator.url, queues=[queue], tenant=tenant)
    attempts: List[int] = []

    @worker.task("call")
    def call(ctx: leasehold.Context) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise leasehold.Throttled(retry_after=0.3, message="429 from api.example.com")
        return ctx.attempt

    with running(worker) as errors:
        job = client.enqueue("call", {}, queue=queue, limit_keys=["host:api.example.com"])
        done = client.wait(job.job.id, 30)
    assert not errors
    assert done.state == "succeeded" and done.result == 2 and attempts == [1, 2]
    assert done.raw["limit_keys"] == ["host:api.example.com"]
    bucket = _limit(coordinator, tenant, "host:*", "GET")["buckets"][0]
    assert bucket["bucket"] == "host:api.example.com"
    # Halved by the throttle, then regaining 2% of 40/s per second: about 20/s.
    assert 20.0 <= bucket["effective_rate"] < 24.0, bucket


def test_throttled_needs_a_delay() -> None:
    try:
        leasehold.Throttled(retry_after=-1)
    except ValueError as e:
        assert "retry_after" in str(e) or "after" in str(e)
    else:
        raise AssertionError("a negative delay was accepted")


def test_an_adaptive_worker_runs_fewer_jobs_at_once_after_throttles(coordinator: Coordinator, queue: str) -> None:
    client = leasehold.Client(coordinator.url)
    worker = leasehold.Worker(
        coordinator.url,
        queues=[queue],
        concurrency=8,
        adaptive_concurrency=leasehold.AdaptiveConcurrency(min=1),
    )
    lock = threading.Lock()
    counts = {"now": 0, "most_on_retry": 0}

    @worker.task("call")
    def call(ctx: leasehold.Context) -> int:
        if ctx.attempt == 1:
            # All eight at once, then all throttled: one overload event, the limit halves.
            raise leasehold.Throttled(retry_after=0.3, message="429")
        with lock:
            counts["now"] += 1
            counts["most_on_retry"] = max(counts["most_on_retry"], counts["now"])
        time.sleep(0.3)
        with lock:
            counts["now"] -= 1
        return ctx.attempt

    jobs = client.enqueue_many([leasehold.JobSpec("call", {"n": n}, queue=queue) for n in range(8)])
    with running(worker) as errors:
        done = [client.wait(j.job.id, 30) for j in jobs]
        limit = worker.concurrency_limit
    assert not errors
    assert all(d.state == "succeeded" and d.result == 2 for d in done)
    # Eight retries were due together; the halved limit let at most four run at once.
    assert 1 <= counts["most_on_retry"] <= 4, counts
    assert 4 <= limit <= 8, limit


def test_adaptive_settings_are_checked(coordinator: Coordinator) -> None:
    for bad in [
        leasehold.AdaptiveConcurrency(min=0),
        leasehold.AdaptiveConcurrency(min=11),
        leasehold.AdaptiveConcurrency(min=1, latency_target=0),
    ]:
        try:
            leasehold.Worker(coordinator.url, concurrency=10, adaptive_concurrency=bad)
        except ValueError as e:
            assert "adaptive_concurrency" in str(e) or "latency_target" in str(e)
        else:
            raise AssertionError(f"{bad} was accepted")
