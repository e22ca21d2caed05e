"""A worker process for the drain tests: ``python drain_worker.py URL QUEUE SECONDS DRAIN``.

Each ``nap`` job prints ``started <id>`` and then sleeps SECONDS without looking at its
cancellation (the worst case for a drain); the worker's drain timeout is DRAIN seconds."""

from __future__ import annotations

import sys
import threading
import time

import leasehold

url, queue, seconds, drain = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
worker = leasehold.Worker(url, queues=[queue], concurrency=2, drain_timeout=drain, lease_ttl=3)
_out = threading.Lock()


def say(line: str) -> None:
    """One whole line per write: handler threads print concurrently."""
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


@worker.task("nap")
def nap(ctx: leasehold.Context) -> str:
    say(f"started {ctx.job_id}")
    time.sleep(seconds)
    return "rested"


say("ready")
worker.run()
say("drained")
