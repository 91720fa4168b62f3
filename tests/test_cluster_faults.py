"""Faults on a real Redis Cluster: a primary SIGKILLed under load (its replica is promoted)
and a shard's slot moved to another primary under load.

Ground truth is the raw streams as the cluster holds them afterwards (a long retention keeps
them whole): every stored window must equal them, so nothing was counted twice, whatever the
fault. Replication is asynchronous, so a failover may lose writes a primary acknowledged and
had not yet sent to its replica; that loss is measured against what ingest accepted (202).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.connection import connect
from emostream.redis_cluster import PrivateCluster
from emostream.settings import Settings

from .conftest import Process, ProcessFactory
from .test_faults import (
    FAULT_ENV,
    SHARDS,
    WINDOW_MS,
    pending_entries,
    raw_truth,
    send_load,
    stored_windows,
)

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def start_roles(processes: ProcessFactory, **env: str) -> list[Process]:
    env = {**FAULT_ENV, **env}
    return processes.start_many(
        [("ingest", env), ("worker", env), ("worker", env), ("delivery", env)]
    )


async def settle(redis: Redis, settings: Settings, at_least: int) -> int:
    """Wait until the stored windows hold at least ``at_least`` reactions and nothing is
    pending, then a little longer for what is in flight; the reactions counted."""
    deadline = time.monotonic() + 90
    counted = 0
    while time.monotonic() < deadline:
        counted = sum(r.total for r in (await stored_windows(redis, settings)).values())
        if counted >= at_least and await pending_entries(redis) == 0:
            await asyncio.sleep(3)
            return sum(r.total for r in (await stored_windows(redis, settings)).values())
        await asyncio.sleep(0.25)
    raise AssertionError(f"only {counted} of at least {at_least} reactions counted in time")


async def recovered(roles: list[Process], cluster: PrivateCluster) -> tuple[Redis, Settings]:
    """Every role still runs and delivery receives windows again; a client to read the
    cluster with, and the roles' settings."""
    for process in roles:
        assert process.popen is not None and process.popen.poll() is None, process.log()
    await delivery_keeps_receiving(roles[-1])
    settings = Settings(redis_url=cluster.url, shards=SHARDS, window_s=WINDOW_MS / 1000)
    return connect(cluster.url, cluster=True), settings


async def delivery_keeps_receiving(delivery: Process) -> None:
    """The delivery node is subscribed and windows still reach it after the fault."""
    before = httpx.get(f"{delivery.url}/healthz").json()["windows_received"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(f"{delivery.url}/healthz").json()
        if health["subscribed"] and health["windows_received"] > before:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"delivery stopped receiving windows: {health}\n{delivery.log()}")


async def assert_windows_equal_the_raw_streams(redis: Redis, settings: Settings) -> None:
    truth = await raw_truth(redis)
    stored = await stored_windows(redis, settings)
    for key, counts in truth.items():
        assert key in stored, f"window {key} never closed"
        assert dict(stored[key].counts) == dict(counts), f"window {key} differs"
    for event in {event for event, _start in stored}:
        seqs = sorted(r.seq for (e, _s), r in stored.items() if e == event)
        assert seqs == list(range(1, len(seqs) + 1)), f"seq gaps in {event}: {seqs}"


@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_a_primary_killed_under_load_fails_over_and_every_role_recovers(
    cluster_processes: ProcessFactory, redis_cluster: PrivateCluster, wait_replicas: int
) -> None:
    """With EMOSTREAM_REDIS_WAIT_REPLICAS=1 ingest keeps a batch until a replica has it, so
    the failover loses nothing; without, what the replica had not received is lost."""
    roles = start_roles(cluster_processes, EMOSTREAM_REDIS_WAIT_REPLICAS=str(wait_replicas))
    ingest = roles[0]
    victim = redis_cluster.primary_of(keys.raw_stream(keys.shard_of("match-a", SHARDS)))
    sent: Counter[tuple[str, str]] = Counter()
    timeline: list[tuple[float, int]] = []
    crash: dict[str, float] = {}

    async def kill_primary() -> None:
        await asyncio.sleep(3)
        # How far its replica is behind at the kill: what asynchronous replication can lose.
        crash["lag_bytes"] = await asyncio.to_thread(redis_cluster.replication_lag, victim)
        crash["killed"] = time.monotonic()
        victim.kill()
        while len(await asyncio.to_thread(redis_cluster.primaries)) < 3:
            await asyncio.sleep(0.1)  # until the killed primary's replica is promoted
        await asyncio.to_thread(redis_cluster.wait_ok, 30.0)
        crash["promoted"] = time.monotonic()
        # As an operator (or an orchestrator) would: the killed node comes back, as a replica
        # of the promoted one; until it does, that primary has no replica to WAIT for.
        await asyncio.to_thread(redis_cluster.restore, 30.0)

    await asyncio.gather(send_load(ingest.url, 31, 10, sent, timeline), kill_primary())
    assert len(redis_cluster.primaries()) == 3  # the replica took over the killed one's slots
    redis, settings = await recovered(roles, redis_cluster)
    try:
        expected = sum(sent.values())
        at_risk = sum(n for t, n in timeline if crash["killed"] - 3 <= t <= crash["promoted"])
        counted = await settle(redis, settings, expected - at_risk)
        await assert_windows_equal_the_raw_streams(redis, settings)
        lost = expected - counted
        print(
            f"\nprimary kill -9, wait_replicas={wait_replicas}: sent {expected}, counted "
            f"{counted}, lost {lost}; failover took {crash['promoted'] - crash['killed']:.1f} s; "
            f"at risk {at_risk}; the replica was {crash['lag_bytes']:.0f} bytes behind"
        )
        assert 0 <= lost <= (0 if wait_replicas else at_risk)
        recent = [
            r
            for r in (await stored_windows(redis, settings)).values()
            if r.window_start_ms > time.time() * 1000 - 6000
        ]
        assert recent, "no window closed after the failover"
    finally:
        await redis.aclose()


async def test_a_shards_slot_moved_under_load_loses_and_double_counts_nothing(
    cluster_processes: ProcessFactory, redis_cluster: PrivateCluster
) -> None:
    roles = start_roles(cluster_processes)
    ingest = roles[0]
    shard = keys.shard_of("match-b", SHARDS)
    source = redis_cluster.primary_of(keys.raw_stream(shard))
    target = next(n for n in redis_cluster.primaries() if n.port != source.port)
    sent: Counter[tuple[str, str]] = Counter()
    timeline: list[tuple[float, int]] = []
    moved: list[int] = []

    async def move() -> None:
        await asyncio.sleep(3)
        slot = keys.SHARD_SLOTS[shard]
        moved.append(await asyncio.to_thread(redis_cluster.move_slot, slot, target))

    await asyncio.gather(send_load(ingest.url, 32, 8, sent, timeline), move())
    assert moved[0] > 0
    assert redis_cluster.primary_of(keys.raw_stream(shard)).port == target.port
    redis, settings = await recovered(roles, redis_cluster)
    try:
        counted = await settle(redis, settings, sum(sent.values()))
        await assert_windows_equal_the_raw_streams(redis, settings)
        per_emoji: Counter[tuple[str, str]] = Counter()
        for (event, _start), record in (await stored_windows(redis, settings)).items():
            per_emoji.update({(event, emoji): count for emoji, count in record.counts})
        assert per_emoji == sent
        assert counted == sum(sent.values())
    finally:
        await redis.aclose()
        # Back where it was: later tests on this cluster expect equal slot ranges.
        redis_cluster.move_slot(keys.SHARD_SLOTS[shard], source)
