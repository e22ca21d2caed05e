"""Runs (DAGs) worked by the Python SDK end to end, on SQLite and on PostgreSQL: a chain ends
``succeeded``; a first step raising ``leasehold.Fatal`` ends the run ``failed`` with its
descendants ``cancelled`` (``upstream_failed``)."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

import leasehold
import pytest
from conftest import Coordinator, eventually, running

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> Coordinator:
    name = "coordinator" if request.param == "sqlite" else "pg_coordinator"
    coordinator: Coordinator = request.getfixturevalue(name)
    return coordinator


def chain(queue: str, first: str) -> List[leasehold.RunJob]:
    return [
        leasehold.RunJob("extract", first, {"n": 1}, queue=queue),
        leasehold.RunJob("transform", "step", {"n": 2}, depends_on=["extract"], queue=queue),
        leasehold.RunJob("load", "step", {"n": 3}, depends_on=["transform"], queue=queue),
    ]


def work(server: Coordinator, queue: str, first: str) -> leasehold.RunInfo:
    client = leasehold.Client(server.url)
    seen: List[Dict[str, Any]] = []
    worker = leasehold.Worker(server.url, queues=[queue], concurrency=2)

    @worker.task("step")
    def step(ctx: leasehold.Context) -> Dict[str, Any]:
        seen.append(ctx.payload)
        return {"done": ctx.payload["n"]}

    @worker.task("broken")
    def broken(ctx: leasehold.Context) -> None:
        raise leasehold.Fatal("the source is gone")

    run = client.submit_run(chain(queue, first), name=f"py-{first}")
    with running(worker) as errors:
        ended = eventually(
            "the run to end",
            lambda: (r := client.get_run(run.id)).status in TERMINAL and r,
            patience=60,
        )
    assert not errors
    assert isinstance(ended, leasehold.RunInfo)
    return ended


def states(run: leasehold.RunInfo) -> Dict[str, str]:
    return {j["key"]: j["state"] for j in run.jobs}


def test_a_chain_succeeds(server: Coordinator) -> None:
    run = work(server, f"py-run-{uuid.uuid4().hex[:8]}", "step")
    assert run.status == "succeeded"
    assert states(run) == {"extract": "succeeded", "transform": "succeeded", "load": "succeeded"}


def test_a_fatal_first_step_cancels_its_descendants(server: Coordinator) -> None:
    run = work(server, f"py-run-{uuid.uuid4().hex[:8]}", "broken")
    assert run.status == "failed"
    assert states(run) == {"extract": "dead", "transform": "cancelled", "load": "cancelled"}
    client = leasehold.Client(server.url)
    for j in run.jobs:
        if j["key"] != "extract":
            assert client.get(j["job_id"]).raw["cancel_reason"] == "upstream_failed"
