"""A Leasehold worker with a sync task and an async task.

    python worker.py --url http://127.0.0.1:7070 --queue examples

Stop it with Ctrl-C (or SIGTERM): it drains — no new jobs, running ones finish — and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
from typing import Any, Dict

import leasehold


def build(url: str, queue: str) -> leasehold.Worker:
    worker = leasehold.Worker(url, queues=[queue], concurrency=4, app_version="python-example/1.0")

    @worker.task("digest")
    def digest(ctx: leasehold.Context) -> Dict[str, Any]:
        """Sync task (runs on a worker thread): hashes some text in steps, reporting progress,
        and stores the digest as an artifact."""
        text = str(ctx.payload["text"])
        h = hashlib.sha256()
        for step in range(5):
            ctx.heartbeat(progress={"step": step + 1, "of": 5})  # stops here if cancelled
            h.update(text.encode())
        artifact = ctx.put_artifact("digest.txt", h.hexdigest().encode(), media_type="text/plain")
        return {"sha256": h.hexdigest(), "artifact": artifact.digest, "attempt": ctx.attempt}

    @worker.task("greet")
    async def greet(ctx: leasehold.AsyncContext) -> Dict[str, Any]:
        """Async task (runs on the worker's asyncio loop)."""
        await asyncio.sleep(0.05)  # stands in for an HTTP call or a database query
        return {"greeting": f"hello, {ctx.payload['name']}"}

    return worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7070")
    parser.add_argument("--queue", default="examples")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = build(args.url, args.queue)
    print(f"worker taking jobs from {args.queue!r} at {args.url}; Ctrl-C to stop", flush=True)
    worker.run()
    print("worker drained and stopped", flush=True)


if __name__ == "__main__":
    main()
