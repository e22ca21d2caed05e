"""A worker process for the drain tests: ``python drain_worker.py URL QUEUE SECONDS DRAIN``.

Each ``nap`` job prints ``started <id>`` and then sleeps SECONDS without looking at its
cancellation (the worst case for a drain); the worker's drain timeout is DRAIN seconds."""

from __future__ import annotations

import sys
import time

import leasehold

url, queue, seconds, drain = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
worker = leasehold.Worker(url, queues=[queue], concurrency=2, drain_timeout=drain, lease_ttl=3)


@worker.task("nap")
def nap(ctx: leasehold.Context) -> str:
    print(f"started {ctx.job_id}", flush=True)
    time.sleep(seconds)
    return "rested"


print("ready", flush=True)
worker.run()
print("drained", flush=True)
