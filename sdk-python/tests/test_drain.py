"""Drain on SIGTERM/SIGINT with a real worker process: in-flight jobs finish or are released
(never lost, no attempt spent), and Ctrl-C works while ``run()`` is blocked."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
from typing import IO, List

import leasehold
from conftest import eventually

SCRIPT = str(pathlib.Path(__file__).with_name("drain_worker.py"))


def spawn(url: str, queue: str, seconds: float, drain: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, SCRIPT, url, queue, str(seconds), str(drain)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    return p


def read_started(stdout: IO[str], n: int) -> List[str]:
    ids = []
    while len(ids) < n:
        line = stdout.readline()
        assert line, "worker exited early"
        if line.startswith("started "):
            ids.append(line.split()[1])
    return ids


def test_sigterm_lets_running_jobs_finish(url: str, client: leasehold.Client, queue: str) -> None:
    jobs = [client.enqueue("nap", {}, queue=queue).job.id for _ in range(2)]
    p = spawn(url, queue, seconds=1.0, drain=20)
    assert p.stdout is not None
    assert sorted(read_started(p.stdout, 2)) == sorted(jobs)
    waiting = client.enqueue("nap", {}, queue=queue).job.id  # must not be taken once draining
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "drained" in out
    for j in jobs:
        assert client.get(j).state == "succeeded"
    w = client.get(waiting)
    assert w.state == "queued", w


def test_sigterm_releases_jobs_that_outlast_the_drain_timeout(url: str, client: leasehold.Client, queue: str) -> None:
    jobs = [client.enqueue("nap", {}, queue=queue).job.id for _ in range(2)]
    p = spawn(url, queue, seconds=60, drain=1.0)
    assert p.stdout is not None
    read_started(p.stdout, 2)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert time.monotonic() - t0 < 10
    for j in jobs:
        after = client.get(j)
        assert after.state == "queued", after  # released, back in the queue: not lost
        assert after.attempt == 0, after  # and no attempt spent

    # A second worker picks them up.
    p2 = spawn(url, queue, seconds=0, drain=5)
    for j in jobs:
        assert client.wait(j, 30).state == "succeeded"
    p2.send_signal(signal.SIGTERM)
    p2.communicate(timeout=30)


def test_ctrl_c_stops_an_idle_blocked_run(url: str, queue: str) -> None:
    p = spawn(url, queue, seconds=0, drain=5)
    time.sleep(0.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "drained" in out
    assert time.monotonic() - t0 < 5


def test_second_ctrl_c_stops_at_once(url: str, client: leasehold.Client, queue: str) -> None:
    job = client.enqueue("nap", {}, queue=queue).job.id
    p = spawn(url, queue, seconds=60, drain=60)
    assert p.stdout is not None
    read_started(p.stdout, 1)
    p.send_signal(signal.SIGINT)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=20)
    assert p.returncode != 0 and "KeyboardInterrupt" in err
    eventually("the released job to be queued again", lambda: client.get(job).state == "queued")
