"""The typed decoding of reaction bodies (ingest/decoding.py) answers every body exactly as the
reference path (json.loads, then the check per reaction) does: the same columns, or the same
error with the same code, message and field."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from emostream.contract import USER_ID
from emostream.errors import ApiError
from emostream.ingest.decoding import (
    FULLY_QUALIFIED_BY_FORM,
    USER_ID_COLUMN,
    USER_ID_LENGTH,
    read_reactions,
)
from emostream.ingest.validation import (
    FULLY_QUALIFIED_BY_BARE_FORM,
    parse_body,
    validate_reactions,
    without_presentation_selectors,
)

MAX_BATCH = 5
EMOJIS = ["🔥", "❤️", "❤", "❤️‍🔥", "🏳️‍🌈", "🇧🇷", "🙏🏽", "🔥\ufe0f", "❤\ufe0e", "a", "🔥🔥", "🏽", ""]
USERS = ["u-1", "a" * 64, "a" * 65, "", "u\n2", "u 3", "é", "u:@._-", "\ud800", "U-9"]
STAMPS: list[Any] = [
    1795000000,
    1795000000.25,
    0,
    -1,
    -0.0,
    253402300799,
    253402300800,
    10**30,
    True,
    "2026-11-22T12:00:00.250Z",
    "2026-11-22T12:00:00",
    "x",
    None,
    [],
]
KEYS = ["user_id", "emoji", "ts", "event_id", "extra"]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON;charset=UTF8",
    "application/json; charset=latin-1",
    "application/msgpack",
    "text/plain",
    None,
]


def answer(content_type: str | None, body: bytes, allowed: frozenset[str]) -> Any:
    """What a path answers: the rows, or the error's parts."""
    try:
        return read_reactions(content_type, body, MAX_BATCH, allowed).rows()
    except ApiError as error:
        return (type(error), error.code, error.message, error.field)


def reference(content_type: str | None, body: bytes, allowed: frozenset[str]) -> Any:
    try:
        payload = parse_body(content_type, body)
        return validate_reactions(payload, MAX_BATCH, allowed).rows()
    except ApiError as error:
        return (type(error), error.code, error.message, error.field)


values = st.one_of(
    st.sampled_from(EMOJIS), st.sampled_from(USERS), st.sampled_from(STAMPS), st.integers()
)
reaction = st.dictionaries(st.sampled_from(KEYS), values, max_size=5)
common = st.fixed_dictionaries(
    {"user_id": st.sampled_from(USERS), "emoji": st.sampled_from(EMOJIS)},
    optional={"ts": st.sampled_from(STAMPS)},
)
payloads = st.one_of(
    common,
    reaction,
    st.lists(common, max_size=MAX_BATCH + 2),
    st.lists(st.one_of(common, reaction, values), max_size=MAX_BATCH + 2),
    values,
)
allowed_sets = st.sampled_from([frozenset(), frozenset({"🔥", "❤️"})])


def encode(payload: Any, ascii_only: bool) -> bytes:
    return json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@settings(max_examples=600, deadline=None)
@given(payloads, st.booleans(), st.sampled_from(CONTENT_TYPES), allowed_sets)
def test_every_json_body_gets_the_reference_answer(
    payload: Any, ascii_only: bool, content_type: str | None, allowed: frozenset[str]
) -> None:
    body = encode(payload, ascii_only)
    assert answer(content_type, body, allowed) == reference(content_type, body, allowed)


@settings(max_examples=400, deadline=None)
@given(payloads, st.integers(min_value=0, max_value=400), st.binary(max_size=4), allowed_sets)
def test_every_damaged_body_gets_the_reference_answer(
    payload: Any, at: int, junk: bytes, allowed: frozenset[str]
) -> None:
    body = encode(payload, False)
    body = body[:at] + junk + body[at + len(junk) :]
    content_type = "application/json"
    assert answer(content_type, body, allowed) == reference(content_type, body, allowed)


def test_every_listed_value_in_every_field_gets_the_reference_answer() -> None:
    """Each listed user id, emoji and client time, alone and beside a valid reaction, in
    every position: the values the generated tests draw from, each one surely tried."""
    good = {"user_id": "u-1", "emoji": "🔥"}
    variants: list[dict[str, Any]] = [{**good, "user_id": user} for user in USERS]
    variants += [{**good, "emoji": emoji} for emoji in EMOJIS]
    variants += [{**good, "ts": stamp} for stamp in STAMPS]
    variants += [{**good, "ts": 1795000000}, {**good, "ts": "2026-11-22T12:00:00Z"}]
    for variant in variants:
        for payload in (variant, [variant], [good, variant], [variant, variant, good]):
            for ascii_only in (False, True):
                body = encode(payload, ascii_only)
                for allowed in (frozenset(), frozenset({"🔥"})):
                    assert answer("application/json", body, allowed) == reference(
                        "application/json", body, allowed
                    ), body


def test_bodies_json_reads_leniently_get_the_reference_answer() -> None:
    """Forms json.loads takes or refuses where a stricter decoder might differ."""
    for body in [
        b'{"user_id":"a","user_id":"b","emoji":"\xf0\x9f\x94\xa5"}',
        b'{"user_id":5,"user_id":"b","emoji":"\xf0\x9f\x94\xa5"}',
        b'{"user_id":"a","emoji":"\xf0\x9f\x94\xa5","z":"\xff"}',
        b'{"user_id":"a","emoji":"\xf0\x9f\x94\xa5","ts":NaN}',
        b'{"user_id":"a","emoji":"\xf0\x9f\x94\xa5","ts":1e400}',
        b'\xef\xbb\xbf{"user_id":"a","emoji":"\xf0\x9f\x94\xa5"}',
        '{"user_id":"a","emoji":"🔥"}'.encode("utf-16"),
        b'{"user_id":"a","emoji":"\\ud83d\\udd25"}',
        b'{"user_id":"a","emoji":"\\ud83d"}',
        b' [ {"user_id":"a","emoji":"\xf0\x9f\x94\xa5","ts":1E2} ] \n',
        b'[{"user_id":"a","emoji":"\xf0\x9f\x94\xa5"}]' + b"x",
        b"[]",
        b"[" * 100_000,
    ]:
        for allowed in (frozenset(), frozenset({"🔥"})):
            assert answer("application/json", body, allowed) == reference(
                "application/json", body, allowed
            ), body


def test_every_form_the_decoder_takes_maps_to_its_fully_qualified_emoji() -> None:
    for form, qualified in FULLY_QUALIFIED_BY_FORM.items():
        assert FULLY_QUALIFIED_BY_BARE_FORM[without_presentation_selectors(form)] == qualified


def test_the_user_id_lengths_and_characters_make_the_contract_grammar() -> None:
    assert USER_ID_LENGTH.min_length is not None and USER_ID_LENGTH.max_length is not None
    for code in range(0x300):
        character = chr(code)
        for length in (0, 1, 2, 63, 64, 65):
            user_id = character * length
            split = (
                USER_ID_LENGTH.min_length <= len(user_id) <= USER_ID_LENGTH.max_length
                and "\n" not in user_id
                and USER_ID_COLUMN.fullmatch(user_id) is not None
            )
            assert split == (USER_ID.fullmatch(user_id) is not None), repr(user_id)
