"""One event split over three shards (EMOSTREAM_EVENT_SPLIT=3): counted on each, closed once,
merged, revised as one window when late reactions land on any of its shards."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.ingest.flusher import Flusher
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import history, make_ingest, quick_settings, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 300
EMOJIS = ["🔥", "😂", "👏"]


def split_settings(redis_server: PrivateRedis, split: int) -> Settings:
    return quick_settings(
        redis_server.url, WINDOW_MS, shards=3, event_split=split, close_max_delay_ms=60_000
    )


async def close_through(flusher: Flusher, worker: Worker, end_ms: int) -> None:
    await asyncio.sleep(max(0, end_ms - now_ms()) / 1000 + 0.01)
    await flusher.flush()
    await worker.drain()
    await worker.closer.tick()


def taps(first: int, count: int) -> Any:
    return reactions((f"u{i}", EMOJIS[i % 3]) for i in range(first, first + count))


async def test_a_split_event_is_counted_on_each_shard_and_published_once_merged(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    settings = split_settings(redis_server, 3)
    buffer, flusher = make_ingest(redis, settings)
    worker = Worker(redis, settings)
    await worker.ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("hot", taps(0, 30), now_ms())
    await close_through(flusher, worker, start + WINDOW_MS)
    # Each of the three shards counted ten of them in its own keys.
    for shard in keys.sub_shards("hot", 3, 3):
        total: Any = await redis.get(keys.window_total(shard, "hot", start))
        assert int(total) == 10
    [record] = await history(redis, settings, "hot")
    assert (record.seq, record.total, record.unique_users, record.revision) == (1, 30, 30, 0)
    assert dict(record.counts) == {"🔥": 10, "😂": 10, "👏": 10}
    # Only the event's own shard keeps its history.
    others = keys.sub_shards("hot", 3, 3)[1:]
    for shard in others:
        assert not await redis.exists(keys.window_history(shard, "hot"))


async def test_late_reactions_on_every_shard_revise_the_one_window(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    settings = split_settings(redis_server, 3)
    buffer, flusher = make_ingest(redis, settings, "on-time")
    late_buffer, late_flusher = make_ingest(redis, settings, "paused")
    worker = Worker(redis, settings)
    await worker.ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("hot", taps(0, 30), now_ms())
    await close_through(flusher, worker, start + WINDOW_MS)
    # Three reactions received inside the closed window: one for each shard of the event.
    late_buffer.add("hot", taps(30, 3), start + 10)
    await late_flusher.flush()
    await worker.drain()
    assert worker.late == 3
    await worker.closer.tick()  # the other shards hand their late window to the event's own
    await worker.closer.tick()
    record = (await worker_history(redis, settings))[0]
    assert (record.seq, record.total, record.unique_users) == (1, 33, 33)
    assert record.revision >= 1
    assert dict(record.counts) == {"🔥": 11, "😂": 11, "👏": 11}
    for shard in keys.sub_shards("hot", 3, 3):
        assert not await redis.smembers(keys.late_windows(shard))


async def worker_history(redis: Redis, settings: Settings) -> Any:
    from emostream.deliver.hub import Hub
    from emostream.rules import EmojiSwarmRule

    return await Hub(redis, settings, EmojiSwarmRule()).history.after("hot", 0, 10)


async def test_split_and_unsplit_publish_the_same_windows(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    """The same reactions over 5 windows, split over three shards and not: equal records."""
    found = []
    for split in (1, 3):
        await redis.flushall()
        settings = split_settings(redis_server, split)
        buffer, flusher = make_ingest(redis, settings)
        worker = Worker(redis, settings)
        await worker.ensure_groups()
        base = window_start(now_ms(), WINDOW_MS) - 6 * WINDOW_MS
        for window in range(5):
            buffer.add("hot", taps(window * 7, 40 + window), base + window * WINDOW_MS + 1)
        await flusher.flush()
        await worker.drain()
        await worker.closer.tick()
        records = await history(redis, settings, "hot")
        found.append([(r.total, r.unique_users, dict(r.counts)) for r in records if r.total])
    assert found[0] == found[1] and len(found[0]) == 5


async def test_a_retired_split_event_leaves_every_shards_active_set(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    """Its own shard saw only the earlier window, the others a later one: once the event is
    idle, no shard lists it (none would ever seal it again)."""
    settings = quick_settings(
        redis_server.url,
        WINDOW_MS,
        shards=3,
        event_split=3,
        event_idle_s=WINDOW_MS / 1000,
        close_max_delay_ms=60_000,
    )
    buffer, flusher = make_ingest(redis, settings)
    worker = Worker(redis, settings)
    await worker.ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    # Cut in three runs in order: the first (the event's own shard) in window W, the
    # others in W + 1.
    received = [start, start + WINDOW_MS + 1, start + WINDOW_MS + 2]
    for index, at in enumerate(received):
        buffer.add("hot", taps(index, 1), at)
    # Closed live, a window at a time, as a running worker does, past the idle time.
    for window in range(1, 8):
        await close_through(flusher, worker, start + window * WINDOW_MS)
    for shard in range(3):
        assert await redis.zscore(keys.active_events(shard), "hot") is None, shard
    records = await history(redis, settings, "hot")
    assert sum(r.total for r in records) == 3
