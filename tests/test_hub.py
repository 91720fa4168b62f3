"""The delivery hub: one subscription per node, fan-out, resume and gap filling."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.deliver.hub import Hub
from emostream.deliver.subscriber import Subscriber
from emostream.redis_server import PrivateRedis
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings

from .helpers import eventually, make_ingest, reactions

pytestmark = pytest.mark.anyio

WINDOW_MS = 200


@pytest.fixture
def fast(redis_server: PrivateRedis) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        shards=2,
        window_s=WINDOW_MS / 1000,
        replay_max=50,
        subscription_timeout_ms=1000,
    )


@pytest.fixture
async def pipeline(redis: Redis, fast: Settings) -> AsyncIterator[tuple[Hub, Worker]]:
    """Ingest heartbeats, a running worker and a running hub, all in this process."""
    buffer, flusher = make_ingest(redis, fast)
    # One reaction keeps the event producing windows for event_idle_s (60 s).
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    worker = Worker(redis, fast)
    hub = Hub(redis, fast, EmojiSwarmRule())
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(flusher.run()),
        asyncio.create_task(worker.run(stop)),
        asyncio.create_task(hub.run(stop)),
    ]
    await asyncio.wait_for(hub.subscribed.wait(), 5)
    try:
        yield hub, worker
    finally:
        stop.set()
        hub.close()
        await flusher.stop()
        await asyncio.gather(*tasks)


def seqs(subscriber: Subscriber) -> list[int]:
    return [key[0] for key, _frame in subscriber.frames]


async def test_every_subscriber_gets_the_same_frames(pipeline: tuple[Hub, Worker]) -> None:
    hub, _ = pipeline
    subscribers = [hub.attach("live") for _ in range(3)]
    await eventually(lambda: _has(subscribers[0], 3))
    await asyncio.sleep(0.05)
    frames = [list(s.frames)[:3] for s in subscribers]
    assert frames[0] == frames[1] == frames[2]
    assert frames[0][0][1].startswith(b"id: ")


async def test_a_gap_on_pubsub_is_filled_from_history(pipeline: tuple[Hub, Worker]) -> None:
    hub, _ = pipeline
    subscriber = hub.attach("live")
    await eventually(lambda: _has(subscriber, 2))

    async def seen_four() -> bool:
        return (hub.last_key("live") or (0, 0))[0] >= 4

    # Rewinding by 3 needs a last seq of at least 4 (the first windows may still be young).
    await eventually(seen_four)
    # Pretend the node saw an older seq last: the next live window reveals a gap.
    last = hub.last_key("live") or (0, 0)
    hub.rewind("live", last[0] - 3)
    subscriber.frames.clear()
    await eventually(lambda: _has(subscriber, 4))
    got = seqs(subscriber)
    assert got == list(range(got[0], got[0] + len(got)))
    assert got[0] == last[0] - 2


async def test_a_killed_subscription_is_resumed_without_missing_seq(
    pipeline: tuple[Hub, Worker], redis: Redis
) -> None:
    hub, _ = pipeline
    subscriber = hub.attach("live")
    await eventually(lambda: _has(subscriber, 2))
    for _ in range(3):
        await redis.client_kill_filter(_type="pubsub")
        await asyncio.sleep(0.3)
    await eventually(lambda: _has(subscriber, 12))
    got = seqs(subscriber)
    assert got == list(range(got[0], got[0] + len(got)))


async def test_a_stopped_redis_is_noticed_and_resubscribed_without_missing_seq(
    pipeline: tuple[Hub, Worker], redis_server: PrivateRedis
) -> None:
    """SIGSTOP leaves the socket open and silent, as a half-open connection or a paused
    server does: no error ever arrives, only the silence limit can notice it."""
    hub, _ = pipeline
    subscriber = hub.attach("live")
    await eventually(lambda: _has(subscriber, 2))
    subscriptions = hub.subscriptions
    assert redis_server.process is not None
    pid = redis_server.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # Nothing raises while Redis is stopped: only the silence limit (1 s) notices.
        await eventually(_is_false(hub.subscribed), timeout_s=20)
    finally:
        os.kill(pid, signal.SIGCONT)
    await eventually(_more_than(hub, subscriptions), timeout_s=30)
    seen = seqs(subscriber)[-1]
    await eventually(lambda: _has_seq(subscriber, seen + 8), timeout_s=30)
    got = seqs(subscriber)
    assert got == list(range(got[0], got[0] + len(got)))


async def test_windows_closed_before_the_first_subscription_are_filled(
    redis: Redis, fast: Settings
) -> None:
    """A client can join (and get its backlog) before the node has subscribed: what closes
    in between is filled from history, from the seq the backlog gave it."""
    buffer, flusher = make_ingest(redis, fast)
    buffer.add("live", reactions([("u1", "🔥")]), now_ms())
    worker = Worker(redis, fast)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(flusher.run()), asyncio.create_task(worker.run(stop))]
    hub = Hub(redis, fast, EmojiSwarmRule())
    try:
        await eventually(lambda: _history_has(redis, fast, 2))
        subscriber, backlog, _after = await hub.join("live", None)
        given = backlog[-1][0][0]
        assert subscriber.after == given
        await eventually(lambda: _history_has(redis, fast, given + 3))
        tasks.append(asyncio.create_task(hub.run(stop)))
        await eventually(lambda: _has_seq(subscriber, given + 6))
        got = seqs(subscriber)
        assert got == list(range(given + 1, given + 1 + len(got)))
        assert hub.windows_filled >= 3
    finally:
        stop.set()
        hub.close()
        await flusher.stop()
        await asyncio.gather(*tasks)


async def test_backlog_resumes_from_the_ring_or_history(pipeline: tuple[Hub, Worker]) -> None:
    hub, _ = pipeline
    subscriber = hub.attach("live")
    await eventually(lambda: _has(subscriber, 5))
    newest = seqs(subscriber)[-1]
    assert [k[0] for k, _ in await hub.backlog("live", newest - 3)][:3] == [
        newest - 2,
        newest - 1,
        newest,
    ]
    latest = await hub.backlog("live", None)
    assert len(latest) == 1 and latest[0][0][0] >= newest
    hub.forget("live")  # a node that never saw the event reads history instead
    from_history = await hub.backlog("live", newest - 3)
    assert [k[0] for k, _ in from_history][:3] == [newest - 2, newest - 1, newest]


async def test_resume_is_bounded_to_the_newest_windows(pipeline: tuple[Hub, Worker]) -> None:
    hub, _ = pipeline
    subscriber = hub.attach("live")
    await eventually(lambda: _has(subscriber, 1))
    newest_seen = seqs(subscriber)[-1]
    hub.forget("live")
    backlog = await hub.backlog("live", 0)
    assert len(backlog) <= hub.settings.replay_max
    assert backlog[-1][0][0] >= newest_seen


async def _has(subscriber: Subscriber, count: int) -> bool:
    return len(subscriber.frames) >= count


async def _has_seq(subscriber: Subscriber, seq: int) -> bool:
    return bool(subscriber.frames) and subscriber.frames[-1][0][0] >= seq


def _is_false(flag: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not flag.is_set()

    return check


def _more_than(hub: Hub, subscriptions: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return hub.subscriptions > subscriptions and hub.subscribed.is_set()

    return check


async def _history_has(redis: Redis, settings: Settings, seq: int) -> bool:
    shard = keys.shard_of("live", settings.shards)
    newest: Any = await redis.xrevrange(keys.window_history(shard, "live"), count=1)
    return bool(newest) and int(newest[0][0].split(b"-")[0]) >= seq


def test_history_key_is_on_the_event_shard(fast: Settings) -> None:
    shard = keys.shard_of("live", fast.shards)
    assert keys.window_history(shard, "live").startswith(f"emostream:{{{keys.shard_tag(shard)}}}:")


async def test_a_resume_beyond_the_newest_window_starts_the_client_over(
    pipeline: tuple[Hub, Worker],
) -> None:
    """A Last-Event-ID the event never reached (its Redis lost the history and numbers from
    1 again) gets the latest window at once and then every live one, not silence until the
    new seqs pass the old."""
    hub, _ = pipeline
    watcher = hub.attach("live")
    await eventually(lambda: _has(watcher, 2))
    newest = seqs(watcher)[-1]
    subscriber, backlog, after = await hub.join("live", newest + 1000)
    assert after is None
    assert len(backlog) == 1 and backlog[0][0][0] >= newest
    chunks = subscriber.start(backlog, after)
    assert chunks == [backlog[0][1]]
    await eventually(lambda: _has(subscriber, 2))
    assert subscriber.take().count(b"event: swarm") >= 2, "live windows must reach it"


async def test_a_resume_at_the_newest_window_is_no_reset(pipeline: tuple[Hub, Worker]) -> None:
    hub, _ = pipeline
    watcher = hub.attach("live")
    await eventually(lambda: _has(watcher, 1))
    newest = seqs(watcher)[-1]
    _subscriber, backlog, after = await hub.join("live", newest)
    assert after == newest
    assert all(key[0] > newest for key, _frame in backlog)
    _fresh, nothing, zero = await hub.join("never-seen", 0)
    assert zero == 0 and nothing == []
