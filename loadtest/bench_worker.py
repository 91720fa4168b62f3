"""Worker tier: what one worker process aggregates, against the raw ceiling, and 2 vs 1.

The raw stream is preloaded with real packed batches (ReactionBuffer + Flusher, as ingest
writes them). Then, each in its own process and started on the same wall-clock instant:

- ``drain``: ``emostream.aggregate.worker.Worker.drain()``, the real burst mode (read, decode,
  count per window, apply_batch.lua with its XACK, per batch);
- ``ceiling``: read the same entries through another consumer group, decode them and run one
  EVALSHA per batch that only XACKs: everything a worker must do, minus the window logic.
  Since raw entries version 3 it decodes more than the worker does (``unpack_batch`` makes a
  string per reaction of every column; the worker counts coded emojis and hashes users with
  numpy), so a worker can pass it.

Window latency: a feeder process writes ~100k reactions/s through the real Flusher (500 ms
flushes), a real ``emostream worker`` counts and closes windows, and this process subscribes to
the windows channel and compares each window's arrival with its ``window_end_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.batch import PAYLOAD_FIELD, unpack_batch
from emostream.clock import now_ms
from emostream.connection import connect
from emostream.ingest.buffer import ReactionBuffer
from emostream.ingest.flusher import Flusher
from emostream.ingest.validation import Reaction, ReactionColumns
from emostream.records import decode_record
from emostream.redis_server import PrivateRedis
from emostream.serving import run_on_fastest_loop

from .audience import EMOJI_MIX
from .procs import ROOT, child, child_env

SHARDS = 4
CEILING_LUA = "return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])"
CEILING_GROUP = "ceiling"


def events_one_per_shard(shards: int) -> list[str]:
    """Event ids that land on distinct shards, so every shard carries batches."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < shards:
        event = f"match-{index}"
        found.setdefault(keys.shard_of(event, shards), event)
        index += 1
    return [found[shard] for shard in range(shards)]


def reaction_chunks(count: int, seed: int = 3) -> list[ReactionColumns]:
    """Chunks of 100 reactions (a client-batched POST), user ids drawn from 200k."""
    rng = random.Random(seed)
    emojis, weights = list(EMOJI_MIX), list(EMOJI_MIX.values())
    return [
        ReactionColumns.of(
            Reaction(f"u-{rng.randrange(200_000)}", emoji, None)
            for emoji in rng.choices(emojis, weights, k=100)
        )
        for _ in range(count)
    ]


async def preload(redis: Redis, total: int, batch_reactions: int) -> int:
    """Append ``total`` reactions as packed entries of ``batch_reactions`` each."""
    from emostream.settings import Settings

    settings = Settings(redis_url="unused", shards=SHARDS, buffer_max=10_000_000)
    buffer = ReactionBuffer(SHARDS, settings.buffer_max)
    flusher = Flusher(redis, settings, buffer, producer_id="bench-preload")
    events = events_one_per_shard(SHARDS)
    chunks = reaction_chunks(64)
    written = 0
    cursor = 0
    while written < total:
        received = now_ms()
        for event in events:
            for _ in range(batch_reactions // 100):
                buffer.add(event, chunks[cursor % len(chunks)], received)
                cursor += 1
        written += await flusher.flush()
    # The preload is not a live producer: no window should wait for it.
    for shard in range(SHARDS):
        await redis.hdel(keys.producers(shard), flusher.producer_id)
    return written


async def _drain(redis_url: str, start_at: float, mode: str, name: str) -> dict[str, Any]:
    from emostream.settings import Settings

    redis = connect(redis_url)
    settings = Settings(redis_url=redis_url, shards=SHARDS)
    worker = Worker(redis, settings, worker_id=name)
    await worker.ensure_groups()
    await redis.ping()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    cpu_started = time.process_time()
    if mode == "drain":
        await worker.drain()
        reactions, batches = worker.reactions, worker.batches
    else:
        reactions, batches = await _ceiling(redis, settings.read_count, name)
    finished = time.time()
    cpu_s = time.process_time() - cpu_started
    await redis.aclose()
    return {
        "reactions": reactions,
        "batches": batches,
        "started": started,
        "finished": finished,
        "cpu_s": cpu_s,
    }


async def _ceiling(redis: Redis, read_count: int, name: str) -> tuple[int, int]:
    script = redis.register_script(CEILING_LUA)
    streams: dict[Any, Any] = {keys.raw_stream(shard): ">" for shard in range(SHARDS)}
    reactions = batches = 0
    while True:
        response: Any = await redis.xreadgroup(CEILING_GROUP, name, streams, count=read_count)
        if not response:
            return reactions, batches
        pipe = redis.pipeline(transaction=False)
        for stream, items in response:
            for entry_id, fields in items:
                reactions += unpack_batch(fields[PAYLOAD_FIELD]).size
                batches += 1
                await script(keys=[stream], args=[CEILING_GROUP, entry_id], client=pipe)
        await pipe.execute()


def redis_cpu_s(redis_url: str) -> float:
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_url)
    try:
        info: Any = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def run_drainers(redis_url: str, mode: str, count: int) -> dict[str, Any]:
    """``count`` processes of ``mode`` started together: aggregate reactions/s, and the CPU
    seconds the processes and the Redis server spent (a shared machine lends the wall clock
    to others; CPU per reaction is what the capacity model needs)."""
    redis_before = redis_cpu_s(redis_url)
    start_at = time.time() + 2.5  # after every child has imported and connected
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loadtest.bench_worker",
                mode,
                redis_url,
                str(start_at),
                f"w{i}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=child_env(None),
        )
        for i in range(count)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=300)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    redis_spent = redis_cpu_s(redis_url) - redis_before
    reactions = sum(r["reactions"] for r in results)
    elapsed = max(r["finished"] for r in results) - min(r["started"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    return {
        "reactions": reactions,
        "seconds": elapsed,
        "rate": reactions / elapsed,
        "per_cpu_s": reactions / cpu if cpu else 0.0,
        "redis_us_per_reaction": redis_spent / reactions * 1e6 if reactions else 0.0,
    }


async def _reset(redis_url: str, total: int, batch_reactions: int) -> None:
    redis = connect(redis_url)
    await redis.flushall()  # our private server
    await preload(redis, total, batch_reactions)
    for shard in range(SHARDS):
        await redis.xgroup_create(keys.raw_stream(shard), CEILING_GROUP, id="0", mkstream=True)
    await redis.aclose()


def throughput(redis_url: str, reps: int, total: int, batch_reactions: int) -> dict[str, Any]:
    one: list[float] = []
    ceiling: list[float] = []
    two: list[float] = []
    cpu: dict[str, list[float]] = {"one": [], "ceiling": [], "two": []}
    redis_us: dict[str, list[float]] = {"one": [], "ceiling": [], "two": []}
    for rep in range(reps):
        asyncio.run(_reset(redis_url, total, batch_reactions))
        # Alternate who goes first: the second run finds a bigger Redis (window keys).
        order = ("drain", "ceiling") if rep % 2 == 0 else ("ceiling", "drain")
        for mode in order:
            result = run_drainers(redis_url, mode, 1)
            name = "one" if mode == "drain" else "ceiling"
            (one if mode == "drain" else ceiling).append(result["rate"])
            cpu[name].append(result["per_cpu_s"])
            redis_us[name].append(result["redis_us_per_reaction"])
        asyncio.run(_reset(redis_url, total, batch_reactions))
        result = run_drainers(redis_url, "drain", 2)
        two.append(result["rate"])
        cpu["two"].append(result["per_cpu_s"])
        redis_us["two"].append(result["redis_us_per_reaction"])
        print(
            f"  worker rep {rep + 1}: 1 worker {one[-1]:,.0f}/s, ceiling {ceiling[-1]:,.0f}/s, "
            f"2 workers {two[-1]:,.0f}/s",
            flush=True,
        )
    return {
        "reactions": total,
        "batch_reactions": batch_reactions,
        "one": statistics.median(one),
        "one_runs": one,
        "ceiling": statistics.median(ceiling),
        "ceiling_runs": ceiling,
        "two": statistics.median(two),
        "two_runs": two,
        "per_cpu_s": {name: statistics.median(values) for name, values in cpu.items()},
        "redis_us_per_reaction": {
            name: statistics.median(values) for name, values in redis_us.items()
        },
    }


async def _feed(redis_url: str, rate: int, seconds: float) -> dict[str, Any]:
    """Add ``rate`` reactions/s to a real buffer for ``seconds``; the real Flusher writes them."""
    from emostream.settings import Settings

    redis = connect(redis_url)
    settings = Settings(redis_url=redis_url, shards=SHARDS)
    buffer = ReactionBuffer(SHARDS, settings.buffer_max)
    flusher = Flusher(redis, settings, buffer)
    await flusher.flush()
    task = asyncio.create_task(flusher.run())
    events = events_one_per_shard(SHARDS)
    chunks = reaction_chunks(64)
    tick_s = 0.01
    per_tick = max(1, round(rate * tick_s / 100))
    loop = asyncio.get_running_loop()
    started = loop.time()
    ticks = 0
    added = 0
    while loop.time() - started < seconds:
        ticks += 1
        received = now_ms()
        for i in range(per_tick):
            buffer.add(events[i % len(events)], chunks[(ticks + i) % len(chunks)], received)
            added += 100
        if buffer.pending >= settings.flush_max:
            flusher.poke()
        await asyncio.sleep(max(0.0, started + ticks * tick_s - loop.time()))
    elapsed = loop.time() - started
    await flusher.stop()
    await task
    await redis.aclose()
    return {"added": added, "seconds": elapsed, "written": flusher.reactions_written}


async def _collect_windows(redis_url: str, seconds: float) -> list[tuple[int, int, float]]:
    """(window_end_ms, total, ms from window end to arrival) of every window published."""
    redis = connect(redis_url)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.WINDOWS_CHANNEL)
    seen: list[tuple[int, int, float]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is None:
            continue
        arrived_ms = time.time() * 1000
        record = decode_record(message["data"])
        if record.revision == 0:
            seen.append((record.window_end_ms, record.total, arrived_ms - record.window_end_ms))
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    await redis.aclose()
    return seen


def window_latency(redis_url: str, rate: int, seconds: float) -> dict[str, Any]:
    asyncio.run(_flushall(redis_url))
    env = child_env(redis_url, EMOSTREAM_SHARDS=str(SHARDS))
    with child(["-m", "emostream", "worker"], env):
        time.sleep(1.5)
        feeder = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loadtest.bench_worker",
                "feed",
                redis_url,
                str(rate),
                str(seconds),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=env,
        )
        windows = asyncio.run(_collect_windows(redis_url, seconds + 4.0))
        out, _ = feeder.communicate(timeout=60)
    fed = json.loads(out.decode().strip().splitlines()[-1])
    # Windows that ended while the feeder was running at full rate; the first is partial.
    loaded = [w for w in windows if w[1] > 0][1:-1] or [w for w in windows if w[1] > 0]
    delays = sorted(w[2] for w in loaded)
    return {
        "rate_offered": rate,
        "rate_fed": fed["written"] / fed["seconds"],
        "windows": len(loaded),
        "delays_ms": delays,
        "p50_ms": _percentile(delays, 50),
        "p99_ms": _percentile(delays, 99),
        "max_ms": delays[-1] if delays else float("nan"),
        "counted": sum(w[1] for w in windows),
        "fed": fed["written"],
    }


async def _flushall(redis_url: str) -> None:
    redis = connect(redis_url)
    await redis.flushall()
    await redis.aclose()


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def run(quick: bool) -> dict[str, Any]:
    reps, total = (1, 600_000) if quick else (3, 3_000_000)
    seconds = 9.0 if quick else 30.0
    with PrivateRedis() as redis:
        results = throughput(redis.url, reps, total, batch_reactions=10_000)
        results["latency"] = window_latency(redis.url, 100_000, seconds)
    lat = results["latency"]
    print(
        f"  window end -> published at {lat['rate_fed']:,.0f} reactions/s: p50 {lat['p50_ms']:.0f} "
        f"ms p99 {lat['p99_ms']:.0f} ms over {lat['windows']} windows",
        flush=True,
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("drain", "ceiling", "feed"))
    parser.add_argument("redis_url")
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args()
    if args.mode == "feed":
        result = run_on_fastest_loop(_feed(args.redis_url, int(args.a), float(args.b)))
    else:
        result = run_on_fastest_loop(_drain(args.redis_url, float(args.a), args.mode, args.b))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
