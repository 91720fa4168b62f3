"""End to end with real processes: HTTP POST -> Redis Streams -> windows -> SSE clients."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
import pytest
from redis.cluster import RedisCluster

from emostream import keys
from emostream.batch import PAYLOAD_FIELD, unpack_batch
from emostream.connection import sync_client

from .conftest import Process, ProcessFactory
from .helpers import read_swarm

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

EMOJIS = ["🔥", "😂", "👏", "❤️"]


async def send_known(
    base_url: str, event: str, seed: int, seconds: float, sent: Counter[str]
) -> None:
    """One sender: random single and batched posts for ``seconds``; counts what got 202."""
    rng = random.Random(seed)
    url = f"{base_url}/v1/events/{event}/reactions"
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    async with httpx.AsyncClient(timeout=10.0) as client:
        while loop.time() < end:
            batch = [
                {"user_id": f"s{seed}-u{rng.randrange(40)}", "emoji": rng.choice(EMOJIS)}
                for _ in range(rng.choice([1, 1, 3, 25]))
            ]
            body: Any = batch if len(batch) > 1 else batch[0]
            response = await client.post(url, json=body)
            assert response.status_code == 202, response.text
            assert response.json() == {"accepted": len(batch)}
            sent.update(r["emoji"] for r in batch)
            await asyncio.sleep(rng.uniform(0.005, 0.03))


def summed(windows: list[dict[str, Any]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for window in windows:
        total.update({item["emoji"]: item["count"] for item in window["top"]})
    return total


async def check_pipeline(ingest_url: str, delivery_url: str, event: str) -> None:
    stream_url = f"{delivery_url}/v1/events/{event}/stream"
    sent: Counter[str] = Counter()
    done = asyncio.Event()
    windows: list[dict[str, Any]] = []

    def received_all(got: list[dict[str, Any]]) -> bool:
        # Done once the senders are finished and the windows add up to what they sent.
        return done.is_set() and sum(w["total"] for w in got) == sum(sent.values())

    reader = asyncio.create_task(read_swarm(stream_url, received_all, timeout_s=40))
    await asyncio.sleep(0.3)
    await asyncio.gather(
        send_known(ingest_url, event, 1, 6.5, sent), send_known(ingest_url, event, 2, 6.5, sent)
    )
    done.set()
    windows = await reader
    assert windows, "no window arrived"
    live = [w for w in windows if w["total"] > 0]
    assert len(live) >= 3, f"reactions spread over only {len(live)} windows"
    seqs = [w["seq"] for w in windows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq gaps: {seqs}"
    # 4 distinct emojis, top_n 5: every count of every window is in `top`.
    assert summed(windows) == sent
    assert sum(w["total"] for w in windows) == sum(sent.values())
    for window in windows:
        assert window["window_end_ms"] - window["window_start_ms"] == 2000
        assert window["event_id"] == event and window["v"] == 1
        assert all(i["swarm"] == -(-i["count"] // 1000) for i in window["top"])

    # A client that reconnects with Last-Event-ID gets every window after it, then live ones.
    resume_from = windows[1]["seq"]
    resumed = await read_swarm(
        stream_url,
        lambda got: bool(got) and got[-1]["seq"] >= windows[-1]["seq"],
        timeout_s=15,
        last_event_id=resume_from,
    )
    assert [w["seq"] for w in resumed][: len(windows) - 2] == seqs[2:]
    assert resumed[: len(windows) - 2] == windows[2:]

    history = httpx.get(f"{delivery_url}/v1/events/{event}/windows?after={seqs[0] - 1}").json()
    assert history[: len(windows)] == windows


async def test_up_counts_exactly_what_two_senders_sent(any_processes: ProcessFactory) -> None:
    up = any_processes.role("up")
    await check_pipeline(up.url, up.url, "final")


async def test_separate_roles_with_two_workers(any_processes: ProcessFactory) -> None:
    ingest = any_processes.role("ingest")
    any_processes.role("worker")
    any_processes.role("worker")
    delivery = any_processes.role("delivery")
    await check_pipeline(ingest.url, delivery.url, "semi-1")


async def test_a_hot_event_split_over_three_shards_is_exact(
    any_processes: ProcessFactory,
) -> None:
    split = {"EMOSTREAM_SHARDS": "3", "EMOSTREAM_EVENT_SPLIT": "3"}
    ingest = any_processes.role("ingest", **split)
    any_processes.role("worker", **split)
    any_processes.role("worker", **split)
    delivery = any_processes.role("delivery", **split)
    await check_pipeline(ingest.url, delivery.url, "hot")
    # Every shard counted a share of the event (on a cluster: every primary).
    store = sync_client(any_processes.redis_url)
    shares = []
    try:
        for shard in keys.sub_shards("hot", 3, 3):
            entries: Any = store.xrange(keys.raw_stream(shard))
            shares.append(sum(unpack_batch(fields[PAYLOAD_FIELD]).size for _, fields in entries))
    finally:
        store.close()
    assert sorted(keys.sub_shards("hot", 3, 3)) == [0, 1, 2]
    assert all(share > sum(shares) / 6 for share in shares), shares
    if isinstance(store, RedisCluster):  # three shards, on the three primaries
        owners = {store.get_node_from_key(keys.raw_stream(shard)).name for shard in range(3)}
        assert len(owners) == 3


async def test_sigterm_flushes_what_ingest_accepted(processes: ProcessFactory) -> None:
    import redis

    # A long flush interval: only the shutdown flush can have written these.
    ingest: Process = processes.role("ingest", EMOSTREAM_FLUSH_INTERVAL_MS="60000")
    body = [{"user_id": f"u{i}", "emoji": "🔥"} for i in range(200)]
    async with httpx.AsyncClient() as client:
        for _ in range(5):
            response = await client.post(f"{ingest.url}/v1/events/live/reactions", json=body)
            assert response.status_code == 202
    assert ingest.terminate() == 0
    store = redis.Redis.from_url(processes.redis_url)
    shard = keys.shard_of("live", 2)
    entries: Any = store.xrange(keys.raw_stream(shard))
    store.close()
    sizes = [unpack_batch(fields[PAYLOAD_FIELD]).size for _id, fields in entries]
    assert sum(sizes) == 1000
