"""Cancellation reaching running handlers: an operator's cancel, and a lost lease."""

from __future__ import annotations

import asyncio
import queue as queues
import time
from typing import List, Optional

import leasehold
from conftest import Coordinator, eventually, running


def test_cancel_reaches_a_running_sync_handler(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue], lease_ttl=1.5)
    started: queues.Queue[str] = queues.Queue()

    @worker.task("loop")
    def loop(ctx: leasehold.Context) -> str:
        started.put(ctx.job_id)
        while True:
            ctx.heartbeat()  # raises JobCancelled once the cancel arrives
            time.sleep(0.02)

    with running(worker):
        job = client.enqueue("loop", {}, queue=queue)
        assert started.get(timeout=20) == job.job.id
        client.cancel(job.job.id, "operator says stop")
        done = client.wait(job.job.id, 20)
    assert done.state == "cancelled"


def test_cancel_reaches_a_running_async_handler(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue], lease_ttl=1.5)
    started: queues.Queue[str] = queues.Queue()
    saw: List[Optional[str]] = []

    @worker.task("sleepy")
    async def sleepy(ctx: leasehold.AsyncContext) -> str:
        started.put(ctx.job_id)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            saw.append(ctx.cancel_reason)
            raise
        return "finished"

    with running(worker):
        job = client.enqueue("sleepy", {}, queue=queue)
        assert started.get(timeout=20) == job.job.id
        client.cancel(job.job.id)
        done = client.wait(job.job.id, 20)
    assert done.state == "cancelled"
    assert saw == ["cancel_requested"]


def test_async_handler_can_await_its_cancellation(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue], lease_ttl=1.5)
    started: queues.Queue[str] = queues.Queue()

    @worker.task("waiter")
    async def waiter(ctx: leasehold.AsyncContext) -> None:
        started.put(ctx.job_id)
        await ctx.cancelled
        raise leasehold.JobCancelled("stopping")  # pragma: no cover - the task is cancelled first

    with running(worker):
        job = client.enqueue("waiter", {}, queue=queue)
        started.get(timeout=20)
        client.cancel(job.job.id)
        assert client.wait(job.job.id, 20).state == "cancelled"


def _steal(coordinator: Coordinator, job_id: str, token: int) -> None:
    """Completes the job behind the worker's back with its own fencing token."""
    status, body = coordinator.post(f"/v1/jobs/{job_id}/complete", {"fencing_token": token, "result": "imposter"})
    assert status == 200, body


def test_a_lost_lease_cancels_a_sync_handler_and_drops_its_result(
    coordinator: Coordinator, client: leasehold.Client, queue: str
) -> None:
    worker = leasehold.Worker(coordinator.url, queues=[queue], lease_ttl=1.5)
    started: queues.Queue[tuple[str, int]] = queues.Queue()
    reasons: List[Optional[str]] = []

    @worker.task("long")
    def long(ctx: leasehold.Context) -> str:
        started.put((ctx.job_id, ctx.fencing_token))
        cancelled = ctx.wait_cancelled(timeout=30)
        reasons.append(ctx.cancel_reason if cancelled else "timeout")
        return "late"

    with running(worker):
        job = client.enqueue("long", {}, queue=queue)
        job_id, token = started.get(timeout=20)
        _steal(coordinator, job_id, token)
        eventually("the handler to see its lease lost", lambda: reasons)
        time.sleep(0.5)  # a result that were sent would have landed by now
        after = client.get(job.job.id)
    assert reasons == ["lease_lost"]
    assert after.state == "succeeded" and after.result == "imposter"


def test_a_lost_lease_cancels_an_async_handler(coordinator: Coordinator, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(coordinator.url, queues=[queue], lease_ttl=1.5)
    started: queues.Queue[tuple[str, int]] = queues.Queue()
    reasons: List[Optional[str]] = []

    @worker.task("long")
    async def long(ctx: leasehold.AsyncContext) -> str:
        started.put((ctx.job_id, ctx.fencing_token))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reasons.append(ctx.cancel_reason)
            raise
        return "late"

    with running(worker):
        job = client.enqueue("long", {}, queue=queue)
        job_id, token = started.get(timeout=20)
        _steal(coordinator, job_id, token)
        eventually("the handler to be cancelled", lambda: reasons)
        after = client.get(job.job.id)
    assert reasons == ["lease_lost"]
    assert after.result == "imposter"


def test_a_timeout_given_at_enqueue_cancels_the_handler(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue], lease_ttl=30)
    saw: queues.Queue[Optional[str]] = queues.Queue()

    @worker.task("slow")
    def slow(ctx: leasehold.Context) -> str:
        # Would run for a minute; the job's 1.5 s timeout cancels it first.
        if ctx.wait_cancelled(60):
            saw.put(ctx.cancel_reason)
            ctx.heartbeat()  # raises LeaseLost: the run time is up
        return "finished"

    with running(worker):
        job = client.enqueue("slow", {}, queue=queue, timeout=1.5, max_attempts=1)
        assert job.job.raw["timeout_ms"] == 1500
        assert job.job.timeout == 1.5
        assert job.job.deadline_at is None  # fixed when an attempt is claimed
        done = client.wait(job.job.id, 20)
    assert done.timeout == 1.5
    assert done.deadline_at is not None
    assert saw.get(timeout=1) == "timed_out"
    assert done.state == "dead"
    assert done.result is None
    assert done.last_error is not None
    assert done.last_error["class"] == "timeout"
    assert done.last_error["message"].startswith("run time exceeded: the handler")
