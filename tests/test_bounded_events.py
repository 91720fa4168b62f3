"""Safe in public: invented event ids cannot grow Redis or the closer's work without bound.

Through real ingest and worker processes: the allow-list and the cap on active events answer
in the one JSON error shape, and a flood of 20,000 invented event ids is refused past the cap,
keeps Redis within the stated memory bound, and leaves a live event's windows on time.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from typing import Any

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from emostream import keys
from emostream.clock import now_ms
from emostream.connection import connect
from emostream.records import WindowRecord, decode_record
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings

from .conftest import ProcessFactory
from .helpers import eventually

pytestmark = pytest.mark.e2e

ONE = {"user_id": "u-1", "emoji": "🔥"}


def test_only_listed_events_take_reactions(processes: ProcessFactory) -> None:
    ingest = processes.role("ingest", EMOSTREAM_EVENTS="final,semi")
    with httpx.Client(base_url=ingest.url) as client:
        assert client.post("/v1/events/final/reactions", json=ONE).status_code == 202
        refused = client.post("/v1/events/invented/reactions", json=ONE)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "unknown_event"
        assert refused.json()["error"]["field"] == "event_id"
        # The seed alias counts under the default event, which is not listed here.
        seed = {"user_id": "u-1", "emoji_type": "🔥"}
        assert client.post("/send_emoji", json=seed).status_code == 404
        assert client.post("/send_emoji", json={**seed, "event_id": "semi"}).status_code == 200


def test_a_new_event_past_the_cap_gets_429_and_active_ones_still_flow(
    processes: ProcessFactory,
) -> None:
    ingest = processes.role("ingest", EMOSTREAM_MAX_ACTIVE_EVENTS="3")
    with httpx.Client(base_url=ingest.url) as client:
        for event_id in ("a", "b", "c"):
            assert client.post(f"/v1/events/{event_id}/reactions", json=ONE).status_code == 202
        refused = client.post("/v1/events/d/reactions", json=[ONE, ONE])
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"
        error = refused.json()["error"]
        assert (error["code"], error["field"]) == ("too_many_events", "event_id")
        assert "'d'" in error["message"]
        assert client.post("/v1/events/a/reactions", json=ONE).status_code == 202
        assert client.get("/healthz").json()["events_known"] == 3
        metrics = client.get("/metrics").text
        assert 'emostream_requests_rejected_total{code="too_many_events"} 1.0' in metrics
        assert "emostream_events_known 3.0" in metrics


def test_a_request_the_rate_limits_refuse_takes_no_place_among_the_events(
    processes: ProcessFactory,
) -> None:
    ingest = processes.role(
        "ingest", EMOSTREAM_MAX_ACTIVE_EVENTS="3", EMOSTREAM_USER_RATE="1", EMOSTREAM_USER_BURST="1"
    )
    with httpx.Client(base_url=ingest.url) as client:
        assert client.post("/v1/events/a/reactions", json=ONE).status_code == 202
        for event_id in ("b", "c", "d"):  # the same user, too fast
            limited = client.post(f"/v1/events/{event_id}/reactions", json=ONE)
            assert limited.json()["error"]["code"] == "rate_limited"
        assert client.get("/healthz").json()["events_known"] == 1
        for event_id in ("b", "c"):
            other_user = {**ONE, "user_id": f"u-{event_id}"}
            answer = client.post(f"/v1/events/{event_id}/reactions", json=other_user)
            assert answer.status_code == 202


# README.md, "Bounded events": a one-off event (one reaction, then idle) costs Redis at most
# this, plus this per window it has published (measured by loadtest/event_memory.py).
STATED_EVENT_BYTES = 7_000
STATED_WINDOW_BYTES = 250
FLOOD = 20_000
CAP = 5_000
# Windows of 1 s; each live window is held to EMOSTREAM_CLOSE_MAX_DELAY_MS (10 s), the bound
# the closer guarantees, not to a figure of this machine's speed.
FLOOD_ENV = {"EMOSTREAM_MAX_ACTIVE_EVENTS": str(CAP), "EMOSTREAM_WINDOW_S": "1"}


async def post_many(port: int, requests: list[tuple[str, str]], connections: int) -> list[int]:
    """POST each (path, JSON body) over ``connections`` keep-alive connections; the statuses,
    in order. A plain asyncio client: httpx would spend more CPU than the server under test."""
    statuses = [0] * len(requests)
    cursor = iter(range(len(requests)))

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in cursor:
                path, text = requests[index]
                body = text.encode()
                writer.write(
                    b"POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                statuses[index] = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                assert length is not None
                await reader.readexactly(int(length.group(1)))
        finally:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return statuses


async def used_memory(redis: Redis) -> int:
    memory: Any = await redis.info("memory")
    return int(memory["used_memory"])


@pytest.mark.anyio
async def test_a_flood_of_invented_events_is_capped_bounded_and_leaves_live_windows_on_time(
    processes: ProcessFactory, redis_server: PrivateRedis
) -> None:
    ingest = processes.role("ingest", **FLOOD_ENV)
    processes.role("worker", **FLOOD_ENV)
    assert ingest.port is not None
    settings = Settings.from_env({**FLOOD_ENV, "EMOSTREAM_REDIS_URL": redis_server.url})
    redis = connect(redis_server.url)
    live_windows: list[tuple[int, WindowRecord]] = []  # (received ms, record)
    stop = threading.Event()
    subscribed = threading.Event()

    def subscribe() -> None:
        """In a thread of its own, so the arrival times are not those of this busy loop."""
        with sync_redis.Redis.from_url(redis_server.url) as client, client.pubsub() as pubsub:
            pubsub.subscribe(keys.WINDOWS_CHANNEL)
            subscribed.set()
            while not stop.is_set():
                message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
                if message is not None:
                    record = decode_record(message["data"])
                    if record.event_id == "live" and not record.revision:
                        live_windows.append((now_ms(), record))

    async def live_audience() -> None:
        async with httpx.AsyncClient(base_url=ingest.url) as client:
            while not stop.is_set():
                answer = await client.post("/v1/events/live/reactions", json=ONE)
                assert answer.status_code == 202, answer.text
                await asyncio.sleep(0.2)

    subscriber = threading.Thread(target=subscribe, name="live-windows")
    subscriber.start()
    subscribed.wait(10)
    tasks = [asyncio.create_task(live_audience())]
    try:
        await eventually(lambda: len(live_windows) >= 2, timeout_s=20)
        before = await used_memory(redis)
        flood_began = now_ms()
        # One reaction per event from a user of its own: the per-user rate limit is not
        # what may refuse them, the cap is.
        flood = [
            (f"/v1/events/flood-{n}/reactions", json.dumps({**ONE, "user_id": f"fan-{n}"}))
            for n in range(FLOOD)
        ]
        statuses = await post_many(ingest.port, flood, 32)
        flood_ended = now_ms()
        accepted = statuses.count(202)
        assert statuses.count(429) == FLOOD - accepted
        assert accepted + 1 <= CAP  # "live" holds one place; one ingest: no overshoot
        assert accepted >= CAP - 100  # the cap, not something else, refused the rest
        async with httpx.AsyncClient(base_url=ingest.url) as client:
            refused = await client.post(f"/v1/events/flood-{FLOOD - 1}/reactions", json=ONE)
            assert refused.json()["error"]["code"] == "too_many_events"
            assert (await client.get("/healthz")).json()["events_known"] <= CAP
        first_accepted = statuses.index(202)
        # Every accepted event's first window is published (the newest accepted last).
        newest = max(n for n, status in enumerate(statuses) if status == 202)
        history_of = keys.window_history(keys.shard_of(f"flood-{newest}", 2), f"flood-{newest}")

        async def published() -> bool:
            return bool(await redis.exists(history_of))

        await eventually(published, timeout_s=30)
        # Redis memory: what the accepted events may cost by the README's bound, for the
        # windows the oldest of them has published by now, plus the raw batches kept.
        oldest = f"flood-{first_accepted}"
        windows = await redis.xlen(keys.window_history(keys.shard_of(oldest, 2), oldest))
        raw = 0
        for shard in range(2):
            raw += int(await redis.memory_usage(keys.raw_stream(shard), samples=0) or 0)
        bound = accepted * (STATED_EVENT_BYTES + STATED_WINDOW_BYTES * windows) + raw
        grown = await used_memory(redis) - before
        print(
            f"\n{accepted} events accepted, {FLOOD - accepted} refused; Redis grew "
            f"{grown / 1e6:.1f} MB, bound {bound / 1e6:.1f} MB ({windows} windows each)"
        )
        assert grown <= bound

        def live_windows_since_the_flood() -> int:
            return sum(1 for _at, r in live_windows if r.window_end_ms > flood_began)

        await eventually(lambda: live_windows_since_the_flood() >= 5, timeout_s=30)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(subscriber.join)
        await redis.aclose()
    # The live event kept its windows, each within the maximum delay of its end.
    seqs = [record.seq for _received, record in live_windows]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    during = [(at, r) for at, r in live_windows if r.window_end_ms > flood_began]
    assert len(during) >= 5
    delays = [at - record.window_end_ms for at, record in during]
    print(
        f"flood posted in {flood_ended - flood_began} ms; {len(during)} live windows since, "
        f"published {min(delays)}-{max(delays)} ms after their end"
    )
    assert max(delays) <= settings.close_max_delay_ms
