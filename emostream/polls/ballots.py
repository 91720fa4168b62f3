"""Replaying a poll's votes through its rule (rules.PollVoteRule), trivia points and the
audit digest: pure functions.

`emostream recount` replays a poll's counted votes here and must arrive at the result
lua/apply_votes.lua froze; the tests hold the two to the same model.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..rules import PollVoteRule
from .model import PollDefinition


def vote_rule(definition: PollDefinition) -> PollVoteRule:
    return PollVoteRule(definition.votes_per_user, definition.changeable, definition.quota)


@dataclass
class Replay:
    """A poll recomputed from its votes in the order they were counted."""

    tally: Counter[str]
    ballots: dict[str, list[str]]
    times: dict[str, int]
    refused: int = 0


def replay(
    rule: PollVoteRule, votes: Iterable[tuple[str, str, int]], lock_ms: int | None
) -> Replay:
    """Apply (user, option, received ms) votes in order; a vote received at or after the lock
    is refused, as the Lua script refuses it."""
    result = Replay(Counter(), {}, {})
    for user, option, received_ms in votes:
        if lock_ms is not None and received_ms >= lock_ms:
            result.refused += 1
            continue
        ballot = result.ballots.setdefault(user, [])
        change = rule.apply(ballot, option)
        if change:
            result.tally.update(change)
            result.times[user] = received_ms
        elif not ballot:
            del result.ballots[user]
    result.tally = Counter({option: n for option, n in result.tally.items() if n})
    return result


def canonical_ballot(ballot: list[str]) -> str:
    return json.dumps(ballot, ensure_ascii=False, separators=(",", ":"))


def audit_digest(ballots: Mapping[str, list[str]]) -> str:
    """SHA-256 over every recorded ballot, one ``user<TAB>["option",...]`` line per user in
    user order: anyone holding the ballots can check the published result against it."""
    digest = hashlib.sha256()
    for user in sorted(ballots):
        digest.update(f"{user}\t{canonical_ballot(ballots[user])}\n".encode())
    return "sha256:" + digest.hexdigest()


def trivia_points(answer_ms: int, window_ms: int) -> int:
    """Points for a correct answer ``answer_ms`` after the open: 1000 at once, falling
    linearly to 500 at ``window_ms`` and 500 after (Kahoot's rule), rounded half up. Integer
    arithmetic, so lua/poll_state.lua computes the very same number."""
    elapsed = min(max(answer_ms, 0), window_ms)
    # floor(1000 - 500 * elapsed / window + 1/2), in integers
    return 1000 - (1000 * elapsed + window_ms - 1) // (2 * window_ms)


def trivia_scores(
    ballots: Mapping[str, list[str]],
    times: Mapping[str, int],
    answer: str,
    opened_ms: int,
    window_ms: int,
) -> dict[str, int]:
    """Points of every user whose recorded answer is ``answer``."""
    return {
        user: trivia_points(times[user] - opened_ms, window_ms)
        for user, ballot in ballots.items()
        if ballot and ballot[-1] == answer
    }
