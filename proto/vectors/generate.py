#!/usr/bin/env python3
"""Regenerates the shared vectors in this folder from an independent Python implementation.

The Rust SDK is checked against these files (sdk-rust/tests/vectors.rs); the Python and Go SDKs
load the same files. This script uses only the standard library, so the vectors do not come from
the code they test. Canonical JSON (RFC 8785) is written out by hand in the cases below: Python's
json module does not implement JCS number formatting or UTF-16 key order, and the Rust test checks
that its JCS output equals each `canonical` string.

Run: python3 proto/vectors/generate.py   (rewrites the *.json files next to it)
"""

import hashlib
import json
import pathlib
import uuid

HERE = pathlib.Path(__file__).resolve().parent
MASK = (1 << 64) - 1
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:leasehold:idempotency:v1")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class SplitMix64:
    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def ceiling_ms(policy: dict, attempt: int) -> int:
    n = max(1, min(attempt, 1000))
    max_ms = policy["max_delay_ms"]
    c = float(policy["initial_ms"])
    m = policy["multiplier"]
    if m > 1.0:
        for _ in range(1, n):
            c *= m
            if c >= max_ms:
                break
    return min(int(c // 1), max_ms)


def schedule(policy: dict, seed: int) -> tuple[list[int], list[int]]:
    rng = SplitMix64(seed)
    delays, ceilings = [], []
    for attempt in range(1, policy["max_attempts"]):
        cap = ceiling_ms(policy, attempt)
        ceilings.append(cap)
        delays.append(rng.next_u64() % (cap + 1))
    return delays, ceilings


def write(name: str, doc: dict) -> None:
    path = HERE / name
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path.name}")


def artifact_digests() -> None:
    cases = [
        {"name": "empty", "utf8": ""},
        {"name": "ascii line", "utf8": "hello world\n"},
        {"name": "utf-8 text", "utf8": "Grüße, 世界 🌍"},
        {"name": "bytes 00..ff", "hex": bytes(range(256)).hex()},
        {"name": "not utf-8", "hex": "fffe00c328"},
    ]
    for c in cases:
        data = c["utf8"].encode("utf-8") if "utf8" in c else bytes.fromhex(c["hex"])
        c["size"] = len(data)
        c["digest"] = digest(data)
    write("artifact_digests.json", {
        "description": "sha256:<64 lowercase hex> of the exact bytes; each case gives its bytes "
                       "as `utf8` text or as `hex`.",
        "cases": cases,
    })


def manifests() -> None:
    d1 = digest(b"hello world\n")
    d2 = digest(b"")
    d3 = digest(bytes(range(256)))
    cases = [
        {
            "name": "empty manifest",
            "artifacts": [],
            "canonical": "[]",
        },
        {
            "name": "one artifact",
            "artifacts": [{"name": "report.txt", "digest": d1, "size": 12, "media_type": "text/plain"}],
            "canonical": '[{"digest":"%s","media_type":"text/plain","name":"report.txt","size":12}]' % d1,
        },
        {
            "name": "sorted by name (bytewise), given unsorted",
            "artifacts": [
                {"name": "out/b.bin", "digest": d3, "size": 256, "media_type": "application/octet-stream"},
                {"name": "out/a.txt", "digest": d1, "size": 12, "media_type": "text/plain; charset=utf-8"},
                {"name": "Z.log", "digest": d2, "size": 0, "media_type": "text/plain"},
            ],
            "canonical": (
                '[{"digest":"%s","media_type":"text/plain","name":"Z.log","size":0},'
                '{"digest":"%s","media_type":"text/plain; charset=utf-8","name":"out/a.txt","size":12},'
                '{"digest":"%s","media_type":"application/octet-stream","name":"out/b.bin","size":256}]'
            ) % (d2, d1, d3),
        },
        {
            "name": "non-ascii name",
            "artifacts": [{"name": "données/é.csv", "digest": d2, "size": 0, "media_type": "text/csv"}],
            "canonical": '[{"digest":"%s","media_type":"text/csv","name":"données/é.csv","size":0}]' % d2,
        },
    ]
    for c in cases:
        c["digest"] = digest(c["canonical"].encode("utf-8"))
    write("manifest_digests.json", {
        "description": "A manifest is the artifacts sorted by name (bytewise on UTF-8), each "
                       "{name, digest, size, media_type}; its digest is the sha256 of the RFC 8785 "
                       "(JCS) form of that JSON array. `canonical` is the JCS text.",
        "cases": cases,
    })


def names() -> None:
    write("artifact_names.json", {
        "description": "Artifact names: relative, '/'-separated, at most 1024 bytes, no empty, '.' "
                       "or '..' segment, no leading '/', no backslash, no NUL.",
        "valid": ["a", "report.txt", "out/x/y.bin", "...", "a..b", ".hidden", "données/é.csv"],
        "invalid": ["", "/abs", "a//b", "a/", "./a", "a/./b", "..", "a/../b", "a\\b", "a\u0000b",
                    "x" * 1025],
    })


def idempotency() -> None:
    cases = [
        {"queue": "default", "kind": "send_email", "payload": {"to": "ada@example.com"},
         "canonical_payload": '{"to":"ada@example.com"}'},
        {"queue": "reports", "kind": "build/v2", "payload": {"b": [3, 2, 1], "a": {"y": None, "x": True}},
         "canonical_payload": '{"a":{"x":true,"y":null},"b":[3,2,1]}'},
        {"queue": "q", "kind": "k", "payload": None, "canonical_payload": "null"},
        {"queue": "q", "kind": "k", "payload": "Grüße \u2028 \"quoted\" \\ \u0001",
         "canonical_payload": '"Grüße \u2028 \\"quoted\\" \\\\ \\u0001"'},
        # JCS number formatting (ECMAScript): 1.0 -> 1, 1e21 -> 1e+21, 0.000001 -> 0.000001, 1e-7 -> 1e-7.
        {"queue": "q", "kind": "k", "payload": {"n": [1.0, 1e21, 0.000001, 1e-7, -0.0, 123456789012]},
         "canonical_payload": '{"n":[1,1e+21,0.000001,1e-7,0,123456789012]}'},
        # JCS sorts keys by UTF-16 code units: U+1F600 (surrogates D83D..) sorts before U+FB33.
        {"queue": "q", "kind": "k", "payload": {"\ufb33": 1, "\U0001F600": 2, "a": 3},
         "canonical_payload": '{"a":3,"\U0001F600":2,"\ufb33":1}'},
    ]
    for c in cases:
        name = c["queue"].encode() + b"\n" + c["kind"].encode() + b"\n" + c["canonical_payload"].encode("utf-8")
        c["key"] = str(uuid.uuid5(NAMESPACE, name.decode("utf-8")))
    write("idempotency_keys.json", {
        "description": "key = UUIDv5(namespace, UTF-8(queue) + '\\n' + UTF-8(kind) + '\\n' + "
                       "JCS(payload)), lower-case hyphenated. `canonical_payload` is the RFC 8785 text.",
        "namespace": str(NAMESPACE),
        "namespace_derivation": "UUIDv5(NAMESPACE_URL, \"urn:leasehold:idempotency:v1\")",
        "cases": cases,
    })


def retries() -> None:
    seeds = [0, 1, 42, 0xDEADBEEFCAFEBABE]
    streams = []
    for s in seeds:
        rng = SplitMix64(s)
        streams.append({"seed": str(s), "outputs": [str(rng.next_u64()) for _ in range(5)]})
    policies = [
        {"name": "job default", "initial_ms": 1000, "multiplier": 2.0, "max_delay_ms": 600000, "max_attempts": 25},
        {"name": "transport", "initial_ms": 100, "multiplier": 2.0, "max_delay_ms": 5000, "max_attempts": 6},
        {"name": "fractional multiplier", "initial_ms": 250, "multiplier": 1.5, "max_delay_ms": 10000, "max_attempts": 12},
        {"name": "flat", "initial_ms": 500, "multiplier": 1.0, "max_delay_ms": 500, "max_attempts": 5},
        {"name": "initial above cap", "initial_ms": 9000, "multiplier": 3.0, "max_delay_ms": 2000, "max_attempts": 4},
    ]
    cases = []
    for p in policies:
        for seed in (7, 0xDEADBEEFCAFEBABE):
            delays, ceilings = schedule(p, seed)
            policy = {k: v for k, v in p.items() if k != "name"}
            cases.append({"name": p["name"], "policy": policy, "seed": str(seed),
                          "ceilings_ms": ceilings, "delays_ms": delays})
    write("retry_schedules.json", {
        "description": "Algorithm leasehold-retry-v1 (see README.md). Seeds and SplitMix64 outputs "
                       "are unsigned 64-bit integers written as decimal strings. For each case, one "
                       "generator seeded with `seed` draws delays_ms[i] = next_delay(attempt=i+1) "
                       "for attempts 1..max_attempts-1 in order; next_delay(max_attempts) is none "
                       "and draws nothing. ceilings_ms[i] is the cap before jitter.",
        "algorithm": "leasehold-retry-v1",
        "splitmix64": streams,
        "cases": cases,
    })


if __name__ == "__main__":
    artifact_digests()
    manifests()
    names()
    idempotency()
    retries()
