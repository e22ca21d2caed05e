"""Fixtures: a real coordinator process (SQLite, temporary data dir) and helpers to run a real
worker against it."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import leasehold
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
T = TypeVar("T")


def coordinator_binary() -> str:
    explicit = os.environ.get("LEASEHOLD_BIN")
    if explicit:
        return explicit
    for candidate in (ROOT / "target" / "debug" / "leasehold", ROOT / "target" / "release" / "leasehold"):
        if candidate.exists():
            return str(candidate)
    pytest.fail("no coordinator binary: run `cargo build -p leasehold-coordinator` or set LEASEHOLD_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Coordinator:
    """`leasehold serve` on a free port with its own data directory."""

    def __init__(self, data_dir: pathlib.Path, database_url: Optional[str] = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "coordinator.log"
        self._log = open(self.log_path, "wb")
        database = ["--database-url", database_url] if database_url else []
        listen = ["--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [coordinator_binary(), "serve", *listen, "--data-dir", str(data_dir), *database],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"coordinator did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()

    def post(self, path: str, body: Dict[str, Any]) -> tuple[int, Any]:
        """A raw HTTP POST (for acting behind a worker's back)."""
        req = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="session")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = Coordinator(tmp_path_factory.mktemp("coordinator"))
    yield c
    c.stop()


@pytest.fixture(scope="session")
def pg_coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    """A coordinator on PostgreSQL (``LEASEHOLD_TEST_DATABASE_URL``, a fresh schema). Skipped
    without one, unless ``LEASEHOLD_REQUIRE_PG=1`` (the test command and CI), which fails."""
    base = os.environ.get("LEASEHOLD_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("LEASEHOLD_REQUIRE_PG") == "1":
            pytest.fail("LEASEHOLD_REQUIRE_PG=1 but LEASEHOLD_TEST_DATABASE_URL is unset")
        pytest.skip("LEASEHOLD_TEST_DATABASE_URL is unset")
    schema = f"py_{uuid.uuid4().hex[:12]}"
    subprocess.run(["psql", "-X", "-q", base, "-c", f"CREATE SCHEMA {schema}"], check=True)
    marker = os.environ.get("LEASEHOLD_PG_MARKER")
    if marker:
        with open(marker, "a") as f:
            f.write("sdk-python::pg_coordinator\n")
    sep = "&" if "?" in base else "?"
    c = Coordinator(tmp_path_factory.mktemp("pg-coordinator"), f"{base}{sep}options=-c%20search_path%3D{schema}")
    yield c
    c.stop()


@pytest.fixture
def url(coordinator: Coordinator) -> str:
    return coordinator.url


@pytest.fixture
def queue() -> str:
    """A queue of this test's own, so tests never see each other's jobs."""
    return f"py-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(url: str) -> leasehold.Client:
    return leasehold.Client(url)


@contextlib.contextmanager
def running(worker: leasehold.Worker) -> Iterator[List[BaseException]]:
    """Runs ``worker`` on a thread for the ``with`` block, then stops it and checks it ended."""
    errors: List[BaseException] = []

    def main() -> None:
        try:
            worker.run()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    try:
        yield errors
    finally:
        worker.stop()
        t.join(60)
        assert not t.is_alive(), "worker.run() did not return after stop()"


def eventually(what: str, probe: Callable[[], Optional[T]], patience: float = 20.0) -> T:
    """Polls ``probe`` until it returns something other than None/False."""
    deadline = time.monotonic() + patience
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def python() -> str:
    return sys.executable
