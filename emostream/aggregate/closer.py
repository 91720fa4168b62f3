"""Close windows on time, exactly once, with no gaps in seq.

A window ``[start, end)`` of a shard is complete when (1) every live ingest producer has
flushed past ``end`` (its watermark, written atomically after its batch), and (2) every raw
entry appended up to that moment has been counted and acknowledged by the group. The closer
snapshots (last entry id, lowest live watermark) in one transaction each tick and keeps each
snapshot until the group's progress passes its entry id; then the watermark is safe. This
holds under continuous load, where something is always in flight, and closes a window within
one tick of the flush that ends it. A producer silent for ``producer_timeout_ms`` stops
holding windows open; no window stays open longer than ``close_max_delay_ms`` past its end.

Closing itself is lua/close_window.lua, gated on the event's ``next`` window, so any number of
workers may run a closer and each window is numbered, stored and published once. One call
closes many events' windows, the most overdue first across events (``windows.due_windows``):
a round trip per event and window, event after event, let 50,000 events hold a live event's
window for minutes (docs/benchmarks.md, "Closing many events").
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .. import keys
from ..clock import now_ms
from ..scripts import Scripts
from ..settings import Settings
from ..streams import StreamId, ensure_group, find_group, group_stats, parse_id
from ..windows import due_windows, producer_is_live, window_start
from .split import extras_of, hand_over_late, home_of

log = logging.getLogger(__name__)

SNAPSHOTS_KEPT = 1024
# Windows one tick closes per shard at most (oldest first), so a catch-up after an outage
# comes in steps and the other shards' windows and revisions are not held up behind it.
CLOSE_BUDGET = 20_000
# Windows per close_window.lua call: Redis spends about 40 us on each, so a call holds it
# for under 10 ms, and between two calls the worker's readers get the event loop back.
CLOSE_CHUNK = 200
# HGETs per pipeline when reading where each event's open windows start.
READ_CHUNK = 1000

T = TypeVar("T")


def processed_through(
    groups: list[dict[str, Any]],
    pending: dict[str, Any],
    group_name: str | bytes = keys.AGGREGATORS_GROUP,
) -> StreamId | None:
    """The highest entry id such that the group has acknowledged it and everything before."""
    group = find_group(groups, group_name)
    if group is None:
        return None
    delivered = parse_id(group["last-delivered-id"])
    if not pending.get("pending"):
        return delivered
    oldest = parse_id(pending["min"])
    before_oldest = (oldest[0], oldest[1] - 1) if oldest[1] else (oldest[0] - 1, 2**63)
    return min(delivered, before_oldest)


def lowest_live_watermark(
    watermarks: dict[bytes, bytes], now: int, timeout_ms: int
) -> tuple[int, list[bytes]]:
    """(lowest watermark of live producers, or now if none; producers timed out)."""
    live: list[int] = []
    dead: list[bytes] = []
    for producer, value in watermarks.items():
        watermark = int(value)
        if producer_is_live(watermark, now, timeout_ms):
            live.append(watermark)
        else:
            dead.append(producer)
    return (min(live) if live else now), dead


@dataclass(eq=False)
class WindowCloser:
    redis: Redis
    settings: Settings
    scripts: Scripts
    # For /metrics: windows published first and as revisions, and each shard's
    # consumer-group figures (lag, pending, consumers) at its last tick.
    closed: int = field(init=False, default=0)
    revised: int = field(init=False, default=0)
    backlog: dict[int, dict[str, Any]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        shards = self.settings.shards
        self._snapshots: list[deque[tuple[StreamId, int]]] = [
            deque(maxlen=SNAPSHOTS_KEPT) for _ in range(shards)
        ]
        self._safe_ms = [0] * shards
        self._closed_through = [0] * shards

    async def safe_watermark(self, shard: int, now: int) -> int:
        """Windows of this shard ending at or before the returned ms are complete."""
        raw = keys.raw_stream(shard)
        # In this order, on one connection (one slot: one node), with no MULTI: watermarks
        # read before the stream's last id only claim entries appended before that id, and
        # progress read after it is only ever more recent. (redis-py's asyncio cluster client
        # runs MULTI through a thread with an event loop of its own, which deadlocks a role
        # when the slot map must be refreshed during a failover.)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(keys.producers(shard))
        pipe.xinfo_stream(raw)
        pipe.xinfo_groups(raw)
        pipe.xpending(raw, keys.AGGREGATORS_GROUP)
        try:
            watermarks, stream, groups, pending = await pipe.execute()
        except ResponseError as exc:
            # The stream or group vanished (a Redis restart without persistence).
            log.warning("shard %d progress unreadable (%s); recreating the group", shard, exc)
            await ensure_group(self.redis, raw, keys.AGGREGATORS_GROUP)
            return self._safe_ms[shard]
        lowest, dead = lowest_live_watermark(watermarks, now, self.settings.producer_timeout_ms)
        if dead:
            await self.redis.hdel(keys.producers(shard), *dead)
            log.warning("producers %s timed out on shard %d", dead, shard)
        self.backlog[shard] = group_stats(groups)
        snapshots = self._snapshots[shard]
        last_id = parse_id(stream["last-generated-id"])
        # A snapshot beyond the stream's last id names entries this Redis never had: a
        # failover or a restart lost them (asynchronous replication, AOF everysec). Waiting
        # for the group to pass it would hold the shard's windows until close_max_delay_ms.
        if snapshots and snapshots[-1][0] > last_id:
            log.warning("shard %d lost its newest entries (a failover or restart)", shard)
            kept = [snapshot for snapshot in snapshots if snapshot[0] <= last_id]
            snapshots.clear()
            snapshots.extend(kept)
        snapshots.append((last_id, lowest))
        through = processed_through(groups, pending)
        if through is not None:
            while snapshots and snapshots[0][0] <= through:
                self._safe_ms[shard] = max(self._safe_ms[shard], snapshots.popleft()[1])
        return self._safe_ms[shard]

    def safe_ms(self, shard: int) -> int:
        """The shard's safe watermark as the last tick found it (polls freeze on it)."""
        return self._safe_ms[shard]

    async def tick(self) -> int:
        """Close every complete window and publish pending revisions; returns windows
        published."""
        now = now_ms()
        published = 0
        window_ms = self.settings.window_ms
        shards = range(self.settings.shards)
        safes = [
            max(await self.safe_watermark(shard, now), now - self.settings.close_max_delay_ms)
            for shard in shards
        ]
        for shard in shards:
            revised = await self.revise(shard)
            self.revised += revised
            published += revised
            # A split event's window is complete once every shard of the event has passed it.
            safe = min(safes) if self.settings.event_split > 1 else safes[shard]
            boundary = window_start(safe, window_ms)
            # Only a new window boundary can make a window closable: one pass per window.
            if boundary <= self._closed_through[shard]:
                continue
            closed, caught_up = await self.close_due(shard, safe)
            self.closed += closed
            published += closed
            if caught_up:
                self._closed_through[shard] = boundary
            await self.trim_raw(shard, now)
        return published

    async def close_due(self, shard: int, safe_ms: int) -> tuple[int, bool]:
        """Close the windows of every active event of the shard that end by ``safe_ms``;
        (windows published, whether every due window was attempted)."""
        members: Any = await self.redis.zrange(keys.active_events(shard), 0, -1)
        events: list[str] = [member.decode() for member in members]
        if self.settings.event_split > 1:  # another shard's events are closed there
            events = [event for event in events if home_of(event, self.settings) == shard]
        next_starts: dict[str, int] = {}
        for chunk in _chunks(events, READ_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for event_id in chunk:
                pipe.hget(keys.event_state(shard, event_id), keys.EVENT_NEXT)
            for event_id, next_start in zip(chunk, await pipe.execute(), strict=True):
                if next_start is not None:
                    next_starts[event_id] = int(next_start)
        due = due_windows(next_starts, safe_ms, self.settings.window_ms, CLOSE_BUDGET)
        return await self._publish(shard, due), len(due) < CLOSE_BUDGET

    async def revise(self, shard: int) -> int:
        """Publish a revision of every closed window that received late reactions."""
        members: Any = await self.redis.smembers(keys.late_windows(shard))
        if self.settings.event_split > 1:
            members = await hand_over_late(self.redis, self.settings, shard, list(members))
        windows: list[tuple[str, int]] = []
        for member in members:
            event_id, _, start = member.decode().partition(" ")
            windows.append((event_id, int(start)))
        return await self._publish(shard, windows)

    async def _publish(self, shard: int, windows: Sequence[tuple[str, int]]) -> int:
        """Close or revise these (event, window start)s, an event's windows in order,
        ``CLOSE_CHUNK`` per call; returns how many were this closer's to publish. A window
        that fails (a clobbered key) is logged and retried at the next boundary; the others
        go on."""
        published = 0
        for chunk in _chunks(windows, CLOSE_CHUNK):
            extras: list[bytes] = []
            if self.settings.event_split > 1:
                sealed = await extras_of(self.scripts, self.settings, chunk)
                # A window not sealed on every shard is left for a later tick.
                chunk = [window for window, extra in zip(chunk, sealed, strict=True) if extra]
                extras = [extra for extra in sealed if extra]
                if not chunk:
                    continue
            replies = await self.scripts.close_windows(shard, chunk, self.settings, extras)
            for (event_id, start), reply in zip(chunk, replies, strict=True):
                if isinstance(reply, str):
                    log.error(
                        "window %d of %s (shard %d) failed: %s", start, event_id, shard, reply
                    )
                elif reply:
                    published += 1
        return published

    async def trim_raw(self, shard: int, now: int) -> None:
        """Trim raw entries every consumer group has processed and that are older than the
        retention; an analytics group keeps entries until it has read them."""
        raw = keys.raw_stream(shard)
        groups: Any = await self.redis.xinfo_groups(raw)
        keep_from: StreamId = (now - self.settings.raw_retention_s * 1000, 0)
        for group in groups:
            pending: Any = await self.redis.xpending(raw, group["name"])
            through = processed_through([group], pending, group["name"])
            if through is None:
                return
            keep_from = min(keep_from, (through[0], through[1] + 1))
        # Exact: once per window it removes what a window appended, which is cheap.
        await self.redis.xtrim(raw, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=False)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[first : first + size] for first in range(0, len(items), size)]
