"""Operator stats for the dashboard: a read-only look at Redis, served as ``GET /v1/stats``.

Everything comes from what the roles already write: worker heartbeats (cumulative counters
with their own ``at_ms``), the consumer group on each raw shard, the producers' watermarks and
the dead-letter streams. Nothing here writes to Redis.

Rates need two samples, and Redis keeps only counters, so this node remembers the previous
heartbeat of each worker and a few samples of its own window counter. Rates are therefore
this node's view, ``None`` until it has seen two samples.

``delivery`` lists every registered delivery node (emostream/deliver/registry.py), or this
node alone when it is not registered (an app served without the registry, as in tests).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import keys
from ..clock import now_ms
from ..errors import Unavailable
from ..settings import Settings
from .hub import Hub

# The dashboard lists the most recently active events of each shard, not all of them.
EVENTS_PER_SHARD = 10
# Heartbeat keys fetched per SCAN call; SCAN never blocks Redis the way KEYS does.
SCAN_COUNT = 500
RATE_SPAN_S = 10.0


@dataclass(frozen=True)
class Heartbeat:
    worker: str
    at_ms: int
    reactions: int
    batches: int
    late: int
    dead: int


def parse_heartbeat(worker: str, raw: bytes | str | None) -> Heartbeat | None:
    """A worker's heartbeat JSON, or None if it vanished or is not ours to read."""
    if raw is None:
        return None
    try:
        info = json.loads(raw)
        return Heartbeat(
            worker,
            int(info["at_ms"]),
            int(info.get("reactions", 0)),
            int(info.get("batches", 0)),
            int(info.get("late", 0)),
            int(info.get("dead", 0)),
        )
    except (ValueError, TypeError, KeyError):
        return None


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


def group_stats(groups: Any) -> dict[str, Any]:
    """Pending, lag and consumers of the aggregators group from XINFO GROUPS."""
    for group in groups or []:
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == keys.AGGREGATORS_GROUP:
            return {
                "pending": int(group.get("pending") or 0),
                # Redis 7 reports lag; None when it cannot tell (e.g. after XDEL).
                "lag": None if group.get("lag") is None else int(group["lag"]),
                "consumers": int(group.get("consumers") or 0),
            }
    return {"pending": 0, "lag": None, "consumers": 0}


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
                "live": age_ms <= timeout_ms,
            }
        )
    return producers


def _node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StatsReader:
    def __init__(self, redis: Redis, settings: Settings, hub: Hub) -> None:
        self.redis = redis
        self.settings = settings
        self.hub = hub
        self.node = _node_id()
        self._worker_rates = WorkerRates()
        self._windows = RateMeter()

    async def heartbeats(self) -> list[tuple[Heartbeat, int]]:
        """Every live worker's heartbeat with its remaining TTL in ms."""
        names = [
            name
            async for name in self.redis.scan_iter(
                match=keys.worker_heartbeat("*"), count=SCAN_COUNT
            )
        ]
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
            pipe.pttl(name)
        replies = await pipe.execute()
        prefix = len(keys.worker_heartbeat(""))
        beats = []
        for index, name in enumerate(names):
            text = name.decode() if isinstance(name, bytes) else name
            beat = parse_heartbeat(text[prefix:], replies[2 * index])
            if beat is not None:
                beats.append((beat, int(replies[2 * index + 1])))
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
            found += [(shard, member.decode(), score) for member, score in members]
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
        rows: list[dict[str, Any]] = []
        clusters: Any = await self.redis.smembers(keys.CLUSTERS)
        for cluster in sorted(c.decode() for c in clusters):
            members: Any = await self.redis.zrange(keys.cluster_nodes(cluster), 0, -1)
            if not members:
                continue
            found: Any = await self.redis.mget([keys.delivery_node(m.decode()) for m in members])
            for raw in found:
                if raw is not None:
                    info = json.loads(raw)
                    rows.append(
                        {name: info[name] for name in ("node", "cluster", "url")}
                        | {"connections": int(info["connections"])}
                    )
        return rows

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
            "dead_lettered": sum(shard["dead_letters"] for shard in shards),
            "workers": workers,
            "shards": shards,
            "producers": producers,
            "delivery": await self.delivery(),
            "events": events,
        }

    async def delivery(self) -> dict[str, Any]:
        this_node = {
            "subscribed": self.hub.subscribed.is_set(),
            "windows_received": self.hub.windows_received,
        }
        nodes = await self.delivery_nodes()
        if nodes:
            return {
                "scope": "every registered delivery node",
                "this_node": this_node,
                "nodes": nodes,
            }
        alone = {
            "node": self.node,
            "cluster": self.settings.cluster,
            "url": self.settings.node_url,
            "connections": self.hub.connections,
        }
        return {
            "scope": "this node only: no delivery node is registered",
            "this_node": this_node,
            "nodes": [alone],
        }


def stats_route(settings: Settings, hub: Hub) -> Route:
    reader = StatsReader(hub.redis, settings, hub)

    async def stats(request: Request) -> Response:
        try:
            body = await reader.snapshot()
        except (RedisError, OSError) as exc:
            raise Unavailable(f"stats unavailable: {exc}") from None
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return Route("/v1/stats", stats)
