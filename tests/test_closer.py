"""Windows close on time, exactly once, with no seq gaps, and never ahead of their data."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import history, make_ingest, make_pipeline, quick_settings, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 500


@pytest.fixture
def fast(redis_server: PrivateRedis) -> Settings:
    # Forced closing far away, so these tests see the watermark logic alone.
    return quick_settings(
        redis_server.url, WINDOW_MS, close_max_delay_ms=600_000, producer_timeout_ms=1500
    )


async def sleep_until(ms: int) -> None:
    await asyncio.sleep(max(0, ms - now_ms()) / 1000 + 0.01)


async def test_window_closes_when_producers_pass_its_end(redis: Redis, fast: Settings) -> None:
    buffer, flusher, worker = await make_pipeline(redis, fast)
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥"), ("u2", "🔥"), ("u2", "😂")]), now_ms())
    await flusher.flush()
    await worker.drain()
    assert await worker.closer.tick() == 0  # the producer has not flushed past the end yet
    await sleep_until(start + WINDOW_MS)
    await flusher.flush()  # heartbeat: watermark now past the window's end
    assert await worker.closer.tick() == 1
    [record] = await history(redis, fast, "live")
    assert (record.seq, record.window_start_ms, record.total, record.unique_users) == (
        1,
        start,
        3,
        2,
    )
    assert dict(record.counts) == {"🔥": 2, "😂": 1}
    # Nothing more arrives: the next windows are still published, empty, seq without gaps.
    await sleep_until(start + 3 * WINDOW_MS)
    await flusher.flush()
    assert await worker.closer.tick() == 2
    records = await history(redis, fast, "live")
    assert [r.seq for r in records] == [1, 2, 3]
    assert [(r.total, r.counts) for r in records[1:]] == [(0, ()), (0, ())]
    assert [r.window_start_ms for r in records] == [start + i * WINDOW_MS for i in range(3)]


async def test_a_lagging_producer_holds_the_window_until_it_times_out(
    redis: Redis, fast: Settings
) -> None:
    buffer, flusher = make_ingest(redis, fast, "fast-producer")
    _, lagging = make_ingest(redis, fast, "lagging-producer")
    worker = Worker(redis, fast)
    await worker.ensure_groups()
    await lagging.flush()  # registers, then goes silent
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    await sleep_until(start + WINDOW_MS)
    await flusher.flush()
    await worker.drain()
    assert await worker.closer.tick() == 0
    await asyncio.sleep(fast.producer_timeout_ms / 1000 + 0.1)
    await flusher.flush()
    assert await worker.closer.tick() >= 1
    shard = keys.shard_of("live", fast.shards)
    assert await redis.hget(keys.producers(shard), "lagging-producer") is None
    assert (await history(redis, fast, "live"))[0].total == 1


async def test_an_unacknowledged_entry_holds_the_window(redis: Redis, fast: Settings) -> None:
    buffer, flusher = make_ingest(redis, fast)
    worker = Worker(redis, fast, worker_id="closer")
    await worker.ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥")] * 7), now_ms())
    await sleep_until(start + WINDOW_MS)
    await flusher.flush()
    shard = keys.shard_of("live", fast.shards)
    # Another worker has read the batch but not counted it yet.
    response: Any = await redis.xreadgroup(
        keys.AGGREGATORS_GROUP, "busy", {keys.raw_stream(shard): ">"}
    )
    assert response
    await flusher.flush()
    assert await worker.closer.tick() == 0
    assert await history(redis, fast, "live") == []
    await worker.claim_idle(min_idle_ms=0)
    assert await worker.closer.tick() == 1
    assert (await history(redis, fast, "live"))[0].total == 7


async def test_racing_closers_close_each_window_once(redis: Redis, fast: Settings) -> None:
    buffer, flusher = make_ingest(redis, fast)
    workers = [Worker(redis, fast, worker_id=f"w{i}") for i in range(4)]
    await workers[0].ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    buffer.add("other", reactions([("u1", "😂")]), now_ms())
    await flusher.flush()
    await workers[0].drain()
    await sleep_until(start + 4 * WINDOW_MS)
    await flusher.flush()
    closed = await asyncio.gather(*(w.closer.tick() for w in workers))
    assert sum(closed) == 8  # 4 windows x 2 events, whoever closed them
    for event in ("live", "other"):
        records = await history(redis, fast, event)
        assert [r.seq for r in records] == [1, 2, 3, 4]
        assert sum(r.total for r in records) == 1


async def test_an_idle_event_stops_producing_windows(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        shards=1,
        window_s=0.2,
        event_idle_s=0.5,
        close_max_delay_ms=600_000,
    )
    buffer, flusher, worker = await make_pipeline(redis, settings)
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    await flusher.flush()
    await worker.drain()
    await asyncio.sleep(1.5)
    await flusher.flush()
    await worker.closer.tick()
    count = len(await history(redis, settings, "live"))
    assert 2 <= count <= 5  # the active window plus empties for about event_idle_s
    assert await redis.zcard(keys.active_events(0)) == 0
    await asyncio.sleep(0.5)
    await flusher.flush()
    await worker.closer.tick()
    assert len(await history(redis, settings, "live")) == count
    # A new reaction wakes it up, with the next seq and no empty windows for the idle gap.
    buffer.add("live", reactions([("u2", "😂")]), now_ms())
    await flusher.flush()
    await worker.drain()
    await asyncio.sleep(0.3)
    await flusher.flush()
    await worker.closer.tick()
    records = await history(redis, settings, "live")
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert records[count].total == 1
