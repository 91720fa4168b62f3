"""A poll's definition, its states and its public object: pure functions, no Redis.

States run draft -> open -> locked -> revealed -> closed (reveal may be skipped). A poll with
a duration locks itself when it runs out; an explicit lock takes effect after a short grace
(settings.poll_lock_grace_ms), so every ingest process knows the lock time before its own
clock reaches it and "accepted (202)" and "counted" are the same set of votes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..contract import CONTRACT_VERSION, EVENT_ID, EVENT_ID_RULE
from ..errors import InvalidField, InvalidState, MalformedBody

KINDS = ("poll", "trivia")
RESULTS = ("live", "on_reveal")
DRAFT, OPEN, LOCKED, REVEALED, CLOSED = "draft", "open", "locked", "revealed", "closed"
# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "open": (frozenset({DRAFT}), OPEN),
    "lock": (frozenset({OPEN}), LOCKED),
    "reveal": (frozenset({LOCKED}), REVEALED),
    "close": (frozenset({LOCKED, REVEALED}), CLOSED),
}
OPTIONS_MIN, OPTIONS_MAX, OPTION_MAX_CHARS = 2, 20, 64
QUESTION_MAX_CHARS = 500
QUOTA_MAX = 1000
DURATION_MAX_S = 24 * 3600
# A trivia answer scores from full points at the open down to half at this time (or at the
# poll's duration when it has one), and half after.
TRIVIA_WINDOW_S = 30.0
LEADERBOARD_SHOWN = 10


def validate_poll_id(poll_id: object) -> str:
    if not isinstance(poll_id, str) or not EVENT_ID.fullmatch(poll_id):
        raise InvalidField("poll_id", f"poll_id must be {EVENT_ID_RULE}")
    return poll_id


@dataclass(frozen=True)
class PollDefinition:
    question: str
    options: tuple[str, ...]
    kind: str = "poll"
    votes_per_user: int = 1
    changeable: bool = False
    quota: int | None = None
    results: str = "live"
    answer: str | None = None
    duration_s: float | None = None

    @property
    def answer_window_ms(self) -> int:
        return int((self.duration_s or TRIVIA_WINDOW_S) * 1000)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> PollDefinition:
        data = json.loads(text)
        data["options"] = tuple(data["options"])
        return cls(**data)


def _integer(payload: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidField(name, f"{name} must be an integer from {low} to {high}")
    return value


def _choice(payload: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = payload.get(name, choices[0])
    if value not in choices:
        raise InvalidField(name, f"{name} must be one of {', '.join(choices)}")
    return str(value)


def parse_definition(payload: Any) -> PollDefinition:
    """The definition in a PUT body, or the ApiError naming the first bad field."""
    if not isinstance(payload, dict):
        raise MalformedBody("body must be a JSON object")
    question = payload.get("question")
    if not isinstance(question, str) or not 1 <= len(question.strip()) <= QUESTION_MAX_CHARS:
        raise InvalidField("question", f"question must be 1-{QUESTION_MAX_CHARS} characters")
    options = payload.get("options")
    if (
        not isinstance(options, list)
        or not OPTIONS_MIN <= len(options) <= OPTIONS_MAX
        or not all(isinstance(o, str) and 1 <= len(o) <= OPTION_MAX_CHARS for o in options)
        or len(set(options)) != len(options)
    ):
        raise InvalidField(
            "options",
            f"options must be {OPTIONS_MIN}-{OPTIONS_MAX} distinct strings of "
            f"1-{OPTION_MAX_CHARS} characters",
        )
    kind = _choice(payload, "kind", KINDS)
    results = _choice(payload, "results", RESULTS)
    votes_per_user = _integer(payload, "votes_per_user", 1, len(options)) or 1
    quota = _integer(payload, "quota", 1, QUOTA_MAX)
    changeable = payload.get("changeable", False)
    if not isinstance(changeable, bool):
        raise InvalidField("changeable", "changeable must be true or false")
    if quota is not None and (votes_per_user != 1 or changeable):
        raise InvalidField(
            "quota", "quota (votes in all, repeats allowed) excludes votes_per_user and changeable"
        )
    if kind == "trivia" and (votes_per_user != 1 or quota is not None):
        raise InvalidField("kind", "a trivia question takes one answer per user")
    answer = payload.get("answer")
    if answer is not None:
        if kind != "trivia":
            raise InvalidField("answer", "only a trivia question has an answer")
        if answer not in options:
            raise InvalidField("answer", "answer must be one of the options")
    duration = payload.get("duration_s")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not 0 < duration <= DURATION_MAX_S
    ):
        raise InvalidField("duration_s", f"duration_s must be above 0 and at most {DURATION_MAX_S}")
    return PollDefinition(
        question.strip(),
        tuple(options),
        kind,
        votes_per_user,
        changeable,
        quota,
        results,
        answer,
        float(duration) if duration is not None else None,
    )


def check_transition(action: str, state: str) -> str:
    """The state ``action`` leads to from ``state``; 409 ``invalid_state`` if impossible."""
    sources, target = TRANSITIONS[action]
    if state not in sources:
        raise InvalidState(f"cannot {action} a poll that is {state}", "state")
    return target


@dataclass(frozen=True)
class PollView:
    """Everything stored about one poll, as read in one round trip (polls/store.py)."""

    event_id: str
    poll_id: str
    definition: PollDefinition
    state: str
    version: int = 0
    opened_ms: int | None = None
    lock_ms: int | None = None
    frozen: bool = False
    audit: str | None = None
    # The counts frozen at the lock, else the live tally.
    counts: dict[str, int] = field(default_factory=dict)
    # Votes that reached a worker after the lock (never counted).
    refused: int = 0
    leaderboard: list[dict[str, Any]] = field(default_factory=list)

    def effective_state(self, now_ms: int) -> str:
        """``open`` turns ``locked`` as soon as the lock time passes, before the freeze."""
        if self.state == OPEN and self.lock_ms is not None and now_ms >= self.lock_ms:
            return LOCKED
        return self.state

    def accepts(self, received_ms: int) -> bool:
        """Whether a vote received at ``received_ms`` is counted (and so answered 202)."""
        if self.state not in (OPEN, LOCKED) or self.frozen:
            return False
        return self.lock_ms is None or received_ms < self.lock_ms


def poll_object(view: PollView, now_ms: int, privileged: bool = False) -> dict[str, Any]:
    """The contract's poll object. Hidden results (``on_reveal`` before the reveal) and a
    trivia answer before the reveal are shown to the admin only."""
    definition = view.definition
    state = view.effective_state(now_ms)
    revealed = state in (REVEALED, CLOSED)
    show_votes = privileged or definition.results == "live" or revealed
    options: list[dict[str, Any]] = []
    for option in definition.options:
        item: dict[str, Any] = {"option": option}
        if show_votes:
            item["votes"] = view.counts.get(option, 0)
        options.append(item)
    obj: dict[str, Any] = {
        "v": CONTRACT_VERSION,
        "event_id": view.event_id,
        "poll_id": view.poll_id,
        "question": definition.question,
        "kind": definition.kind,
        "state": state,
        "options": options,
    }
    if show_votes:
        obj["total"] = sum(view.counts.get(o, 0) for o in definition.options)
    if view.audit is not None:
        obj["audit"] = view.audit
    if definition.answer is not None and (privileged or revealed):
        obj["answer"] = definition.answer
    obj.update(
        {
            "results": definition.results,
            "votes_per_user": definition.votes_per_user,
            "changeable": definition.changeable,
            "version": view.version,
            "frozen": view.frozen,
        }
    )
    for name, value in (
        ("quota", definition.quota),
        ("duration_s", definition.duration_s),
        ("opened_ms", view.opened_ms),
        ("locks_at_ms", view.lock_ms),
    ):
        if value is not None:
            obj[name] = value
    if definition.kind == "trivia" and revealed:
        obj["leaderboard"] = view.leaderboard
    return obj
