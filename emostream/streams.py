"""Small helpers for Redis stream ids and consumer groups."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .keys import AGGREGATORS_GROUP
from .replies import text

StreamId = tuple[int, int]


def parse_id(value: bytes | str) -> StreamId:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


def find_group(groups: list[dict[str, Any]], name: str | bytes) -> dict[str, Any] | None:
    """The entry of XINFO GROUPS for the group ``name``, or None."""
    wanted = text(name)
    for group in groups:
        if text(group["name"]) == wanted:
            return group
    return None


def group_stats(groups: Any) -> dict[str, Any]:
    """Pending, lag and consumers of the aggregators group from XINFO GROUPS."""
    group = find_group(groups or [], AGGREGATORS_GROUP)
    if group is None:
        return {"pending": 0, "lag": None, "consumers": 0}
    return {
        "pending": int(group.get("pending") or 0),
        # Redis 7 reports lag; None when it cannot tell (e.g. after XDEL).
        "lag": None if group.get("lag") is None else int(group["lag"]),
        "consumers": int(group.get("consumers") or 0),
    }


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if missing; a Redis restart without AOF loses both."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
