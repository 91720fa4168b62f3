"""Operator stats (``GET /v1/stats``) read from the private Redis, and their rate arithmetic."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.heartbeat import Heartbeat, parse_heartbeat, record_heartbeat
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.deliver.app import create_delivery_app
from emostream.deliver.hub import Hub
from emostream.deliver.registry import Registry
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings
from emostream.stats import (
    RateMeter,
    StatsReader,
    WorkerRates,
    group_stats,
    producer_stats,
)

from .helpers import eventually, make_ingest, reactions

EVENT = "live"


async def beat_as(redis: Redis, heartbeat: Heartbeat, ttl_ms: int = 10_000) -> None:
    """Write a heartbeat the way a worker does (its key and its index entry)."""
    pipe = redis.pipeline(transaction=False)
    record_heartbeat(pipe, heartbeat, ttl_ms)
    await pipe.execute()


def beat(worker: str, at_ms: int, reactions: int) -> Heartbeat:
    return Heartbeat(worker, at_ms, reactions, batches=0, late=0, dead=0)


def test_worker_rates_come_from_two_distinct_heartbeats() -> None:
    rates = WorkerRates()
    assert rates.update([beat("a", 1000, 100)]) == {"a": None}
    # A poll between two beats sees the same beat again: nothing new to measure.
    assert rates.update([beat("a", 1000, 100)]) == {"a": None}
    assert rates.update([beat("a", 3000, 700)]) == {"a": 300.0}
    assert rates.update([beat("a", 3000, 700)]) == {"a": 300.0}
    # A restarted worker's counters fall: no rate until it has two beats of its own.
    assert rates.update([beat("a", 4000, 5)]) == {"a": None}
    # A worker whose heartbeat expired is forgotten.
    assert rates.update([beat("b", 4000, 5)]) == {"b": None}
    assert rates.update([beat("a", 5000, 10)]) == {"a": None}


def test_rate_meter_spans_its_samples() -> None:
    meter = RateMeter(span_s=10)
    assert meter.add(0.0, 0) is None
    assert meter.add(1.0, 2) == 2.0
    assert meter.add(2.0, 6) == 3.0
    for second in range(3, 30):
        rate = meter.add(float(second), 6 + (second - 2))
    assert rate == pytest.approx(1.0, abs=0.2)
    assert meter.add(30.0, 0) is None, "a counter that fell (process restart) starts over"


def test_parsers_tolerate_what_they_do_not_know() -> None:
    assert parse_heartbeat("w", None) is None
    assert parse_heartbeat("w", b"not json") is None
    assert parse_heartbeat("w", b'{"reactions": 3}') is None
    parsed = parse_heartbeat("w", json.dumps({"at_ms": 5, "reactions": 3, "late": 1}))
    assert parsed == Heartbeat("w", 5, 3, 0, 1, 0)
    assert group_stats(None) == {"pending": 0, "lag": None, "consumers": 0}
    assert group_stats([{"name": b"other", "pending": 9}])["pending"] == 0
    producers = producer_stats(0, {b"p1": b"1000", b"p2": b"9000"}, 10_000, 5_000)
    assert [(p["producer"], p["live"]) for p in producers] == [("p1", False), ("p2", True)]


@pytest.mark.anyio
async def test_snapshot_reads_the_running_system(redis: Redis, settings: Settings) -> None:
    shard = keys.shard_of(EVENT, settings.shards)
    raw = keys.raw_stream(shard)
    buffer, flusher = make_ingest(redis, settings, producer="p1")
    worker = Worker(redis, settings, worker_id="w-real")

    buffer.add(EVENT, reactions([("u1", "🔥"), ("u2", "🔥"), ("u3", "😂")]), now_ms())
    await flusher.flush()
    await redis.xadd(raw, {"junk": b"undecodable"})
    await worker.drain()
    await worker.heartbeat()
    # One entry read by a consumer that never acknowledges it, one nobody has read yet.
    buffer.add(EVENT, reactions([("u4", "👏")]), now_ms())
    await flusher.flush()
    await redis.xreadgroup(keys.AGGREGATORS_GROUP, "stuck", {raw: ">"}, count=1)
    buffer.add(EVENT, reactions([("u5", "👏")]), now_ms())
    await flusher.flush()
    at_ms = now_ms()
    await beat_as(redis, Heartbeat("w-other", at_ms, reactions=1000, late=4))

    hub = Hub(redis, settings, EmojiSwarmRule())
    hub.attach(EVENT)
    await Registry(redis, settings, hub).beat()
    reader = StatsReader(redis, settings, hub)
    stats = await reader.snapshot()

    figures = stats["shards"][shard]
    assert figures["raw_length"] == 4
    assert figures["pending"] == 1 and figures["lag"] == 1 and figures["consumers"] >= 2
    assert figures["oldest_pending_idle_ms"] >= 0
    assert figures["dead_letters"] == 1 and stats["dead_lettered"] == 1
    quiet = stats["shards"][1 - shard]
    assert (quiet["raw_length"], quiet["pending"], quiet["dead_letters"]) == (0, 0, 0)

    workers = {w["worker"]: w for w in stats["workers"]}
    assert set(workers) == {"w-real", "w-other"}
    assert (workers["w-real"]["reactions"], workers["w-real"]["dead"]) == (3, 1)
    assert 0 < workers["w-real"]["ttl_ms"] <= settings.worker_heartbeat_ttl_ms
    assert stats["late"] == 4
    assert stats["reactions_per_s"] is None, "one heartbeat per worker: no rate yet"

    assert {p["producer"] for p in stats["producers"]} == {"p1"}
    assert all(p["live"] for p in stats["producers"])
    assert stats["delivery"]["nodes"][0]["connections"] == 1
    assert [e["event_id"] for e in stats["events"]] == [EVENT]

    # The other worker beats again 2 s later with 1000 more reactions: 500/s.
    await beat_as(redis, Heartbeat("w-other", at_ms + 2000, reactions=2000, late=4))
    stats = await reader.snapshot()
    assert {w["worker"]: w["reactions_per_s"] for w in stats["workers"]} == {
        "w-real": None,
        "w-other": 500.0,
    }
    assert stats["reactions_per_s"] == 500.0


@pytest.mark.anyio
async def test_workers_are_found_through_the_index_without_a_scan(
    redis: Redis, settings: Settings
) -> None:
    hub = Hub(redis, settings, EmojiSwarmRule())
    reader = StatsReader(redis, settings, hub)
    await beat_as(redis, Heartbeat("w-live", now_ms(), reactions=7))
    await beat_as(redis, Heartbeat("w-dying", now_ms(), reactions=1), ttl_ms=50)
    # A heartbeat key outside the index (no worker writes one any more) is not looked for:
    # finding it would take a scan of the keyspace.
    await redis.set(keys.worker_heartbeat("w-unindexed"), Heartbeat("w-unindexed", 1).encode())
    commands_before = await command_calls(redis, "scan")

    async def only_the_live_one_is_left() -> bool:
        stats = await reader.snapshot()
        return [w["worker"] for w in stats["workers"]] == ["w-live"]

    await eventually(only_the_live_one_is_left)
    # The expired worker was dropped from the index by the reader; no SCAN was sent.
    assert await redis.zrange(keys.LIVE_WORKERS, 0, -1) == [b"w-live"]
    assert await command_calls(redis, "scan") == commands_before


async def command_calls(redis: Redis, command: str) -> int:
    info: Any = await redis.info("commandstats")
    return int(info.get(f"cmdstat_{command}", {}).get("calls", 0))


async def get_stats(redis: Redis, settings: Settings) -> httpx.Response:
    hub = Hub(redis, settings, EmojiSwarmRule())
    transport = httpx.ASGITransport(app=create_delivery_app(settings, hub))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/v1/stats")


@pytest.mark.anyio
async def test_stats_endpoint(redis: Redis, settings: Settings) -> None:
    response = await get_stats(redis, settings)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert len(body["shards"]) == settings.shards
    assert body["workers"] == [] and body["events"] == []
    assert body["delivery"]["nodes"] == [], "no delivery node registered"


@pytest.mark.anyio
async def test_stats_without_redis_is_a_503(settings: Settings) -> None:
    nowhere = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        response = await get_stats(nowhere, settings)
    finally:
        await nowhere.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


@pytest.mark.anyio
async def test_registered_delivery_nodes_are_listed(redis: Redis, settings: Settings) -> None:
    hubs = [Hub(redis, settings, EmojiSwarmRule()) for _ in range(2)]
    hubs[1].attach(EVENT)
    for index, hub in enumerate(hubs):
        node_settings = Settings(
            **{**settings.__dict__, "cluster": f"c{index}", "port": 9000 + index}
        )
        await Registry(redis, node_settings, hub).beat()
    # A node whose registration expired (killed) is not listed.
    await redis.zadd(keys.cluster_nodes("c0"), {"gone": 0})
    stats = await StatsReader(redis, settings, hubs[0]).snapshot()
    nodes = sorted(stats["delivery"]["nodes"], key=lambda n: n["cluster"])
    assert [(n["cluster"], n["connections"], n["url"]) for n in nodes] == [
        ("c0", 0, "http://127.0.0.1:9000"),
        ("c1", 1, "http://127.0.0.1:9001"),
    ]
