"""Drain on SIGTERM/SIGINT with a real worker process: in-flight jobs finish or are released
(never lost, no attempt spent), and Ctrl-C works while ``run()`` is blocked."""

from __future__ import annotations

import pathlib
import queue as queues
import signal
import subprocess
import sys
import threading
import time
from typing import List

import leasehold
from conftest import eventually

SCRIPT = str(pathlib.Path(__file__).with_name("drain_worker.py"))


class WorkerProcess:
    """``drain_worker.py`` in a subprocess; its stdout lines are read by a thread (so a test
    never blocks on a pipe without a deadline), its stderr goes to a file."""

    def __init__(self, url: str, queue: str, seconds: float, drain: float, log_dir: pathlib.Path) -> None:
        self.err_path = log_dir / f"worker-{time.monotonic_ns()}.err"
        self._err = open(self.err_path, "wb")  # closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, url, queue, str(seconds), str(drain)],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.lines: queues.Queue[str] = queues.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next_line() == "ready", self.stderr()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def next_line(self, patience: float = 30.0) -> str:
        try:
            return self.lines.get(timeout=patience)
        except queues.Empty:
            raise AssertionError(f"no output from the worker in {patience} s; stderr:\n{self.stderr()}") from None

    def started(self, n: int) -> List[str]:
        ids: List[str] = []
        while len(ids) < n:
            line = self.next_line()
            assert line != "<eof>", f"worker exited early; stderr:\n{self.stderr()}"
            if line.startswith("started "):
                ids.append(line.split()[1])
        return ids

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 30.0) -> tuple[int, List[str]]:
        """Waits for the exit; returns the exit code and the rest of stdout."""
        code = self.proc.wait(timeout)
        rest = []
        while True:
            line = self.next_line(5.0)
            if line == "<eof>":
                break
            rest.append(line)
        self._err.close()
        return code, rest

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.err_path.read_text(errors="replace")


def test_sigterm_lets_running_jobs_finish(
    url: str, client: leasehold.Client, queue: str, tmp_path: pathlib.Path
) -> None:
    jobs = [client.enqueue("nap", {}, queue=queue).job.id for _ in range(2)]
    w = WorkerProcess(url, queue, seconds=1.0, drain=20, log_dir=tmp_path)
    assert sorted(w.started(2)) == sorted(jobs)
    waiting = client.enqueue("nap", {}, queue=queue).job.id  # must not be taken once draining
    w.signal(signal.SIGTERM)
    code, rest = w.finish()
    assert code == 0, w.stderr()
    assert "drained" in rest
    for j in jobs:
        assert client.get(j).state == "succeeded"
    after = client.get(waiting)
    assert after.state == "queued" and after.attempt == 0, after


def test_sigterm_releases_jobs_that_outlast_the_drain_timeout(
    url: str, client: leasehold.Client, queue: str, tmp_path: pathlib.Path
) -> None:
    jobs = [client.enqueue("nap", {}, queue=queue).job.id for _ in range(2)]
    w = WorkerProcess(url, queue, seconds=60, drain=1.0, log_dir=tmp_path)
    w.started(2)
    t0 = time.monotonic()
    w.signal(signal.SIGTERM)
    code, _ = w.finish()
    assert code == 0, w.stderr()
    assert time.monotonic() - t0 < 10
    for j in jobs:
        after = client.get(j)
        assert after.state == "queued", after  # released, back in the queue: not lost
        assert after.attempt == 0, after  # and no attempt spent

    # A second worker picks them up.
    w2 = WorkerProcess(url, queue, seconds=0, drain=5, log_dir=tmp_path)
    for j in jobs:
        assert client.wait(j, 30).state == "succeeded"
    w2.signal(signal.SIGTERM)
    assert w2.finish()[0] == 0, w2.stderr()


def test_ctrl_c_stops_an_idle_blocked_run(url: str, queue: str, tmp_path: pathlib.Path) -> None:
    w = WorkerProcess(url, queue, seconds=0, drain=5, log_dir=tmp_path)
    time.sleep(0.5)
    t0 = time.monotonic()
    w.signal(signal.SIGINT)
    code, rest = w.finish(20)
    assert code == 0, w.stderr()
    assert "drained" in rest
    assert time.monotonic() - t0 < 5


def test_second_ctrl_c_stops_at_once(url: str, client: leasehold.Client, queue: str, tmp_path: pathlib.Path) -> None:
    job = client.enqueue("nap", {}, queue=queue).job.id
    w = WorkerProcess(url, queue, seconds=60, drain=60, log_dir=tmp_path)
    w.started(1)
    w.signal(signal.SIGINT)
    time.sleep(0.5)
    w.signal(signal.SIGINT)
    code, _ = w.finish(20)
    assert code != 0 and "KeyboardInterrupt" in w.stderr()
    eventually("the released job to be queued again", lambda: client.get(job).state == "queued")
