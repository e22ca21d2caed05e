"""A worker pool shared by several tenants through the Python SDK: one ``Worker`` with
``tenants=`` serves every tenant's jobs, each handler sees whose job it runs, and each outcome
lands in its job's own tenant."""

from __future__ import annotations

import uuid
from typing import Dict, List

import leasehold
import pytest
from conftest import Coordinator, running


def test_a_pool_worker_serves_each_tenants_jobs(coordinator: Coordinator, queue: str) -> None:
    tenants = [f"pool-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    clients = {t: leasehold.Client(coordinator.url, tenant=t) for t in tenants}
    worker = leasehold.Worker(coordinator.url, queues=[queue], tenants=tenants, tenant_weights={tenants[0]: 2})
    seen: Dict[str, List[int]] = {t: [] for t in tenants}

    @worker.task("work")
    def work(ctx: leasehold.Context) -> str:
        seen[ctx.tenant].append(ctx.payload["n"])
        return ctx.tenant

    with running(worker) as errors:
        jobs = [(t, clients[t].enqueue("work", {"n": n}, queue=queue)) for t in tenants for n in range(3)]
        done = [(t, clients[t].wait(j.job.id, 30)) for t, j in jobs]
    assert not errors
    for tenant, job in done:
        assert job.state == "succeeded" and job.result == tenant, job.raw
        assert job.raw["tenant"] == tenant
    assert {t: sorted(v) for t, v in seen.items()} == {t: [0, 1, 2] for t in tenants}


def test_pool_arguments_are_checked(coordinator: Coordinator) -> None:
    with pytest.raises(TypeError, match="tenants"):
        leasehold.Worker(coordinator.url, tenants="alpha")  # type: ignore[arg-type]
    bad = [
        ({"tenants": []}, "1 to 100"),
        ({"tenants": ["a b"]}, "tenant name"),
        ({"tenants": ["alpha"], "tenant": "alpha"}, "not both"),
        ({"tenants": ["alpha"], "tenant_weights": {"beta": 2}}, "not one of the pool's tenants"),
        ({"tenants": ["alpha"], "tenant_weights": {"alpha": 0}}, "between 1 and 1000"),
        ({"tenant_weights": {"alpha": 2}}, "shares of a pool's tenants"),
    ]
    for kwargs, words in bad:
        with pytest.raises(ValueError, match=words):
            leasehold.Worker(coordinator.url, **kwargs)  # type: ignore[arg-type]
