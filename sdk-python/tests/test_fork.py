"""Handles used after fork() raise a clear error instead of hanging; fresh ones in the child
work (the child gets its own runtime)."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from typing import Any, Callable, Dict

import leasehold
from conftest import running


def in_child(body: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Runs ``body`` in a forked child and returns what it reported."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        try:
            report = body()
        except BaseException as e:  # noqa: BLE001
            report = {"crash": repr(e)}
        os.write(w, json.dumps(report).encode())
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 30
    chunks = []
    while True:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung instead of reporting")
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


def test_a_client_used_after_fork_raises(url: str, client: leasehold.Client, queue: str) -> None:
    job = client.enqueue("k", {}, queue=queue)  # the parent's runtime is running

    def child() -> Dict[str, Any]:
        report: Dict[str, Any] = {}
        try:
            client.get(job.job.id)
            report["old"] = "worked"
        except RuntimeError as e:
            report["old"] = str(e)
        report["new"] = leasehold.Client(url).get(job.job.id).id
        return report

    report = in_child(child)
    assert "cannot be used after fork()" in report["old"], report
    assert report["new"] == job.job.id
    assert client.get(job.job.id).id == job.job.id  # the parent is unaffected


def test_a_running_worker_cannot_be_reused_after_fork(url: str, queue: str) -> None:
    worker = leasehold.Worker(url, queues=[queue])

    @worker.task("k")
    def k(ctx: leasehold.Context) -> None:
        return None

    with running(worker):
        while worker.worker_id is None or not any(t.name.startswith("leasehold-worker") for t in threading.enumerate()):
            time.sleep(0.01)

        def child() -> Dict[str, Any]:
            try:
                worker.run()
                return {"error": None}
            except RuntimeError as e:
                return {"error": str(e)}

        report = in_child(child)
    assert report["error"] and "after fork()" in report["error"], report
