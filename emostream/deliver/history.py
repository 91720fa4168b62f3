"""An event's closed windows read back from Redis, each in its latest revision.

A window is appended to the event's history stream once, when it closes (entry id = seq);
late reactions revise it afterwards in the event's revisions hash (field = seq), so every
read merges the two: the history stream for which windows exist, the hash for their final
totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..records import WindowRecord, decode_record, history_entry_id, record_of_entry
from ..settings import Settings


@dataclass(eq=False)
class WindowHistory:
    redis: Redis
    settings: Settings

    async def after(self, event_id: str, after_seq: int, limit: int) -> list[WindowRecord]:
        """Windows with seq > ``after_seq``, oldest first, at most ``limit``."""
        shard = keys.shard_of(event_id, self.settings.shards)
        entries: Any = await self.redis.xrange(
            keys.window_history(shard, event_id), min=history_entry_id(after_seq + 1), count=limit
        )
        return await self._latest_revisions(shard, event_id, entries)

    async def tail(self, event_id: str, limit: int) -> list[WindowRecord]:
        """The newest ``limit`` windows, oldest first."""
        shard = keys.shard_of(event_id, self.settings.shards)
        entries: Any = await self.redis.xrevrange(keys.window_history(shard, event_id), count=limit)
        return await self._latest_revisions(shard, event_id, list(reversed(entries)))

    async def _latest_revisions(
        self, shard: int, event_id: str, entries: list[tuple[Any, dict[bytes, bytes]]]
    ) -> list[WindowRecord]:
        records = [record_of_entry(fields) for _entry_id, fields in entries]
        if not records:
            return records
        revised: Any = await self.redis.hmget(
            keys.window_revisions(shard, event_id), [r.seq for r in records]
        )
        return [
            record if revision is None else decode_record(revision)
            for record, revision in zip(records, revised, strict=True)
        ]
