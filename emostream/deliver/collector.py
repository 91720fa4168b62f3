"""Full garbage collections between windows, each walking only what is new since the last.

A node with 10,000 clients tracks about half a million objects; CPython's full collection
walks all of them, and when it fires on its own it stalls a fan-out for every client (up to
half a second each in docs/benchmarks-delivery.md). So CPython's automatic full collections
are turned off and the hub calls ``idle`` right after each window has been handed to every
client (and on quiet ticks), where a full collection runs if anything reached the oldest
generation since the last one, at most every ``min_interval_s``.

Each collection is followed by ``gc.freeze()``: its survivors move to the permanent
generation, so the next collection walks only objects that arrived since. A burst of
connections is then walked once, by the first collection after it (one pause of the old
size, ~0.4 s for 10,000 clients, between windows), and never again while they stay. That
is sound because a client that leaves is freed by reference counting alone:
tests/test_departed_clients.py runs a real delivery process, lets hundreds of clients come
and go, and finds no cycle they left behind. Anything else that could leave a cycle among
frozen objects (a Redis connection replaced after a fault, say) is caught by a thaw: every
``thaw_interval_s`` the collection unfreezes first and walks the whole heap, one pause of the
old size every ten minutes instead of one every ten seconds. Younger generations are still
collected automatically: they are small and fast.
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
    min_interval_s: float = 1.0
    max_interval_s: float = 60.0
    thaw_interval_s: float = 600.0
    collections: int = field(init=False, default=0)
    thaws: int = field(init=False, default=0)
    longest_ms: float = field(init=False, default=0.0)
    total_ms: float = field(init=False, default=0.0)
    _last: float = field(init=False, default_factory=time.monotonic)
    _thawed: float = field(init=False, default_factory=time.monotonic)
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
        """Something reached the oldest generation since the last full collection (a
        middle-generation collection promotes its survivors there), within the two
        intervals. Since the survivors of every collection are frozen, a collection costs
        what arrived since the previous one, so it may run often."""
        since = now - self._last
        if since < self.min_interval_s:
            return False
        return since >= self.max_interval_s or gc.get_count()[2] > 0

    def idle(self) -> None:
        """Run a full collection now if one is due: the node owes no client anything."""
        now = time.monotonic()
        if not self.due(now):
            return
        if now - self._thawed >= self.thaw_interval_s:
            gc.unfreeze()
            self._thawed = now
            self.thaws += 1
        gc.collect()
        gc.freeze()
        finished = time.monotonic()
        self._last = finished
        self.collections += 1
        self.longest_ms = max(self.longest_ms, (finished - now) * 1000)
        self.total_ms += (finished - now) * 1000
