"""pgqueuer driven through its public API in Leasehold's W1 and W4 shapes.

Run by bench/src/bin/harness (bench/run); prints one JSON object on stdout.

  w1: insert N no-op jobs (~50-byte payload) in batches of 1000, then time P worker
      processes (QueueManager.run in drain mode, batch_size B) from a common start until the
      last one has drained the queue and flushed its status log.
  w4: one idle worker process (QueueManager.run, continuous); a producer process enqueues
      single jobs open-loop at R jobs/s for S seconds (each arrival its own task, so a slow
      insert never delays the next); latency = handler start - intended arrival time.

The harness measures the database's CPU and commits around this script; the script reports
its own processes' CPU (itself and its reaped children) and their peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import sys
import time

import asyncpg
import pgqueuer
from pgqueuer import Queries, QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.types import QueueExecutionMode

PAD = "0123456789abcdef0123"


def payload(i: int, t_ns: int = 0) -> bytes:
    return json.dumps({"i": i, "t": t_ns, "pad": PAD}, separators=(",", ":")).encode()


async def ensure_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        q = Queries(AsyncpgDriver(conn))
        if not await q.schema_is_installed():
            await q.install()
        await q.clear_queue()
        await q.clear_queue_log()
    finally:
        await conn.close()


async def insert_jobs(dsn: str, n: int) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        q = Queries(AsyncpgDriver(conn))
        started = time.perf_counter()
        for lo in range(0, n, 1000):
            hi = min(n, lo + 1000)
            await q.enqueue(
                ["noop"] * (hi - lo),
                [payload(i) for i in range(lo, hi)],
                [0] * (hi - lo),
            )
        return n / max(time.perf_counter() - started, 1e-9)
    finally:
        await conn.close()


def w1_worker(dsn: str, batch: int, barrier, ends) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job) -> None:  # noqa: ARG001
            return None

        barrier.wait()
        await qm.run(batch_size=batch, mode=QueueExecutionMode.drain)
        ends.put(time.time())
        await conn.close()

    asyncio.run(main())


def own_cpu_and_rss() -> tuple[float, float]:
    t = os.times()
    cpu = t.user + t.system + t.children_user + t.children_system
    rss_kib = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return cpu, rss_kib / 1024.0


def run_w1(args) -> dict:
    asyncio.run(ensure_schema(args.dsn))
    insert_rate = asyncio.run(insert_jobs(args.dsn, args.jobs))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(args.processes + 1)
    ends = ctx.Queue()
    cpu_before, _ = own_cpu_and_rss()
    procs = [
        ctx.Process(target=w1_worker, args=(args.dsn, args.batch, barrier, ends))
        for _ in range(args.processes)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.time()
    finished = [ends.get(timeout=args.timeout) for _ in procs]
    for p in procs:
        p.join(timeout=args.timeout)
    secs = max(finished) - started
    cpu_after, rss = own_cpu_and_rss()
    return {
        "jobs": args.jobs,
        "secs": secs,
        "jobs_per_s": args.jobs / secs,
        "insert_rows_per_s": insert_rate,
        "worker_cpu_s": cpu_after - cpu_before,
        "worker_peak_rss_mib": rss,
    }


def w4_consumer(dsn: str, batch: int, expected: int, ready, out) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        lat_ns: list[int] = []

        @qm.entrypoint("noop")
        async def noop(job) -> None:
            now = time.time_ns()
            t = json.loads(job.payload)["t"]
            lat_ns.append(now - t)
            if len(lat_ns) >= expected:
                qm.shutdown.set()

        loop = asyncio.get_running_loop()
        loop.call_later(0.3, ready.set)
        await qm.run(batch_size=batch)
        out.put(lat_ns)
        await conn.close()

    asyncio.run(main())


def w4_producer(dsn: str, rate: float, count: int) -> None:
    async def main() -> None:
        pool = await asyncpg.create_pool(dsn, min_size=4, max_size=16)
        q = Queries(pgqueuer.AsyncpgPoolDriver(pool))
        # Arrivals are scheduled from here, once the producer is connected.
        start_at = time.time() + 0.2
        tasks = []
        for i in range(count):
            intended = start_at + i / rate
            delay = intended - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            t_ns = int(intended * 1e9)
            tasks.append(asyncio.create_task(q.enqueue("noop", payload(i, t_ns), 0)))
        await asyncio.gather(*tasks)
        await pool.close()

    asyncio.run(main())


def pct(sorted_ns: list[int], p: float) -> float:
    idx = min(len(sorted_ns) - 1, round((len(sorted_ns) - 1) * p))
    return sorted_ns[idx] / 1e6


def run_w4(args) -> dict:
    asyncio.run(ensure_schema(args.dsn))
    count = max(1, int(args.rate * args.seconds))
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    out = ctx.Queue()
    cpu_before, _ = own_cpu_and_rss()
    consumer = ctx.Process(target=w4_consumer, args=(args.dsn, args.batch, count, ready, out))
    consumer.start()
    ready.wait(timeout=args.timeout)
    producer = ctx.Process(target=w4_producer, args=(args.dsn, args.rate, count))
    producer.start()
    lat = sorted(out.get(timeout=args.timeout))
    producer.join(timeout=args.timeout)
    consumer.join(timeout=args.timeout)
    cpu_after, rss = own_cpu_and_rss()
    return {
        "jobs": len(lat),
        "secs": args.seconds,
        "jobs_per_s": args.rate,
        "latency_ms": {
            "n": len(lat),
            "p50": pct(lat, 0.50),
            "p90": pct(lat, 0.90),
            "p99": pct(lat, 0.99),
            "max": lat[-1] / 1e6,
        },
        "worker_cpu_s": cpu_after - cpu_before,
        "worker_peak_rss_mib": rss,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["w1", "w4", "version"])
    ap.add_argument("--dsn", default="")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--batch", type=int, default=10, help="QueueManager.run batch_size")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    if args.workload == "version":
        result = {"version": pgqueuer.__version__, "asyncpg": asyncpg.__version__}
    elif args.workload == "w1":
        result = run_w1(args)
    else:
        result = run_w4(args)
    result["pgqueuer_version"] = pgqueuer.__version__
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
