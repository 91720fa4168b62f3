"""Polls' pure logic: definitions, transitions, the public object, the vote rules, trivia
points, the audit digest, the vote batch format and the poll record. No Redis."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from emostream.batch import VoteColumns, pack_votes, tally_batch, unpack_batch, unpack_vote_columns
from emostream.errors import BatchError, Conflict, InvalidField
from emostream.polls.ballots import (
    audit_digest,
    replay,
    trivia_points,
    trivia_scores,
)
from emostream.polls.model import (
    PollDefinition,
    PollView,
    check_transition,
    parse_definition,
    poll_object,
)
from emostream.records import PollRecord, decode_poll_record, encode_poll_record
from emostream.rules import EmojiSwarmRule, PollVoteRule

BASE = {"question": "Who wins?", "options": ["A", "B", "C"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"question": ""}, "question"),
        ({"options": ["A"]}, "options"),
        ({"options": ["A", "A"]}, "options"),
        ({"options": ["A", "x" * 65]}, "options"),
        ({"options": [str(i) for i in range(21)]}, "options"),
        ({"kind": "quiz"}, "kind"),
        ({"results": "never"}, "results"),
        ({"votes_per_user": 4}, "votes_per_user"),
        ({"votes_per_user": True}, "votes_per_user"),
        ({"quota": 0}, "quota"),
        ({"quota": 3, "votes_per_user": 2}, "quota"),
        ({"quota": 3, "changeable": True}, "quota"),
        ({"changeable": "yes"}, "changeable"),
        ({"answer": "A"}, "answer"),  # a plain poll has no answer
        ({"kind": "trivia", "answer": "Z"}, "answer"),
        ({"kind": "trivia", "votes_per_user": 2}, "kind"),
        ({"duration_s": 0}, "duration_s"),
    ],
)
def test_bad_definitions_name_their_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_definition({**BASE, **change})
    assert caught.value.field == field and caught.value.status == 422


def test_a_definition_round_trips_through_json() -> None:
    definition = parse_definition({**BASE, "kind": "trivia", "answer": "B", "duration_s": 10})
    assert PollDefinition.from_json(definition.to_json()) == definition
    assert definition.answer_window_ms == 10_000


def test_transitions_follow_the_contract() -> None:
    assert check_transition("open", "draft") == "open"
    assert check_transition("close", "locked") == "closed"  # reveal may be skipped
    for action, state in [("open", "closed"), ("lock", "draft"), ("reveal", "open")]:
        with pytest.raises(Conflict) as caught:
            check_transition(action, state)
        assert (caught.value.status, caught.value.code) == (409, "invalid_state")


def view(**overrides: Any) -> PollView:
    fields: dict[str, Any] = {
        "event_id": "e",
        "poll_id": "p",
        "definition": parse_definition({**BASE, "results": "on_reveal"}),
        "state": "open",
        "counts": {"A": 2, "C": 1},
    }
    return PollView(**{**fields, **overrides})


def test_hidden_results_show_to_the_admin_and_after_the_reveal() -> None:
    public = poll_object(view(), 0)
    assert "total" not in public and all("votes" not in o for o in public["options"])
    admin = poll_object(view(), 0, privileged=True)
    assert admin["total"] == 3
    assert admin["options"] == [
        {"option": "A", "votes": 2},
        {"option": "B", "votes": 0},
        {"option": "C", "votes": 1},
    ]
    assert poll_object(view(state="revealed"), 0)["total"] == 3


def test_an_open_poll_reads_locked_once_its_lock_time_passed() -> None:
    timed = view(lock_ms=1000)
    assert poll_object(timed, 999)["state"] == "open"
    assert poll_object(timed, 1000)["state"] == "locked"
    assert timed.accepts(999) and not timed.accepts(1000)
    assert not view(state="draft").accepts(0) and not view(frozen=True, state="locked").accepts(0)


def test_one_vote_per_user_keeps_the_first() -> None:
    ballot: list[str] = []
    rules = PollVoteRule()
    assert rules.apply(ballot, "A") == {"A": 1}
    assert rules.apply(ballot, "B") == {} and rules.apply(ballot, "A") == {}
    assert ballot == ["A"]


def test_a_changeable_vote_moves_the_oldest_option() -> None:
    rules = PollVoteRule(votes_per_user=2, changeable=True)
    ballot: list[str] = []
    for option in ["A", "B"]:
        rules.apply(ballot, option)
    assert rules.apply(ballot, "C") == {"A": -1, "C": 1}
    assert rules.apply(ballot, "C") == {}
    assert ballot == ["B", "C"]


def test_a_quota_allows_repeats_up_to_n() -> None:
    result = replay(PollVoteRule(quota=3), [("u", "A", 0)] * 5 + [("v", "B", 0)], None)
    assert result.tally == {"A": 3, "B": 1}
    assert result.ballots == {"u": ["A", "A", "A"], "v": ["B"]}


def test_replay_refuses_votes_from_the_lock_on() -> None:
    result = replay(PollVoteRule(), [("u", "A", 99), ("v", "B", 100)], lock_ms=100)
    assert (dict(result.tally), result.refused, result.times) == ({"A": 1}, 1, {"u": 99})


@pytest.mark.parametrize(
    ("elapsed_ms", "points"),
    [
        (-5, 1000),
        (0, 1000),
        (1, 1000),
        (30, 1000),
        (31, 999),
        (90, 999),
        (91, 998),
        (15_000, 750),
        (29_999, 500),
        (30_000, 500),
        (99_999, 500),
    ],
)
def test_trivia_points_fall_from_1000_to_500(elapsed_ms: int, points: int) -> None:
    """Rounded half up: 30 ms of a 30 s window is 999.5 points, so 1000."""
    assert trivia_points(elapsed_ms, 30_000) == points


def test_trivia_scores_only_correct_answers() -> None:
    ballots = {"fast": ["A"], "slow": ["A"], "wrong": ["B"]}
    times = {"fast": 1_000, "slow": 11_000, "wrong": 1_000}
    assert trivia_scores(ballots, times, "A", 1_000, 20_000) == {"fast": 1000, "slow": 750}


def test_the_audit_digest_is_over_the_sorted_ballots() -> None:
    digest = audit_digest({"b": ["B"], "a": ["A", "C"]})
    assert digest == audit_digest({"a": ["A", "C"], "b": ["B"]})
    assert digest != audit_digest({"a": ["C", "A"], "b": ["B"]})
    assert digest.startswith("sha256:") and len(digest) == 7 + 64


def test_vote_entries_carry_their_columns_packed() -> None:
    columns = VoteColumns(["u1", "u2"], ["A", "B"], [10, 11])
    payload = pack_votes("batch-1", "p", 12, {("e", "poll"): columns})
    tally = tally_batch(payload, EmojiSwarmRule())
    assert (tally.batch_id, tally.size, tally.windows) == ("batch-1", 2, [])
    [group] = tally.votes
    assert (group.event_id, group.poll_id) == ("e", "poll")
    assert unpack_vote_columns(group) == columns
    with pytest.raises(BatchError):  # analytics reading reactions is told it is not
        unpack_batch(payload)
    odd = msgpack.packb({"v": 2, "kind": "surveys/9", "id": "x", "p": "p", "wm": 0, "groups": []})
    with pytest.raises(BatchError):
        tally_batch(odd, EmojiSwarmRule())


def test_poll_records_are_told_apart_from_window_records() -> None:
    record = PollRecord("e", "p", 3)
    assert decode_poll_record(encode_poll_record(record)) == record
    window = msgpack.packb(["e", 1, 0, 2000, 0, 0, 0, []])
    assert decode_poll_record(window) is None
    assert decode_poll_record(b"\xc1") is None
