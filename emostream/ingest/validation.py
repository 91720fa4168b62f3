"""Payload validation: pure functions from request bytes to clean reactions, or an ApiError.

A request is all-or-nothing: every reaction is validated before any is buffered. Emoji checks
are cached per distinct string (an event sees a few dozen emojis), and the common shape is
checked a column at a time, so the hot path has no Python loop body per reaction.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import emoji as emoji_data
import msgpack

from ..contract import USER_ID, USER_ID_RULE, USER_IDS
from ..errors import InvalidField, MalformedBody, TooManyReactions, UnsupportedMediaType
from .timestamps import client_times_ms
from .timestamps import parse_client_ts as parse_client_ts  # v1's rule, re-exported

JSON_TYPES = frozenset({"application/json"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})
FULLY_QUALIFIED = emoji_data.STATUS["fully_qualified"]
# Text (U+FE0E) and emoji (U+FE0F) presentation selectors: they change how an emoji is drawn,
# not which emoji it is.
_NO_PRESENTATION_SELECTORS = str.maketrans("", "", "\ufe0e\ufe0f")
# The longest sequence in Unicode's data is 10 code points; room for a selector after each.
MAX_EMOJI_LENGTH = 32
EMOJI_RULE = (
    "exactly one emoji of Unicode's emoji list (skin tones, ZWJ sequences, flags, keycaps "
    "and tag sequences are one emoji)"
)
_EMOJI_CACHE_MAX = 4096
_emoji_cache: dict[str, str] = {}


def without_presentation_selectors(sequence: str) -> str:
    return sequence.translate(_NO_PRESENTATION_SELECTORS)


# Every emoji by its form without presentation selectors -> its fully-qualified form, built
# once from Unicode's data (emoji-test.txt, as the emoji package carries it). One-to-one: no
# two fully-qualified sequences differ only in selectors (tests/test_validation.py checks).
# Components (a bare skin tone or hair style) are not reactions and are not in it.
FULLY_QUALIFIED_BY_BARE_FORM: dict[str, str] = {
    without_presentation_selectors(sequence): sequence
    for sequence, data in emoji_data.EMOJI_DATA.items()
    if data["status"] == FULLY_QUALIFIED
}


class Reaction(NamedTuple):
    user_id: str
    emoji: str
    client_ts_ms: int | None


@dataclass(slots=True)
class ReactionColumns:
    """A request's valid reactions, column-wise, the shape the buffer keeps them in: no object
    per reaction on the hot path."""

    users: list[str] = field(default_factory=list)
    emojis: list[str] = field(default_factory=list)
    client_ts_ms: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def of(cls, rows: Iterable[Reaction]) -> ReactionColumns:
        columns = cls()
        for user_id, emoji, client_ts_ms in rows:
            columns.users.append(user_id)
            columns.emojis.append(emoji)
            columns.client_ts_ms.append(client_ts_ms)
        return columns

    @classmethod
    def with_client_times(
        cls, users: list[str], emojis: list[str], stamps: list[Any]
    ) -> ReactionColumns | None:
        """The columns with each v1 ``ts`` in Unix ms (``client_times_ms``), or None when one
        is not a client time."""
        client_ts_ms = client_times_ms(stamps)
        return None if client_ts_ms is None else cls(users, emojis, client_ts_ms)

    def rows(self) -> list[Reaction]:
        rows = zip(self.users, self.emojis, self.client_ts_ms, strict=True)
        return [Reaction(*row) for row in rows]


class FieldNames(NamedTuple):
    """Names of the payload fields, so the seed alias reports its own names in errors."""

    user_id: str = "user_id"
    emoji: str = "emoji"
    ts: str = "ts"


CONTRACT_FIELDS = FieldNames()
SEED_FIELDS = FieldNames(user_id="user_id", emoji="emoji_type", ts="timestamp")


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type, lower case; None when absent."""
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def parse_body(content_type: str | None, body: bytes) -> Any:
    """Decode a JSON or msgpack body; 415 for any other media type, 400 if it does not parse."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        if charset(content_type) not in (None, "utf-8", "utf8"):
            raise UnsupportedMediaType("a JSON body must be UTF-8 (RFC 8259)", "Content-Type")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedBody(f"body is not valid JSON: {exc}") from None
        except RecursionError:  # json's C decoder recurses once per level of nesting
            raise MalformedBody("body is nested too deeply") from None
    if kind in MSGPACK_TYPES:
        try:
            return msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedBody(f"body is not valid msgpack: {exc}") from None
    raise UnsupportedMediaType(
        "Content-Type must be application/json or application/msgpack", "Content-Type"
    )


def as_reaction_list(payload: Any, max_batch: int) -> tuple[list[Any], bool]:
    """One reaction object or an array of them; returns (items, was_array)."""
    if isinstance(payload, dict):
        return [payload], False
    if isinstance(payload, list):
        if not payload:
            raise MalformedBody("the array holds no reactions")
        if len(payload) > max_batch:
            raise TooManyReactions(max_batch, len(payload))
        return payload, True
    raise MalformedBody("body must be a reaction object or an array of reaction objects")


def normalize_emoji(value: str) -> str | None:
    """The fully-qualified form of ``value`` if it is exactly one emoji, else None.

    One rule for every form: drop every presentation selector (U+FE0E, U+FE0F, on any
    component), then look the rest up among Unicode's emoji sequences. So an unqualified or
    minimally-qualified form (a bare U+2764, 👁‍🗨), a text-presentation form (❤ U+FE0E) or a
    needless selector (🔥 U+FE0F) is counted with its fully-qualified twin, and anything that
    is not one known sequence (two emojis, a bare skin tone, a letter) is refused.
    """
    cached = _emoji_cache.get(value)
    if cached is not None:
        return cached
    if len(value) > MAX_EMOJI_LENGTH:
        return None
    normalized = FULLY_QUALIFIED_BY_BARE_FORM.get(without_presentation_selectors(value))
    if normalized is not None and len(_emoji_cache) < _EMOJI_CACHE_MAX:
        _emoji_cache[value] = normalized
    return normalized


def _bad(field: str, value: Any, message: str) -> InvalidField:
    return InvalidField(field, message, "missing_field" if value is None else "invalid_field")


def validate_reaction(
    item: Any,
    where: str,
    allowed: Collection[str],
    names: FieldNames = CONTRACT_FIELDS,
) -> Reaction:
    """Check one reaction object; ``where`` prefixes field names inside arrays (``[3].``)."""
    item = reaction_object(item, where)
    user_id, emoji = user_and_emoji(item, item.get(names.user_id), where, allowed, names)
    return Reaction(user_id, emoji, parse_client_ts(item.get(names.ts), where + names.ts))


def reaction_object(item: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise MalformedBody("a reaction must be an object", where.rstrip(".") or None)
    return item


def user_and_emoji(
    item: Mapping[str, Any],
    user_id: Any,
    where: str,
    allowed: Collection[str],
    names: FieldNames,
    user_id_rule: str = USER_ID_RULE,
) -> tuple[str, str]:
    """The checked user id (as given: the seed alias passes it converted) and normalized
    emoji of one reaction object."""
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise _bad(where + names.user_id, user_id, f"{names.user_id} must be {user_id_rule}")
    raw_emoji = item.get(names.emoji)
    if not isinstance(raw_emoji, str):
        message = f"{names.emoji} must be a string holding exactly one emoji"
        raise _bad(where + names.emoji, raw_emoji, message)
    emoji = normalize_emoji(raw_emoji)
    if emoji is None:
        raise InvalidField(where + names.emoji, f"{names.emoji} must be {EMOJI_RULE}")
    if allowed and emoji not in allowed:
        raise InvalidField(
            where + names.emoji, f"{names.emoji} is not allowed for this event", "emoji_not_allowed"
        )
    return user_id, emoji


def validate_reactions(
    payload: Any,
    max_batch: int,
    allowed: Collection[str] = (),
    names: FieldNames = CONTRACT_FIELDS,
) -> ReactionColumns:
    """Every reaction of the payload, or an ApiError naming the first bad field.

    The common case (objects with valid user ids, emojis already seen, no ``ts``) is checked
    a column at a time (``_common_columns``); anything else takes the check per reaction,
    which also produces the error. A loop building a ``Reaction`` per reaction cost nearly
    twice as much per body (docs/benchmarks.md).
    """
    items, is_array = as_reaction_list(payload, max_batch)
    columns = _common_columns(items, names, allowed)
    if columns is not None:
        return columns
    return ReactionColumns.of(
        validate_reaction(item, f"[{index}]." if is_array else "", allowed, names)
        for index, item in enumerate(items)
    )


def _common_columns(
    items: list[Any], names: FieldNames, allowed: Collection[str]
) -> ReactionColumns | None:
    """The reactions as columns if every one has the common shape, else None (then the
    check per reaction decides, and names the bad field). Each test runs over a whole column
    in C: list comprehensions of ``dict.get``, one regex over the joined user ids, cache
    look-ups for the emojis, no Python loop body per reaction."""
    user_key, emoji_key, ts_key = names
    known = _emoji_cache.get
    try:
        users = [item.get(user_key) for item in items]
        joined = "\n".join(users)  # TypeError unless every user id is a str
        emojis = [known(item.get(emoji_key)) for item in items]  # TypeError if unhashable
        stamps = [item.get(ts_key) for item in items]
    except (AttributeError, TypeError):  # not an object, or a value of the wrong type
        return None
    # A user id holding a newline would pass the regex as two: the count catches it.
    if joined.count("\n") != len(users) - 1 or not USER_IDS.fullmatch(joined + "\n"):
        return None
    if None in emojis or (allowed and not set(emojis).issubset(allowed)):
        return None
    found = cast("list[str]", emojis)  # no None in it, as just checked
    return ReactionColumns.with_client_times(users, found, stamps)
