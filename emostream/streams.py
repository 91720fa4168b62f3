"""Small helpers for Redis stream ids and consumer groups."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

StreamId = tuple[int, int]


def parse_id(value: bytes | str) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if missing; a Redis restart without AOF loses both."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
