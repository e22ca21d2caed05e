"""docs/PYTHON_SDK.md runs as written: every ``python`` block of the guide is tagged with the role
it plays (``<!-- guide-test: worker|client|standalone -->`` just above it) and run here against a
real coordinator, with only the coordinator's URL changed: the worker in a process of its own,
the client next to it, then the standalone blocks. The guide is the only copy of the samples, so
the two cannot drift apart."""

from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import sys
from typing import Dict, List, Tuple

from conftest import ROOT, Coordinator

GUIDE = ROOT / "docs" / "PYTHON_SDK.md"
GUIDE_URL = "http://127.0.0.1:7070"
BLOCK = re.compile(r"(?:<!-- guide-test: (\w+) -->\n)?```python\n(.*?)```", re.S)


def blocks() -> List[Tuple[str, str]]:
    found = [(m.group(1) or "", m.group(2)) for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))]
    untagged = [code.splitlines()[0] for role, code in found if role not in ("worker", "client", "standalone")]
    assert not untagged, f"python blocks in {GUIDE.name} without a guide-test tag: {untagged}"
    return found


def script(tmp_path: pathlib.Path, name: str, code: str, url: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(code.replace(GUIDE_URL, url), encoding="utf-8")
    return str(path)


def test_the_guide_samples_run_against_a_real_coordinator(tmp_path: pathlib.Path, coordinator: Coordinator) -> None:
    by_role: Dict[str, List[str]] = {}
    for role, code in blocks():
        by_role.setdefault(role, []).append(code)
    assert len(by_role.get("worker", [])) == 1 and len(by_role.get("client", [])) == 1, by_role.keys()
    assert by_role["worker"][0].count(GUIDE_URL) == 1 and by_role["client"][0].count(GUIDE_URL) == 1

    err_path = tmp_path / "worker.err"
    with open(err_path, "wb") as err:
        worker = subprocess.Popen(
            [sys.executable, script(tmp_path, "worker", by_role["worker"][0], coordinator.url)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            client = subprocess.run(
                [sys.executable, script(tmp_path, "client", by_role["client"][0], coordinator.url)],
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert client.returncode == 0, f"client:\n{client.stderr}\nworker:\n{err_path.read_text()}"
            # The outputs the guide promises in its comments.
            assert client.stdout.splitlines() == ["succeeded 3 ['out.png']", "succeeded 3"], client.stdout
        finally:
            worker.send_signal(signal.SIGTERM)  # the guide's way to stop it: a drain
            code = worker.wait(60)
    assert code == 0, err_path.read_text()

    for i, code in enumerate(by_role.get("standalone", [])):
        done = subprocess.run(
            [sys.executable, script(tmp_path, f"standalone{i}", code, coordinator.url)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{code}\n{done.stderr}"
