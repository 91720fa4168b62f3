"""One hot event over several shards (EMOSTREAM_EVENT_SPLIT): ingest cuts each event's
reactions of a flush into runs for its shards (``keys.sub_shards``), each shard counts its run
where it lands, on its own primary, and the event's own shard closes every window once.

Before it closes (or revises) a window, its closer seals the window on the other shards
(lua/seal_window.lua: their ``next`` moves past it, so what arrives for it later there is
late) and passes what they counted to lua/close_window.lua, which merges it into the one
record it numbers, stores and publishes. A window is closed only when every shard of its
event has passed it (the closer takes the lowest safe watermark of all shards). Late
reactions on another shard are handed to the event's own shard, whose revision merges again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..scripts import Scripts, is_noscript, pack_extras
from ..settings import Settings

log = logging.getLogger(__name__)


def home_of(event_id: str, settings: Settings) -> int:
    return keys.shard_of(event_id, settings.shards)


async def extras_of(
    scripts: Scripts, settings: Settings, windows: Sequence[tuple[str, int]]
) -> list[bytes | None]:
    """Seal each (event, window start) on the event's other shards; per window the extras
    for close_window.lua, or None if a shard could not be sealed (closed at a later tick)."""
    for _attempt in range(2):
        pipe = scripts.redis.pipeline(transaction=False)
        spans: list[int] = []
        for event_id, start in windows:
            others = keys.sub_shards(event_id, settings.shards, settings.event_split)[1:]
            for shard in others:
                scripts.seal_window(shard, event_id, start, settings, pipe)
            spans.append(len(others))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        if not any(is_noscript(reply) for reply in replies):
            break
        await scripts.load()  # a restarted or promoted node: load and seal again
    extras: list[bytes | None] = []
    first = 0
    for (event_id, start), span in zip(windows, spans, strict=True):
        sealed = replies[first : first + span]
        first += span
        failed = [reply for reply in sealed if isinstance(reply, Exception)]
        if failed:
            log.warning("window %d of %s not sealed everywhere: %s", start, event_id, failed[0])
            extras.append(None)
        else:
            extras.append(pack_extras(sealed))
    return extras


async def hand_over_late(
    redis: Redis, settings: Settings, shard: int, members: list[bytes]
) -> list[bytes]:
    """Late windows of events whose own shard is another one are moved to that shard's late
    set; returns the members that stay here."""
    staying: list[bytes] = []
    for member in members:
        event_id = member.decode().partition(" ")[0]
        home = home_of(event_id, settings)
        if home == shard:
            staying.append(member)
            continue
        # Taken from here first: a late reaction arriving meanwhile adds it here again and
        # it is handed over at the next tick (added there first, a revision racing the move
        # could swallow that reaction's revision).
        if await redis.srem(keys.late_windows(shard), member):
            await redis.sadd(keys.late_windows(home), member)
    return staying
