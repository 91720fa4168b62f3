"""What a joining client is owed first (pure), and the shared read behind joins."""

from __future__ import annotations

import asyncio

import pytest

from emostream.deliver.backlog import SingleFlight, backlog_of
from emostream.deliver.subscriber import Frame


def frames(*seqs: int) -> list[Frame]:
    return [((seq, 0), f"id: {seq}\n".encode()) for seq in seqs]


def seqs(answer: tuple[list[Frame], int | None] | None) -> tuple[list[int], int | None] | None:
    if answer is None:
        return None
    return [key[0] for key, _frame in answer[0]], answer[1]


def test_a_new_client_gets_the_latest_window_or_nothing() -> None:
    assert seqs(backlog_of(frames(4, 5, 6), None, complete=False, confirmed=False)) == ([6], None)
    assert seqs(backlog_of([], None, complete=True, confirmed=False)) == ([], None)


def test_a_resume_within_memory_gets_what_followed() -> None:
    assert seqs(backlog_of(frames(4, 5, 6), 4, False, False)) == ([5, 6], 4)
    assert seqs(backlog_of(frames(4, 5, 6), 3, False, False)) == ([4, 5, 6], 3)
    assert seqs(backlog_of(frames(4, 5, 6), 6, False, False)) == ([], 6)


def test_a_resume_older_than_memory_needs_history_unless_memory_is_all_of_it() -> None:
    assert backlog_of(frames(4, 5, 6), 1, complete=False, confirmed=False) is None
    assert seqs(backlog_of(frames(4, 5, 6), 1, complete=True, confirmed=False)) == ([4, 5, 6], 1)


def test_a_resume_beyond_the_newest_window_is_a_reset_only_once_confirmed() -> None:
    # The client may have seen seq 7 on another node before this one received it.
    assert backlog_of(frames(4, 5, 6), 7, complete=True, confirmed=False) is None
    assert seqs(backlog_of(frames(4, 5, 6), 7, complete=True, confirmed=True)) == ([6], None)
    assert seqs(backlog_of([], 7, complete=True, confirmed=True)) == ([], None)


@pytest.mark.anyio
async def test_concurrent_calls_of_one_key_share_one_flight() -> None:
    flight: SingleFlight[str, int] = SingleFlight(limit=2)
    release = asyncio.Event()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiters = [asyncio.ensure_future(flight.run("a", work)) for _ in range(100)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # a waiter leaving does not end the flight for the others
    release.set()
    results = await asyncio.gather(*waiters[1:])
    assert results == [1] * 99 and calls == 1 and flight.flights == 1
    assert await flight.run("a", work) == 2  # landed: the next call flies again
    assert flight.in_flight == 0


@pytest.mark.anyio
async def test_flights_are_bounded_and_errors_reach_every_waiter() -> None:
    flight: SingleFlight[int, int] = SingleFlight(limit=2)
    running = 0
    most = 0

    async def work() -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return 1

    assert sum(await asyncio.gather(*(flight.run(key, work) for key in range(10)))) == 10
    assert most == 2

    async def fails() -> int:
        raise ConnectionError("redis is away")

    outcomes = await asyncio.gather(
        *(flight.run(0, fails) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
