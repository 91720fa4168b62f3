"""Workers: counts applied with XACK atomically, exactly once, against the private Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.consumers import DEAD_AFTER_CLAIM_INTERVALS, delete_consumer
from emostream.aggregate.worker import Worker
from emostream.batch import PAYLOAD_FIELD
from emostream.scripts import Scripts
from emostream.settings import Settings

from .helpers import make_ingest, make_pipeline, reactions

pytestmark = pytest.mark.anyio

T0 = 1_795_000_000_000


async def window_counts(redis: Redis, settings: Settings, event: str, start: int) -> dict[str, int]:
    shard = keys.shard_of(event, settings.shards)
    pairs: Any = await redis.zrange(keys.window_counts(shard, event, start), 0, -1, withscores=True)
    return {member.decode(): int(score) for member, score in pairs}


async def test_batch_counts_land_in_their_windows(redis: Redis, settings: Settings) -> None:
    buffer, flusher = make_ingest(redis, settings)
    buffer.add("live", reactions([("u1", "🔥"), ("u2", "🔥"), ("u1", "😂")]), T0 + 100)
    buffer.add("live", reactions([("u3", "🔥")]), T0 + 2100)
    await flusher.flush()
    worker = Worker(redis, settings)
    assert await worker.drain() == 1
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 2, "😂": 1}
    assert await window_counts(redis, settings, "live", T0 + 2000) == {"🔥": 1}
    shard = keys.shard_of("live", settings.shards)
    assert await redis.get(keys.window_total(shard, "live", T0)) == b"3"
    assert await redis.pfcount(keys.window_users(shard, "live", T0)) == 2
    assert await redis.xpending(keys.raw_stream(shard), keys.AGGREGATORS_GROUP) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    assert worker.reactions == 4


async def test_a_redelivered_entry_is_counted_once(redis: Redis, settings: Settings) -> None:
    buffer, flusher = make_ingest(redis, settings)
    buffer.add("live", reactions([("u1", "🔥")] * 5), T0)
    await flusher.flush()
    worker = Worker(redis, settings)
    await worker.ensure_groups()
    shard = keys.shard_of("live", settings.shards)
    response: Any = await redis.xreadgroup(
        keys.AGGREGATORS_GROUP, "slow-owner", {keys.raw_stream(shard): ">"}
    )
    entry_id, fields = response[0][1][0]
    # Both the slow owner and a claimer process the same delivery.
    await worker.process([(shard, entry_id, fields)])
    await worker.process([(shard, entry_id, fields)])
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 5}
    assert worker.batches == 1


async def test_a_batch_appended_twice_is_counted_once(redis: Redis, settings: Settings) -> None:
    """A retried flush whose first reply was lost appends the same batch id again."""
    buffer, flusher = make_ingest(redis, settings)
    buffer.add("live", reactions([("u1", "🔥")] * 3), T0)
    await flusher.flush()
    shard = keys.shard_of("live", settings.shards)
    entries: Any = await redis.xrange(keys.raw_stream(shard))
    await redis.xadd(keys.raw_stream(shard), {PAYLOAD_FIELD: entries[0][1][PAYLOAD_FIELD]})
    worker = Worker(redis, settings)
    assert await worker.drain() == 2
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 3}


async def test_scripts_reload_after_the_cache_is_flushed(redis: Redis, settings: Settings) -> None:
    buffer, flusher = make_ingest(redis, settings)
    worker = Worker(redis, settings)
    buffer.add("live", reactions([("u1", "🔥")]), T0)
    await flusher.flush()
    await worker.drain()
    await redis.script_flush()  # what a Redis restart does to the script cache
    buffer.add("live", reactions([("u2", "🔥")]), T0 + 10)
    await flusher.flush()
    await worker.drain()
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 2}


async def test_poison_entries_go_to_the_dead_letter_stream(
    redis: Redis, settings: Settings
) -> None:
    buffer, flusher, worker = await make_pipeline(redis, settings)
    shard = keys.shard_of("live", settings.shards)
    await redis.xadd(keys.raw_stream(shard), {PAYLOAD_FIELD: b"\xc1 not msgpack"})
    await redis.xadd(keys.raw_stream(shard), {"something": "else"})
    buffer.add("live", reactions([("u1", "🔥")]), T0)
    await flusher.flush()
    assert await worker.drain() == 3
    dead: Any = await redis.xrange(keys.dead_letters(shard))
    assert len(dead) == 2 and all(b"reason" in fields for _id, fields in dead)
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 1}
    pending: Any = await redis.xpending(keys.raw_stream(shard), keys.AGGREGATORS_GROUP)
    assert pending["pending"] == 0


async def test_entries_of_a_dead_consumer_are_claimed(redis: Redis, settings: Settings) -> None:
    buffer, flusher = make_ingest(redis, settings)
    buffer.add("live", reactions([("u1", "👏")] * 4), T0)
    await flusher.flush()
    dead_worker = Worker(redis, settings, worker_id="dead")
    await dead_worker.ensure_groups()
    shard = keys.shard_of("live", settings.shards)
    # The dead worker read the entry and then crashed before applying it.
    await redis.xreadgroup(keys.AGGREGATORS_GROUP, "dead", {keys.raw_stream(shard): ">"})
    survivor = Worker(redis, settings, worker_id="survivor")
    assert await survivor.read_new(block_ms=None) == 0
    assert await survivor.claim_idle(min_idle_ms=0) == 1
    assert await window_counts(redis, settings, "live", T0) == {"👏": 4}
    assert survivor.reactions == 4


async def test_heartbeat_has_a_ttl(redis: Redis, settings: Settings) -> None:
    worker = Worker(redis, settings, worker_id="w1")
    await worker.heartbeat()
    ttl = await redis.pttl(keys.worker_heartbeat("w1"))
    assert 0 < ttl <= settings.worker_heartbeat_ttl_ms


async def test_groups_are_recreated_when_redis_lost_them(redis: Redis, settings: Settings) -> None:
    """A Redis restart without persistence loses streams and groups: nothing crashes."""
    buffer, flusher, worker = await make_pipeline(redis, settings)
    await redis.flushall()
    assert await worker.read_new(block_ms=None) == 0  # NOGROUP: recreated, not raised
    assert await worker.closer.tick() == 0  # progress unreadable: recreated, not raised
    buffer.add("live", reactions([("u1", "🔥")]), T0)
    await flusher.flush()
    assert await worker.drain() == 1
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 1}


async def consumers(redis: Redis, shard: int) -> dict[str, int]:
    """Name -> pending of every consumer of the group on the shard."""
    found: Any = await redis.xinfo_consumers(keys.raw_stream(shard), keys.AGGREGATORS_GROUP)
    return {c["name"].decode(): c["pending"] for c in found}


async def test_a_dead_workers_consumer_is_removed_once_its_entries_are_claimed(
    redis: Redis, settings: Settings
) -> None:
    quick = Settings(redis_url=settings.redis_url, shards=settings.shards, claim_idle_ms=50)
    buffer, flusher = make_ingest(redis, quick)
    buffer.add("live", reactions([("u1", "👏")] * 4), T0)
    await flusher.flush()
    shard = keys.shard_of("live", quick.shards)
    stream = keys.raw_stream(shard)
    await Worker(redis, quick).ensure_groups()
    await redis.xreadgroup(keys.AGGREGATORS_GROUP, "dead", {stream: ">"})
    # A live worker with nothing pending, idle as long, but its heartbeat says it is alive.
    buffer.add("live", reactions([("u2", "👏")]), T0 + 1)
    await flusher.flush()
    sleeper = Worker(redis, quick, worker_id="sleeper")
    assert await sleeper.read_new(block_ms=None) == 1
    await sleeper.heartbeat()
    survivor = Worker(redis, quick, worker_id="survivor")
    assert await survivor.claim_idle(min_idle_ms=0) == 1
    assert (await consumers(redis, shard))["dead"] == 0  # not idle long enough yet
    await asyncio.sleep(DEAD_AFTER_CLAIM_INTERVALS * quick.claim_idle_ms / 1000 + 0.05)
    await survivor.claim_idle()
    assert set(await consumers(redis, shard)) == {"sleeper", "survivor"}
    assert await window_counts(redis, quick, "live", T0) == {"👏": 5}


async def test_a_consumer_removed_as_it_reads_loses_nothing(
    redis: Redis, settings: Settings
) -> None:
    """A stalled worker that wakes up and reads between the check and the delete: what it
    held is appended again and counted once, and its own late apply counts nothing."""
    buffer, flusher = make_ingest(redis, settings)
    buffer.add("live", reactions([("u1", "🔥")] * 3), T0)
    await flusher.flush()
    woken = Worker(redis, settings, worker_id="woken")
    await woken.ensure_groups()
    shard = keys.shard_of("live", settings.shards)
    stream = keys.raw_stream(shard)
    response: Any = await redis.xreadgroup(keys.AGGREGATORS_GROUP, "woken", {stream: ">"})
    entry_id, fields = response[0][1][0]
    assert await delete_consumer(Scripts(redis), stream, "woken") == 1
    assert "woken" not in await consumers(redis, shard)
    await woken.process([(shard, entry_id, fields)])  # the original: no longer pending
    assert await window_counts(redis, settings, "live", T0) == {}
    assert await Worker(redis, settings).drain() == 1  # the copy
    assert await window_counts(redis, settings, "live", T0) == {"🔥": 3}
    summary: Any = await redis.xpending(stream, keys.AGGREGATORS_GROUP)
    assert summary["pending"] == 0
