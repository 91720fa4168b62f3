"""The closer with many events: batched calls, oldest windows first, one broken event alone."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate import closer
from emostream.clock import now_ms
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import history, make_pipeline, quick_settings, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 1000


@pytest.fixture
def slow_windows(redis_server: PrivateRedis) -> Settings:
    # Windows are stamped in the past and closed by the watermark alone, within one window.
    return quick_settings(redis_server.url, WINDOW_MS, close_max_delay_ms=600_000, buffer_max=10**6)


async def evalsha_calls(redis: Redis) -> int:
    stats: Any = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_thousands_of_events_close_in_a_few_calls(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    # Long windows, and a start right after a boundary, so that setting up 3,000 events
    # cannot make a second window of each due before the tick.
    window_ms = 5000
    slow_windows = quick_settings(redis_server.url, window_ms, close_max_delay_ms=600_000)
    buffer, flusher, worker = await make_pipeline(redis, slow_windows)
    events = [f"e{number}" for number in range(3000)]
    await asyncio.sleep((window_ms - now_ms() % window_ms) / 1000 + 0.01)
    start = window_start(now_ms(), window_ms) - window_ms  # ended already
    for event_id in events:
        buffer.add(event_id, reactions([("u1", "🔥")]), start + 1)
    await flusher.flush()
    await worker.drain()
    before = await evalsha_calls(redis)
    assert await worker.closer.tick() == len(events)
    calls = await evalsha_calls(redis) - before
    # One close_window.lua call per CLOSE_CHUNK windows of a shard, not one per window.
    assert calls <= math.ceil(len(events) / closer.CLOSE_CHUNK) + slow_windows.shards
    for event_id in ("e0", "e1234", "e2999"):
        [record] = await history(redis, slow_windows, event_id)
        assert (record.seq, record.window_start_ms, record.total) == (1, start, 1)


async def test_a_backlog_is_closed_oldest_first_in_bounded_steps(
    redis: Redis, slow_windows: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(closer, "CLOSE_BUDGET", 5)  # windows per shard and tick
    slow_windows = Settings(**{**slow_windows.__dict__, "shards": 1})
    buffer, flusher, worker = await make_pipeline(redis, slow_windows)
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("behind", reactions([("u1", "🔥")]), start - 8 * WINDOW_MS + 1)
    buffer.add("live", reactions([("u1", "😂")]), start - WINDOW_MS + 1)
    await flusher.flush()
    await worker.drain()
    assert await worker.closer.tick() == 5  # the five most overdue windows, all of "behind"
    assert len(await history(redis, slow_windows, "behind")) == 5
    assert await history(redis, slow_windows, "live") == []
    assert await worker.closer.tick() >= 4  # the rest of "behind", then "live"
    behind = await history(redis, slow_windows, "behind")
    [live] = await history(redis, slow_windows, "live")
    assert [r.window_start_ms for r in behind[:8]] == [
        start - (8 - i) * WINDOW_MS for i in range(8)
    ]
    assert [r.seq for r in behind] == list(range(1, len(behind) + 1))
    assert (live.seq, live.window_start_ms, live.total) == (1, start - WINDOW_MS, 1)


async def test_an_event_with_broken_keys_does_not_hold_the_others(
    redis: Redis, slow_windows: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(**{**slow_windows.__dict__, "shards": 1})
    buffer, flusher, worker = await make_pipeline(redis, settings)
    start = window_start(now_ms(), WINDOW_MS) - WINDOW_MS
    for event_id in ("a", "broken", "z"):
        buffer.add(event_id, reactions([("u1", "🔥")]), start + 1)
    await flusher.flush()
    await worker.drain()
    await redis.set(keys.window_history(0, "broken"), "not a stream")
    with caplog.at_level(logging.ERROR):
        published = await worker.closer.tick()
    assert f"window {start} of broken (shard 0) failed" in caplog.text
    assert "WRONGTYPE" in caplog.text
    for event_id in ("a", "z"):
        records = await history(redis, settings, event_id)
        assert records[0].total == 1  # and an empty one if a boundary passed meanwhile
    assert published == 2 * len(records)
