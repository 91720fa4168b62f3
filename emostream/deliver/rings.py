"""What a delivery node keeps of each event: a small ring of its newest window frames, the
newest window (and revision) it delivered, and whether the ring can answer a join alone.

The hub owns one ``EventRings`` and decides when windows arrive; this module only keeps them,
bounded: ``replay_max`` frames per event and ``RINGS_KEPT`` events, evicting the events that
no client is watching.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from ..records import WindowRecord
from .backlog import Backlog, backlog_of
from .subscriber import Frame, FrameKey

RINGS_KEPT = 1024


class EventRings:
    def __init__(self, replay_max: int, watched: Callable[[str], bool]) -> None:
        self.replay_max = replay_max
        # Whether an event has clients: such an event's ring is never evicted.
        self.watched = watched
        self._rings: OrderedDict[str, deque[Frame]] = OrderedDict()
        self._last: dict[str, FrameKey] = {}
        # Events whose ring ends at the event's newest window as the live subscription tells
        # (every window since was received or filled), and those whose ring also holds every
        # older window up to the replay bound. Both are forgotten at every (re)subscription:
        # windows may have closed while nobody listened.
        self._current: set[str] = set()
        self._complete: set[str] = set()

    def last_key(self, event_id: str) -> FrameKey | None:
        """The newest window (and revision) of the event this node has delivered."""
        return self._last.get(event_id)

    def rewind(self, event_id: str, seq: int) -> None:
        """Believe the event delivered up to ``seq`` only, as a lost pub/sub message leaves
        it: the next window is preceded by a fill from history (tests make gaps with it)."""
        self._last[event_id] = (seq, 0)

    def forget(self, event_id: str) -> None:
        """Drop the event's ring and last key: the node serves it as one that never saw it,
        from history."""
        self._rings.pop(event_id, None)
        self._last.pop(event_id, None)
        self._current.discard(event_id)
        self._complete.discard(event_id)

    def backlog(self, event_id: str, after_seq: int | None, confirmed: bool) -> Backlog | None:
        """The backlog from memory, or None when the node's memory of the event cannot tell."""
        if event_id not in self._current:
            return None
        ring = self._rings.get(event_id, ())
        return backlog_of(tuple(ring), after_seq, event_id in self._complete, confirmed)

    def mark_current(self, event_id: str, complete: bool = False) -> None:
        """The ring ends at the event's newest window; with ``complete``, it also holds every
        older one up to the replay bound."""
        self._current.add(event_id)
        if complete:
            self._complete.add(event_id)

    def mark_incomplete(self, event_id: str) -> None:
        """Windows of the event are missing from its ring."""
        self._complete.discard(event_id)

    def resubscribed(self) -> None:
        """No ring is known to be current any more: windows may have closed meanwhile."""
        self._current.clear()
        self._complete.clear()

    def append(self, event_id: str, key: FrameKey, frame: Frame) -> None:
        """Keep the event's newest window (newer than ``last_key``: the hub checks that before
        it builds the frame)."""
        self._last[event_id] = key
        self._ring(event_id).append(frame)

    def revise(self, event_id: str, key: FrameKey, frame: Frame) -> bool:
        """Replace a window by its revision in the ring (resumes get the final totals); False
        when the ring already holds that revision or a newer one."""
        seq, revision = key
        ring = self._rings.get(event_id)
        if ring is not None:
            for index, ((kept_seq, kept_revision), _bytes) in enumerate(ring):
                if kept_seq == seq:
                    if kept_revision >= revision:
                        return False
                    ring[index] = frame
                    break
        return True

    def prepend(
        self, event_id: str, records: Sequence[WindowRecord], frame: Callable[[WindowRecord], Frame]
    ) -> None:
        """Keep windows read from history that are older than the ring's oldest (framed only
        then); an event without windows yet gets an empty ring (known to have none)."""
        ring = self._rings.get(event_id)
        if ring is None:
            self._ring(event_id)
        elif ring:
            oldest = ring[0][0][0]
            older = [frame(record) for record in records if record.seq < oldest]
            if older:
                # A deque made longer than its bound keeps the newest frames.
                self._rings[event_id] = deque([*older, *ring], maxlen=self.replay_max)

    def _ring(self, event_id: str) -> deque[Frame]:
        ring = self._rings.get(event_id)
        if ring is None:
            ring = self._rings[event_id] = deque(maxlen=self.replay_max)
            self._evict()
        return ring

    def _evict(self) -> None:
        while len(self._rings) > RINGS_KEPT:
            for event_id in self._rings:
                if not self.watched(event_id):
                    self.forget(event_id)
                    break
            else:
                return
