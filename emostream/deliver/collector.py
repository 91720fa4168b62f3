"""Full garbage collections between windows, not in the middle of a fan-out.

A node with 10,000 clients tracks about a million objects; CPython's full collection walks
all of them, and when it fires on its own it stalls a fan-out for every client (up to half a
second each in docs/benchmarks-delivery.md). Freezing the heap is not enough (objects of
clients that leave later would never be collected), so the cost is moved instead of removed:
CPython's automatic full collections are turned off, and the hub calls ``idle`` right after
each window has been handed to every client (and on quiet ticks), where a full collection
runs when CPython's count rule asks for one, at most every ``min_interval_s`` and at least
every ``max_interval_s``. Younger generations are still collected automatically: they are
small and fast.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

# CPython consults the oldest generation's threshold only against this many collections of
# the middle one; a number no process reaches turns automatic full collections off.
NEVER = 1 << 30


@dataclass(eq=False)
class CollectionPacer:
    min_interval_s: float = 10.0
    max_interval_s: float = 60.0
    collections: int = field(init=False, default=0)
    longest_ms: float = field(init=False, default=0.0)
    total_ms: float = field(init=False, default=0.0)
    _last: float = field(init=False, default_factory=time.monotonic)
    _saved: tuple[int, int, int] | None = field(init=False, default=None)

    def install(self) -> None:
        young, middle, oldest = gc.get_threshold()
        self._saved = (young, middle, oldest)
        gc.set_threshold(young, middle, NEVER)

    def uninstall(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def due(self, now: float) -> bool:
        """CPython's count rule for a full collection (this many middle-generation
        collections since the last; its extra condition, that long-lived objects grew by a
        quarter, is not visible from Python), within the two intervals: on a busy node that
        is about one full collection every ``min_interval_s``."""
        since = now - self._last
        if since < self.min_interval_s:
            return False
        wanted = self._saved[2] if self._saved is not None else gc.get_threshold()[2]
        return since >= self.max_interval_s or gc.get_count()[2] >= wanted

    def idle(self) -> None:
        """Run a full collection now if one is due: the node owes no client anything."""
        now = time.monotonic()
        if not self.due(now):
            return
        gc.collect()
        finished = time.monotonic()
        self._last = finished
        self.collections += 1
        self.longest_ms = max(self.longest_ms, (finished - now) * 1000)
        self.total_ms += (finished - now) * 1000
