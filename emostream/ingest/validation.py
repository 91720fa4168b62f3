"""Payload validation: pure functions from request bytes to clean reactions, or an ApiError.

A request is all-or-nothing: every reaction is validated before any is buffered. Emoji checks
are cached per distinct string (an event sees a few dozen emojis), and the common shape is
checked a column at a time, so the hot path has no Python loop body per reaction.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

import emoji as emoji_data
import msgpack

from ..contract import USER_ID, USER_ID_RULE, USER_IDS
from ..errors import InvalidField, MalformedBody, TooManyReactions, UnsupportedMediaType

JSON_TYPES = frozenset({"application/json"})
MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack"})
# Client times outside [1970, 5138) are not times.
MAX_UNIX_SECONDS = 1e11
FULLY_QUALIFIED = emoji_data.STATUS["fully_qualified"]
VARIATION_SELECTOR_16 = "\ufe0f"
_EMOJI_CACHE_MAX = 4096
_emoji_cache: dict[str, str] = {}


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


def parse_body(content_type: str | None, body: bytes) -> Any:
    """Decode a JSON or msgpack body; 415 for any other media type, 400 if it does not parse."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
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

    One grapheme cluster (skin tones, ZWJ sequences, flags, keycaps) known to Unicode's emoji
    data. Unqualified forms (a bare U+2764) are counted with their fully-qualified twin.
    """
    cached = _emoji_cache.get(value)
    if cached is not None:
        return cached
    if len(value) > 32 or not emoji_data.is_emoji(value):
        return None
    status = emoji_data.EMOJI_DATA[value]["status"]
    if status == emoji_data.STATUS["component"]:
        return None
    normalized = value
    if status != FULLY_QUALIFIED:
        for i in range(1, len(value) + 1):
            candidate = value[:i] + VARIATION_SELECTOR_16 + value[i:]
            data = emoji_data.EMOJI_DATA.get(candidate)
            if data is not None and data["status"] == FULLY_QUALIFIED:
                normalized = candidate
                break
    if len(_emoji_cache) < _EMOJI_CACHE_MAX:
        _emoji_cache[value] = normalized
    return normalized


def parse_client_ts(value: Any, field: str) -> int | None:
    """RFC 3339 string or Unix seconds to Unix ms; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidField(field, f"{field} must be an RFC 3339 string or Unix seconds")
    if isinstance(value, int | float):
        if not 0 <= value < MAX_UNIX_SECONDS:
            raise InvalidField(field, f"{field} is out of range for Unix seconds")
        return int(value * 1000)
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return int(parsed.timestamp() * 1000)
    raise InvalidField(
        field, f"{field} must be an RFC 3339 string with a time zone or Unix seconds"
    )


def _bad(field: str, value: Any, message: str) -> InvalidField:
    return InvalidField(field, message, "missing_field" if value is None else "invalid_field")


def validate_reaction(
    item: Any,
    where: str,
    allowed: Collection[str],
    names: FieldNames = CONTRACT_FIELDS,
) -> Reaction:
    """Check one reaction object; ``where`` prefixes field names inside arrays (``[3].``)."""
    if not isinstance(item, Mapping):
        raise MalformedBody("a reaction must be an object", where.rstrip(".") or None)
    user_id = item.get(names.user_id)
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise _bad(where + names.user_id, user_id, f"{names.user_id} must be {USER_ID_RULE}")
    raw_emoji = item.get(names.emoji)
    if not isinstance(raw_emoji, str):
        message = f"{names.emoji} must be a string holding exactly one emoji"
        raise _bad(where + names.emoji, raw_emoji, message)
    emoji = normalize_emoji(raw_emoji)
    if emoji is None:
        raise InvalidField(where + names.emoji, f"{names.emoji} must be exactly one emoji")
    if allowed and emoji not in allowed:
        raise InvalidField(
            where + names.emoji, f"{names.emoji} is not allowed for this event", "emoji_not_allowed"
        )
    return Reaction(user_id, emoji, parse_client_ts(item.get(names.ts), where + names.ts))


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
    if stamps.count(None) != len(stamps):
        client_ts_ms = _unix_seconds_as_ms(stamps)
        if client_ts_ms is None:
            return None
        return ReactionColumns(users, found, client_ts_ms)
    return ReactionColumns(users, found, stamps)


def _unix_seconds_as_ms(stamps: list[Any]) -> list[int | None] | None:
    """Client times given as Unix seconds (or absent), in ms; None if any is anything else."""
    column: list[int | None] = []
    append = column.append
    for stamp in stamps:
        if stamp is None:
            append(None)
        elif type(stamp) in (int, float) and 0 <= stamp < MAX_UNIX_SECONDS:
            append(int(stamp * 1000))
        else:
            return None
    return column
