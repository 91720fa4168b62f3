"""Redis Cluster: one hot event on a local 3-primary cluster, split over 1 and 3 shards
(EMOSTREAM_EVENT_SPLIT), and a single Redis beside the cluster, all in one run.

For each configuration: the raw streams are preloaded with real packed batches of one event
(ReactionBuffer + Flusher, as ingest writes them, with the configuration's split), then one
``Worker.drain()`` counts them. Figures: reactions/s aggregated, each primary's Redis CPU
(``INFO cpu`` around the drain) per reaction, and each primary's share of that CPU. The
cluster has no replicas here (replication is not what is measured); 3 shards.

    python -m loadtest.bench_cluster [--reactions N] [--reps R] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import redis as sync_redis
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.connection import connect
from emostream.ingest.buffer import ReactionBuffer
from emostream.ingest.flusher import Flusher
from emostream.redis_cluster import PrivateCluster
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings

from .bench_worker import reaction_chunks
from .procs import ROOT

SHARDS = 3
EVENT = "final"
# What one ingest flush holds of the event: its flush_max, as under a hot event's load.
BATCH_REACTIONS = 20_000


def cpu_s(port: int) -> float:
    with sync_redis.Redis(port=port) as client:
        info: Any = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def preload(redis: Redis, settings: Settings, total: int) -> int:
    buffer = ReactionBuffer(SHARDS, settings.buffer_max, settings.event_split)
    flusher = Flusher(redis, settings, buffer, producer_id="bench-preload")
    chunks = reaction_chunks(64)
    written = cursor = 0
    while written < total:
        for _ in range(BATCH_REACTIONS // 100):
            buffer.add(EVENT, chunks[cursor % len(chunks)], now_ms())
            cursor += 1
        written += await flusher.flush()
    for shard in range(SHARDS):
        await redis.hdel(keys.producers(shard), flusher.producer_id)
    return written


async def one_run(
    url: str, clustered: bool, ports: list[int], split: int, total: int
) -> dict[str, Any]:
    redis = connect(url, cluster=clustered)
    settings = Settings(redis_url=url, shards=SHARDS, event_split=split, buffer_max=10_000_000)
    try:
        if clustered:
            for port in ports:
                with sync_redis.Redis(port=port) as client:
                    client.flushall()
        else:
            await redis.flushall()
        worker = Worker(redis, settings)
        await worker.ensure_groups()
        await preload(redis, settings, total)
        before = [cpu_s(port) for port in ports]
        started = time.perf_counter()
        await worker.drain()
        elapsed = time.perf_counter() - started
        spent = [cpu_s(port) - b for port, b in zip(ports, before, strict=True)]
        return {
            "rate": worker.reactions / elapsed,
            "us_per_reaction": [s * 1e6 / worker.reactions for s in spent],
            "share": [s / sum(spent) for s in spent],
            "reactions": worker.reactions,
        }
    finally:
        await redis.aclose()


async def flush_cost(flushes: int) -> dict[int, float]:
    """Median ms of one ingest flush (2,000 reactions of one event over the 3 shards) on a
    cluster with a replica per primary, with EMOSTREAM_REDIS_WAIT_REPLICAS 0 and 1,
    interleaved."""
    cluster = PrivateCluster(primaries=3, replicas_per_primary=1).start()
    try:
        times: dict[int, list[float]] = {0: [], 1: []}
        flushers = {}
        for wait in times:
            settings = Settings(
                redis_url=cluster.url, shards=SHARDS, event_split=3, redis_wait_replicas=wait
            )
            buffer = ReactionBuffer(SHARDS, settings.buffer_max, settings.event_split)
            redis = connect(cluster.url, cluster=True)
            flushers[wait] = (buffer, Flusher(redis, settings, buffer, f"bench-{wait}"), redis)
        chunks = reaction_chunks(20)
        for index in range(flushes):
            for wait, (buffer, flusher, _redis) in flushers.items():
                for chunk in chunks:
                    buffer.add(EVENT, chunk, now_ms())
                started = time.perf_counter()
                await flusher.flush()
                times[wait].append((time.perf_counter() - started) * 1000)
                assert flusher.unreplicated == 0, index
        for _buffer, _flusher, redis in flushers.values():
            await redis.aclose()
        return {wait: statistics.median(found) for wait, found in times.items()}
    finally:
        cluster.close()


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda run: run["rate"])
    return ordered[len(ordered) // 2]


async def measure(total: int, reps: int) -> dict[str, Any]:
    cluster = PrivateCluster(primaries=3, replicas_per_primary=0).start()
    single = PrivateRedis().start()
    try:
        primaries = sorted(cluster.primaries(), key=lambda n: cluster.slot_ranges(n)[0][0])
        ports = [node.port for node in primaries]
        configs = {
            "single Redis, split 1": (single.url, False, [single.port], 1),
            "cluster, split 1": (cluster.url, True, ports, 1),
            "cluster, split 3": (cluster.url, True, ports, 3),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
        for _rep in range(reps):  # interleaved, so a busy spell hits every configuration
            for name, (url, clustered, config_ports, split) in configs.items():
                runs[name].append(await one_run(url, clustered, config_ports, split, total))
        results: dict[str, Any] = {name: median_run(found) for name, found in runs.items()}
    finally:
        cluster.close()
        single.close()
    results["flush"] = await flush_cost(100)
    return results


def report(results: dict[str, Any], total: int, reps: int) -> str:
    flush = results.pop("flush")
    single = results["single Redis, split 1"]["rate"]
    k1, k3 = results["cluster, split 1"], results["cluster, split 3"]
    lines = [
        "# Redis Cluster: one hot event over one and three primaries",
        "",
        f"`python -m loadtest.bench_cluster --reactions {total} --reps {reps}`, run "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; one worker "
        f"(`Worker.drain()`) counts {total:,} preloaded reactions of one event; {SHARDS} shards; "
        "a local cluster of 3 primaries without replicas on this 2-core VM; the median of "
        f"{reps} interleaved runs by reactions/s.",
        "",
        "| configuration | reactions/s | Redis µs per reaction, per primary "
        "| share of Redis CPU per primary |",
        "| --- | ---: | --- | --- |",
    ]
    for name, run in results.items():
        micros = " / ".join(f"{value:.3f}" for value in run["us_per_reaction"])
        shares = " / ".join(f"{value:.0%}" for value in run["share"])
        lines.append(f"| {name} | {run['rate']:,.0f} | {micros} | {shares} |")
    spread = max(abs(share - 1 / 3) * 3 for share in k3["share"])
    lines += [
        "",
        "| goal | figure | result |",
        "| --- | --- | --- |",
        f"| split 3: each primary carries 1/3 ± 10% of the event | shares "
        f"{' / '.join(f'{s:.0%}' for s in k3['share'])} (worst {spread:.0%} off) | "
        f"{'met' if spread <= 0.10 else 'not met'} |",
        f"| cluster, split 1, at least 0.8x a single Redis | {k1['rate'] / single:.2f}x | "
        f"{'met' if k1['rate'] / single >= 0.8 else 'not met'} |",
        "",
        f"Split 3 against split 1 on the cluster: {k3['rate'] / k1['rate']:.2f}x reactions/s with "
        "one worker process (the worker, not Redis, is the limit on 2 cores: what split buys is "
        "Redis CPU per primary, the first wall of docs/scaling.md).",
        "",
        "What EMOSTREAM_REDIS_WAIT_REPLICAS=1 costs (a cluster with one replica per primary, "
        "100 flushes of 2,000 reactions of the event split over 3 shards, interleaved): a "
        f"flush takes {flush[1]:.2f} ms against {flush[0]:.2f} ms without WAIT, "
        f"{flush[1] / flush[0]:.2f}x (medians).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reactions", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks-cluster.md")
    args = parser.parse_args()
    text = report(asyncio.run(measure(args.reactions, args.reps)), args.reactions, args.reps)
    print(text)
    if args.write:
        (ROOT / "docs" / "benchmarks-cluster.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
