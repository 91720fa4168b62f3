"""The in-process reaction buffer: accepted reactions wait here for the next flush.

Bounded: ``held`` counts every accepted reaction not yet written to Redis (buffered, or packed
and waiting for a retry), and a request that would pass ``capacity`` is refused whole (503), so
memory stays bounded while Redis is away and nothing accepted is dropped.
"""

from __future__ import annotations

from ..batch import EventColumns
from ..keys import sub_shards
from .validation import ReactionColumns


class ReactionBuffer:
    def __init__(self, shards: int, capacity: int, split: int = 1) -> None:
        self.shards = shards
        self.split = split
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
        """Swap out everything buffered, grouped by raw-stream shard. With an event split over
        several shards, its reactions are cut into that many runs, the first (never empty)
        for its own shard."""
        events, self._events = self._events, {}
        self._pending = 0
        by_shard: dict[int, dict[str, EventColumns]] = {}
        for event_id, columns in events.items():
            shards = sub_shards(event_id, self.shards, self.split)
            for shard, part in zip(shards, _parts(columns, len(shards)), strict=True):
                if part:
                    by_shard.setdefault(shard, {})[event_id] = part
        return by_shard

    def written(self, count: int) -> None:
        """``count`` reactions reached Redis; their room is free again."""
        self.held -= count


def _parts(columns: EventColumns, count: int) -> list[EventColumns]:
    """``columns`` cut into ``count`` runs of nearly equal length, the first one never empty
    (bounds rounded up), by slicing: no Python work per reaction."""
    if count == 1:
        return [columns]
    size = len(columns)
    bounds = [-(-part * size // count) for part in range(count + 1)]
    return [
        EventColumns(
            columns.users[start:end],
            columns.emojis[start:end],
            columns.received_ms[start:end],
            columns.client_ts_ms[start:end],
        )
        for start, end in zip(bounds, bounds[1:], strict=False)
    ]
