"""What a joining client is owed first, and one Redis read shared by every join that needs it.

A reconnect storm (a node restarted, a balancer moved thousands of clients) is thousands of
joins of the same few events within a second. Each used to read the event's history from
Redis (two commands), so 5,000 joins queued 10,000 commands on the node's pool. Now a join is
answered from the windows the node holds (``backlog_of`` over the hub's ring); when the node
does not hold what is needed, one read per event is made and every join that needs it
meanwhile waits for that one (``SingleFlight``), and at most a few events are read at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from .subscriber import Frame

Backlog = tuple[list[Frame], int | None]


def backlog_of(
    frames: Sequence[Frame], after_seq: int | None, complete: bool, confirmed: bool
) -> Backlog | None:
    """The frames a client resuming after ``after_seq`` (None: a new client) gets first, and
    the seq it resumes after; None when ``frames`` cannot tell.

    ``frames`` are the event's newest windows, oldest first, up to its newest one;
    ``complete`` when they are every window the event has, up to the replay bound (so an
    older ``after_seq`` gets all of them, newest kept). ``confirmed`` when the newest of them
    was just read from Redis: only then is an ``after_seq`` beyond it believed to come from
    lost history (the client is started over: the latest window, resuming after nothing);
    otherwise the client may have seen a window on another node that this one has not
    received yet."""
    if after_seq is None:
        return list(frames[-1:]), None
    newest = frames[-1][0][0] if frames else 0
    if after_seq > newest:
        return (list(frames[-1:]), None) if confirmed else None
    if complete or (frames and frames[0][0][0] <= after_seq + 1):
        return [frame for frame in frames if frame[0][0] > after_seq], after_seq
    return None


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Calls of ``run`` with the same key while one is in flight share its result (or its
    error); at most ``limit`` keys are in flight at once, the others wait their turn. A
    flight goes on when the callers that wait for it are cancelled (the next join of its key
    will want the answer)."""

    def __init__(self, limit: int) -> None:
        self._flights: dict[K, asyncio.Future[V]] = {}
        self._slots = asyncio.Semaphore(limit)
        self.flights = 0  # calls of ``work`` made, for the metrics and the tests

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._fly(work))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        return await asyncio.shield(flight)

    async def _fly(self, work: Callable[[], Awaitable[V]]) -> V:
        async with self._slots:
            self.flights += 1
            return await work()

    def _land(self, key: K, flight: asyncio.Future[V]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here: every waiter may have gone
