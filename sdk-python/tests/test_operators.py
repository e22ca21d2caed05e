"""The clients' operator calls against a real coordinator: job listings by run, correlation id
and time; run and worker listings; cancel and replay by filter (dry run first), and what is
refused before anything is sent. The coordinator is shared by the session, so every filter here
names this test's own queue or correlation id."""

from __future__ import annotations

import asyncio
import datetime

import leasehold
import pytest
from conftest import running


def test_jobs_by_run_correlation_id_and_time(client: leasehold.Client, queue: str) -> None:
    corr = f"req-{queue}"
    a = client.enqueue("k", {"n": 1}, queue=queue, correlation_id=corr)
    b = client.enqueue("k", {"n": 2}, queue=queue)
    run = client.submit_run(
        [leasehold.RunJob("fetch", "k", queue=queue), leasehold.RunJob("parse", "k", depends_on=["fetch"], queue=queue)]
    )
    run_jobs = sorted((j["job_id"] for j in run.jobs), reverse=True)

    assert [j.id for j in client.list(correlation_id=corr).jobs] == [a.job.id]
    assert [j.id for j in client.list(run_id=run.id).jobs] == run_jobs
    assert [j.state for j in client.list(run_id=run.id, state="blocked").jobs] == ["blocked"]
    # Old calls read the same (the new filters are keyword-only, with None defaults).
    assert len(client.list(queue=queue).jobs) == 4
    assert len(client.list(queue=queue, since="15m").jobs) == 4
    assert len(client.list(queue=queue, since=datetime.timedelta(minutes=15)).jobs) == 4
    created = datetime.datetime.fromisoformat(b.job.created_at.replace("Z", "+00:00"))
    assert [j.id for j in client.list(queue=queue, since=created, until="0s").jobs][-1] == b.job.id
    assert client.list(queue=queue, until="2020-01-01T00:00:00Z").jobs == []
    page = client.list(queue=queue, since="1h", limit=3)
    assert len(page.jobs) == 3 and page.next_cursor
    assert len(client.list(queue=queue, since="1h", cursor=page.next_cursor).jobs) == 1

    with pytest.raises(leasehold.CoordinatorError) as refused:
        client.list(queue=queue, since="yesterday")
    assert refused.value.status == 422 and "since" in str(refused.value)
    with pytest.raises(ValueError, match='run_id "nope" is not a UUID'):
        client.list(run_id="nope")
    with pytest.raises(ValueError, match="timezone-aware"):
        client.list(since=datetime.datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="since must be a string, datetime or timedelta"):
        client.list(since=15)  # type: ignore[arg-type]


def test_runs_listed_with_their_jobs_counted(client: leasehold.Client, queue: str) -> None:
    name = f"nightly-{queue}"
    first = client.submit_run(
        [leasehold.RunJob("a", "k", queue=queue), leasehold.RunJob("b", "k", depends_on=["a"], queue=queue)],
        name=name,
        project="etl",
        correlation_id=f"corr-{queue}",
    )
    second = client.submit_run([leasehold.RunJob("a", "k", queue=queue)], name=name)
    client.cancel_run(second.id)

    page = client.list_runs(name=name)
    assert [r.id for r in page.runs] == [second.id, first.id] and page.next_cursor is None
    summary = page.runs[1]
    assert isinstance(summary, leasehold.RunSummary)
    assert (summary.status, summary.project, summary.correlation_id) == ("pending", "etl", f"corr-{queue}")
    assert summary.jobs == {"queued": 1, "blocked": 1} and summary.created_at and summary.raw["tenant"] == "default"
    assert [r.id for r in client.list_runs(name=name, status="cancelled").runs] == [second.id]
    assert [r.id for r in client.list_runs(correlation_id=f"corr-{queue}", since="1h").runs] == [first.id]
    one = client.list_runs(name=name, limit=1)
    assert [r.id for r in one.runs] == [second.id] and one.next_cursor
    assert [r.id for r in client.list_runs(name=name, limit=1, cursor=one.next_cursor).runs] == [first.id]
    assert client.list_runs(name=name, until="2020-01-01T00:00:00Z").runs == []
    with pytest.raises(ValueError, match='unknown run status "done"'):
        client.list_runs(status="done")


def test_cancel_and_replay_by_filter(client: leasehold.Client, queue: str) -> None:
    corr = f"incident-{queue}"
    jobs = client.enqueue_many([leasehold.JobSpec("k", {"i": i}, queue=queue, correlation_id=corr) for i in range(3)])
    bystander = client.enqueue("k", {}, queue=queue)
    ids = sorted((e.job.id for e in jobs), reverse=True)

    dry = client.cancel_jobs(correlation_id=corr, dry_run=True, reason="bad deploy", ticket="OPS-1")
    assert isinstance(dry, leasehold.CancellationResult)
    assert (dry.dry_run, dry.matched, dry.cancelled, dry.job_ids, dry.audit_event_id) == (True, 3, 0, ids, None)
    assert client.get(ids[0]).state == "queued"

    done = client.cancel_jobs(correlation_id=corr, reason="bad deploy", ticket="OPS-1")
    assert (done.dry_run, done.matched, done.cancelled) == (False, 3, 3) and done.audit_event_id is not None
    assert {client.get(i).state for i in ids} == {"cancelled"}
    assert client.get(bystander.job.id).state == "queued"

    replay = client.replay_jobs(queue=queue, state="cancelled", reason="deploy fixed", ticket="OPS-1")
    assert isinstance(replay, leasehold.ReplayResult)
    assert (replay.matched, replay.replayed, replay.job_ids) == (3, 3, ids) and replay.audit_event_id
    assert len(client.list(queue=queue, state="queued").jobs) == 4
    # Nothing left to replay: an empty selection is not an error.
    again = client.replay_jobs(queue=queue, state="cancelled", reason="again", ticket="OPS-1", dry_run=True)
    assert (again.matched, again.job_ids) == (0, [])

    # The justification is required: refused by the SDK, by name, before anything is sent.
    with pytest.raises(ValueError, match=r"^reason is required"):
        client.replay_jobs(queue=queue, reason="  ", ticket="OPS-1")
    with pytest.raises(ValueError, match=r"^ticket is required"):
        client.cancel_jobs(queue=queue, reason="why", ticket="")
    with pytest.raises(TypeError, match="reason"):
        client.replay_jobs(queue=queue, ticket="OPS-1")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match='queue name "no spaces"'):
        client.cancel_jobs(queue="no spaces", reason="why", ticket="T")
    # A filter the coordinator refuses is its 422.
    with pytest.raises(leasehold.CoordinatorError) as refused:
        client.replay_jobs(queue=queue, state="queued", reason="why", ticket="T")
    assert refused.value.status == 422
    assert len(client.list(queue=queue, state="queued").jobs) == 4


def test_workers_and_replaying_dead_jobs(url: str, client: leasehold.Client, queue: str) -> None:
    worker_id = f"ops-{queue}"
    worker = leasehold.Worker(url, queues=[queue], worker_id=worker_id, app_version="ops/1", poll_wait=1)

    @worker.task("boom")
    def boom(ctx: leasehold.Context) -> None:
        raise leasehold.Fatal("bad input")

    job = client.enqueue("boom", {}, queue=queue)
    with running(worker):
        assert client.wait(job.job.id, timeout=30).state == "dead"
        seen = {w.worker_id: w for w in client.workers(since="10m")}
        me = seen[worker_id]
        assert isinstance(me, leasehold.WorkerInfo)
        assert me.queues == [queue] and me.version and "ops/1" in me.version and me.last_seen_at
        assert me.transport in ("websocket", "http") and me.leases == 0
        assert worker_id in {w.worker_id for w in client.workers()}
        assert worker_id in {w.worker_id for w in client.workers(since=datetime.timedelta(hours=1))}

    # What the worker did, counted: per minute, by failure class, against the objectives.
    stats = client.stats(since="15m", queue=queue)
    assert isinstance(stats, leasehold.JobStats) and stats.bucket_secs == 60 and stats.since < stats.until
    assert {p.queue for p in stats.points} == {queue}
    assert (sum(p.leased for p in stats.points), sum(p.dead for p in stats.points)) == (1, 1)
    assert any(p.queue == queue for p in client.stats().points)
    assert any(p.queue == queue for p in client.stats(since=datetime.timedelta(minutes=5)).points)
    failures = client.failures(queue=queue)
    assert [(c.queue, c.count) for c in failures.classes] == [(queue, 1)] and failures.classes[0].class_
    report = client.slo(window="30m")
    assert report.window_secs == 1800
    mine = next(q for q in report.queues if q.queue == queue)
    assert isinstance(mine, leasehold.QueueSLO) and not mine.configured
    assert (mine.success.good, mine.success.total) == (0, 1) and mine.success.burn_rate is not None
    assert 0.5 <= mine.objective.success_ratio < 1 and mine.objective.pickup_ms > 0
    assert client.slo().window_secs == 3600 and client.slo(window=datetime.timedelta(hours=2)).window_secs == 7200
    with pytest.raises(leasehold.CoordinatorError) as refused:
        client.slo(window="10s")
    assert refused.value.status == 422
    with pytest.raises(ValueError, match='queue name "no spaces"'):
        client.stats(queue="no spaces")

    dry = client.replay_jobs(queue=queue, kind="boom", dry_run=True, reason="fixed", ticket="OPS-2")
    assert (dry.matched, dry.replayed, dry.job_ids) == (1, 0, [job.job.id])
    assert client.get(job.job.id).state == "dead"
    done = client.replay_jobs(queue=queue, reason="fixed", ticket="OPS-2")
    assert done.replayed == 1 and client.get(job.job.id).state == "queued"


def test_async_operator_calls(url: str, queue: str) -> None:
    async def main() -> None:
        c = leasehold.AsyncClient(url)
        e = await c.enqueue("a", {}, queue=queue, correlation_id=f"c-{queue}")
        assert [j.id for j in (await c.list(correlation_id=f"c-{queue}", since="5m")).jobs] == [e.job.id]
        run = await c.submit_run([leasehold.RunJob("one", "a", queue=queue)], name=f"async-{queue}")
        assert [r.id for r in (await c.list_runs(name=f"async-{queue}")).runs] == [run.id]
        assert isinstance(await c.workers(), list)
        dry = await c.cancel_jobs(queue=queue, dry_run=True, reason="r", ticket="t")
        assert dry.matched == 2
        done = await c.cancel_jobs(queue=queue, reason="r", ticket="t")
        assert done.cancelled == 2
        replay = await c.replay_jobs(queue=queue, state="cancelled", reason="r", ticket="t")
        assert replay.replayed == 2
        assert (await c.stats(queue=queue)).bucket_secs == 60
        assert isinstance((await c.failures(queue=queue)).classes, list)
        assert (await c.slo(window="2h")).window_secs == 7200
        with pytest.raises(ValueError, match=r"^reason is required"):
            await c.replay_jobs(queue=queue, reason="", ticket="t")

    asyncio.run(main())
