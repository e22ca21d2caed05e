"""pgqueuer driven through its public API in Leasehold's W1, W3, W4 and W5 shapes.

Run by bench/src/bin/harness (bench/run); prints one JSON object on stdout.

  w1: insert N no-op jobs (~50-byte payload) in batches of 1000, then time P worker
      processes (QueueManager.run in drain mode, batch_size B) from a common start until the
      last one has drained the queue and flushed its status log.
  w3: insert N jobs that sleep 10 ms (asyncio.sleep in an async entrypoint), then time P
      worker processes draining them as w1 does, with S handler slots in all: the entrypoint
      is registered with concurrency_limit=S and each process runs batch_size B (default
      S/P). Without that limit QueueManager.run keeps dequeuing while the queue has jobs and
      starts each one as its own task, so nothing would cap the handlers at S. Reports the
      efficiency against S/10 ms and the most handlers seen sleeping at once.
  w4: one idle worker process (QueueManager.run, continuous); a producer process enqueues
      single jobs open-loop at R jobs/s for S seconds (each arrival its own task, so a slow
      insert never delays the next); latency = handler start - intended arrival time.
  w5-single: closed loop, C clients (asyncio tasks over P processes, C/P each, one asyncpg
      pool per process with a connection per client) each enqueue one job per
      Queries.enqueue call until T seconds are up; latency = each call's duration. Reports
      each process's CPU per second and a note when one is saturated (then the Python
      driver, not the database, bounds the rate).
  w5-bulk: one connection enqueues N rows, B rows per Queries.enqueue call.

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


async def insert_jobs(dsn: str, n: int, entrypoint: str = "noop", batch: int = 1000) -> float:
    """Enqueue n jobs over one connection, `batch` rows per call; returns the seconds taken."""
    conn = await asyncpg.connect(dsn)
    try:
        q = Queries(AsyncpgDriver(conn))
        started = time.perf_counter()
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            await q.enqueue(
                [entrypoint] * (hi - lo),
                [payload(i) for i in range(lo, hi)],
                [0] * (hi - lo),
            )
        return max(time.perf_counter() - started, 1e-9)
    finally:
        await conn.close()


def w1_worker(dsn: str, batch: int, barrier, ends) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job) -> None:
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


def in_processes(
    target, per_process: list[tuple], timeout: float
) -> tuple[float, list, float, float]:
    """Runs `target(*args, barrier, ends)` in one spawned process per `args` of `per_process`,
    released together by the barrier; each puts what it measured (its end first) on `ends`.
    Returns the common start (wall clock), what each put, this script's CPU seconds meanwhile
    (its children's included) and the peak RSS in MiB."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(per_process) + 1)
    ends = ctx.Queue()
    cpu_before, _ = own_cpu_and_rss()
    procs = [ctx.Process(target=target, args=(*a, barrier, ends)) for a in per_process]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.time()
    finished = [ends.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=timeout)
    cpu_after, rss = own_cpu_and_rss()
    return started, finished, cpu_after - cpu_before, rss


def latency_ms(sorted_ns: list[int]) -> dict:
    """Percentiles of sorted nanosecond samples, in ms."""
    return {
        "n": len(sorted_ns),
        "p50": pct(sorted_ns, 0.50),
        "p90": pct(sorted_ns, 0.90),
        "p99": pct(sorted_ns, 0.99),
        "max": sorted_ns[-1] / 1e6,
    }


def run_w1(args) -> dict:
    asyncio.run(ensure_schema(args.dsn))
    insert_rate = args.jobs / asyncio.run(insert_jobs(args.dsn, args.jobs))
    per_process = [(args.dsn, args.batch)] * args.processes
    started, finished, cpu, rss = in_processes(w1_worker, per_process, args.timeout)
    secs = max(finished) - started
    return {
        "jobs": args.jobs,
        "secs": secs,
        "jobs_per_s": args.jobs / secs,
        "insert_rows_per_s": insert_rate,
        "worker_cpu_s": cpu,
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
        "latency_ms": latency_ms(lat),
        "worker_cpu_s": cpu_after - cpu_before,
        "worker_peak_rss_mib": rss,
    }


def w3_worker(dsn: str, batch: int, limit: int, sleep_s: float, barrier, ends) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        spans: list[tuple[float, float]] = []

        # The dequeue query enforces the limit across all workers (it counts the entrypoint's
        # picked rows); without one, run() keeps dequeuing until the queue is empty and
        # starts every job at once.
        @qm.entrypoint("sleep", concurrency_limit=limit)
        async def sleep(job) -> None:
            t0 = time.monotonic()
            await asyncio.sleep(sleep_s)
            spans.append((t0, time.monotonic()))

        barrier.wait()
        await qm.run(batch_size=batch, mode=QueueExecutionMode.drain)
        ends.put((time.time(), spans))
        await conn.close()

    asyncio.run(main())


def run_w3(args) -> dict:
    slots = args.concurrency
    batch = args.batch or (slots + args.processes - 1) // args.processes
    sleep_s = args.sleep_ms / 1000
    asyncio.run(ensure_schema(args.dsn))
    asyncio.run(insert_jobs(args.dsn, args.jobs, "sleep"))
    per_process = [(args.dsn, batch, slots, sleep_s)] * args.processes
    started, finished, cpu, rss = in_processes(w3_worker, per_process, args.timeout)
    secs = max(end for end, _ in finished) - started
    # The most handlers sleeping at once over all processes (CLOCK_MONOTONIC is system-wide):
    # +1 at each start, -1 at each end, an end first where they coincide.
    edges = sorted((t, d) for _, spans in finished for a, b in spans for t, d in ((a, 1), (b, -1)))
    in_flight = max_in_flight = 0
    for _, d in edges:
        in_flight += d
        max_in_flight = max(max_in_flight, in_flight)
    jobs_per_s = args.jobs / secs
    ideal = slots / sleep_s
    return {
        "jobs": args.jobs,
        "secs": secs,
        "jobs_per_s": jobs_per_s,
        "ideal_per_s": ideal,
        "efficiency": jobs_per_s / ideal,
        "worker_cpu_s": cpu,
        "worker_peak_rss_mib": rss,
        "max_in_flight": max_in_flight,
        "settings": {
            "processes": args.processes,
            "batch_size": batch,
            "concurrency_limit": slots,
            "max_concurrent_tasks": None,
            "mode": "drain",
            "sleep_ms": args.sleep_ms,
        },
    }


def w5_clients(dsn: str, clients: int, seconds: float, barrier, ends) -> None:
    async def main() -> None:
        pool = await asyncpg.create_pool(dsn, min_size=clients, max_size=clients)
        q = Queries(pgqueuer.AsyncpgPoolDriver(pool))
        lat_ns: list[int] = []

        async def client(i: int, deadline: float) -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter_ns()
                await q.enqueue("noop", payload(i), 0)
                lat_ns.append(time.perf_counter_ns() - t0)
                i += clients

        barrier.wait()
        cpu0 = sum(os.times()[:2])
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k, t0 + seconds) for k in range(clients)))
        busy = (sum(os.times()[:2]) - cpu0) / (time.perf_counter() - t0)
        ends.put((time.time(), lat_ns, busy))
        await pool.close()

    asyncio.run(main())


def run_w5_single(args) -> dict:
    asyncio.run(ensure_schema(args.dsn))
    n = max(1, min(args.processes, args.clients))
    per_proc = [args.clients // n + (k < args.clients % n) for k in range(n)]
    per_process = [(args.dsn, c, args.seconds) for c in per_proc]
    started, results, cpu, rss = in_processes(w5_clients, per_process, args.timeout)
    secs = max(end for end, _, _ in results) - started
    lat = sorted(ns for _, lats, _ in results for ns in lats)
    busy = [round(b, 3) for _, _, b in results]
    result = {
        "jobs": len(lat),
        "secs": secs,
        "jobs_per_s": len(lat) / secs,
        "latency_ms": latency_ms(lat),
        "worker_cpu_s": cpu,
        "worker_peak_rss_mib": rss,
        "settings": {
            "clients": args.clients,
            "processes": n,
            # One asyncpg pool per process, min_size = max_size = that process's clients.
            "pool": {"driver": "AsyncpgPoolDriver", "size_per_process": per_proc},
        },
        # Each enqueuing process's CPU-seconds per second while its clients ran.
        "driver_cpu_per_s": busy,
    }
    if max(busy) >= 0.9:
        result["note"] = (
            f"an enqueuing process used {max(busy):.2f} CPU-s per second: the Python driver, "
            "not the database, bounds this rate (more --processes may raise it)"
        )
    return result


def run_w5_bulk(args) -> dict:
    asyncio.run(ensure_schema(args.dsn))
    cpu_before, _ = own_cpu_and_rss()
    secs = asyncio.run(insert_jobs(args.dsn, args.rows, "noop", args.batch))
    cpu_after, rss = own_cpu_and_rss()
    return {
        "jobs": args.rows,
        "secs": secs,
        "jobs_per_s": args.rows / secs,
        "worker_cpu_s": cpu_after - cpu_before,
        "worker_peak_rss_mib": rss,
        "settings": {"batch": args.batch},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["w1", "w3", "w4", "w5-single", "w5-bulk", "version"])
    ap.add_argument("--dsn", default="")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument(
        "--batch",
        type=int,
        default=None,
        help="QueueManager.run batch_size (w1, w4: default 10; w3: concurrency / processes), "
        "or rows per enqueue call (w5-bulk: default 1000)",
    )
    ap.add_argument("--sleep-ms", type=float, default=10.0, help="w3: each job's sleep")
    ap.add_argument("--concurrency", type=int, default=10, help="w3: handler slots in all")
    ap.add_argument("--clients", type=int, default=1, help="w5-single: concurrent enqueuers")
    ap.add_argument("--rows", type=int, default=100_000, help="w5-bulk: rows to enqueue")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    if args.batch is None and args.workload in ("w1", "w4"):
        args.batch = 10
    elif args.batch is None and args.workload == "w5-bulk":
        args.batch = 1000
    runs = {
        "w1": run_w1,
        "w3": run_w3,
        "w4": run_w4,
        "w5-single": run_w5_single,
        "w5-bulk": run_w5_bulk,
    }
    if args.workload == "version":
        result = {"version": pgqueuer.__version__, "asyncpg": asyncpg.__version__}
    else:
        result = runs[args.workload](args)
    result["pgqueuer_version"] = pgqueuer.__version__
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
