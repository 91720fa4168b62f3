"""The in-process reaction buffer: accepted reactions wait here for the next flush.

Bounded: ``held`` counts every accepted reaction not yet written to Redis (buffered, or packed
and waiting for a retry), and a request that would pass ``capacity`` is refused whole (503), so
memory stays bounded while Redis is away and nothing accepted is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..batch import EventColumns
from ..keys import sub_shards
from .validation import ReactionColumns

Key = TypeVar("Key", bound=Hashable)
Columns = TypeVar("Columns")


@dataclass(eq=False)
class ShardedBuffer(Generic[Key, Columns]):
    """Columns per key waiting for the next flush, taken grouped by raw-stream shard. The
    reaction buffer keys them by event, the vote buffer (polls/gate.py) by (event, poll)."""

    shards: int
    capacity: int
    held: int = field(init=False, default=0)
    # Added since the last take: a flush is due early once they reach flush_max.
    pending: int = field(init=False, default=0)
    _columns: dict[Key, Columns] = field(init=False, default_factory=dict)

    def room(self) -> int:
        return self.capacity - self.held

    def take(self) -> dict[int, dict[Key, Columns]]:
        """Swap out everything buffered, grouped by raw-stream shard (``placed``)."""
        columns, self._columns = self._columns, {}
        self.pending = 0
        by_shard: dict[int, dict[Key, Columns]] = {}
        for key, held in columns.items():
            for shard, part in self.placed(key, held):
                by_shard.setdefault(shard, {})[key] = part
        return by_shard

    def written(self, count: int) -> None:
        """``count`` items reached Redis; their room is free again."""
        self.held -= count

    def placed(self, key: Key, columns: Columns) -> list[tuple[int, Columns]]:
        """The raw-stream shard (or shards, each with its part) of a key's columns."""
        raise NotImplementedError

    def _columns_of(self, key: Key, new: Callable[[], Columns]) -> Columns:
        columns = self._columns.get(key)
        if columns is None:
            columns = self._columns[key] = new()
        return columns

    def _added(self, count: int) -> None:
        self.held += count
        self.pending += count


@dataclass(eq=False)
class ReactionBuffer(ShardedBuffer[str, EventColumns]):
    split: int = 1

    def placed(self, key: str, columns: EventColumns) -> list[tuple[int, EventColumns]]:
        """With an event split over several shards, its reactions are cut into that many
        runs, the first (never empty) for its own shard."""
        shards = sub_shards(key, self.shards, self.split)
        parts = _parts(columns, len(shards))
        return [(shard, part) for shard, part in zip(shards, parts, strict=True) if part]

    def add(self, event_id: str, reactions: ReactionColumns, received_ms: int) -> None:
        """Buffer a validated request. The caller checked ``room()`` first (all-or-nothing)."""
        columns = self._columns_of(event_id, EventColumns)
        count = len(reactions)
        columns.users += reactions.users
        columns.emojis += reactions.emojis
        columns.client_ts_ms += reactions.client_ts_ms
        columns.received_ms += [received_ms] * count
        self._added(count)


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
