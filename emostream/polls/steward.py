"""The workers' part in polls, run beside the window closer: freeze each locked poll once
every vote received before its lock has been counted, seal it with its audit digest, and
publish each open poll's live tally once a window.

Freezing reuses the closer's safe watermark of the poll's shard (every live producer has
flushed past it and the group acknowledged everything appended before), exactly what makes a
window complete; like a window, a poll is frozen at the latest ``close_max_delay_ms`` after
its lock even if a stuck entry still holds the watermark back (a vote in it is then refused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..aggregate.closer import WindowCloser
from ..clock import now_ms
from ..connection import publish_live
from ..records import PollRecord, encode_poll_record
from ..scripts import Scripts
from ..settings import Settings
from ..windows import window_start
from .model import PollDefinition
from .store import PollStore

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PollSteward:
    redis: Redis
    settings: Settings
    scripts: Scripts
    closer: WindowCloser
    store: PollStore = field(init=False)
    frozen: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.store = PollStore(self.redis, self.settings, self.scripts)

    async def tick(self) -> None:
        now = now_ms()
        for shard in range(self.settings.shards):
            members: Any = await self.redis.smembers(keys.live_polls(shard))
            if not members:
                continue
            safe = max(self.closer.safe_ms(shard), now - self.settings.close_max_delay_ms)
            for member in members:
                event_id, _, poll_id = member.decode().partition(" ")
                await self.look_after(shard, event_id, poll_id, safe, now)

    async def look_after(
        self, shard: int, event_id: str, poll_id: str, safe_ms: int, now: int
    ) -> None:
        poll_key = keys.poll(shard, event_id, poll_id)
        found: Any = await self.redis.hmget(
            poll_key, ["state", "lock_ms", "frozen", "audit", "def"]
        )
        state, lock_ms, frozen, audit, definition = found
        if state is None:  # deleted meanwhile
            await self.redis.srem(keys.live_polls(shard), f"{event_id} {poll_id}")
            return
        if lock_ms is not None and frozen != b"1":
            if await self.scripts.freeze_poll(shard, event_id, poll_id, safe_ms):
                self.frozen += 1
                log.info("poll %s/%s frozen (lock at %s)", event_id, poll_id, lock_ms.decode())
                frozen = b"1"
        if frozen == b"1":
            if audit is None:
                await self.store.seal(event_id, poll_id)
            await self.redis.srem(keys.live_polls(shard), f"{event_id} {poll_id}")
            return
        live_results = PollDefinition.from_json(definition).results == "live"
        if state == b"open" and (lock_ms is None or now < int(lock_ms)) and live_results:
            await self.publish_window(shard, event_id, poll_id, now)

    async def publish_window(self, shard: int, event_id: str, poll_id: str, now: int) -> None:
        """Announce the live tally once per window, whichever worker gets there first."""
        boundary = window_start(now, self.settings.window_ms)
        previous: Any = await self.redis.set(
            keys.poll_tick(shard, event_id, poll_id), boundary, get=True, ex=3600
        )
        if previous is not None and int(previous) >= boundary:
            return
        version: Any = await self.redis.hget(keys.poll(shard, event_id, poll_id), "version")
        record = PollRecord(event_id, poll_id, int(version or 0))
        await publish_live(self.redis, shard, encode_poll_record(record))
