"""What one event costs Redis: MEMORY USAGE of each of its keys after N windows, and the
used_memory growth per event for a flood of one-off events (one reaction each, then idle).

``.venv/bin/python -m loadtest.event_memory`` prints the figures README.md ("Bounded events")
quotes. Windows are stamped in the past and closed at once by the real Worker (apply_batch.lua,
close_window.lua), on a private redis-server with default settings except the shard count.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.connection import connect
from emostream.ingest.buffer import ReactionBuffer
from emostream.ingest.flusher import Flusher
from emostream.ingest.validation import Reaction, ReactionColumns
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings
from emostream.windows import window_start

EMOJIS = ["🔥", "😂", "👏", "❤️"]
# Key kinds of one event, by the suffix keys.py gives them.
KINDS = {
    ":state": "state hash",
    ":windows": "history stream",
    ":revised": "revisions hash",
    ":counts": "window counts (zset)",
    ":users": "window users (HLL)",
    ":total": "window total",
    ":meta": "window meta hash",
}


def busy_window(users: int) -> ReactionColumns:
    """A window with ``users`` distinct users, each reacting with every emoji."""
    return ReactionColumns.of(
        Reaction(f"user-{u}", emoji, None) for u in range(users) for emoji in EMOJIS
    )


async def usage_by_kind(redis: Redis, event_id: str) -> Counter[str]:
    usage: Counter[str] = Counter()
    async for key in redis.scan_iter(match=f"*:ev:{event_id}:*", count=1000):
        kind = next(name for suffix, name in KINDS.items() if key.decode().endswith(suffix))
        usage[kind] += int(await redis.memory_usage(key, samples=0) or 0)
    return usage


async def close_all(redis: Redis, settings: Settings, flusher: Flusher) -> None:
    """Count and close everything stamped so far. A fresh closer each time: one that has
    passed a boundary does not look at it again, and these windows are in the past."""
    worker = Worker(redis, settings)
    await flusher.flush()
    await worker.drain()
    while await worker.closer.tick():
        pass


async def used_memory(redis: Redis) -> int:
    memory: Any = await redis.info("memory")
    return int(memory["used_memory"])


async def windows_of(redis: Redis, event_id: str) -> int:
    return int(await redis.xlen(keys.window_history(0, event_id)))


async def measure(windows: list[int], users: int, flood: int, node_bytes: int) -> None:
    with PrivateRedis() as server:
        redis = connect(server.url)
        if node_bytes:
            await redis.config_set("stream-node-max-bytes", node_bytes)
        settings = Settings(redis_url=server.url, shards=1, buffer_max=10**7, flush_max=10**7)
        buffer = ReactionBuffer(1, settings.buffer_max)
        flusher = Flusher(redis, settings, buffer, "memory")
        await Worker(redis, settings).ensure_groups()
        window_ms = settings.window_ms
        now_window = window_start(now_ms(), window_ms)

        print(f"Windows with {users} users x {len(EMOJIS)} emojis each, then the idle tail:")
        print("| windows | " + " | ".join(KINDS.values()) + " | total | per window |")
        print("| ---: |" + " ---: |" * (len(KINDS) + 2))
        for count in windows:
            event_id = f"busy-{count}"
            first = now_window - (count + 40) * window_ms
            for number in range(count):
                buffer.add(event_id, busy_window(users), first + number * window_ms + 1)
            await close_all(redis, settings, flusher)
            published = await windows_of(redis, event_id)
            usage = await usage_by_kind(redis, event_id)
            cells = " | ".join(f"{usage[kind]:,}" for kind in KINDS.values())
            total = sum(usage.values())
            print(
                f"| {count} (+{published - count} empty) | {cells} | {total:,} | "
                f"{total / published:,.0f} |"
            )

        print(f"\nOne-off events, {flood:,} at once (1 user x {len(EMOJIS)} emojis, then idle):")
        print("| idle tail | windows each | used_memory per event | of which state + history |")
        print("| ---: | ---: | ---: | ---: |")
        for idle_s in (2.0, 10.0, 60.0):
            idle_settings = Settings(**{**settings.__dict__, "event_idle_s": idle_s})
            prefix = f"oneoff-{idle_s:g}s"
            before = await used_memory(redis)
            first = now_window - (int(idle_s * 1000) // window_ms + 5) * window_ms
            for number in range(flood):
                buffer.add(f"{prefix}-{number}", busy_window(1), first + 1)
            await close_all(redis, idle_settings, flusher)
            grown = (await used_memory(redis) - before) / flood
            published = await windows_of(redis, f"{prefix}-0")
            # What stays once the revision horizon has passed: state and history only.
            async for key in redis.scan_iter(match=f"*:ev:{prefix}-*:w:*", count=1000):
                await redis.delete(key)
            residue = (await used_memory(redis) - before) / flood
            print(f"| {idle_s:g} s | {published} | {grown:,.0f} B | {residue:,.0f} B |")
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 30, 300, 1800])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--flood", type=int, default=2000)
    parser.add_argument(
        "--stream-node-max-bytes",
        type=int,
        default=0,
        help="set this Redis option first (Redis preallocates a stream node of up to 4 KB)",
    )
    args = parser.parse_args()
    asyncio.run(measure(args.windows, args.users, args.flood, args.stream_node_max_bytes))


if __name__ == "__main__":
    main()
