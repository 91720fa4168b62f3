"""Scale-out by accounting: does anything grow per reaction as processes are added?

These machines have 2 cores, so N worker processes cannot show N times the throughput here.
What can be shown is the condition for it: when processes are added (time-sliced on the same
cores), each process's CPU-seconds per reaction and the Redis server's CPU per reaction stay
what they were with one. Then N cores give N times one process's rate, until the one Redis
primary's core is full.

- Workers: the raw shards are preloaded with real packed batches (``bench_worker.preload``,
  ReactionBuffer + Flusher as ingest writes them); 1, 2 and 4 ``Worker.drain()`` processes
  processes start on the same instant and share the consumer groups. Each reports its
  reactions and its own CPU time after its first read (which pays one-time start-up costs);
  Redis's comes from ``INFO cpu`` before and after. Control: one worker beside 1 and 3 busy
  processes, time-sliced as 2 and 4 workers are, so what time slicing alone costs a process
  is measured in the same run.
- Ingest: 1 and 2 ingest processes (``loadtest.servers ingest`` on uvicorn, rate limits on,
  as ``bench_ingest`` runs it) under the same 64 wrk connections split between them, 100
  reactions per POST; each process's CPU from ``/proc/<pid>/stat`` around the load, Redis's
  (the flushes' XADDs) from ``INFO cpu`` after the last flush.

A process's own CPU time does not grow when other work shares the machine, so these figures
hold on a busy box where reactions/s do not. Every figure is the median of ``reps``.

    python -m loadtest.bench_scaleout [--quick] [--json PATH] [--no-write]

writes its section of docs/benchmarks.md (between the scale-out markers, which scripts/bench
keeps when it reruns).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from emostream.connection import connect
from emostream.redis_server import PrivateRedis, free_port
from emostream.serving import run_on_fastest_loop

from . import bench_report
from .bench_format import load_text, number
from .bench_ingest import CONNECTIONS, LIMITS_ON, PATH, make_bodies
from .bench_worker import SHARDS, preload, redis_cpu_s
from .fanout_servers import cpu_s
from .loadgen import LoadResult, run_load
from .procs import ROOT, child, child_env

REPORT = ROOT / "docs" / "benchmarks.md"
# This benchmark's section of docs/benchmarks.md; scripts/bench keeps it when it reruns.
SCALEOUT_BEGIN = "<!-- scaleout:begin -->"
SCALEOUT_END = "<!-- scaleout:end -->"
TOLERANCE = 0.10
PREDICTED_CORES = (1, 2, 4, 8, 16)

INGEST_COUNTS = (1, 2)
PER_POST = 100
BATCH_REACTIONS = 10_000
# After the load stops: the ingest buffers flush every 500 ms, then Redis is read.
FLUSH_WAIT_S = 1.2


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


async def preloaded(redis_url: str, total: int) -> None:
    """An empty Redis (our private server) with ``total`` reactions in its raw shards."""
    redis = connect(redis_url)
    await redis.flushall()
    await preload(redis, total, BATCH_REACTIONS)
    await redis.aclose()


# Entries per stream per read, for every process count alike: small enough that 4 workers
# each get many reads of the preloaded entries (the default, 64 per stream and two readers,
# lets one worker take 512 entries, 5M reactions, in its first reads).
READ_COUNT = 4
# A stand-in for another busy process: hashes a 32 MB buffer over and over (C code streaming
# through memory, as a worker's decode does), so caches are shared as with another worker.
HOG = "import hashlib; b = bytes(32 << 20)\nwhile True: hashlib.sha256(b)"


async def _drain(redis_url: str, start_at: float, name: str) -> dict[str, Any]:
    from emostream.aggregate.worker import Worker
    from emostream.settings import Settings

    redis = connect(redis_url)
    settings = Settings(redis_url=redis_url, shards=SHARDS, read_count=READ_COUNT)
    worker = Worker(redis, settings, worker_id=name)
    await worker.ensure_groups()
    await redis.ping()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    started, cpu_started = time.time(), time.process_time()
    # The first read pays the process's one-time costs (first allocations, code paths run
    # for the first time): a fixed amount per process, which a short drain split over more
    # processes would spread over fewer reactions each. It is reported apart.
    await worker.read_new(None)
    first_reactions, first_cpu_s = worker.reactions, time.process_time() - cpu_started
    await worker.drain()
    finished, cpu_s = time.time(), time.process_time() - cpu_started
    await redis.aclose()
    return {
        "reactions": worker.reactions,
        "started": started,
        "finished": finished,
        "cpu_s": cpu_s,
        "first_reactions": first_reactions,
        "first_cpu_s": first_cpu_s,
    }


def drain_with(redis_url: str, workers: int, hogs: int = 0) -> dict[str, Any]:
    """``workers`` drain processes on a freshly preloaded Redis, started together, with
    ``hogs`` busy processes beside them."""
    start_at = time.time() + 2.5  # after every child has imported and connected
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "loadtest.bench_scaleout", "--drain", redis_url]
            + [str(start_at), f"w{index}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=child_env(None),
        )
        for index in range(workers)
    ]
    busy = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
    redis_before = redis_cpu_s(redis_url)
    results = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=300)
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for hog in busy:
            hog.kill()
            hog.wait()
    redis_spent = redis_cpu_s(redis_url) - redis_before
    reactions = sum(r["reactions"] for r in results)
    elapsed = max(r["finished"] for r in results) - min(r["started"] for r in results)
    return {
        "reactions": reactions,
        "rate": reactions / elapsed,
        # Each process's own CPU per reaction after its first read.
        "process_us": [
            (r["cpu_s"] - r["first_cpu_s"]) / (r["reactions"] - r["first_reactions"]) * 1e6
            for r in results
            if r["reactions"] > r["first_reactions"]
        ],
        # The same from the first read on, start-up costs included.
        "whole_us": [r["cpu_s"] / r["reactions"] * 1e6 for r in results if r["reactions"]],
        "first_read_cpu_ms": [r["first_cpu_s"] * 1000 for r in results],
        "shares": [r["reactions"] / reactions for r in results],
        "all_us": sum(r["cpu_s"] - r["first_cpu_s"] for r in results)
        / sum(r["reactions"] - r["first_reactions"] for r in results)
        * 1e6,
        "redis_us": redis_spent / reactions * 1e6,
    }


# (workers, busy processes beside them): 1, 2 and 4 workers, and one worker time-sliced as
# two and four are (the control: what sharing the cores alone does to one worker's figures).
WORKER_RUNS = ((1, 0), (2, 0), (4, 0), (1, 1), (1, 3))


def workers_tier(redis_url: str, reps: int, total: int) -> dict[str, Any]:
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {run: [] for run in WORKER_RUNS}
    for rep in range(reps):
        # Rotate the order, so whichever runs while the machine is busier differs per rep.
        shift = rep % len(WORKER_RUNS)
        for count, hogs in WORKER_RUNS[shift:] + WORKER_RUNS[:shift]:
            asyncio.run(preloaded(redis_url, total))
            result = drain_with(redis_url, count, hogs)
            runs[count, hogs].append(result)
            print(
                f"  scale-out rep {rep + 1}: {count} worker(s) + {hogs} busy "
                f"{result['rate']:,.0f} reactions/s, process µs/reaction "
                f"{', '.join(f'{v:.4f}' for v in result['process_us'])}, "
                f"Redis {result['redis_us']:.4f} µs",
                flush=True,
            )
    return {
        f"{count}+{hogs}" if hogs else str(count): summarise(values)
        for (count, hogs), values in runs.items()
    }


def summarise(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over reps: of the processes' median, of their worst, of the sum, of Redis."""
    return {
        "rate": _median([v["rate"] for v in values]),
        "process_us": _median([_median(v["process_us"]) for v in values]),
        "process_us_max": _median([max(v["process_us"]) for v in values]),
        "whole_us": _median([_median(v.get("whole_us", v["process_us"])) for v in values]),
        "first_read_cpu_ms": _median(
            [_median(v["first_read_cpu_ms"]) for v in values if "first_read_cpu_ms" in v] or [0]
        ),
        "all_us": _median([v["all_us"] for v in values]),
        "redis_us": _median([v["redis_us"] for v in values]),
        "runs": values,
    }


def _load_split(urls: list[str], bodies: list[bytes], duration_s: float) -> list[LoadResult]:
    """The benchmark's 64 connections split evenly over ``urls``, one wrk each, at once."""
    results: list[LoadResult | None] = [None] * len(urls)

    def load(index: int) -> None:
        results[index] = run_load(urls[index], bodies, CONNECTIONS // len(urls), duration_s)

    threads = [threading.Thread(target=load, args=(index,)) for index in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result is not None for result in results)
    return [result for result in results if result is not None]


def ingest_with(
    redis_url: str, count: int, bodies: list[bytes], duration_s: float
) -> dict[str, Any]:
    """``count`` ingest processes loaded together; each one's CPU per accepted reaction."""
    with contextlib.ExitStack() as stack:
        urls, pids = [], []
        for _ in range(count):
            port = free_port()
            args = ["-m", "loadtest.servers", "ingest", "--server", "uvicorn"]
            args += ["--port", str(port)]
            env = child_env(redis_url, **LIMITS_ON)
            process = stack.enter_context(child(args, env, f"http://127.0.0.1:{port}"))
            urls.append(f"http://127.0.0.1:{port}{PATH}")
            pids.append(process.pid)
        _load_split(urls, bodies, 1.0)  # warm-up: imports, caches, the first flushes
        time.sleep(FLUSH_WAIT_S)
        cpu_before = [cpu_s(pid) for pid in pids]
        redis_before = redis_cpu_s(redis_url)
        results = _load_split(urls, bodies, duration_s)
        time.sleep(FLUSH_WAIT_S)  # the last buffered reactions reach Redis
        cpu_after = [cpu_s(pid) for pid in pids]
        redis_spent = redis_cpu_s(redis_url) - redis_before
    reactions = [result.requests * PER_POST for result in results]
    total = sum(reactions)
    spent = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    return {
        "reactions": total,
        "rate": total / max(result.duration_s for result in results),
        "errors": sum(result.errors for result in results),
        # The flush-wait's idle CPU is in these too, the same for every count (a few ms).
        "process_us": [cpu / n * 1e6 for cpu, n in zip(spent, reactions, strict=True) if n],
        "all_us": sum(spent) / total * 1e6,
        "redis_us": redis_spent / total * 1e6,
    }


def ingest_tier(redis_url: str, reps: int, duration_s: float) -> dict[str, Any]:
    bodies = make_bodies(PER_POST)
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in INGEST_COUNTS}
    for rep in range(reps):
        order = INGEST_COUNTS if rep % 2 == 0 else INGEST_COUNTS[::-1]
        for count in order:
            result = ingest_with(redis_url, count, bodies, duration_s)
            runs[count].append(result)
            print(
                f"  scale-out rep {rep + 1}: {count} ingest {result['rate']:,.0f} reactions/s, "
                f"process µs/reaction {', '.join(f'{v:.4f}' for v in result['process_us'])}, "
                f"Redis {result['redis_us']:.4f} µs, errors {result['errors']}",
                flush=True,
            )
    return {str(count): summarise(values) for count, values in runs.items()}


def run(quick: bool) -> dict[str, Any]:
    reps = 3 if quick else 5
    total = 6_000_000 if quick else 12_000_000
    duration_s = 3.0 if quick else 6.0
    load_before = os.getloadavg()
    started = time.time()
    with PrivateRedis() as redis:
        workers = workers_tier(redis.url, reps, total)
        redis_client_flush(redis.url)
        ingest = ingest_tier(redis.url, reps, duration_s)
    return {
        "quick": quick,
        "reps": reps,
        "reactions_per_worker_run": total,
        "batch_reactions": BATCH_REACTIONS,
        "ingest_duration_s": duration_s,
        "per_post": PER_POST,
        "connections": CONNECTIONS,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "seconds": time.time() - started,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "workers": workers,
        "ingest": ingest,
    }


def redis_client_flush(redis_url: str) -> None:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.flushall()  # our private server: the workers' streams and windows go
    finally:
        client.close()


def within(value: float, reference: float) -> bool:
    return abs(value / reference - 1) <= TOLERANCE


def tier_table(tier: dict[str, Any], rows: list[tuple[str, str, str | None]]) -> list[str]:
    """One line per (key, label, control key): each against one process alone (the goal)
    and, where given, against one process time-sliced the same way (the control)."""
    one = tier["1"]
    figures = ("process_us", "process_us_max", "redis_us")
    lines = [
        "| processes | reactions/s, all together | CPU µs per reaction: median process "
        "| worst process | all processes | Redis CPU µs per reaction "
        "| vs one alone (median, worst, Redis) | within 10% of one alone "
        "| vs one time-sliced the same way (median, worst, Redis) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for key, label, control in rows:
        row = tier[key]
        ratios = ", ".join(f"{row[f] / one[f]:.2f}x" for f in figures)
        if key == "1":
            verdict = "(reference)"
        elif "+" in key:
            verdict = "(control)"
        else:
            met = all(within(row[f], one[f]) for f in figures)
            verdict = "met" if met else "**missed**"
        controlled = "-"
        if control is not None and control in tier:
            controlled = ", ".join(f"{row[f] / tier[control][f]:.2f}x" for f in figures)
        lines.append(
            f"| {label} | {number(row['rate'])} | {row['process_us']:.4f} "
            f"| {row['process_us_max']:.4f} | {row['all_us']:.4f} | {row['redis_us']:.4f} "
            f"| {ratios} | {verdict} | {controlled} |"
        )
    return lines


WORKER_ROWS: list[tuple[str, str, str | None]] = [
    ("1", "1 worker", None),
    ("2", "2 workers", "1+1"),
    ("4", "4 workers", "1+3"),
    ("1+1", "1 worker + 1 busy process", None),
    ("1+3", "1 worker + 3 busy processes", None),
]
INGEST_ROWS: list[tuple[str, str, str | None]] = [
    ("1", "1 ingest", None),
    ("2", "2 ingest", None),
]


def prediction(tier: dict[str, Any], cores: int) -> tuple[float, float]:
    """(reactions/s of ``cores`` processes on their own cores, one Redis core's limit)."""
    one = tier["1"]
    return cores * 1e6 / one["all_us"], 1e6 / one["redis_us"]


def render(result: dict[str, Any], code: str) -> str:
    workers, ingest = result["workers"], result["ingest"]
    lines = [
        "",
        "## Scale-out by accounting (issue 16)",
        "",
        f"`python -m loadtest.bench_scaleout{' --quick' if result['quick'] else ''}`, "
        f"{result['date']}, {result['seconds']:.0f} s, code {code}; load average (1/5/15 min) "
        f"before {load_text(result['load_before'])}, after {load_text(result['load_after'])}. "
        "Written by that script (loadtest/bench_scaleout.py), kept when `scripts/bench` reruns.",
        "",
        "This machine has 2 cores, so more processes cannot run faster here; what must hold "
        "for them to run faster on more cores is that nothing grows per reaction as they are "
        "added. So 1, 2 and 4 worker processes, and 1 and 2 ingest processes, run time-sliced "
        "on these cores, and each process's own CPU time per reaction (which other work on "
        "the machine does not inflate) and the Redis server's (`INFO cpu` before and after) "
        "are set against one process's. Goal: every figure within 10% of one process's. "
        f"Medians of {result['reps']} repetitions (order rotated); reactions/s is context "
        "only, since the processes share two cores with Redis and the load generator.",
        "",
        f"Workers: `Worker.drain()` processes started on the same instant over "
        f"{number(result['reactions_per_worker_run'])} preloaded reactions in packed entries "
        f"of {number(result['batch_reactions'])} (4 raw shards, ReactionBuffer + Flusher as "
        "ingest writes them), sharing the consumer groups; each process reports its CPU "
        "time after its first read and, apart, over that first read (which pays the "
        "process's one-time start-up costs, a fixed amount a short drain split over more "
        "processes would spread over fewer reactions each: median "
        f"{workers['1']['first_read_cpu_ms']:.0f} ms of CPU for one worker's first read; "
        "the whole drain's figure per process, start-up included, is in the JSON). "
        "Every run reads 4 entries per stream per read (the default "
        "64 would let one worker take most of them in its first reads). The control rows "
        "run one worker beside busy processes (each hashing a 32 MB buffer over and over): "
        "time-sliced as two and four workers are, without more workers.",
        "",
    ]
    lines += tier_table(workers, WORKER_ROWS)
    lines += [
        "",
        f"Ingest: `loadtest.servers ingest` on uvicorn (rate limits on, never refusing), "
        f"{result['per_post']} reactions per POST, the same {result['connections']} wrk "
        f"connections split evenly over the processes, {result['ingest_duration_s']:.0f} s; "
        "each process's CPU from `/proc/<pid>/stat` around the load, Redis's (the flushes' "
        "XADDs) read after the last flush.",
        "",
    ]
    lines += tier_table(ingest, INGEST_ROWS)
    lines += [
        "",
        "Predicted throughput on N cores, one process per core, from one process's CPU per "
        "reaction above (all of its CPU, user and kernel), until the one Redis primary's core "
        "is full (its CPU per reaction above; the cluster split, `EMOSTREAM_EVENT_SPLIT`, "
        "moves that limit and is measured in docs/benchmarks-cluster.md):",
        "",
        "| cores | workers: reactions/s | ingest, 100 per POST: reactions/s |",
        "| ---: | ---: | ---: |",
    ]
    for cores in PREDICTED_CORES:
        cells = []
        for tier in (workers, ingest):
            rate, cap = prediction(tier, cores)
            cells.append(number(min(rate, cap)) + (" (Redis-bound)" if rate > cap else ""))
        lines.append(f"| {cores} | {cells[0]} | {cells[1]} |")
    worker_cap = prediction(workers, 1)[1]
    ingest_cap = prediction(ingest, 1)[1]
    lines += [
        "",
        f"One Redis core is full at {number(worker_cap)} reactions/s of worker traffic alone "
        f"and {number(ingest_cap)} reactions/s of ingest flushes alone; both tiers on one "
        f"primary share it: {number(1 / (1 / worker_cap + 1 / ingest_cap))} reactions/s.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    bench_report.write_section(SCALEOUT_BEGIN, SCALEOUT_END, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--no-write", action="store_true", help="print, leave docs alone")
    parser.add_argument(
        "--drain", nargs=3, metavar=("URL", "START_AT", "NAME"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.drain:
        url, start_at, name = args.drain
        print(json.dumps(run_on_fastest_loop(_drain(url, float(start_at), name))))
        return
    result = run(args.quick)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(result, out, indent=1)
    code = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    section = render(result, code or "unknown")
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"wrote the scale-out section of {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
