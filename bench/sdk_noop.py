"""A Python SDK worker with a no-op handler, for ``bench/sdk-ratio``:
``python sdk_noop.py URL QUEUE CONCURRENCY``. Prints ``ready``, runs until SIGTERM or Ctrl-C,
then drains — the same shape as ``bench/src/bin/sdk_noop.rs``."""

from __future__ import annotations

import sys

import leasehold

url, queue, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
worker = leasehold.Worker(url, queues=[queue], concurrency=concurrency)


@worker.task("noop")
def noop(ctx: leasehold.Context) -> None:
    return None


print("ready", flush=True)
worker.run()
