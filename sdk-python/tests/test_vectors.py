"""Every shared vector in proto/vectors/ checked against the SDK (the Rust core's code, through
the native module). A vector file without a check here fails, so none is skipped silently."""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any, Callable, Dict

import leasehold
import pytest
from leasehold import _native

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "proto" / "vectors"


def check_artifact_digests(v: Dict[str, Any]) -> None:
    assert v["cases"]
    for c in v["cases"]:
        data = c["utf8"].encode() if c.get("utf8") is not None else bytes.fromhex(c["hex"])
        assert len(data) == c["size"], c["name"]
        assert leasehold.digest(data) == c["digest"], c["name"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == c["digest"], c["name"]


def check_manifest_digests(v: Dict[str, Any]) -> None:
    assert v["cases"]
    for c in v["cases"]:
        arts = [leasehold.Artifact(a["name"], a["digest"], a["size"], a["media_type"]) for a in c["artifacts"]]
        assert leasehold.manifest_digest(arts) == c["digest"], c["name"]
        ordered = sorted(c["artifacts"], key=lambda a: a["name"].encode())
        assert leasehold.canonical_json(ordered) == c["canonical"], c["name"]
        assert "sha256:" + hashlib.sha256(c["canonical"].encode()).hexdigest() == c["digest"]


def check_artifact_names(v: Dict[str, Any]) -> None:
    assert v["valid"] and v["invalid"]
    for name in v["valid"]:
        _native.check_artifact_name(name)
    for name in v["invalid"]:
        with pytest.raises(ValueError):
            _native.check_artifact_name(name)


def check_idempotency_keys(v: Dict[str, Any]) -> None:
    assert v["cases"]
    for c in v["cases"]:
        assert leasehold.canonical_json(c["payload"]) == c["canonical_payload"]
        assert leasehold.idempotency_key(c["queue"], c["kind"], c["payload"]) == c["key"]


def check_retry_schedules(v: Dict[str, Any]) -> None:
    assert v["algorithm"] == "leasehold-retry-v1"
    assert v["splitmix64"] and v["cases"]
    for s in v["splitmix64"]:
        assert _native.splitmix64(int(s["seed"]), len(s["outputs"])) == [int(o) for o in s["outputs"]]
    for c in v["cases"]:
        p = c["policy"]
        ceilings, delays = _native.retry_schedule(
            p["initial_ms"], p["multiplier"], p["max_delay_ms"], p["max_attempts"], int(c["seed"])
        )
        assert ceilings == c["ceilings_ms"], c["name"]
        assert delays == c["delays_ms"], c["name"]


CHECKS: Dict[str, Callable[[Dict[str, Any]], None]] = {
    "artifact_digests.json": check_artifact_digests,
    "manifest_digests.json": check_manifest_digests,
    "artifact_names.json": check_artifact_names,
    "idempotency_keys.json": check_idempotency_keys,
    "retry_schedules.json": check_retry_schedules,
}


def test_there_are_vectors() -> None:
    assert sorted(p.name for p in VECTORS.glob("*.json")), f"no vectors in {VECTORS}"


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.json")), ids=lambda p: p.name)
def test_vector(path: pathlib.Path) -> None:
    check = CHECKS.get(path.name)
    assert check is not None, f"no Python check for vector file {path.name}: add one"
    check(json.loads(path.read_text()))
