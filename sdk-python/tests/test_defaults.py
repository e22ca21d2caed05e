"""The Python worker's defaults are the core's: the ones ``proto/conformance/worker_defaults.json``
states for every skin (the Rust, C and Go suites check the same file)."""

from __future__ import annotations

import inspect
import json
import pathlib

import leasehold
from leasehold import _native

STATED = json.loads(
    (pathlib.Path(__file__).resolve().parents[2] / "proto" / "conformance" / "worker_defaults.json").read_text()
)


def test_the_native_module_hands_out_the_stated_defaults() -> None:
    assert _native.DEFAULT_CONCURRENCY == STATED["concurrency"]
    assert _native.DEFAULT_LEASE_TTL == STATED["lease_ttl_ms"] / 1000
    assert _native.DEFAULT_POLL_WAIT == STATED["poll_wait_ms"] / 1000
    assert _native.DEFAULT_DRAIN_TIMEOUT == STATED["drain_timeout_ms"] / 1000
    assert _native.DEFAULT_CANCEL_GRACE == STATED["cancel_grace_ms"] / 1000


def test_a_worker_made_without_settings_uses_them() -> None:
    params = inspect.signature(leasehold.Worker).parameters
    assert params["concurrency"].default == STATED["concurrency"]
    assert params["lease_ttl"].default == STATED["lease_ttl_ms"] / 1000
    assert params["poll_wait"].default == STATED["poll_wait_ms"] / 1000
    assert params["drain_timeout"].default == STATED["drain_timeout_ms"] / 1000
    assert params["cancel_grace"].default == STATED["cancel_grace_ms"] / 1000
    worker = leasehold.Worker("http://127.0.0.1:9", queues=["q"])
    assert worker._concurrency == STATED["concurrency"]
    assert worker._drain_timeout == STATED["drain_timeout_ms"] / 1000
    assert worker._cancel_grace == STATED["cancel_grace_ms"] / 1000


def test_draining_has_no_sleep_loop() -> None:
    # The wait for running handlers is the core's (woken as each ends), not a Python poll.
    source = inspect.getsource(leasehold.Worker._drain)
    assert "sleep" not in source, source
