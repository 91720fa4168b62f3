"""A model-based test: random interleavings of ingest, flush, read, crash, claim, Redis
restart, closing and late arrival. Counted never exceeds the truth, and equals it after a
drain."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from emostream import keys
from emostream.aggregate.worker import Worker
from emostream.clock import now_ms
from emostream.connection import connect
from emostream.deliver.hub import Hub
from emostream.ingest.buffer import ReactionBuffer
from emostream.ingest.flusher import Flusher
from emostream.ingest.validation import Reaction, ReactionColumns
from emostream.redis_server import PrivateRedis
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings
from emostream.windows import window_start

pytestmark = pytest.mark.e2e

T = TypeVar("T")
WINDOW_MS = 1000
EMOJIS = ["🔥", "😂", "👏"]
EVENT = "model"


class PipelineModel(RuleBasedStateMachine):
    server: PrivateRedis

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.settings = Settings(
            redis_url=self.server.url,
            shards=1,
            window_s=WINDOW_MS / 1000,
            # Windows are in the past: each closes as soon as its flush is processed, so
            # most later arrivals are late and exercise revisions.
            close_max_delay_ms=600_000,
            producer_timeout_ms=600_000,
        )
        self.redis = connect(self.server.url)
        self.run(self.redis.flushall())
        self.buffers = [ReactionBuffer(1, 10**6) for _ in range(2)]
        self.flushers = [
            Flusher(self.redis, self.settings, buffer, f"producer-{i}")
            for i, buffer in enumerate(self.buffers)
        ]
        self.workers = [Worker(self.redis, self.settings, worker_id=f"w{i}") for i in range(2)]
        self.run(self.workers[0].ensure_groups())
        # Each producer's receive clock only moves forward; the second one starts behind
        # (a stalled ingest whose reactions arrive late).
        base = window_start(now_ms(), WINDOW_MS) - 600 * WINDOW_MS
        self.clocks = [base + 50 * WINDOW_MS, base]
        self.truth: dict[int, Counter[str]] = {}
        # Entries a "crashed" worker had read: it may wake up and process them after all,
        # racing whoever claimed them meanwhile.
        self.read_by_slow_owner: list[Any] = []

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    @rule(
        producer=st.integers(0, 1),
        emoji=st.sampled_from(EMOJIS),
        count=st.integers(1, 20),
        advance_ms=st.integers(0, 2500),
    )
    def ingest(self, producer: int, emoji: str, count: int, advance_ms: int) -> None:
        self.clocks[producer] += advance_ms
        received = self.clocks[producer]
        reactions = ReactionColumns.of(Reaction(f"u{i % 7}", emoji, None) for i in range(count))
        self.buffers[producer].add(EVENT, reactions, received)
        self.truth.setdefault(window_start(received, WINDOW_MS), Counter())[emoji] += count

    @rule(producer=st.integers(0, 1))
    def flush(self, producer: int) -> None:
        self.run(self.flushers[producer].flush())

    @rule(worker=st.integers(0, 1))
    def process_new(self, worker: int) -> None:
        self.run(self.workers[worker].read_new(block_ms=None))

    @rule(worker=st.integers(0, 1))
    def read_then_stall(self, worker: int) -> None:
        """The worker reads entries and stalls (or dies) before counting them: they stay
        pending until claimed."""
        response: Any = self.run(
            self.redis.xreadgroup(
                keys.AGGREGATORS_GROUP, f"w{worker}", {keys.raw_stream(0): ">"}, count=2
            )
        )
        for _stream, items in response or []:
            self.read_by_slow_owner += [(0, entry_id, fields) for entry_id, fields in items]

    @rule(worker=st.integers(0, 1))
    def slow_owner_wakes_up(self, worker: int) -> None:
        """The stalled worker processes what it read, possibly after a claim did."""
        entries, self.read_by_slow_owner = self.read_by_slow_owner, []
        self.run(self.workers[worker].process(entries))

    @rule()
    def flush_retried_after_a_lost_reply(self) -> None:
        """Ingest appends a batch again because the reply to its first append was lost."""
        newest: Any = self.run(self.redis.xrevrange(keys.raw_stream(0), count=1))
        if newest:
            self.run(self.redis.xadd(keys.raw_stream(0), newest[0][1]))

    @rule(worker=st.integers(0, 1))
    def claim(self, worker: int) -> None:
        self.run(self.workers[worker].claim_idle(min_idle_ms=0))

    @rule(worker=st.integers(0, 1))
    def close_windows(self, worker: int) -> None:
        self.run(self.workers[worker].closer.tick())

    @rule()
    def restart_redis(self) -> None:
        """A clean restart: AOF is written out on shutdown, the script cache is emptied."""
        self.server.stop()
        self.server.start()

    def counted(self) -> dict[int, Counter[str]]:
        counted: dict[int, Counter[str]] = {}
        for start in self.truth:
            pairs: Any = self.run(
                self.redis.zrange(keys.window_counts(0, EVENT, start), 0, -1, withscores=True)
            )
            counted[start] = Counter({m.decode(): int(s) for m, s in pairs})
        return counted

    @invariant()
    def never_more_than_the_truth(self) -> None:
        for start, counts in self.counted().items():
            assert counts <= self.truth[start], f"window {start} counted more than was sent"

    def teardown(self) -> None:
        try:
            self.drain_and_check()
        finally:
            self.run(self.redis.aclose())
            self.loop.close()

    def drain_and_check(self) -> None:
        for flusher in self.flushers:
            self.run(flusher.flush())
        for worker in self.workers:
            self.run(worker.claim_idle(min_idle_ms=0))
            self.run(worker.drain())
        self.run(self.workers[0].closer.tick())
        counted = self.counted()
        hub = Hub(self.redis, self.settings, EmojiSwarmRule())
        published = {r.window_start_ms: r for r in self.run(hub.history.after(EVENT, 0, 10_000))}
        first = min(published, default=None)
        for start, counts in self.truth.items():
            if first is not None and start < first:
                # Older than the event's first published window (a lagging producer): it
                # has no seq to revise, so it is tallied as lost in the event's `late`.
                assert counted[start] == Counter()
                continue
            assert counted[start] == counts
            if start in published:  # closed windows carry the final (revised) totals
                assert Counter(dict(published[start].counts)) == counts
        lost: Any = self.run(self.redis.hget(keys.event_state(0, EVENT), keys.EVENT_LOST))
        expected_lost = sum(
            sum(c.values()) for s, c in self.truth.items() if first is not None and s < first
        )
        assert int(lost or 0) == expected_lost
        seqs = sorted(r.seq for r in published.values())
        assert seqs == list(range(1, len(seqs) + 1))


def test_counted_never_exceeds_truth_and_equals_it_after_drain(
    redis_server: PrivateRedis,
) -> None:
    if redis_server.process is None:
        redis_server.start()
    PipelineModel.server = redis_server
    run_state_machine_as_test(
        PipelineModel,
        settings=settings(
            max_examples=20,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
