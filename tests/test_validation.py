from __future__ import annotations

from typing import Any

import msgpack
import pytest
from emoji import EMOJI_DATA
from emoji import STATUS as EMOJI_STATUS

from emostream.contract import validate_event_id
from emostream.errors import ApiError
from emostream.ingest.seed import validate_seed_reactions
from emostream.ingest.timestamps import read_seed_ts
from emostream.ingest.validation import (
    CONTRACT_FIELDS,
    FULLY_QUALIFIED,
    FULLY_QUALIFIED_BY_BARE_FORM,
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


VS15, VS16, ZWJ = "\ufe0e", "\ufe0f", "\u200d"
EYE, SPEECH = "\U0001f441", "\U0001f5e8"
WHITE_FLAG, TRANSGENDER = "\U0001f3f3", "\u26a7"
HEART, FIRE, TONE = "\u2764", "\U0001f525", "\U0001f3fd"
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
KISS_TONES = (
    "\U0001f9d1\U0001f3fb"
    + ZWJ
    + HEART
    + "{vs}"
    + ZWJ
    + "\U0001f48b"
    + ZWJ
    + "\U0001f9d1\U0001f3fc"
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        # unqualified and minimally-qualified ZWJ sequences count with their twin
        (EYE + ZWJ + SPEECH, EYE + VS16 + ZWJ + SPEECH + VS16),
        (EYE + VS16 + ZWJ + SPEECH, EYE + VS16 + ZWJ + SPEECH + VS16),
        (EYE + ZWJ + SPEECH + VS16, EYE + VS16 + ZWJ + SPEECH + VS16),
        (EYE + VS16 + ZWJ + SPEECH + VS16, EYE + VS16 + ZWJ + SPEECH + VS16),
        (WHITE_FLAG + ZWJ + TRANSGENDER, WHITE_FLAG + VS16 + ZWJ + TRANSGENDER + VS16),
        (HEART + ZWJ + FIRE, HEART + VS16 + ZWJ + FIRE),
        (KISS_TONES.format(vs=""), KISS_TONES.format(vs=VS16)),
        # presentation selectors: text (VS15) or emoji (VS16), needed or not, on any component
        (FIRE + VS16, FIRE),
        (FIRE + VS15, FIRE),
        (HEART + VS15, HEART + VS16),
        (HEART + VS16 + VS16, HEART + VS16),
        (EYE + VS15 + ZWJ + SPEECH + VS15, EYE + VS16 + ZWJ + SPEECH + VS16),
        ("\U0001f44d" + VS16 + TONE, "\U0001f44d" + TONE),  # skin tone after a selector
        ("\u2122" + VS15, "\u2122" + VS16),
        # keycaps
        ("#\u20e3", "#\ufe0f\u20e3"),
        ("#" + VS15 + "\u20e3", "#\ufe0f\u20e3"),
        ("1\u20e3", "1\ufe0f\u20e3"),
        # flags and tag sequences
        ("\U0001f1ee\U0001f1f3", "\U0001f1ee\U0001f1f3"),
        (SCOTLAND, SCOTLAND),
        (SCOTLAND[0] + VS16 + SCOTLAND[1:], SCOTLAND),
        # skin tones, on a ZWJ sequence too
        ("\U0001f469" + TONE + ZWJ + "\U0001f692", "\U0001f469" + TONE + ZWJ + "\U0001f692"),
        # refused: not one known sequence
        ("\U0001f1ee", None),  # half a flag
        (SCOTLAND[:-1], None),  # a tag sequence without its cancel tag
        (FIRE + TONE, None),  # a skin tone on an emoji that takes none
        ("\U0001f9b0", None),  # a bare hair-style component
        (VS16, None),
        (ZWJ, None),
        (ZWJ + FIRE, None),
        (FIRE + ZWJ, None),
        ("\u2620\u2620", None),
        ("#", None),
        (FIRE + VS16 * 40, None),  # beyond any emoji's length
    ],
)
def test_every_emoji_form_counts_with_its_fully_qualified_twin(
    raw: str, normalized: str | None
) -> None:
    assert normalize_emoji(raw) == normalized
    assert normalize_emoji(raw) == normalized  # the cached answer is the same
    if normalized is not None:
        assert normalize_emoji(normalized) == normalized


def test_no_two_fully_qualified_emojis_differ_only_in_presentation_selectors() -> None:
    """The one rule (drop the selectors, look the rest up) never merges two emojis."""
    fully_qualified = [
        sequence for sequence, data in EMOJI_DATA.items() if data["status"] == FULLY_QUALIFIED
    ]
    assert len(FULLY_QUALIFIED_BY_BARE_FORM) == len(fully_qualified)
    for sequence, data in EMOJI_DATA.items():
        twin = normalize_emoji(sequence)
        if data["status"] == EMOJI_STATUS["component"]:
            assert twin is None
        else:  # every unqualified and minimally-qualified form has its twin
            assert twin is not None and EMOJI_DATA[twin]["status"] == FULLY_QUALIFIED


def test_a_refused_emoji_says_what_one_emoji_is() -> None:
    with pytest.raises(ApiError) as info:
        validate_reaction({"user_id": "u", "emoji": FIRE + TONE}, "", ())
    assert (info.value.status, info.value.field) == (422, "emoji")
    assert "exactly one emoji" in info.value.message and "ZWJ" in info.value.message


Y10000_MS = 253_402_300_800_000


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (None, None),
        # RFC 3339 as written (section 5.6): T or t, Z or z or an offset, any fraction digits
        ("2026-11-22T12:00:00.250Z", 1795348800250),
        ("2026-11-22t12:00:00.250z", 1795348800250),
        ("2026-11-22T13:00:00.250+01:00", 1795348800250),
        ("2026-11-22T11:00:00.250-01:00", 1795348800250),
        ("2026-11-22T12:00:00.250-00:00", 1795348800250),
        ("2026-11-22T12:00:00Z", 1795348800000),
        ("2026-11-22T12:00:00.2Z", 1795348800200),
        ("2026-11-22T12:00:00.250999999Z", 1795348800250),  # truncated to ms
        ("2026-12-31T23:59:60Z", 1798761600000),  # a leap second is the next second
        # the one range: 1970-01-01 up to, not including, the year 10000
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("9999-12-31T23:59:59.999Z", Y10000_MS - 1),
        ("9999-12-31T23:59:59.999+01:00", Y10000_MS - 1 - 3_600_000),
        # Unix seconds, int or float, in the same range
        (0, 0),
        (1795348800, 1795348800000),
        (1795348800.25, 1795348800250),
        (Y10000_MS // 1000 - 1, Y10000_MS - 1000),
    ],
)
def test_v1_ts_reads_rfc_3339_and_unix_seconds_in_one_range(value: Any, ms: int | None) -> None:
    assert parse_client_ts(value, "ts") == ms


@pytest.mark.parametrize(
    "value",
    [
        # outside the range, written either way
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00+00:01",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999-00:01",
        -1,
        -0.5,
        Y10000_MS // 1000,
        1e12,  # v1 reads no millisecond epochs: this is seconds, far beyond 9999
        1795348800250,  # Date.now(): refused, not misread
        float("nan"),
        float("inf"),
        # not RFC 3339
        "2026-11-22T12:00:00",  # no zone
        "2026-11-22 12:00:00Z",  # a space is not the separator
        "2026-11-22T12:00Z",  # no seconds
        "20261122T120000Z",  # ISO 8601 basic format
        "2026-W47-7T12:00:00Z",  # a week date
        "2026-11-22T12:00:00.Z",  # a point without digits
        "2026-11-22T12:00:00+0100",  # an offset without its colon
        "2026-11-22T12:00:00+24:00",
        "2026-02-30T12:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T12:00:61Z",
        "0000-01-01T00:00:00Z",
        "２０２６-11-22T12:00:00Z",  # fullwidth digits
        "1795348800",  # a number in a string
        "yesterday",
        "",
        "2026-11-22T12:00:00.250Z" + "0" * 50,
        True,
        [1],
        {"seconds": 1},
    ],
)
def test_v1_ts_refuses_everything_else(value: Any) -> None:
    with pytest.raises(ApiError) as info:
        parse_client_ts(value, "[3].ts")
    assert (info.value.status, info.value.code, info.value.field) == (
        422,
        "invalid_field",
        "[3].ts",
    )
    assert "RFC 3339" in info.value.message and "9999" in info.value.message


@pytest.mark.parametrize(
    ("value", "ms", "dropped"),
    [
        (None, None, False),
        # what v1 reads, the seed reads the same
        ("2026-11-22T12:00:00.250Z", 1795348800250, False),
        ("2026-11-22t13:00:00.250+01:00", 1795348800250, False),
        (1795348800.25, 1795348800250, False),
        # the seed's own forms: no zone is UTC; str(datetime) has a space
        ("2026-11-22T12:00:00.250000", 1795348800250, False),
        ("2026-11-22 12:00:00.250000", 1795348800250, False),
        ("2026-11-22 13:00:00.250000+01:00", 1795348800250, False),
        ("2026-11-22", 1795305600000, False),
        # numbers from 1e11 on are Unix ms (Date.now()), below are seconds (time.time())
        (1795348800250, 1795348800250, False),
        (1795348800250.0, 1795348800250, False),
        (1795348800, 1795348800000, False),
        (99_999_999_999, 99_999_999_999_000, False),
        (100_000_000_000, 100_000_000_000, False),
        ("1795348800.25", 1795348800250, False),
        ("1795348800250", 1795348800250, False),
        # unreadable or out of range: dropped, counted, never refused
        ("yesterday", None, True),
        ("0001-01-01T00:00:00", None, True),
        ("1969-12-31 23:59:59", None, True),
        (-1, None, True),
        (Y10000_MS, None, True),
        (float("nan"), None, True),
        (True, None, True),
        ([1], None, True),
        ({"s": 1}, None, True),
        ("", None, True),
        ("1" * 65, None, True),
    ],
)
def test_the_seed_alias_reads_what_it_can_and_drops_the_rest(
    value: Any, ms: int | None, dropped: bool
) -> None:
    assert read_seed_ts(value) == (ms, dropped)


def test_the_column_path_and_the_full_check_share_the_range() -> None:
    normalize_emoji(FIRE)
    edge = [{"user_id": "u", "emoji": FIRE, "ts": Y10000_MS // 1000 - 1}]
    assert _common_columns(edge, CONTRACT_FIELDS, ()) is not None
    beyond = [{"user_id": "u", "emoji": FIRE, "ts": Y10000_MS // 1000}]
    assert _common_columns(beyond, CONTRACT_FIELDS, ()) is None
    with pytest.raises(ApiError):
        validate_reactions(beyond, 500)


@pytest.mark.parametrize(
    ("item", "user_id", "ts_ms"),
    [
        # the seed's generator: datetime.now().isoformat(), no zone
        (
            {
                "user_id": "user_5",
                "emoji_type": HEART + VS16,
                "timestamp": "2026-11-27T14:50:00.123456",
            },
            "user_5",
            1795791000123,
        ),
        # the seed's tests: a numeric user id
        ({"user_id": 1, "emoji_type": FIRE, "timestamp": 1795805400}, "1", 1795805400000),
        ({"user_id": 7.0, "emoji_type": FIRE}, "7", None),
        ({"user_id": -3, "emoji_type": FIRE}, "-3", None),
        # a client: str(datetime), a space instead of the T
        (
            {"user_id": 42, "emoji_type": FIRE, "timestamp": "2026-11-27 14:50:00"},
            "42",
            1795791000000,
        ),
    ],
)
def test_the_seed_alias_takes_what_the_seed_clients_send(
    item: dict[str, Any], user_id: str, ts_ms: int | None
) -> None:
    columns, dropped = validate_seed_reactions(item, 500)
    assert columns.rows() == [(user_id, normalize_emoji(item["emoji_type"]), ts_ms)]
    assert dropped == 0


def test_the_seed_alias_drops_an_unreadable_timestamp_and_counts_it() -> None:
    items = [
        {"user_id": "a", "emoji_type": FIRE, "timestamp": "last tuesday"},
        {"user_id": "b", "emoji_type": FIRE, "timestamp": "2026-11-27T14:50:00"},
        {"user_id": "c", "emoji_type": FIRE, "timestamp": -5},
    ]
    columns, dropped = validate_seed_reactions(items, 500)
    assert columns.client_ts_ms == [None, 1795791000000, None] and dropped == 2


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"user_id": True, "emoji_type": FIRE}, 422, "user_id"),
        ({"user_id": 1.5, "emoji_type": FIRE}, 422, "user_id"),
        ({"user_id": float("inf"), "emoji_type": FIRE}, 422, "user_id"),
        ({"user_id": 10**70, "emoji_type": FIRE}, 422, "user_id"),
        ({"user_id": "has space", "emoji_type": FIRE}, 422, "user_id"),
        ({"user_id": 1, "emoji_type": FIRE + FIRE}, 422, "emoji_type"),
        ({"user_id": 1}, 422, "emoji_type"),
        (
            [{"user_id": 1, "emoji_type": FIRE}, {"user_id": 2, "emoji_type": "x"}],
            422,
            "[1].emoji_type",
        ),
        ([{"user_id": 1, "emoji_type": FIRE}, 5], 400, "[1]"),
        ([], 400, None),
    ],
)
def test_the_seed_alias_still_refuses_a_bad_user_or_emoji(
    payload: Any, status: int, field: str | None
) -> None:
    with pytest.raises(ApiError) as info:
        validate_seed_reactions(payload, 500)
    assert (info.value.status, info.value.field) == (status, field)
