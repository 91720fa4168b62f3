"""Issue 11: one crafted resume must not stop delivery for everyone. Clients hold SSE
requests with every out-of-range resume value, in the header and the query form, while the
node's subscription is forced to reconnect (its gap fill then runs for every event with
clients); a normal client of another event keeps receiving every window."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis as sync_redis

from emostream import keys

from .conftest import Process, ProcessFactory
from .helpers import eventually, read_swarm

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

OUT_OF_RANGE = ["18446744073709551616", str(2**63), "99999999999999999999", "-1", "1e9", "+3"]
FAST = {"EMOSTREAM_WINDOW_S": "0.5", "EMOSTREAM_SUBSCRIPTION_TIMEOUT_MS": "1000"}


@pytest.fixture
def node(processes: ProcessFactory) -> Iterator[Process]:
    (up,) = processes.start_many([("up", FAST)])
    yield up


async def test_crafted_resumes_never_stop_the_others_windows(
    node: Process, processes: ProcessFactory
) -> None:
    store = sync_redis.Redis.from_url(processes.redis_url)
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=30.0)) as client:
        # Out of range: refused at once, whichever form carries it.
        for value in OUT_OF_RANGE:
            by_header = await client.get(
                f"{node.url}/v1/events/idle/stream", headers={"Last-Event-ID": value}
            )
            by_query = await client.get(
                f"{node.url}/v1/events/idle/stream", params={"last_event_id": value}
            )
            for response in (by_header, by_query):
                assert response.status_code == 422, (value, response.text)
                assert response.json()["error"]["field"] == "Last-Event-ID"

        # In range but far beyond any window, on an event whose history cannot be read: such
        # clients stay connected while the subscription is made to reconnect.
        store.set(keys.window_history(keys.shard_of("broken", 2), "broken"), "not a stream")
        held = [
            asyncio.create_task(_hold(client, f"{node.url}/v1/events/{event}/stream", value))
            for event in ("idle", "broken")
            for value in (str(2**53), "123456789")
        ]
        reactions = f"{node.url}/v1/events/live/reactions"

        async def keep_sending() -> None:
            while True:
                await client.post(reactions, json={"user_id": "u1", "emoji": "🔥"})
                await asyncio.sleep(0.2)

        sender = asyncio.create_task(keep_sending())
        try:
            first = await read_swarm(
                f"{node.url}/v1/events/live/stream", lambda w: len(w) >= 1, timeout_s=20
            )
            assert first, "the live event produces windows"
            for _ in range(3):
                store.client_kill_filter(_type="pubsub")
                await asyncio.sleep(0.5)
            after = await read_swarm(
                f"{node.url}/v1/events/live/stream",
                lambda w: len(w) >= 6,
                timeout_s=20,
                last_event_id=first[-1]["seq"],
            )
            seqs = [window["seq"] for window in after if "revision" not in window]
            assert len(seqs) >= 6, "windows kept coming after the resubscriptions"
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no seq missing"
            health = (await client.get(f"{node.url}/healthz")).json()
            assert health["subscribed"] is True
            await eventually(lambda: all(not task.done() for task in held), timeout_s=1)
        finally:
            sender.cancel()
            for task in held:
                task.cancel()
    store.close()


async def _hold(client: httpx.AsyncClient, url: str, last_event_id: str) -> None:
    async with client.stream("GET", url, headers={"Last-Event-ID": last_event_id}) as response:
        assert response.status_code == 200
        async for _line in response.aiter_lines():
            pass
