"""The aggregation rules: how responses become what viewers see.

Emoji swarms, votes, polls and trivia share the whole pipeline; only the rule changes. A swarm
rule tallies a slice of reactions (worker side) and turns a closed window's record into the
public window object (delivery and history side). A poll's rule (``PollVoteRule``) needs who
chose: it decides what one user's vote adds given what is recorded for that user, and the
worker applies it atomically per (poll, user) in lua/apply_votes.lua, its twin in Lua.
Everything here is pure and tested without Redis.
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


@dataclass(frozen=True, slots=True)
class PollVoteRule:
    """What one vote adds to a poll's tally, given the user's ballot (the options recorded
    for the user, oldest first):

    - one vote per user (the default): the first is recorded, later ones change nothing;
    - ``votes_per_user: n``: up to n distinct options, a repeat changes nothing;
    - ``changeable``: a new option once the ballot is full moves the oldest one (that option
      loses the vote in the same step);
    - ``quota: N``: up to N votes in all, the same option more than once if the user likes.
    """

    votes_per_user: int = 1
    changeable: bool = False
    quota: int | None = None

    def apply(self, ballot: list[str], option: str) -> dict[str, int]:
        """Record ``option`` on ``ballot`` (changed in place); the change to the tally."""
        if self.quota is not None:
            if len(ballot) >= self.quota:
                return {}
            ballot.append(option)
            return {option: 1}
        if option in ballot:
            return {}
        if len(ballot) < self.votes_per_user:
            ballot.append(option)
            return {option: 1}
        if not self.changeable:
            return {}
        moved = ballot.pop(0)
        ballot.append(option)
        return {moved: -1, option: 1}
