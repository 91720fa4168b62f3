"""Late batches revise their window; poison entries are buried; raw shards are trimmed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.batch import unpack_batch
from emostream.clock import now_ms
from emostream.deliver.frames import window_frame
from emostream.deliver.hub import Hub
from emostream.redis_server import PrivateRedis
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import close_through, history, make_ingest, make_pipeline, quick_settings, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 300


@pytest.fixture
def fast(redis_server: PrivateRedis) -> Settings:
    return quick_settings(redis_server.url, WINDOW_MS, shards=1, close_max_delay_ms=60_000)


async def test_a_late_batch_revises_its_closed_window(redis: Redis, fast: Settings) -> None:
    buffer, flusher = make_ingest(redis, fast, "on-time")
    late_buffer, late_flusher = make_ingest(redis, fast, "paused")
    worker = Worker(redis, fast)
    await worker.ensure_groups()
    hub = Hub(redis, fast, EmojiSwarmRule())
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥"), ("u2", "🔥")]), now_ms())
    await close_through(flusher, worker, start + WINDOW_MS)
    [first] = await history(redis, fast, "live")
    assert (first.seq, first.total, first.revision) == (1, 2, 0)

    subscriber = hub.attach("live")
    stop = asyncio.Event()
    hub_task = asyncio.create_task(hub.run(stop))
    await asyncio.wait_for(hub.subscribed.wait(), 5)
    # An ingest that stalled (so long it no longer counted as live) flushes a reaction it
    # received inside window 1, after that window closed.
    late_buffer.add("live", reactions([("u3", "😂")]), start + 10)
    await late_flusher.flush()
    await worker.drain()
    assert worker.late == 1
    assert await worker.closer.tick() >= 1
    for _ in range(100):
        if any(key == (1, 1) for key, _ in subscriber.frames):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await hub_task
    [revision_frame] = [frame for key, frame in subscriber.frames if key == (1, 1)]
    assert not revision_frame.startswith(b"id:")  # Last-Event-ID keeps naming the newest
    assert b'"revision":1' in revision_frame and b'"total":3' in revision_frame

    final = (await hub.history.after("live", 0, 10))[0]
    assert (final.seq, final.total, final.revision) == (1, 3, 1)
    assert dict(final.counts) == {"🔥": 2, "😂": 1}
    assert final.unique_users == 3
    # The first publication stays in the stream; history serves the revised one.
    assert (await history(redis, fast, "live"))[0].total == 2
    assert window_frame(EmojiSwarmRule().window_object(final)) == revision_frame


async def test_late_beyond_the_revision_horizon_is_tallied_as_lost(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        shards=1,
        window_s=WINDOW_MS / 1000,
        revision_horizon_s=1,
        close_max_delay_ms=60_000,
    )
    buffer, flusher, worker = await make_pipeline(redis, settings)
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    await close_through(flusher, worker, start + WINDOW_MS)
    await asyncio.sleep(1.2)  # the closed window's keys expire
    buffer.add("live", reactions([("u2", "🔥")] * 4), start + 5)
    await flusher.flush()
    await worker.drain()
    assert (worker.late, worker.lost) == (0, 4)
    state: Any = await redis.hget(keys.event_state(0, "live"), keys.EVENT_LOST)
    assert int(state) == 4


async def test_an_entry_failing_n_times_is_dead_lettered(redis: Redis, fast: Settings) -> None:
    """An event whose state key was clobbered (a wrong type) makes its batches fail in the
    Lua step, which then writes nothing; the entry is retried, buried after 3 deliveries with
    the reason, and the other events keep flowing."""
    buffer, flusher, worker = await make_pipeline(redis, fast)
    await redis.set(keys.event_state(0, "clobbered"), "not a hash")
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("clobbered", reactions([("u1", "🔥")] * 3), now_ms())
    await flusher.flush()
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    await flusher.flush()
    await worker.drain()  # delivery 1: fails, stays pending; the good batch is counted
    assert worker.failed == 1 and worker.reactions == 1
    for attempt in (2, 3):
        await worker.claim_idle(min_idle_ms=0)
        assert worker.failed == attempt
    assert await redis.xlen(keys.dead_letters(0)) == 0
    await worker.claim_idle(min_idle_ms=0)  # delivered 3 times: buried
    dead: Any = await redis.xrange(keys.dead_letters(0))
    assert len(dead) == 1
    reason = dead[0][1][b"reason"]
    assert b"failed 3 times" in reason and b"WRONGTYPE" in reason
    assert unpack_batch(dead[0][1][b"payload"]).events["clobbered"].users == ["u1"] * 3
    raw = keys.raw_stream(0)
    pending: Any = await redis.xpending(raw, keys.AGGREGATORS_GROUP)
    assert pending["pending"] == 0
    # Nothing of the failed batch was written, though its other keys were free.
    assert await redis.exists(keys.window_counts(0, "clobbered", start)) == 0
    await close_through(flusher, worker, start + WINDOW_MS)
    assert (await history(redis, fast, "live"))[0].total == 1


async def test_raw_is_trimmed_only_behind_every_group(redis: Redis, fast: Settings) -> None:
    settings = Settings(**{**fast.__dict__, "raw_retention_s": 1})
    buffer, flusher, worker = await make_pipeline(redis, settings)
    raw = keys.raw_stream(0)
    await redis.xgroup_create(raw, "analytics", id="0")
    for i in range(5):
        buffer.add("live", reactions([(f"u{i}", "🔥")]), now_ms())
        await flusher.flush()
    await worker.drain()
    await asyncio.sleep(1.1)
    await worker.closer.trim_raw(0, now_ms())
    assert await redis.xlen(raw) == 5  # analytics has read nothing yet
    await redis.xreadgroup("analytics", "a1", {raw: ">"}, count=3)
    entries: Any = await redis.xrange(raw)
    await redis.xack(raw, "analytics", *[entry_id for entry_id, _fields in entries[:3]])
    await worker.closer.trim_raw(0, now_ms())
    assert await redis.xlen(raw) == 2  # what analytics has not acknowledged stays
