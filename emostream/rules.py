"""The per-window aggregation rule: how a window's reactions become what viewers see.

Emoji swarms, votes, polls and trivia share the whole pipeline; only this rule changes. A rule
tallies a slice of reactions (worker side) and turns a closed window's record into the public
window object (delivery and history side). Everything here is pure and tested without Redis.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .contract import CONTRACT_VERSION
from .mood import mood_index
from .records import WindowRecord


def swarm(count: int, scale: int) -> int:
    """Icons to animate: ``ceil(count / scale)``; up to ``scale`` reactions show as one icon."""
    if count <= 0:
        return 0
    return -(-count // scale)


def top_n(counts: Iterable[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    """The ``n`` most frequent choices, count descending, ties broken by choice ascending."""
    return heapq.nsmallest(n, counts, key=lambda pair: (-pair[1], pair[0]))


class AggregationRule(Protocol):
    def tally(self, choices: Counter[str]) -> Counter[str]:
        """What one batch's reactions in one window add to the window's counts, given how
        often each choice was sent. (A rule that needs who chose, such as one vote per user,
        will take the group's user column too; the batch format keeps it per group.)"""
        ...

    def window_object(self, record: WindowRecord) -> dict[str, Any]:
        """The public window object of the contract for a closed window."""
        ...


@dataclass(frozen=True)
class EmojiSwarmRule:
    """Every tap counts; viewers get the top ``top_n`` emojis with their swarm sizes."""

    top_n: int = 5
    scale: int = 1000

    def tally(self, choices: Counter[str]) -> Counter[str]:
        return choices

    def window_object(self, record: WindowRecord) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "v": CONTRACT_VERSION,
            "event_id": record.event_id,
            "seq": record.seq,
            "window_start_ms": record.window_start_ms,
            "window_end_ms": record.window_end_ms,
            "total": record.total,
            "unique_users": record.unique_users,
            "top": [
                {"emoji": emoji, "count": count, "swarm": swarm(count, self.scale)}
                for emoji, count in top_n(record.counts, self.top_n)
            ],
            # From every count of the window, not the top only (emostream/mood.py).
            "mood": mood_index(record.counts),
        }
        if record.revision:
            obj["revision"] = record.revision
        return obj
