"""The cross-language algorithms, computed by the Rust core (so every SDK agrees byte for byte;
``proto/vectors/`` pins them)."""

from __future__ import annotations

import json
from typing import Any, Iterable

from . import _native
from .models import Artifact, _dumps

__all__ = ["canonical_json", "digest", "idempotency_key", "manifest_digest"]


def canonical_json(value: Any) -> str:
    """The RFC 8785 (JCS) canonical JSON text of ``value``."""
    return _native.canonical_json(_dumps("value", value))


def idempotency_key(queue: str, kind: str, payload: Any) -> str:
    """The deterministic idempotency key of ``payload`` of ``kind`` on ``queue`` (a UUIDv5 over
    the canonical payload): what ``deterministic_key=True`` sends."""
    if not isinstance(queue, str) or not isinstance(kind, str):
        raise TypeError("queue and kind must be strings")
    return _native.idempotency_key(queue, kind, _dumps("payload", payload))


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"digest takes bytes, got {type(data).__name__}")
    return _native.digest(bytes(data))


def manifest_digest(artifacts: Iterable[Artifact]) -> str:
    """The digest of a completion's artifact manifest (sorted by name, canonical JSON)."""
    items = []
    for a in artifacts:
        if not isinstance(a, Artifact):
            raise TypeError(f"manifest_digest takes leasehold.Artifact values, got {type(a).__name__}")
        items.append({"name": a.name, "digest": a.digest, "size": a.size, "media_type": a.media_type})
    return _native.manifest_digest(json.dumps(items))
