"""Every per-event key expires: an event idle for EMOSTREAM_EVENT_TTL_S costs Redis nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.errors import ConfigError
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import eventually, history, make_ingest, make_pipeline, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 200


def shard_keys(shards: int) -> set[str]:
    """Keys of a shard, not of an event: bounded by the shard count, kept for good."""
    return {
        name(shard)
        for shard in range(shards)
        for name in (
            keys.raw_stream,
            keys.producers,
            keys.active_events,
            keys.late_windows,
            keys.failures,
            keys.dead_letters,
        )
    }


async def keys_of(redis: Redis, event_id: str) -> dict[str, int]:
    """Every key of the event with its TTL in seconds (-1: none)."""
    found: dict[str, int] = {}
    async for key in redis.scan_iter(match=f"*:ev:{event_id}:*"):
        found[key.decode()] = int(await redis.ttl(key))
    return found


async def run_windows(flusher: Any, worker: Worker, count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(WINDOW_MS / 1000)
        await flusher.flush()
        await worker.drain()
        await worker.closer.tick()


async def test_no_key_of_an_event_lives_forever(redis: Redis, redis_server: PrivateRedis) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        shards=1,
        window_s=WINDOW_MS / 1000,
        close_max_delay_ms=60_000,
        producer_timeout_ms=60_000,
    )
    buffer, flusher = make_ingest(redis, settings)
    late_buffer, late_flusher = make_ingest(redis, settings, "late-producer")
    worker = Worker(redis, settings)
    await worker.ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("final", reactions([("u1", "🔥"), ("u2", "😂")]), now_ms())
    await run_windows(flusher, worker, 3)
    # A late reaction revises the first window, which writes the revisions hash.
    late_buffer.add("final", reactions([("u3", "🔥")]), start + 1)
    await late_flusher.flush()
    await worker.drain()
    await worker.closer.tick()
    assert (await history(redis, settings, "final"))[0].seq == 1
    event_keys = await keys_of(redis, "final")
    assert keys.event_state(0, "final") in event_keys
    assert keys.window_history(0, "final") in event_keys
    assert keys.window_revisions(0, "final") in event_keys
    for name in (keys.event_state, keys.window_history, keys.window_revisions):
        assert settings.event_ttl_s - 5 <= event_keys[name(0, "final")] <= settings.event_ttl_s
    for key, ttl in event_keys.items():
        assert 0 < ttl <= settings.event_ttl_s, key
    # Whatever else is in Redis is a shard's or has a TTL of its own (batch markers).
    async for raw_key in redis.scan_iter():
        if raw_key.decode() not in shard_keys(settings.shards):
            assert await redis.ttl(raw_key) > 0, raw_key


async def test_an_event_idle_past_its_ttl_is_forgotten_and_starts_afresh(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        shards=1,
        window_s=WINDOW_MS / 1000,
        event_idle_s=0.4,
        revision_horizon_s=1,
        event_ttl_s=1,
        close_max_delay_ms=60_000,
    )
    buffer, flusher, worker = await make_pipeline(redis, settings)
    buffer.add("brief", reactions([("u1", "🔥")]), now_ms())
    await run_windows(flusher, worker, 5)  # its window, then empty ones until it goes idle
    assert await redis.zcard(keys.active_events(0)) == 0
    first_run = await history(redis, settings, "brief")
    assert len(first_run) >= 2

    async def forgotten() -> bool:
        return await keys_of(redis, "brief") == {}

    await eventually(forgotten, timeout_s=5)
    # A reaction after that is a new event: seq 1 again, on a fresh history.
    buffer.add("brief", reactions([("u2", "😂")]), now_ms())
    await run_windows(flusher, worker, 2)
    records = await history(redis, settings, "brief")
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert records[0].total == 1


def test_the_ttl_must_outlive_the_idle_tail_and_the_revision_horizon() -> None:
    assert Settings.from_env({}).event_ttl_s == 24 * 3600
    with pytest.raises(ConfigError, match="EMOSTREAM_EVENT_TTL_S"):
        Settings.from_env({"EMOSTREAM_EVENT_TTL_S": "30"})  # the idle tail is 60 s
    with pytest.raises(ConfigError, match="EMOSTREAM_EVENT_TTL_S"):
        Settings.from_env({"EMOSTREAM_EVENT_TTL_S": "600"})  # revisions for 3600 s
