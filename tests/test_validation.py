from __future__ import annotations

from typing import Any

import msgpack
import pytest

from emostream.contract import validate_event_id
from emostream.errors import ApiError
from emostream.ingest.validation import (
    CONTRACT_FIELDS,
    SEED_FIELDS,
    _common_columns,
    normalize_emoji,
    parse_body,
    parse_client_ts,
    validate_reaction,
    validate_reactions,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("🔥", "🔥"),
        ("❤", "❤️"),  # unqualified heart counts with the fully-qualified one
        ("❤️", "❤️"),
        ("👍🏽", "👍🏽"),  # skin tone
        ("👨‍👩‍👧", "👨‍👩‍👧"),  # ZWJ sequence
        ("🇮🇳", "🇮🇳"),  # flag
        ("#️⃣", "#️⃣"),  # keycap
        ("🔥🔥", None),  # two emojis
        ("a", None),
        ("1", None),
        ("", None),
        ("👍🏽a", None),
        ("🏽", None),  # a bare skin-tone component is not a reaction
    ],
)
def test_normalize_emoji(raw: str, normalized: str | None) -> None:
    assert normalize_emoji(raw) == normalized


def test_event_id() -> None:
    assert validate_event_id("final_2026-A") == "final_2026-A"
    for bad in ("", "a" * 65, "a b", "a:b", "{s1}"):
        with pytest.raises(ApiError) as info:
            validate_event_id(bad)
        assert (info.value.status, info.value.field) == (422, "event_id")


def test_client_ts_forms() -> None:
    assert parse_client_ts(None, "ts") is None
    assert parse_client_ts("2026-11-22T12:00:00.250Z", "ts") == 1795348800250
    assert parse_client_ts("2026-11-22T13:00:00.250+01:00", "ts") == 1795348800250
    assert parse_client_ts(1795348800.25, "ts") == 1795348800250
    for bad in ("yesterday", "2026-11-22T12:00:00", True, -5, [1]):
        with pytest.raises(ApiError) as info:
            parse_client_ts(bad, "ts")
        assert info.value.field == "ts"


GOOD = {"user_id": "u-123", "emoji": "🔥"}


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"emoji": "🔥"}, 422, "user_id"),
        ({"user_id": "", "emoji": "🔥"}, 422, "user_id"),
        ({"user_id": "u" * 65, "emoji": "🔥"}, 422, "user_id"),
        ({"user_id": "bad id", "emoji": "🔥"}, 422, "user_id"),
        ({"user_id": 12, "emoji": "🔥"}, 422, "user_id"),
        ({"user_id": "u1"}, 422, "emoji"),
        ({"user_id": "u1", "emoji": "🔥🔥"}, 422, "emoji"),
        ({"user_id": "u1", "emoji": "fire"}, 422, "emoji"),
        ({"user_id": "u1", "emoji": 5}, 422, "emoji"),
        ({"user_id": "u1", "emoji": "🔥", "ts": "soon"}, 422, "ts"),
        ([GOOD, {"user_id": "u2", "emoji": "xx"}], 422, "[1].emoji"),
        ([GOOD, "not an object"], 400, "[1]"),
        ([], 400, None),
        ("just a string", 400, None),
        ([GOOD] * 501, 413, None),
    ],
)
def test_bad_reactions(payload: Any, status: int, field: str | None) -> None:
    with pytest.raises(ApiError) as info:
        validate_reactions(payload, 500)
    assert (info.value.status, info.value.field) == (status, field)


def test_good_reactions_single_and_array() -> None:
    assert validate_reactions(GOOD, 500).emojis == ["🔥"]
    many = validate_reactions([GOOD] * 500, 500)
    assert len(many) == 500 and many.rows()[0].user_id == "u-123"


def test_allow_list() -> None:
    validate_reactions(GOOD, 500, allowed={"🔥"})
    with pytest.raises(ApiError) as info:
        validate_reactions({"user_id": "u", "emoji": "😂"}, 500, allowed={"🔥"})
    assert (info.value.code, info.value.field) == ("emoji_not_allowed", "emoji")


def test_seed_field_names_are_reported_as_sent() -> None:
    ok = validate_reactions(
        {"user_id": "u", "emoji_type": "🔥", "timestamp": 1}, 500, (), SEED_FIELDS
    )
    assert ok.client_ts_ms == [1000]
    with pytest.raises(ApiError) as info:
        validate_reactions({"user_id": "u", "emoji_type": "🔥🔥"}, 500, (), SEED_FIELDS)
    assert info.value.field == "emoji_type"


def test_parse_body_media_types() -> None:
    assert parse_body("application/json; charset=utf-8", b'{"a": 1}') == {"a": 1}
    assert parse_body("application/msgpack", msgpack.packb({"a": 1})) == {"a": 1}
    for content_type, body, status in [
        ("text/plain", b"{}", 415),
        (None, b"{}", 415),
        ("application/json", b"{nope", 400),
        ("application/json", b"\xff\xfe", 400),
        ("application/msgpack", b"\xc1", 400),
    ]:
        with pytest.raises(ApiError) as info:
            parse_body(content_type, body)
        assert info.value.status == status


def test_the_inline_path_agrees_with_the_full_check() -> None:
    """Reactions taking the inline common-case path give what the full check gives."""
    items: list[Any] = [
        {"user_id": "u1", "emoji": "🔥"},
        {"user_id": "u2", "emoji": "❤"},  # normalized twice: first full, then from the cache
        {"user_id": "u2", "emoji": "❤"},
        {"user_id": "u3", "emoji": "🔥", "ts": 1795000000.5},
        {"user_id": "u4", "emoji": "🔥", "ts": "2026-11-22T12:00:00.250Z"},
        {"user_id": "u5", "emoji": "👍🏽", "ts": None},
    ]
    expected = [validate_reaction(item, "", ()) for item in items]
    assert validate_reactions(items, 500).rows() == expected
    # The same reactions in the common shape (every emoji now cached, no ts strings) take the
    # column path and still agree, one by one.
    common = [item for item in items if not isinstance(item.get("ts"), str)]
    assert validate_reactions(common, 500).rows() == [
        validate_reaction(item, "", ()) for item in common
    ]
    with pytest.raises(ApiError) as info:
        validate_reactions([*items, {"user_id": "u6", "emoji": "🔥", "ts": -1}], 500)
    assert info.value.field == "[6].ts"
    with pytest.raises(ApiError) as info:
        validate_reactions([*items, {"user_id": "bad id", "emoji": "🔥"}], 500)
    assert info.value.field == "[6].user_id"
    with pytest.raises(ApiError) as info:
        validate_reactions([{"user_id": "u", "emoji": "🔥"}], 500, allowed={"😂"})
    assert info.value.code == "emoji_not_allowed"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"user_id": "a\nb", "emoji": "🔥"}, "[2].user_id"),  # two valid ids once split
        ({"user_id": "", "emoji": "🔥"}, "[2].user_id"),
        ({"user_id": "x" * 65, "emoji": "🔥"}, "[2].user_id"),
        ({"user_id": 7, "emoji": "🔥"}, "[2].user_id"),
        ({"user_id": "u", "emoji": ["🔥"]}, "[2].emoji"),
        ({"user_id": "u", "emoji": "🔥", "ts": True}, "[2].ts"),
        ({"user_id": "u", "emoji": "🔥", "ts": 1e12}, "[2].ts"),
        (["u", "🔥"], "[2]"),
    ],
)
def test_the_column_path_never_lets_a_bad_reaction_through(bad: Any, field: str) -> None:
    good = [{"user_id": "u1", "emoji": "🔥"}, {"user_id": "u2", "emoji": "🔥", "ts": 1.5}]
    normalize_emoji("🔥")  # cached, so the column path (not the per-reaction one) decides
    assert _common_columns(good, CONTRACT_FIELDS, ()) is not None
    assert _common_columns([*good, bad], CONTRACT_FIELDS, ()) is None
    with pytest.raises(ApiError) as info:
        validate_reactions([*good, bad], 500)
    assert info.value.field == field
    assert validate_reactions(good, 500).client_ts_ms == [None, 1500]
