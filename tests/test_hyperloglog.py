"""Unique users: the worker-built HyperLogLog is Redis's own, bit for bit, and a window's
``unique_users`` is what PFADD/PFCOUNT of the same users gives on a real Redis, whether its
batches travelled as user ids (PFADD in Lua) or as registers (PFMERGE), on time or late."""

from __future__ import annotations

import asyncio
import random
import string
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import hyperloglog
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.deliver.hub import Hub
from emostream.redis_server import PrivateRedis
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import close_through, history, make_ingest, quick_settings, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 400
ID_CHARS = string.ascii_letters + string.digits + "_.:@-"


def user_ids(rng: random.Random, count: int) -> list[str]:
    """Ids of every allowed length (1-64 characters), so every MurmurHash tail is hashed."""
    return [
        f"u-{rng.randrange(10**9)}"
        if rng.random() < 0.5
        else "".join(rng.choices(ID_CHARS, k=rng.randrange(1, 65)))
        for _ in range(count)
    ]


async def pfdebug(redis: Redis, subcommand: str, key: str) -> Any:
    return await redis.execute_command("PFDEBUG", subcommand, key)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("count", [1, 7, 300, 2_000, 30_000])
async def test_registers_and_bytes_are_those_of_pfadd(redis: Redis, count: int) -> None:
    ids = user_ids(random.Random(count), count)
    await redis.pfadd("ref", *ids)
    registers = hyperloglog.registers([i.encode() for i in ids])
    assert list(registers) == await pfdebug(redis, "GETREG", "ref")
    built = hyperloglog.dense(registers)
    await redis.set("built", built)
    assert await redis.pfcount("built") == await redis.pfcount("ref")
    await redis.delete("ref")
    await redis.pfadd("ref", *ids)
    if await pfdebug(redis, "ENCODING", "ref") == b"dense":
        assert await redis.get("ref") == built  # what PFADD left, byte for byte


@pytest.fixture
def fast(redis_server: PrivateRedis) -> Settings:
    return quick_settings(redis_server.url, WINDOW_MS, shards=1, close_max_delay_ms=60_000)


async def test_unique_users_equal_pfcount_of_the_same_users(redis: Redis, fast: Settings) -> None:
    """One window gets a large batch (merged), small ones (PFADD) and repeats; a closed window
    then gets a large late batch and is revised: every figure equals a reference key's."""
    rng = random.Random(16)
    crowd = user_ids(rng, 40_000)
    big = hyperloglog.MERGE_MIN_USERS
    buffer, flusher = make_ingest(redis, fast, "on-time")
    late_buffer, late_flusher = make_ingest(redis, fast, "paused")
    worker = Worker(redis, fast)
    await worker.ensure_groups()
    start = window_start(now_ms(), WINDOW_MS)
    if now_ms() - start > WINDOW_MS // 2:  # room for three flushes inside the window
        start += WINDOW_MS
        await asyncio.sleep((start - now_ms()) / 1000)
    sent: list[str] = []
    for size in (3 * big, 10, big - 1, 2 * big):
        users = rng.choices(crowd, k=size)
        sent += users
        buffer.add("live", reactions((u, "🔥") for u in users), now_ms())
        await flusher.flush()
        await worker.drain()
    await close_through(flusher, worker, start + WINDOW_MS)
    [first] = await history(redis, fast, "live")
    await redis.pfadd("reference", *sent)
    assert first.total == len(sent)
    assert first.unique_users == await redis.pfcount("reference")
    exact = len(set(sent))
    assert abs(first.unique_users - exact) <= 0.03 * exact  # HLL's error: 0.81%, here 3.7 sigma

    late = rng.choices(crowd, k=2 * big)
    late_buffer.add("live", reactions((u, "😂") for u in late), start + 10)
    await late_flusher.flush()
    await worker.drain()
    assert worker.late == len(late)
    await worker.closer.tick()
    await redis.pfadd("reference", *late)
    [final] = await Hub(redis, fast, EmojiSwarmRule()).history.after("live", 0, 10)
    assert (final.seq, final.revision, final.total) == (1, 1, len(sent) + len(late))
    assert final.unique_users == await redis.pfcount("reference")
    assert [k async for k in redis.scan_iter(match="*scratch*")] == []  # nothing left over
