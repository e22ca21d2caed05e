"""The shared table of bad requests (proto/conformance/bad_requests.json) replayed over raw HTTP
against a real coordinator: each is refused with the status and error code the table names, and
nothing is stored."""

import json
import pathlib
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, List, Tuple

import pytest
from conftest import Coordinator

TABLE = pathlib.Path(__file__).resolve().parents[2] / "proto" / "conformance" / "bad_requests.json"
CASES: List[Dict[str, Any]] = json.loads(TABLE.read_text())["cases"]


def send(url: str, case: Dict[str, Any], job: str, unknown: str) -> Tuple[int, Any]:
    def fill(s: str) -> str:
        return s.replace("{job}", job).replace("{unknown}", unknown)

    if "json" in case:
        body = fill(json.dumps(case["json"])).encode()
    elif "text" in case:
        body = case["text"].encode()
    elif "hex" in case:
        body = bytes.fromhex(case["hex"])
    else:
        body = b""
    headers = {"Content-Type": "application/json", **case.get("headers", {})}
    req = urllib.request.Request(url + fill(case["path"]), data=body or None, headers=headers, method=case["method"])
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def snapshot(url: str) -> Any:
    with urllib.request.urlopen(f"{url}/v1/jobs?limit=500", timeout=10) as r:
        return json.loads(r.read())


def test_the_table_is_read() -> None:
    assert len(CASES) >= 50


@pytest.fixture(scope="module")
def queued(coordinator: Coordinator) -> str:
    status, job = coordinator.post("/v1/jobs", {"queue": "bad-requests", "kind": "k"})
    assert status == 201, job
    return str(job["id"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_request_is_refused_and_changes_nothing(
    coordinator: Coordinator, queued: str, case: Dict[str, Any]
) -> None:
    before = snapshot(coordinator.url)
    status, body = send(coordinator.url, case, queued, str(uuid.uuid4()))
    assert status == case["status"], body
    assert body["error"]["code"] == case["code"], body
    assert snapshot(coordinator.url) == before
