"""Shared test helpers: drive the real components against the private Redis."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.deliver.frames import stream_swarm_windows, swarm_windows
from emostream.ingest.buffer import ReactionBuffer
from emostream.ingest.flusher import Flusher
from emostream.ingest.validation import Reaction, ReactionColumns
from emostream.records import WindowRecord, record_of_entry
from emostream.settings import Settings


def reactions(pairs: Iterable[tuple[str, str]]) -> ReactionColumns:
    return ReactionColumns.of(Reaction(user, emoji, None) for user, emoji in pairs)


async def history(redis: Redis, settings: Settings, event_id: str) -> list[WindowRecord]:
    shard = keys.shard_of(event_id, settings.shards)
    entries: Any = await redis.xrange(keys.window_history(shard, event_id))
    return [record_of_entry(fields) for _id, fields in entries]


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout_s: float = 10.0
) -> None:
    """Wait until ``check()`` (a plain or an async function) is true, or fail."""
    deadline = asyncio.get_running_loop().time() + timeout_s

    async def met() -> bool:
        result = check()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await met():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def quick_settings(redis_url: str, window_ms: int, **overrides: Any) -> Settings:
    """Settings for in-process pipeline tests: short windows over two shards."""
    return Settings(
        **{"redis_url": redis_url, "shards": 2, "window_s": window_ms / 1000, **overrides}
    )


def make_ingest(
    redis: Redis, settings: Settings, producer: str = "p1"
) -> tuple[ReactionBuffer, Flusher]:
    buffer = ReactionBuffer(settings.shards, settings.buffer_max, settings.event_split)
    return buffer, Flusher(redis, settings, buffer, producer)


async def make_pipeline(
    redis: Redis, settings: Settings, producer: str = "p1"
) -> tuple[ReactionBuffer, Flusher, Worker]:
    """An ingest (buffer and flusher) and a worker whose consumer groups exist."""
    buffer, flusher = make_ingest(redis, settings, producer)
    worker = Worker(redis, settings)
    await worker.ensure_groups()
    return buffer, flusher, worker


async def close_through(flusher: Flusher, worker: Worker, end_ms: int) -> None:
    """Wait until ``end_ms`` has passed, then flush, count and close what is due."""
    await asyncio.sleep(max(0, end_ms - now_ms()) / 1000 + 0.01)
    await flusher.flush()
    await worker.drain()
    await worker.closer.tick()


def sse_events(text: str) -> list[dict[str, Any]]:
    """Parse SSE text into swarm window objects."""
    return swarm_windows(text.split("\n"))


async def read_swarm(
    url: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float,
    last_event_id: int | None = None,
) -> list[dict[str, Any]]:
    """Read swarm windows from a real SSE stream until ``until(windows)`` or the timeout."""
    import httpx

    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    windows: list[dict[str, Any]] = []

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for window in stream_swarm_windows(response.aiter_lines()):
                windows.append(window)
                if until(windows):
                    return

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        pass
    return windows
