"""The blocking and asyncio clients against a real coordinator, including its errors."""

from __future__ import annotations

import asyncio
import datetime

import leasehold
import pytest


def test_enqueue_inspect_cancel_retry(client: leasehold.Client, queue: str) -> None:
    e = client.enqueue("thing", {"x": 1}, queue=queue, priority=3, correlation_id="corr-1")
    assert not e.replayed and e.job.state == "queued" and e.job.payload == {"x": 1}
    assert client.get(e.job.id).correlation_id == "corr-1"
    later = client.enqueue(
        "thing", {}, queue=queue, run_at=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    )
    page = client.list(queue=queue)
    assert {j.id for j in page.jobs} == {e.job.id, later.job.id}
    cancelled = client.cancel(e.job.id, "no longer needed")
    assert cancelled.state == "cancelled"
    again = client.retry(e.job.id)
    assert again.state == "queued"
    assert client.list(queue=queue, state="cancelled").jobs == []


def test_keys_make_enqueue_idempotent(client: leasehold.Client, queue: str) -> None:
    a = client.enqueue("k", {"b": [1, 2], "a": None}, queue=queue, deterministic_key=True)
    b = client.enqueue("k", {"a": None, "b": [1, 2]}, queue=queue, deterministic_key=True)
    assert b.replayed and b.job.id == a.job.id
    assert a.job.idempotency_key == leasehold.idempotency_key(queue, "k", {"a": None, "b": [1, 2]})
    c = client.enqueue("k", {}, queue=queue, idempotency_key="mine-1")
    d = client.enqueue("k", {}, queue=queue, idempotency_key="mine-1")
    assert d.replayed and d.job.id == c.job.id
    many = client.enqueue_many([leasehold.JobSpec("k", {"i": i}, queue=queue) for i in range(5)])
    assert len(many) == 5 and len({m.job.id for m in many}) == 5


def test_a_key_reused_for_other_work_is_refused(client: leasehold.Client, queue: str) -> None:
    first = client.enqueue("k", {"n": 1}, queue=queue, idempotency_key="reused")
    with pytest.raises(leasehold.CoordinatorError) as refused:
        client.enqueue("k", {"n": 2}, queue=queue, idempotency_key="reused")
    assert refused.value.status == 409 and refused.value.code == "idempotency_conflict"
    assert refused.value.details["differs"] == ["payload"]
    assert refused.value.details["job_id"] == first.job.id
    assert not refused.value.retryable
    assert client.list(queue=queue).jobs == [client.get(first.job.id)]


def test_runs_queues_and_waiting(client: leasehold.Client, queue: str) -> None:
    run = client.submit_run(
        [
            leasehold.RunJob("fetch", "fetch", {"u": 1}, queue=queue),
            leasehold.RunJob("parse", "parse", {}, depends_on=["fetch"], queue=queue),
        ],
        name="pipeline",
        run_token="tok-" + queue,
    )
    assert run.status == "pending" and len(run.jobs) == 2
    assert client.submit_run([leasehold.RunJob("fetch", "fetch", queue=queue)], run_token="tok-" + queue).id == run.id
    assert client.get_run(run.id).name == "pipeline"
    assert client.cancel_run(run.id).status == "cancelled"

    assert client.pause_queue(queue).paused
    assert any(q.name == queue and q.paused for q in client.queues())
    assert not client.resume_queue(queue).paused

    job = client.enqueue("never-run", {}, queue=queue)
    with pytest.raises(TimeoutError):
        client.wait(job.job.id, timeout=0.3)


def test_coordinator_errors_carry_status_and_code(client: leasehold.Client) -> None:
    with pytest.raises(leasehold.CoordinatorError) as info:
        client.get("00000000-0000-0000-0000-000000000000")
    e = info.value
    assert e.status == 404 and e.code == "not_found" and e.request_id and not e.retryable
    with pytest.raises(leasehold.CoordinatorError) as info:
        client.enqueue("k", {}, queue="x", max_attempts=0)
    assert info.value.status == 422


def test_unreachable_coordinator_is_a_retryable_coordinator_error() -> None:
    from conftest import free_port

    c = leasehold.Client(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    with pytest.raises(leasehold.CoordinatorError) as info:
        c.get("00000000-0000-0000-0000-000000000000")
    assert info.value.code == "unreachable" and info.value.retryable and info.value.status is None


def test_async_client(url: str, queue: str) -> None:
    async def main() -> None:
        c = leasehold.AsyncClient(url)
        e = await c.enqueue("a", {"n": 1}, queue=queue)
        assert (await c.get(e.job.id)).payload == {"n": 1}
        both = await asyncio.gather(c.get(e.job.id), c.list(queue=queue))
        assert both[0].id == e.job.id and len(both[1].jobs) == 1
        assert (await c.cancel(e.job.id)).state == "cancelled"
        assert (await c.wait(e.job.id, 5)).state == "cancelled"
        run = await c.submit_run([leasehold.RunJob("one", "a", queue=queue)])
        assert (await c.get_run(run.id)).id == run.id
        with pytest.raises(leasehold.CoordinatorError):
            await c.get("00000000-0000-0000-0000-000000000000")
        with pytest.raises(TimeoutError):
            e2 = await c.enqueue("a", {}, queue=queue)
            await c.wait(e2.job.id, 0.2)

    asyncio.run(main())


def test_wait_timeout_names_the_jobs_state(url: str, client: leasehold.Client, queue: str) -> None:
    job = client.enqueue("nobody-serves-this", {}, queue=queue)
    with pytest.raises(leasehold.WaitTimeout) as info:
        client.wait(job.job.id, timeout=0.3)
    e = info.value
    assert isinstance(e, TimeoutError) and isinstance(e, leasehold.LeaseholdError)
    assert str(e) == f"job {job.job.id} still queued after 300ms (attempt 0 of {job.job.max_attempts})"
    assert (e.job_id, e.state, e.attempt, e.max_attempts) == (job.job.id, "queued", 0, job.job.max_attempts)
    assert e.waited == pytest.approx(0.3)

    async def main() -> None:
        with pytest.raises(leasehold.WaitTimeout, match="still queued after 200ms"):
            await leasehold.AsyncClient(url).wait(job.job.id, 0.2)

    asyncio.run(main())
