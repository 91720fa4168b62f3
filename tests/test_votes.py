"""Votes against the private Redis: checked and counted in one atomic step per (poll, user),
exactly once, frozen at the lock once every accepted vote is counted, and recounted."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.errors import NotFound, PollNotOpen
from emostream.ingest.buffer import ReactionBuffer
from emostream.ingest.flusher import Flusher
from emostream.polls.ballots import audit_digest, replay, trivia_scores, vote_rule
from emostream.polls.gate import PollGate, VoteBuffer
from emostream.polls.model import parse_definition
from emostream.polls.recount import recount
from emostream.polls.store import PollStore
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings

from .helpers import quick_settings

pytestmark = pytest.mark.anyio

EVENT = "final"


@pytest.fixture
def fast(redis_server: PrivateRedis) -> Settings:
    return quick_settings(
        redis_server.url, 500, poll_cache_ms=50, poll_lock_grace_ms=200, close_max_delay_ms=60_000
    )


class Ingest:
    """One ingest process's poll side, in process: gate, buffers, flusher."""

    def __init__(self, redis: Redis, settings: Settings, producer: str) -> None:
        self.votes = VoteBuffer(settings.shards, settings.buffer_max)
        self.flusher = Flusher(
            redis,
            settings,
            ReactionBuffer(settings.shards, settings.buffer_max),
            producer,
            self.votes,
        )
        self.gate = PollGate(redis, settings, self.votes)

    async def vote(self, poll: str, user: str, option: str) -> int:
        return await self.gate.accept(EVENT, poll, {"user_id": user, "option": option})


async def make_poll(store: PollStore, poll: str, **rules: Any) -> None:
    body = {"question": "Who wins?", "options": ["A", "B", "C", "D"], **rules}
    await store.put(EVENT, poll, parse_definition(body))
    await store.transition(EVENT, poll, "open")


async def tally(store: PollStore, poll: str) -> dict[str, int]:
    view = await store.read(EVENT, poll)
    assert view is not None
    return {option: votes for option, votes in view.counts.items() if votes}


async def run_all(ingests: list[Ingest], workers: list[Worker]) -> None:
    await asyncio.gather(*(i.flusher.flush() for i in ingests))
    await asyncio.gather(*(w.drain() for w in workers))


async def test_concurrent_duplicates_through_two_ingests_count_once(
    redis: Redis, fast: Settings
) -> None:
    """Each user votes for two options, many times, through two ingest processes at once;
    two workers apply the entries concurrently. One vote per user is counted."""
    store = PollStore(redis, fast)
    await make_poll(store, "q1")
    ingests = [Ingest(redis, fast, f"ingest-{i}") for i in range(2)]
    workers = [Worker(redis, fast, worker_id=f"w{i}") for i in range(2)]
    await workers[0].ensure_groups()
    users = [f"u{i}" for i in range(50)]
    for round_ in range(4):
        await asyncio.gather(
            *(
                ingest.vote("q1", user, "AB"[(n + round_) % 2])
                for n, user in enumerate(users)
                for ingest in ingests
            )
        )
        # Each round in its own entries, so the workers race on the same users.
        await asyncio.gather(*(i.flusher.flush() for i in ingests))
    await asyncio.gather(*(w.drain() for w in workers))
    counted = await tally(store, "q1")
    assert sum(counted.values()) == len(users), counted
    ballots = await store.ballots(EVENT, "q1")
    assert sorted(ballots) == sorted(users) and all(len(b) == 1 for b in ballots.values())
    assert sum(w.votes for w in workers) == 50 * 2 * 4  # every vote seen, one per user counted


async def test_a_changeable_vote_moves_exactly_one_vote(redis: Redis, fast: Settings) -> None:
    store = PollStore(redis, fast)
    await make_poll(store, "q2", changeable=True)
    ingests = [Ingest(redis, fast, f"ingest-{i}") for i in range(2)]
    worker = Worker(redis, fast)
    await ingests[0].vote("q2", "fan", "A")
    await ingests[1].vote("q2", "other", "A")
    await run_all(ingests, [worker])
    assert await tally(store, "q2") == {"A": 2}
    # The same change sent twice, through both processes: A loses one vote, C gains one.
    await asyncio.gather(*(i.vote("q2", "fan", "C") for i in ingests))
    await run_all(ingests, [worker])
    assert await tally(store, "q2") == {"A": 1, "C": 1}
    assert await store.ballot(EVENT, "q2", "fan") == ["C"]


async def test_votes_per_user_allows_that_many_distinct_options(
    redis: Redis, fast: Settings
) -> None:
    store = PollStore(redis, fast)
    await make_poll(store, "q3", votes_per_user=2)
    ingest = Ingest(redis, fast, "p")
    for option in ["A", "A", "B", "C", "B"]:
        await ingest.vote("q3", "u1", option)
    await run_all([ingest], [Worker(redis, fast)])
    assert await tally(store, "q3") == {"A": 1, "B": 1}
    assert await store.ballot(EVENT, "q3", "u1") == ["A", "B"]


async def test_a_quota_holds_exactly_under_concurrency(redis: Redis, fast: Settings) -> None:
    """Quota 5: each user fires 12 votes (repeats allowed) through three processes at once,
    spread over several entries that three workers apply concurrently: 5 counted each."""
    store = PollStore(redis, fast)
    await make_poll(store, "q4", quota=5)
    ingests = [Ingest(redis, fast, f"ingest-{i}") for i in range(3)]
    workers = [Worker(redis, fast, worker_id=f"w{i}") for i in range(3)]
    await workers[0].ensure_groups()
    rng = random.Random(4)
    users = [f"u{i}" for i in range(30)]
    for _round in range(4):
        await asyncio.gather(*(i.vote("q4", u, rng.choice("ABCD")) for u in users for i in ingests))
        await asyncio.gather(*(i.flusher.flush() for i in ingests))
    await asyncio.gather(*(w.drain() for w in workers))
    assert sum((await tally(store, "q4")).values()) == 5 * len(users)
    ballots = await store.ballots(EVENT, "q4")
    assert all(len(ballot) == 5 for ballot in ballots.values())


async def test_the_lua_rules_equal_the_python_model(redis: Redis, fast: Settings) -> None:
    """Random votes under each rule: the tallies and ballots lua/apply_votes.lua records equal
    a replay of the same votes, in the order counted, through polls/ballots.py."""
    store = PollStore(redis, fast)
    rng = random.Random(7)
    worker = Worker(redis, fast)
    cases: dict[str, dict[str, Any]] = {
        "single": {},
        "multi": {"votes_per_user": 3},
        "move": {"changeable": True},
        "move2": {"changeable": True, "votes_per_user": 2},
        "quota": {"quota": 3},
    }
    for name, rules in cases.items():
        await make_poll(store, name, **rules)
        ingest = Ingest(redis, fast, "p")
        sent: list[tuple[str, str, int]] = []
        for _ in range(300):
            user, option = f"u{rng.randrange(20)}", rng.choice("ABCD")
            await ingest.vote(name, user, option)
            sent.append((user, option, 0))
        await run_all([ingest], [worker])
        view = await store.read(EVENT, name)
        assert view is not None
        model = replay(vote_rule(view.definition), sent, None)
        assert await tally(store, name) == dict(model.tally), name
        assert await store.ballots(EVENT, name) == model.ballots, name


async def test_no_vote_is_accepted_or_counted_after_the_lock(redis: Redis, fast: Settings) -> None:
    store = PollStore(redis, fast)
    with pytest.raises(NotFound):
        await Ingest(redis, fast, "p").vote("missing", "u1", "A")
    await store.put(EVENT, "q5", parse_definition({"question": "?", "options": ["A", "B"]}))
    ingest = Ingest(redis, fast, "p")
    with pytest.raises(PollNotOpen):
        await ingest.vote("q5", "u1", "A")  # a draft
    await store.transition(EVENT, "q5", "open")
    await asyncio.sleep(fast.poll_cache_ms / 1000)
    assert await ingest.vote("q5", "u1", "A") == 1
    await store.transition(EVENT, "q5", "lock")
    view = await store.read(EVENT, "q5")
    assert view is not None and view.lock_ms is not None
    # Within the grace the lock has not taken effect: accepted, and it will be counted.
    assert await ingest.vote("q5", "u2", "B") == 1
    await asyncio.sleep(max(0, view.lock_ms - now_ms()) / 1000 + 0.01)
    with pytest.raises(PollNotOpen):
        await ingest.vote("q5", "u3", "B")
    # A vote stamped after the lock (an ingest process whose clock ran ahead) is refused.
    ingest.votes.add(EVENT, "q5", ["late"], ["B"], view.lock_ms)
    worker = Worker(redis, fast)
    await run_all([ingest], [worker])
    assert await tally(store, "q5") == {"A": 1, "B": 1}
    assert (await store.read(EVENT, "q5")).refused == 1  # type: ignore[union-attr]


async def test_the_lock_freezes_only_after_every_accepted_vote_is_counted(
    redis: Redis, fast: Settings
) -> None:
    """A vote accepted before the lock by a process that has not flushed yet holds the
    freeze back; once it is counted the result freezes with it, audited, and recounts."""
    store = PollStore(redis, fast)
    await make_poll(store, "q6")
    fast_ingest, slow_ingest = Ingest(redis, fast, "fast"), Ingest(redis, fast, "slow")
    worker = Worker(redis, fast)
    await worker.ensure_groups()
    await slow_ingest.flusher.flush()  # registered, then holds a vote back
    await fast_ingest.vote("q6", "u1", "A")
    await slow_ingest.vote("q6", "u2", "B")
    await store.transition(EVENT, "q6", "lock")
    await asyncio.sleep(fast.poll_lock_grace_ms / 1000 + 0.05)
    for _ in range(3):
        await fast_ingest.flusher.flush()
        await worker.drain()
        await worker.closer.tick()
        await worker.polls.tick()
    view = await store.read(EVENT, "q6")
    assert view is not None and not view.frozen, "frozen ahead of an accepted vote"
    await slow_ingest.flusher.flush()
    await fast_ingest.flusher.flush()
    await worker.drain()
    await worker.closer.tick()
    await worker.polls.tick()
    view = await store.read(EVENT, "q6")
    assert view is not None and view.frozen and view.state == "locked"
    assert view.counts == {"A": 1, "B": 1}
    assert view.audit == audit_digest({"u1": ["A"], "u2": ["B"]})
    assert (await recount(redis, fast, EVENT, "q6")).agrees
    # Tampering with a recorded ballot is caught by the recount.
    await redis.hset(keys.poll(keys.shard_of(EVENT, fast.shards), EVENT, "q6"), "result", '{"A":2}')
    assert not (await recount(redis, fast, EVENT, "q6")).agrees


async def test_a_redelivered_vote_entry_is_counted_once(redis: Redis, fast: Settings) -> None:
    store = PollStore(redis, fast)
    await make_poll(store, "q7", quota=10)
    ingest = Ingest(redis, fast, "p")
    await ingest.vote("q7", "u1", "A")
    await ingest.flusher.flush()
    worker = Worker(redis, fast)
    await worker.ensure_groups()
    shard = keys.shard_of(EVENT, fast.shards)
    response: Any = await redis.xreadgroup(
        keys.AGGREGATORS_GROUP, "slow-owner", {keys.raw_stream(shard): ">"}
    )
    entries = [(shard, entry_id, fields) for entry_id, fields in response[0][1]]
    await worker.process(entries)
    await redis.script_flush()  # and the scripts reload after NOSCRIPT
    await worker.process(entries)
    assert await tally(store, "q7") == {"A": 1}


async def test_reveal_scores_trivia_as_the_python_rule(redis: Redis, fast: Settings) -> None:
    """Answers at chosen times after the open, half-way cases included: the points the reveal
    adds to the leaderboard (in Lua) equal polls/ballots.py's."""
    store = PollStore(redis, fast)
    body = {"question": "?", "options": ["A", "B"], "kind": "trivia", "duration_s": 4}
    await store.put(EVENT, "t1", parse_definition(body))
    await store.transition(EVENT, "t1", "open")
    view = await store.read(EVENT, "t1")
    assert view is not None and view.opened_ms is not None
    ingest = Ingest(redis, fast, "p")
    offsets = [0, 4, 12, 1204, 1999, 2000, 3996, 4000, 9000]
    for n, offset in enumerate(offsets):
        option = "A" if n % 4 else "B"
        ingest.votes.add(EVENT, "t1", [f"u{n}"], [option], view.opened_ms + offset)
    worker = Worker(redis, fast)
    await run_all([ingest], [worker])
    await store.transition(EVENT, "t1", "lock")
    await asyncio.sleep(fast.poll_lock_grace_ms / 1000 + 0.05)
    await ingest.flusher.flush()
    await worker.closer.tick()
    await worker.polls.tick()
    await store.transition(EVENT, "t1", "reveal", "A")
    ballots = await store.ballots(EVENT, "t1")
    times = {f"u{n}": view.opened_ms + offset for n, offset in enumerate(offsets)}
    expected = trivia_scores(ballots, times, "A", view.opened_ms, 4000)
    board = await store.leaderboard(EVENT, 100)
    assert {entry["user_id"]: entry["points"] for entry in board} == expected
    # u7 answered at the lock (the duration's end): refused. u3's 849.5 rounds up.
    assert expected == {"u1": 1000, "u2": 999, "u3": 850, "u5": 750, "u6": 501}


async def test_votes_reaching_flush_max_ask_for_a_flush(redis: Redis, fast: Settings) -> None:
    """As reactions do: without it a busy ingest filled its buffer between flushes (503)."""
    settings = dataclasses.replace(fast, flush_max=3)
    store = PollStore(redis, settings)
    await make_poll(store, "q8")
    pokes: list[int] = []
    votes = VoteBuffer(settings.shards, settings.buffer_max)
    gate = PollGate(redis, settings, votes, lambda: pokes.append(votes.pending))
    for user in ["u1", "u2", "u3", "u4"]:
        await gate.accept(EVENT, "q8", {"user_id": user, "option": "A"})
    assert pokes == [3, 4]
    votes.take()
    assert votes.pending == 0 and votes.held == 4


async def test_equal_points_share_a_rank(redis: Redis, fast: Settings) -> None:
    store = PollStore(redis, fast)
    board = keys.leaderboard(keys.shard_of(EVENT, fast.shards), EVENT)
    await redis.zadd(board, {"ann": 900, "bob": 750, "cy": 750, "dee": 500})
    top = await store.leaderboard(EVENT, 10)
    assert [(e["user_id"], e["rank"]) for e in top][0] == ("ann", 1)
    assert [e["rank"] for e in top] == [1, 2, 2, 4]
    assert await store.leaderboard_entry(EVENT, "cy") == {"user_id": "cy", "points": 750, "rank": 2}
    assert await store.leaderboard_entry(EVENT, "dee") == {
        "user_id": "dee",
        "points": 500,
        "rank": 4,
    }
    assert await store.leaderboard_entry(EVENT, "nobody") is None
