"""Sync and async handlers against a real coordinator: results, retries with backoff, fatal
errors, checkpoints, unknown kinds, and a lease kept alive by Rust while Python hogs the GIL."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any, Dict, List

import leasehold
import pytest
from conftest import eventually, running


def test_sync_and_async_handlers_complete_jobs(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue], concurrency=4, app_version="tests/1")
    threads: List[str] = []

    @worker.task("add")
    def add(ctx: leasehold.Context) -> Dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"sum": ctx.payload["a"] + ctx.payload["b"], "attempt": ctx.attempt}

    @worker.task("shout")
    async def shout(ctx: leasehold.AsyncContext) -> str:
        await asyncio.sleep(0.01)
        return str(ctx.payload).upper()

    with running(worker) as errors:
        a = client.enqueue("add", {"a": 2, "b": 3}, queue=queue)
        b = client.enqueue("shout", "hello", queue=queue)
        done_a = client.wait(a.job.id, 20)
        done_b = client.wait(b.job.id, 20)
    assert not errors
    assert done_a.state == "succeeded" and done_a.result == {"sum": 5, "attempt": 1}
    assert done_b.state == "succeeded" and done_b.result == "HELLO"
    assert threads and all(t.startswith("leasehold-worker-") for t in threads)
    # The core's version, then the Python layer's, then the application's.
    version = done_a.raw["worker_version"].split()
    assert version[0].startswith("leasehold-rust/") and version[1].startswith("leasehold-python/")
    assert version[2:] == ["tests/1"]


def test_retry_waits_its_backoff_then_succeeds(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue])
    seen: List[float] = []

    @worker.task("flaky")
    def flaky(ctx: leasehold.Context) -> int:
        seen.append(time.monotonic())
        if ctx.attempt < 3:
            raise leasehold.Retry("not yet", after=0.3)
        return ctx.attempt

    with running(worker):
        job = client.enqueue("flaky", {}, queue=queue, max_attempts=5)
        done = client.wait(job.job.id, 30)
    assert done.state == "succeeded" and done.result == 3 and done.attempt == 3
    gaps = [b - a for a, b in zip(seen, seen[1:])]
    assert len(gaps) == 2 and all(g >= 0.25 for g in gaps), gaps


def test_exceptions_retry_with_the_jobs_backoff_until_dead(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue])
    attempts: List[int] = []

    @worker.task("broken")
    async def broken(ctx: leasehold.AsyncContext) -> None:
        attempts.append(ctx.attempt)
        raise KeyError("missing thing")

    with running(worker):
        job = client.enqueue(
            "broken", {}, queue=queue, max_attempts=3, backoff=leasehold.Backoff(initial=0.05, max_delay=0.1)
        )
        done = client.wait(job.job.id, 30)
    assert done.state == "dead" and done.attempt == 3 and attempts == [1, 2, 3]
    assert done.last_error is not None
    assert done.last_error["class"] == "KeyError" and "missing thing" in done.last_error["message"]


def test_fatal_ends_the_job_dead_at_once(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue])

    @worker.task("doomed")
    def doomed(ctx: leasehold.Context) -> None:
        raise leasehold.Fatal("bad input", error_class="validation")

    with running(worker):
        job = client.enqueue("doomed", {}, queue=queue, max_attempts=5)
        done = client.wait(job.job.id, 20)
    assert done.state == "dead" and done.attempt == 1
    assert done.last_error is not None and done.last_error["class"] == "validation"
    assert "bad input" in done.last_error["message"]


def test_unknown_kinds_and_unserializable_results_end_dead(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue])

    @worker.task("odd")
    def odd(ctx: leasehold.Context) -> object:
        return object()

    with running(worker):
        unknown = client.enqueue("nobody-handles-this", {}, queue=queue)
        bad = client.enqueue("odd", {}, queue=queue)
        done_unknown = client.wait(unknown.job.id, 20)
        done_bad = client.wait(bad.job.id, 20)
    assert done_unknown.state == "dead" and done_unknown.last_error is not None
    assert done_unknown.last_error["class"] == "unknown_kind"
    assert done_bad.state == "dead" and done_bad.last_error is not None
    assert "JSON-serializable" in done_bad.last_error["message"]


def test_checkpoint_and_progress_reach_the_next_attempt(url: str, client: leasehold.Client, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue], lease_ttl=1.5)
    seen: List[Any] = []

    @worker.task("resumable")
    def resumable(ctx: leasehold.Context) -> Any:
        seen.append(ctx.last_checkpoint)
        if ctx.attempt == 1:
            ctx.checkpoint({"done": 5})
            ctx.progress({"pct": 50})
            time.sleep(1.0)  # lets a heartbeat carry both
            raise leasehold.Retry("resume later", after=0)
        return ctx.last_checkpoint

    with running(worker):
        job = client.enqueue("resumable", {}, queue=queue)
        done = client.wait(job.job.id, 30)
    assert seen == [None, {"done": 5}]
    assert done.state == "succeeded" and done.result == {"done": 5}
    assert done.progress == {"pct": 50}


def test_heartbeats_keep_the_lease_while_python_hogs_the_gil(url: str, client: leasehold.Client, queue: str) -> None:
    """A sync handler spins in pure Python for four lease TTLs with thread switching effectively
    off; the Rust heartbeats keep the lease, so the job succeeds on its first attempt."""
    ttl = 1.0
    worker = leasehold.Worker(url, queues=[queue], lease_ttl=ttl)

    @worker.task("spin")
    def spin(ctx: leasehold.Context) -> Dict[str, Any]:
        before = sys.getswitchinterval()
        sys.setswitchinterval(30.0)  # this thread keeps the GIL until it blocks or ends
        try:
            end = time.monotonic() + 4 * ttl
            n = 0
            while time.monotonic() < end:
                n += 1
        finally:
            sys.setswitchinterval(before)
        return {"spins": n, "cancelled": ctx.cancelled, "token": ctx.fencing_token}

    with running(worker):
        job = client.enqueue("spin", {}, queue=queue, max_attempts=3)
        done = client.wait(job.job.id, 60)
    assert done.state == "succeeded", done
    assert done.attempt == 1
    assert done.result["cancelled"] is False and done.result["spins"] > 0
    assert done.result["token"] == done.raw["fencing_token"]


def test_a_result_over_the_limit_ends_the_job_dead_at_once(url: str, client: leasehold.Client, queue: str) -> None:
    """The coordinator refuses a result over 1 MiB (413): the SDK records a final
    ``result_too_large`` failure in its place, so the job does not expire and run again."""
    worker = leasehold.Worker(url, queues=[queue])

    @worker.task("big")
    def big(ctx: leasehold.Context) -> Dict[str, str]:
        return {"blob": "x" * 1_100_000}

    with running(worker) as errors:
        job = client.enqueue("big", {}, queue=queue, max_attempts=5)
        done = client.wait(job.job.id, 30)
    assert not errors
    assert done.state == "dead" and done.attempt == 1 and done.result is None
    assert done.last_error is not None and done.last_error["class"] == "result_too_large"
    assert not done.last_error["retryable"]
    assert "the limit is 1048576" in done.last_error["message"], done.last_error


def _held_while_blocked(url: str, client: leasehold.Client, queue: str, prefetch: bool) -> Dict[str, int]:
    """A worker of concurrency 2 over 16 jobs: four end at once (two ``def``, two ``async def``,
    so the jobs are known to be short), the rest are ``async def`` handlers that wait until
    released. Once two wait and things settle, reports how many leases the session holds, then
    lets everything finish; also the most handlers seen running at once."""
    worker = leasehold.Worker(url, queues=[queue], concurrency=2, prefetch=prefetch)
    lock = threading.Lock()
    release = threading.Event()
    seen = {"running": 0, "most_running": 0, "waiting": 0}

    def enter() -> None:
        with lock:
            seen["running"] += 1
            seen["most_running"] = max(seen["most_running"], seen["running"])

    def leave() -> None:
        with lock:
            seen["running"] -= 1

    @worker.task("tick")
    async def tick(ctx: leasehold.AsyncContext) -> None:
        enter()
        try:
            if ctx.payload["n"] >= 4:
                with lock:
                    seen["waiting"] += 1
                while not release.is_set():
                    await asyncio.sleep(0.005)
        finally:
            leave()

    @worker.task("tock")
    def tock(ctx: leasehold.Context) -> None:
        enter()
        leave()

    with running(worker) as errors:
        jobs = client.enqueue_many(
            leasehold.JobSpec(kind="tock" if i in (0, 2) else "tick", payload={"n": i}, queue=queue) for i in range(16)
        )
        eventually("two handlers waiting", lambda: seen["waiting"] >= 2)
        time.sleep(0.5)
        session = worker._session  # the leases held, which only the core knows
        assert session is not None
        seen["held"] = session.active()
        release.set()
        for e in jobs:
            assert client.wait(e.job.id, 30).state == "succeeded"
    assert not errors
    return seen


def test_prefetch_holds_leases_ahead_but_never_runs_more_than_the_concurrency(
    url: str, client: leasehold.Client, queue: str
) -> None:
    """With prefetch (the default) the session holds six leases beyond the two waiting
    handlers (three times the concurrency, its most after quick jobs), yet no third handler
    starts: a thread that hands an ``async def`` handler to the
    loop takes the next job only once a handler ended."""
    seen = _held_while_blocked(url, client, queue, prefetch=True)
    assert seen["most_running"] <= 2, seen
    assert seen["held"] == 8, seen


def test_without_prefetch_the_session_holds_only_what_runs(url: str, client: leasehold.Client, queue: str) -> None:
    seen = _held_while_blocked(url, client, queue, prefetch=False)
    assert seen["most_running"] <= 2 and seen["held"] == 2, seen


def test_prefetch_must_be_a_bool(url: str) -> None:
    with pytest.raises(TypeError, match="prefetch must be True or False"):
        leasehold.Worker(url, queues=["q"], prefetch="yes")  # type: ignore[arg-type]
