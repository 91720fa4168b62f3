"""The in-process reaction buffer: accepted reactions wait here for the next flush.

Bounded: ``held`` counts every accepted reaction not yet written to Redis (buffered, or packed
and waiting for a retry), and a request that would pass ``capacity`` is refused whole (503), so
memory stays bounded while Redis is away and nothing accepted is dropped.
"""

from __future__ import annotations

from ..batch import EventColumns
from ..keys import shard_of
from .validation import ReactionColumns


class ReactionBuffer:
    def __init__(self, shards: int, capacity: int) -> None:
        self.shards = shards
        self.capacity = capacity
        self.held = 0
        self._pending = 0
        self._events: dict[str, EventColumns] = {}

    @property
    def pending(self) -> int:
        """Reactions buffered and not yet taken by a flush."""
        return self._pending

    def room(self) -> int:
        return self.capacity - self.held

    def add(self, event_id: str, reactions: ReactionColumns, received_ms: int) -> None:
        """Buffer a validated request. The caller checked ``room()`` first (all-or-nothing)."""
        columns = self._events.get(event_id)
        if columns is None:
            columns = self._events[event_id] = EventColumns()
        count = len(reactions)
        columns.users += reactions.users
        columns.emojis += reactions.emojis
        columns.client_ts_ms += reactions.client_ts_ms
        columns.received_ms += [received_ms] * count
        self.held += count
        self._pending += count

    def take(self) -> dict[int, dict[str, EventColumns]]:
        """Swap out everything buffered, grouped by raw-stream shard."""
        events, self._events = self._events, {}
        self._pending = 0
        by_shard: dict[int, dict[str, EventColumns]] = {}
        for event_id, columns in events.items():
            by_shard.setdefault(shard_of(event_id, self.shards), {})[event_id] = columns
        return by_shard

    def written(self, count: int) -> None:
        """``count`` reactions reached Redis; their room is free again."""
        self.held -= count
