"""Operator stats for the dashboard: a read-only model of every tier, served by delivery as
``GET /v1/stats``.

Everything comes from what the roles already write: worker heartbeats (aggregate/heartbeat.py,
cumulative counters with their own ``at_ms``) found through the live-workers index, the
consumer group on each raw shard, the producers' watermarks, the dead-letter streams and the
delivery nodes' registrations. No keyspace scan: every read names its keys. The one write
drops workers whose heartbeat expired from the live-workers index.

Rates need two samples, and Redis keeps only counters, so the reader remembers the previous
heartbeat of each worker and a few samples of its node's window counter. Rates are therefore
the answering node's view, ``None`` until it has seen two samples.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from . import keys
from .aggregate.heartbeat import Heartbeat, parse_heartbeat
from .clock import now_ms
from .deliver.hub import Hub
from .deliver.registry import live_nodes
from .replies import text
from .settings import Settings
from .streams import group_stats
from .windows import producer_is_live

# The dashboard lists the most recently active events of each shard, not all of them.
EVENTS_PER_SHARD = 10
RATE_SPAN_S = 10.0


class WorkerRates:
    """Reactions/s per worker from its last two distinct heartbeats.

    Heartbeats carry the worker's own ``at_ms``, so the rate is exact between beats however
    often the dashboard polls; a worker that restarted (counters fell) starts over.
    """

    def __init__(self) -> None:
        self._previous: dict[str, Heartbeat] = {}
        self._latest: dict[str, Heartbeat] = {}

    def update(self, beats: list[Heartbeat]) -> dict[str, float | None]:
        seen = {beat.worker for beat in beats}
        for worker in list(self._latest):
            if worker not in seen:
                del self._latest[worker]
                self._previous.pop(worker, None)
        rates: dict[str, float | None] = {}
        for beat in beats:
            latest = self._latest.get(beat.worker)
            if latest is not None and beat.at_ms > latest.at_ms:
                self._previous[beat.worker] = latest
            if latest is None or beat.at_ms >= latest.at_ms:
                self._latest[beat.worker] = beat
            rates[beat.worker] = self._rate(beat.worker)
        return rates

    def _rate(self, worker: str) -> float | None:
        previous, latest = self._previous.get(worker), self._latest[worker]
        if previous is None or latest.reactions < previous.reactions:
            return None
        return (latest.reactions - previous.reactions) * 1000 / (latest.at_ms - previous.at_ms)


class RateMeter:
    """Per-second rate of a cumulative counter over the last ``span_s`` seconds of samples."""

    def __init__(self, span_s: float = RATE_SPAN_S) -> None:
        self.span_s = span_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at_s: float, value: int) -> float | None:
        if self._samples and value < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((at_s, value))
        while len(self._samples) > 2 and at_s - self._samples[1][0] >= self.span_s:
            self._samples.popleft()
        first_s, first = self._samples[0]
        if at_s - first_s <= 0:
            return None
        return (value - first) / (at_s - first_s)


def producer_stats(
    shard: int, watermarks: dict[bytes, bytes], now: int, timeout_ms: int
) -> list[dict[str, Any]]:
    """Ingest producers of one shard; live while their watermark moved within the timeout."""
    producers = []
    for producer, value in sorted(watermarks.items()):
        age_ms = now - int(value)
        producers.append(
            {
                "producer": producer.decode(errors="replace"),
                "shard": shard,
                "watermark_age_ms": age_ms,
                "live": producer_is_live(int(value), now, timeout_ms),
            }
        )
    return producers


@dataclass(eq=False)
class StatsReader:
    redis: Redis
    settings: Settings
    hub: Hub
    node_id: str = ""
    _worker_rates: WorkerRates = field(init=False, default_factory=WorkerRates)
    _windows: RateMeter = field(init=False, default_factory=RateMeter)

    async def heartbeats(self) -> list[tuple[Heartbeat, int]]:
        """Every live worker's heartbeat with its remaining TTL in ms."""
        members: Any = await self.redis.zrange(keys.LIVE_WORKERS, 0, -1)
        workers = [text(m) for m in members]
        if not workers:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for worker in workers:
            pipe.get(keys.worker_heartbeat(worker))
            pipe.pttl(keys.worker_heartbeat(worker))
        replies = await pipe.execute()
        beats, gone = [], []
        for index, worker in enumerate(workers):
            beat = parse_heartbeat(worker, replies[2 * index])
            if beat is None:
                gone.append(worker)  # its heartbeat expired: the worker died
            else:
                beats.append((beat, int(replies[2 * index + 1])))
        if gone:
            await self.redis.zrem(keys.LIVE_WORKERS, *gone)
        return beats

    async def shards(self, now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Per-shard stream figures, and every producer's watermark."""
        pipe = self.redis.pipeline(transaction=False)
        for shard in range(self.settings.shards):
            raw = keys.raw_stream(shard)
            pipe.xlen(raw)
            pipe.xinfo_groups(raw)
            pipe.xpending_range(raw, keys.AGGREGATORS_GROUP, "-", "+", 1)
            pipe.xlen(keys.dead_letters(shard))
            pipe.hgetall(keys.producers(shard))
        # A shard nobody wrote to yet has no stream and no group: an error in its place.
        replies = await pipe.execute(raise_on_error=False)
        shards, producers = [], []
        for shard in range(self.settings.shards):
            length, groups, oldest, dead, watermarks = replies[5 * shard : 5 * shard + 5]
            figures = group_stats(None if isinstance(groups, Exception) else groups)
            oldest_idle = None
            if not isinstance(oldest, Exception) and oldest:
                oldest_idle = int(oldest[0]["time_since_delivered"])
            shards.append(
                {
                    "shard": shard,
                    "raw_length": 0 if isinstance(length, Exception) else int(length),
                    **figures,
                    "oldest_pending_idle_ms": oldest_idle,
                    "dead_letters": 0 if isinstance(dead, Exception) else int(dead),
                }
            )
            if not isinstance(watermarks, Exception):
                producers += producer_stats(
                    shard, watermarks, now, self.settings.producer_timeout_ms
                )
        return shards, producers

    async def events(self) -> list[dict[str, Any]]:
        """The most recently active events of each shard with their latest seq."""
        found: list[tuple[int, str, float]] = []
        for shard in range(self.settings.shards):
            members: Any = await self.redis.zrevrange(
                keys.active_events(shard), 0, EVENTS_PER_SHARD - 1, withscores=True
            )
            # An event split over several shards is listed once, by its own shard.
            found += [
                (shard, event, score)
                for event, score in ((member.decode(), score) for member, score in members)
                if keys.shard_of(event, self.settings.shards) == shard
            ]
        if not found:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for shard, event_id, _score in found:
            pipe.hget(keys.event_state(shard, event_id), keys.EVENT_SEQ)
        seqs = await pipe.execute()
        rows = [
            {
                "event_id": event_id,
                "shard": shard,
                "seq": int(seq or 0),
                "last_active_window_ms": int(score),
            }
            for (shard, event_id, score), seq in zip(found, seqs, strict=True)
        ]
        return sorted(rows, key=lambda row: -row["last_active_window_ms"])

    async def delivery_nodes(self) -> list[dict[str, Any]]:
        """Every live registered delivery node, by cluster (a dead node's key has expired)."""
        clusters: Any = await self.redis.smembers(keys.CLUSTERS)
        return [
            node.describe()
            for cluster in sorted(c.decode() for c in clusters)
            for node in await live_nodes(self.redis, cluster, prune=False)
        ]

    async def snapshot(self) -> dict[str, Any]:
        now = now_ms()
        beats = await self.heartbeats()
        shards, producers = await self.shards(now)
        events = await self.events()
        rates = self._worker_rates.update([beat for beat, _ttl in beats])
        known = [rate for rate in rates.values() if rate is not None]
        workers = [
            {
                "worker": beat.worker,
                "heartbeat_age_ms": now - beat.at_ms,
                "ttl_ms": ttl,
                "reactions": beat.reactions,
                "batches": beat.batches,
                "late": beat.late,
                "lost": beat.lost,
                "failed": beat.failed,
                "dead": beat.dead,
                "reactions_per_s": rates[beat.worker],
            }
            for beat, ttl in sorted(beats, key=lambda item: item[0].worker)
        ]
        return {
            "at_ms": now,
            "reactions_per_s": sum(known) if known else None,
            "windows_per_s": self._windows.add(time.monotonic(), self.hub.windows_received),
            "late": sum(beat.late for beat, _ttl in beats),
            "lost": sum(beat.lost for beat, _ttl in beats),
            "dead_lettered": sum(shard["dead_letters"] for shard in shards),
            "workers": workers,
            "shards": shards,
            "producers": producers,
            "delivery": await self.delivery(),
            "events": events,
        }

    async def delivery(self) -> dict[str, Any]:
        return {
            "this_node": {
                "node": self.node_id,
                "subscribed": self.hub.subscribed.is_set(),
                "windows_received": self.hub.windows_received,
            },
            "nodes": await self.delivery_nodes(),
        }
