"""Payload validation: pure functions from request bytes to clean reactions, or an ApiError.

A request is all-or-nothing: every reaction is validated before any is buffered. Emoji checks
are cached per distinct string (an event sees a few dozen emojis), so the per-reaction cost on
the hot path is two dict/regex look-ups.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import emoji as emoji_data
import msgpack

from ..errors import ApiError, InvalidField, MalformedBody

EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
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


class FieldNames(NamedTuple):
    """Names of the payload fields, so the seed alias reports its own names in errors."""

    user_id: str = "user_id"
    emoji: str = "emoji"
    ts: str = "ts"


CONTRACT_FIELDS = FieldNames()
SEED_FIELDS = FieldNames(user_id="user_id", emoji="emoji_type", ts="timestamp")


def validate_event_id(event_id: str) -> str:
    if not EVENT_ID.fullmatch(event_id):
        raise InvalidField("event_id", "event_id must be 1-64 characters of A-Za-z0-9_-")
    return event_id


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
    if kind in MSGPACK_TYPES:
        try:
            return msgpack.unpackb(body, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise MalformedBody(f"body is not valid msgpack: {exc}") from None
    raise ApiError(
        415,
        "unsupported_media_type",
        "Content-Type must be application/json or application/msgpack",
        "Content-Type",
    )


def as_reaction_list(payload: Any, max_batch: int) -> tuple[list[Any], bool]:
    """One reaction object or an array of them; returns (items, was_array)."""
    if isinstance(payload, dict):
        return [payload], False
    if isinstance(payload, list):
        if not payload:
            raise MalformedBody("the array holds no reactions")
        if len(payload) > max_batch:
            raise ApiError(
                413,
                "too_many_reactions",
                f"at most {max_batch} reactions per request, got {len(payload)}",
            )
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
        raise InvalidField(
            where + names.user_id,
            f"{names.user_id} must be 1-64 characters of A-Za-z0-9_.:@-",
            "missing_field" if user_id is None else "invalid_field",
        )
    raw_emoji = item.get(names.emoji)
    if not isinstance(raw_emoji, str):
        raise InvalidField(
            where + names.emoji,
            f"{names.emoji} must be a string holding exactly one emoji",
            "missing_field" if raw_emoji is None else "invalid_field",
        )
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
) -> list[Reaction]:
    """Every reaction of the payload, or an ApiError naming the first bad field.

    The common case (a dict with a valid user id, an emoji already seen, no ``ts`` or numeric
    Unix seconds) is checked inline; anything else takes the full check, which also produces
    the error. On a 100-reaction array (timeit) the full check alone cost 3.0 µs per reaction,
    against 0.7 µs for json.loads, and this path 1.6 µs.
    """
    items, is_array = as_reaction_list(payload, max_batch)
    user_key, emoji_key, ts_key = names
    user_id_ok = USER_ID.fullmatch
    known = _emoji_cache.get
    reactions: list[Reaction] = []
    append = reactions.append
    for index, item in enumerate(items):
        if type(item) is dict:
            user_id, raw_emoji, ts = item.get(user_key), item.get(emoji_key), item.get(ts_key)
            emoji = known(raw_emoji) if type(raw_emoji) is str else None
            if (
                emoji is not None
                and type(user_id) is str
                and user_id_ok(user_id)
                and (not allowed or emoji in allowed)
            ):
                if ts is None:
                    append(Reaction(user_id, emoji, None))
                    continue
                if type(ts) in (int, float) and 0 <= ts < MAX_UNIX_SECONDS:
                    append(Reaction(user_id, emoji, int(ts * 1000)))
                    continue
        where = f"[{index}]." if is_array else ""
        append(validate_reaction(item, where, allowed, names))
    return reactions
