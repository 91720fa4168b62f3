"""A reconnect storm against one real delivery process: 5,000 SSE joins within about a
second, half new viewers and half resuming, each a real connection. Every join is answered
200 with the frames it is owed, none fails on the Redis pool, and Redis serves one history
read for all of them (the node answers from memory, and joins that need Redis share a read)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import redis

from loadtest.sse_joins import (
    HISTORY_READS,
    command_calls,
    mixed_joins,
    seed_history,
    storm,
    window_ids,
)

from .conftest import ProcessFactory
from .helpers import eventually
from .test_pool_bursts import POOL_FAILURES

pytestmark = [pytest.mark.anyio, pytest.mark.e2e, pytest.mark.timeout(300)]

JOINS = 5000
WINDOWS = 50
EVENT = "storm"


async def test_five_thousand_joins_in_a_second_are_served_from_memory(
    processes: ProcessFactory,
) -> None:
    operator = redis.Redis.from_url(processes.redis_url)
    seed_history(operator, EVENT, 2, WINDOWS)
    delivery = processes.role("delivery")

    def subscribed() -> bool:
        health: Any = httpx.get(f"{delivery.url}/healthz").json()
        return bool(health["subscribed"])

    await eventually(subscribed)
    before = command_calls(operator)
    assert delivery.port is not None
    joins = mixed_joins(EVENT, JOINS, WINDOWS)
    result = await storm("127.0.0.1", delivery.port, joins, spread_s=1.0)
    after = command_calls(operator)
    operator.close()

    assert [a.error for a in result.answers if a.error] == []
    assert result.statuses() == {200: JOINS}
    for join, answer in zip(joins, result.answers, strict=True):
        expected = [WINDOWS] if join.last_event_id is None else [WINDOWS - 1, WINDOWS]
        assert window_ids(answer.first_chunk) == expected, answer.first_chunk
        assert answer.first_chunk.startswith(b"retry: ")
    reads = sum(after.get(name, 0) - before.get(name, 0) for name in HISTORY_READS)
    # One read for the event (before this work: one per join, 5,000), allowing for one more
    # should the node's subscription be replaced under the load.
    assert 1 <= reads <= 2, f"{reads} history reads for {JOINS} joins"
    with open(delivery.log_path, encoding="utf-8", errors="replace") as file:
        log = file.read()
    assert not [failure for failure in POOL_FAILURES if failure in log], log
    assert "no backlog" not in log, log
