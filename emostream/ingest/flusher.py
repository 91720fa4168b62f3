"""Flush the buffer to the raw shards: every flush interval, at ``flush_max``, and at shutdown.

Each flush takes the buffer, packs one batch per shard and appends it together with this
producer's watermark (``lua/flush_batch.lua``). Shards with nothing to send still get the
watermark, as a heartbeat: it is how workers know that windows are complete. A failed append
keeps the packed batch (same batch id, so a retry whose first reply was lost is deduplicated
by the worker) and retries it, in order, before anything newer on that shard.

Votes (polls/gate.py buffers them) go in entries of their own on their event's shard, ahead
of the shard's reactions of the same flush. Only a flush's last entry on a shard carries the
new watermark; an entry followed by another claims only what was received before the first
reaction after it, so no window or poll lock is taken for complete ahead of its data.

Its timed loop also refreshes the ingest's view of the active events (``EventAdmission``), at
most once per ``EVENT_VIEW_REFRESH_MS``, so requests are admitted without a Redis round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from .. import keys
from ..batch import Batch, pack_batch, pack_votes
from ..clock import now_ms
from ..connection import REDIS_FAULTS
from ..lifecycle import instance_id, sleep_unless
from ..scripts import Scripts
from ..settings import Settings
from ..windows import next_tick_ms
from .admission import EventAdmission
from .buffer import ReactionBuffer

if TYPE_CHECKING:
    from ..polls.gate import VoteBuffer

log = logging.getLogger(__name__)

# Each refresh reads every active event id (up to max_active_events); once a second keeps that
# a small, bounded load on Redis per ingest process.
EVENT_VIEW_REFRESH_MS = 1000


@dataclass(frozen=True, slots=True)
class PackedBatch:
    payload: bytes
    size: int
    watermark_ms: int
    votes: bool = False


@dataclass(eq=False)
class Flusher:
    redis: Redis
    settings: Settings
    buffer: ReactionBuffer
    producer_id: str = field(default_factory=instance_id)
    votes: VoteBuffer | None = None
    reactions_written: int = field(init=False, default=0)
    votes_written: int = field(init=False, default=0)
    # For /metrics: flushes done and the seconds they took in all.
    flushes: int = field(init=False, default=0)
    flush_seconds: float = field(init=False, default=0.0)
    redis_available: bool = field(init=False, default=True)
    # Appends that reached fewer replicas than EMOSTREAM_REDIS_WAIT_REPLICAS in time.
    unreplicated: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        settings = self.settings
        self._scripts = Scripts(self.redis)
        self._unsent: list[deque[PackedBatch]] = [deque() for _ in range(settings.shards)]
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self.events = EventAdmission(
            settings.max_active_events, settings.events, settings.event_idle_s
        )
        self._view_refreshed_ms = 0

    def poke(self) -> None:
        """Flush now instead of at the next tick (the buffer reached ``flush_max``)."""
        self._wake.set()

    async def flush(self) -> int:
        """Take the buffer and write it, plus anything waiting for a retry; returns reactions
        written. Safe to call from several tasks: flushes run one at a time."""
        async with self._lock:
            started_s = time.perf_counter()
            watermark = now_ms()
            reactions = self.buffer.take()
            for shard, polls in (self.votes.take() if self.votes else {}).items():
                events = reactions.get(shard)
                claimed = min(c.received_ms[0] for c in events.values()) if events else watermark
                payload = pack_votes(uuid.uuid4().hex, self.producer_id, claimed, polls)
                size = sum(len(columns) for columns in polls.values())
                self._unsent[shard].append(PackedBatch(payload, size, claimed, votes=True))
            for shard, events in reactions.items():
                batch = Batch(uuid.uuid4().hex, self.producer_id, watermark, events)
                self._unsent[shard].append(
                    PackedBatch(pack_batch(batch, self.settings.window_ms), batch.size, watermark)
                )
            results = await asyncio.gather(
                *(self._flush_shard(shard, watermark) for shard in range(self.settings.shards))
            )
            written = sum(results)
            self.redis_available = all(not unsent for unsent in self._unsent)
            self.flushes += 1
            self.flush_seconds += time.perf_counter() - started_s
            return written

    async def _flush_shard(self, shard: int, watermark: int) -> int:
        unsent = self._unsent[shard]
        maxlen = self.settings.raw_maxlen
        written = 0
        try:
            if not unsent:
                await self._scripts.flush_batch(shard, self.producer_id, watermark, b"", maxlen)
            while unsent:
                packed = unsent[0]
                if not await self._append(shard, packed, maxlen):
                    break
                unsent.popleft()
                if packed.votes:
                    assert self.votes is not None
                    self.votes.written(packed.size)
                    self.votes_written += packed.size
                    continue
                self.buffer.written(packed.size)
                self.reactions_written += packed.size
                written += packed.size
        except REDIS_FAULTS as exc:
            log.warning(
                "flush to shard %d failed (%s); %d batches kept for retry", shard, exc, len(unsent)
            )
        except Exception:  # the client library's own faults too (aggregate/worker.py)
            log.exception("flush to shard %d failed; %d batches kept for retry", shard, len(unsent))
        return written

    async def _append(self, shard: int, packed: PackedBatch, maxlen: int) -> bool:
        """Append one batch; with EMOSTREAM_REDIS_WAIT_REPLICAS, True only once that many
        replicas have it, else it is kept and appended again (the worker counts a batch id
        once), so a failover cannot lose it."""
        wanted = self.settings.redis_wait_replicas
        if not wanted:
            await self._scripts.flush_batch(
                shard, self.producer_id, packed.watermark_ms, packed.payload, maxlen
            )
            return True
        replicas = await self._scripts.flush_batch_replicated(
            shard,
            self.producer_id,
            packed.watermark_ms,
            packed.payload,
            maxlen,
            wanted,
            self.settings.redis_wait_timeout_ms,
        )
        if replicas < wanted:
            log.warning(
                "batch on shard %d reached %d of %d replicas; kept for retry",
                shard,
                replicas,
                wanted,
            )
            self.unreplicated += 1
            return False
        return True

    async def refresh_events(self) -> None:
        """Refresh the admission view: every shard's active events and the live producers
        (each producer heartbeats on every shard, so shard 0's hash names them all)."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.settings.shards):
            pipe.zrange(keys.active_events(shard), 0, -1)
        pipe.hlen(keys.producers(0))
        try:
            *members, producers = await pipe.execute()
        except REDIS_FAULTS as exc:
            log.warning("active events unreadable (%s); admitting from the last view", exc)
            return
        active = (member.decode() for shard_members in members for member in shard_members)
        self.events.update(active, int(producers), now_ms())
        self._view_refreshed_ms = now_ms()

    async def run(self) -> None:
        """Flush on wall-clock multiples of the interval, or at once when poked, until stopped;
        then flush once more so a graceful stop keeps every accepted reaction."""
        interval = self.settings.flush_interval_ms
        await self.refresh_events()
        while not self._stopping.is_set():
            delay_s = (next_tick_ms(now_ms(), interval) - now_ms()) / 1000
            await sleep_unless(self._wake, delay_s)
            self._wake.clear()
            await self.flush()
            if now_ms() - self._view_refreshed_ms >= EVENT_VIEW_REFRESH_MS:
                await self.refresh_events()

    def _held(self) -> int:
        return self.buffer.held + (self.votes.held if self.votes else 0)

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Final flush with retries, then deregister so no window waits for this producer."""
        self._stopping.set()
        self._wake.set()
        deadline = asyncio.get_running_loop().time() + drain_timeout_s
        while True:
            await self.flush()
            if self._held() == 0 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        if self._held():
            log.error("stopping with %d accepted reactions and votes not written", self._held())
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for shard in range(self.settings.shards):
                pipe.hdel(keys.producers(shard), self.producer_id)
            await pipe.execute()
        except REDIS_FAULTS as exc:
            log.warning("could not deregister producer %s: %s", self.producer_id, exc)
