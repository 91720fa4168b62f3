"""3 clusters x 3 delivery nodes as real processes: registration, join/leave, dead nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import httpx
import pytest
import redis as sync_redis

from emostream import keys
from emostream.deliver.frames import stream_swarm_windows

from .conftest import Process, ProcessFactory
from .helpers import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

EVENT = "derby"
CLUSTERS = ["c0", "c1", "c2"]
NODE_TTL_MS = 1500
COMMON = {"EMOSTREAM_WINDOW_S": "0.5"}


class Listener:
    """One SSE client, recording every window it gets until it is cancelled."""

    def __init__(self, assignment: dict[str, Any]) -> None:
        self.assignment = assignment
        self.windows: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        timeout = httpx.Timeout(5.0, read=30.0)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", self.assignment["stream_url"]) as response,
        ):
            assert response.status_code == 200
            async for window in stream_swarm_windows(response.aiter_lines()):
                self.windows.append(window)

    def newest(self) -> int:
        return self.windows[-1]["seq"] if self.windows else -1

    async def leave(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        client_id = self.assignment["client_id"]
        response = await client.delete(
            f"{base_url}/v1/events/{EVENT}/subscribers/{client_id}",
            headers=authorization(self.assignment),
        )
        assert response.status_code == 204


def authorization(assignment: dict[str, Any]) -> dict[str, str]:
    """The header that unregistering needs: the token the registration answered."""
    return {"Authorization": f"Bearer {assignment['token']}"}


async def send_reactions(ingest_url: str, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:
        index = 0
        while not stop.is_set():
            body = [{"user_id": f"u{index}-{n}", "emoji": "🔥"} for n in range(5)]
            response = await client.post(f"{ingest_url}/v1/events/{EVENT}/reactions", json=body)
            assert response.status_code == 202
            index += 1
            await asyncio.sleep(0.1)


async def register(
    client: httpx.AsyncClient, via: Process, cluster: str, client_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, str] = {"cluster": cluster}
    if client_id is not None:
        body["client_id"] = client_id
    response = await client.post(f"{via.url}/v1/events/{EVENT}/subscribers", json=body)
    assert response.status_code == 201, response.text
    assignment: dict[str, Any] = response.json()
    assert assignment["cluster"] == cluster
    return assignment


async def test_three_clusters_every_client_gets_every_window(processes: ProcessFactory) -> None:
    specs: list[tuple[str, dict[str, str]]] = [("ingest", COMMON), ("worker", COMMON)]
    for cluster in CLUSTERS:
        env = {**COMMON, "EMOSTREAM_CLUSTER": cluster, "EMOSTREAM_NODE_TTL_MS": str(NODE_TTL_MS)}
        specs += [("delivery", env)] * 3
    ingest, _worker, *nodes = processes.start_many(specs)
    node_of = {httpx.get(f"{n.url}/healthz").json()["node"]: n for n in nodes}
    assert len(node_of) == 9
    store = sync_redis.Redis.from_url(processes.redis_url)

    stop = asyncio.Event()
    sender = asyncio.create_task(send_reactions(ingest.url, stop))
    listeners: list[Listener] = []
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            # Registration works through any node: ask a node of another cluster each time.
            first = [
                await register(client, nodes[(3 * i + 3) % 9], cluster, f"first-{cluster}-{k}")
                for i, cluster in enumerate(CLUSTERS)
                for k in range(3)
            ]
            listeners += [Listener(a) for a in first]
            await eventually(lambda: all(len(x.windows) >= 3 for x in listeners), timeout_s=40)

            # Join mid-stream, and leave mid-stream.
            joined = [
                Listener(await register(client, nodes[0], cluster))
                for cluster in CLUSTERS
                for _ in range(3)
            ]
            listeners += joined
            leaving = listeners[0:9:2]
            for listener in leaving:
                await listener.leave(nodes[0].url, client)
            staying = [x for x in listeners if x not in leaving]
            target = max(x.newest() for x in staying) + 4
            await eventually(lambda: all(x.newest() >= target for x in staying), timeout_s=40)
        finally:
            stop.set()
            for listener in listeners:
                listener.task.cancel()
            await asyncio.gather(sender, *(x.task for x in listeners), return_exceptions=True)

        # Every client on every node got every window from its first to its last, and the
        # same window is the same object everywhere.
        by_seq: dict[int, dict[str, Any]] = {}
        for listener in listeners:
            seqs = [w["seq"] for w in listener.windows]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (listener.assignment, seqs)
            for window in listener.windows:
                assert by_seq.setdefault(window["seq"], window) == window
        assert all(x.newest() >= target for x in listeners if x not in leaving)
        for index, cluster in enumerate(CLUSTERS):
            members = {
                node_id for node_id, n in node_of.items() if n in nodes[3 * index : 3 * index + 3]
            }
            assigned = {
                x.assignment["node"] for x in listeners if x.assignment["cluster"] == cluster
            }
            # Every client went to a node of its cluster, spread over more than one of them.
            assert assigned <= members and len(assigned) >= 2, (cluster, assigned)

        # Unregistering twice, and errors in the one shape.
        gone = leaving[0].assignment["client_id"]
        response = await client.delete(
            f"{nodes[1].url}/v1/events/{EVENT}/subscribers/{gone}",
            headers=authorization(leaving[0].assignment),
        )
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        response = await client.post(
            f"{nodes[1].url}/v1/events/{EVENT}/subscribers", json={"cluster": "nowhere"}
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "unknown_cluster"
        response = await client.post(
            f"{nodes[1].url}/v1/events/{EVENT}/subscribers", json={"client_id": "bad id"}
        )
        assert response.status_code == 422 and response.json()["error"]["field"] == "client_id"
        response = await client.post(f"{nodes[1].url}/v1/events/{EVENT}/subscribers", content=b"[")
        assert response.status_code == 400 and response.json()["error"]["code"] == "malformed"

        # A killed node is dead once its TTL runs out, and is never chosen after that; a
        # stopped node leaves its cluster at once.
        killed_id, killed = next((i, n) for i, n in node_of.items() if n is nodes[0])
        stopped_id, stopped = next((i, n) for i, n in node_of.items() if n is nodes[1])
        killed.kill()
        assert stopped.terminate() == 0
        await eventually(lambda: not store.exists(keys.delivery_node(killed_id)), timeout_s=30)
        assert not store.exists(keys.delivery_node(stopped_id))
        chosen: Counter[str] = Counter()
        for _ in range(12):
            chosen[(await register(client, nodes[4], "c0"))["node"]] += 1
        assert killed_id not in chosen and stopped_id not in chosen
        assert set(chosen) == {node_id for node_id, n in node_of.items() if n is nodes[2]}
    store.close()
