"""Which events ingest takes reactions for: an optional allow-list, and a cap on the events
with open windows, so invented event ids cannot grow Redis and the closer's work unbounded.

Pure logic, checked per request against a local view (no Redis round trip in a request): the
flusher refreshes the view from the shards' active-events sets about once a second
(``update``). Between two refreshes, an ingest process admits at most its share of the room
left, ``ceil(room / live producers)``, so all of them together stay within the cap, give or
take one event per process per refresh. Events another process admitted that no worker has
counted yet are not in the view: they are the rest of the overshoot.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from ..errors import TooManyEvents, UnknownEvent

# Retry-After when only this refresh's share is used up: the next refresh is about a second
# away and brings a new one.
SHARE_RETRY_AFTER_S = 1


class EventAdmission:
    def __init__(self, max_active: int, allowed: Collection[str], idle_s: float) -> None:
        self.max_active = max_active
        self.allowed = frozenset(allowed)
        self.idle_ms = int(idle_s * 1000)
        # An event leaves the active sets once idle; that is when room frees up again.
        self._full_retry_after_s = max(1, math.ceil(idle_s))
        self._active: frozenset[str] = frozenset()
        # New events admitted here that the view did not show yet, with when (ms).
        self._admitted: dict[str, int] = {}
        # Before the first refresh this process knows of no other: it may fill the cap.
        self._share = max_active

    @property
    def known(self) -> int:
        """Events counted against the cap: the view's, plus those admitted here since."""
        return len(self._active) + len(self._admitted)

    def check(self, event_id: str) -> bool:
        """Raise UnknownEvent (404) or TooManyEvents (429) if a reaction to ``event_id`` is
        refused; else whether the event is new here (then ``admit`` it once it is taken)."""
        if self.allowed and event_id not in self.allowed:
            raise UnknownEvent(event_id)
        if event_id in self._active or event_id in self._admitted:
            return False
        if self.known >= self.max_active:
            raise TooManyEvents(
                event_id, f"{self.max_active} events are active", self._full_retry_after_s
            )
        if self._share <= 0:
            raise TooManyEvents(event_id, "too many new events at once", SHARE_RETRY_AFTER_S)
        return True

    def admit(self, event_id: str, now_ms: int) -> None:
        """Count a new event that ``check`` let in, against the cap and this refresh's share."""
        self._share -= 1
        self._admitted[event_id] = now_ms

    def update(self, active: Iterable[str], producers: int, now_ms: int) -> None:
        """A fresh view: every shard's active events and the live ingest producers."""
        self._active = frozenset(active)
        # An event admitted here stays counted until the view shows it, or until it has had
        # time to go idle (its reactions never reached Redis, or it already left again).
        self._admitted = {
            event_id: admitted_ms
            for event_id, admitted_ms in self._admitted.items()
            if event_id not in self._active and now_ms - admitted_ms <= self.idle_ms
        }
        room = max(0, self.max_active - self.known)
        self._share = math.ceil(room / max(1, producers))
