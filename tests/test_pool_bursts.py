"""Redis connections sized for bursts: 2,000 simultaneous history reads on `emostream up` all
get their windows (callers wait briefly for a pooled connection instead of failing), and the
worker in the same process keeps closing windows on its own client meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ConnectionError

from emostream.connection import connect_for, is_cluster
from emostream.redis_cluster import PrivateCluster
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings

from .conftest import ProcessFactory

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

READERS = 2000
POOL_FAILURES = ("Too many connections", "No connection available", "retrying", "unavailable")


async def get_at_once(port: int, path: str, clients: int) -> list[tuple[int, bytes]]:
    """``clients`` connections opened first, then every request written at once; (status,
    body) of each answer."""
    connections = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(clients))
    )
    request = f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()
    for _reader, writer in connections:
        writer.write(request)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        try:
            return await reader.read()  # until the server closes: Connection: close
        finally:
            writer.close()

    responses = await asyncio.gather(*(answer(r, w) for r, w in connections))
    answers = []
    for response in responses:
        head, _, body = response.partition(b"\r\n\r\n")
        answers.append((int(head.split(b" ", 2)[1]), body))
    return answers


async def test_two_thousand_simultaneous_history_reads_all_succeed(
    any_processes: ProcessFactory,
) -> None:
    up = any_processes.role("up", EMOSTREAM_WINDOW_S="0.5")
    assert up.port is not None
    async with httpx.AsyncClient(base_url=up.url) as client:
        reaction = {"user_id": "u-1", "emoji": "🔥"}
        assert (await client.post("/v1/events/live/reactions", json=reaction)).status_code == 202

        async def windows() -> list[dict[str, object]]:
            answer = await client.get("/v1/events/live/windows?after=0&limit=1000")
            assert answer.status_code == 200
            found: list[dict[str, object]] = answer.json()
            return found

        deadline = time.monotonic() + 20
        while not await windows():
            assert time.monotonic() < deadline, up.log()
            await asyncio.sleep(0.1)
        began = time.monotonic()
        answers = await get_at_once(up.port, "/v1/events/live/windows?after=0&limit=1000", READERS)
        print(
            f"\n{READERS} simultaneous history reads answered in {time.monotonic() - began:.2f} s"
        )
        statuses = [status for status, _body in answers]
        assert statuses.count(200) == READERS, {s: statuses.count(s) for s in set(statuses)}
        assert all(json.loads(body)[0]["seq"] == 1 for _status, body in answers)
        # The worker kept closing windows (empty ones now) on its own client meanwhile.
        seen = len(await windows())
        deadline = time.monotonic() + 10
        while len(await windows()) <= seen:
            assert time.monotonic() < deadline, up.log()
            await asyncio.sleep(0.1)
    log = up.log()
    for failure in POOL_FAILURES:
        assert failure not in log, log


async def test_a_caller_waits_for_a_busy_pool_and_fails_only_after_the_timeout(
    redis_server: PrivateRedis,
) -> None:
    settings = Settings(
        redis_url=redis_server.url, redis_max_connections=3, redis_pool_timeout_ms=300
    )
    redis = await connect_for(settings)
    pool = redis.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    take: Any = pool.get_connection  # untyped in redis-py (a deprecation wrapper)
    held = [await take() for _ in range(3)]
    try:
        began = time.monotonic()
        with pytest.raises(ConnectionError, match="No connection available"):
            await redis.ping()
        assert time.monotonic() - began >= 0.25
        waiting = asyncio.ensure_future(redis.ping())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # queued, not failed at once
        await pool.release(held.pop())
        assert await asyncio.wait_for(waiting, 1) is True
    finally:
        for connection in held:
            await pool.release(connection)
        await redis.aclose()


async def test_on_a_cluster_a_caller_waits_for_a_turn_and_fails_only_after_the_timeout(
    redis_cluster: PrivateCluster,
) -> None:
    """redis-py's cluster client has no blocking pool; ours queues callers the same way."""
    redis_cluster.restore()
    settings = Settings(
        redis_url=redis_cluster.url, redis_max_connections=2, redis_pool_timeout_ms=1000
    )
    redis, other = await connect_for(settings), await connect_for(settings)
    assert is_cluster(redis)
    await redis.delete("wake{t}")
    await other.get("k{t}")  # its slot map is read before the timing below
    blocked = [asyncio.ensure_future(redis.blpop(["wake{t}"], timeout=10)) for _ in range(2)]
    try:
        await asyncio.sleep(0.3)  # both turns are held by the blocked reads
        began = time.monotonic()
        with pytest.raises(ConnectionError, match="pool timeout"):
            await redis.get("k{t}")
        assert time.monotonic() - began >= 0.9
        waiting = asyncio.ensure_future(redis.get("k{t}"))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # queued, not failed at once
        await other.lpush("wake{t}", "x")  # one blocked read returns and gives its turn back
        assert await asyncio.wait_for(waiting, 5) is None
    finally:
        await other.lpush("wake{t}", "x", "y")
        await asyncio.gather(*blocked, return_exceptions=True)
        await redis.aclose()
        await other.aclose()
