"""Ingest buffer -> flusher -> raw shards, against the private Redis."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.batch import PAYLOAD_FIELD, unpack_batch
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings

from .helpers import make_ingest, reactions

pytestmark = pytest.mark.anyio


async def raw_batches(redis: Redis, settings: Settings) -> list[Any]:
    batches = []
    for shard in range(settings.shards):
        entries: Any = await redis.xrange(keys.raw_stream(shard))
        batches += [(shard, unpack_batch(fields[PAYLOAD_FIELD])) for _id, fields in entries]
    return batches


async def test_one_packed_entry_per_shard_per_flush(redis: Redis, settings: Settings) -> None:
    buffer, flusher = make_ingest(redis, settings)
    events = ["live", "final", "semi", "quarter"]
    for i in range(300):
        buffer.add(events[i % 4], reactions([(f"u{i}", "🔥")]), 1000 + i)
    assert buffer.held == 300
    assert await flusher.flush() == 300
    assert buffer.held == 0
    batches = await raw_batches(redis, settings)
    shards_used = {keys.shard_of(e, settings.shards) for e in events}
    assert sorted(s for s, _ in batches) == sorted(shards_used)
    assert sum(b.size for _, b in batches) == 300
    for shard, batch in batches:
        assert all(keys.shard_of(e, settings.shards) == shard for e in batch.events)
        assert batch.producer == "p1"


async def test_watermark_is_a_heartbeat_on_every_shard(redis: Redis, settings: Settings) -> None:
    _, flusher = make_ingest(redis, settings)
    assert await flusher.flush() == 0
    for shard in range(settings.shards):
        assert await redis.hget(keys.producers(shard), "p1") is not None
        assert await redis.xlen(keys.raw_stream(shard)) == 0
    await flusher.stop()
    for shard in range(settings.shards):
        assert await redis.hget(keys.producers(shard), "p1") is None


async def test_a_failed_flush_keeps_the_batch_and_retries_it(
    redis: Redis, redis_server: PrivateRedis, settings: Settings
) -> None:
    buffer, flusher = make_ingest(redis, settings)
    await flusher.flush()
    buffer.add("live", reactions([("u1", "🔥"), ("u2", "😂")]), 5000)
    redis_server.kill()
    try:
        assert await flusher.flush() == 0
        assert buffer.held == 2 and not flusher.redis_available
        buffer.add("live", reactions([("u3", "👏")]), 5100)
        assert buffer.held == 3
    finally:
        redis_server.start()
    written = await flusher.flush()
    assert written == 3 and buffer.held == 0 and flusher.redis_available
    batches = await raw_batches(redis, settings)
    # the kept batch went first, then the newer one: receive order survives the outage
    assert [b.events["live"].users for _, b in batches] == [["u1", "u2"], ["u3"]]


async def test_buffer_room_is_bounded(redis: Redis) -> None:
    settings = Settings(redis_url="redis://unused", shards=1, flush_max=10, buffer_max=10)
    buffer, _ = make_ingest(redis, settings)
    buffer.add("live", reactions([("u", "🔥")] * 8), 1)
    assert buffer.room() == 2
