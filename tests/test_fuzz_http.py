"""Fuzzing every POST (and the DELETE) of the public API, the seed's aliases too, through
real HTTP against a real `emostream up`: raw bytes, JSON and msgpack shapes, odd ids and
headers. Whatever comes in, the answer is never a 5xx, an error is always the one JSON
shape, and the process logs no crash.

The example counts are bounded so the whole module takes seconds in CI; a failing example is
printed by hypothesis (and replayed first on the next run from its local database).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Process, ProcessFactory

pytestmark = pytest.mark.e2e

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELD_NAMES = [
    "user_id",
    "emoji",
    "ts",
    "emoji_type",
    "timestamp",
    "event_id",
    "client_id",
    "cluster",
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/msgpack",
    "application/x-msgpack",
    "text/plain",
    "",
    "application/json\x7f",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["🔥", "❤", "👍🏽", "🏳️‍🌈", "u-1", "2026-11-22T12:00:00Z", "\ud800"]),
)
keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=24,
)
# Reactions that are nearly right: the valid fields with one of them swapped for anything.
near_reactions = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.one_of(st.just("u-1"), json_values),
        "emoji": st.one_of(st.just("🔥"), json_values),
        "ts": st.one_of(st.just(1795000000.5), json_values),
        "emoji_type": st.one_of(st.just("😂"), json_values),
        "timestamp": json_values,
        "event_id": st.one_of(st.just("live"), json_values),
        "client_id": json_values,
        "cluster": json_values,
    },
)
json_payloads = st.one_of(json_values, near_reactions, st.lists(near_reactions, max_size=8))
msgpack_values = st.recursive(
    st.one_of(
        scalars.filter(lambda v: not (isinstance(v, int) and abs(v) >= 2**63)),
        st.binary(max_size=12),
        st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
        st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(keys, st.binary(max_size=6)), inner, max_size=6),
    ),
    max_leaves=24,
)
# Deep nesting: json's decoder recurses once per level.
deep = st.integers(min_value=1, max_value=200_000).flatmap(
    lambda depth: st.sampled_from([b"[" * depth, b'{"a":' * depth, b"[" * depth + b"]" * depth])
)
ids = st.one_of(
    st.sampled_from(["live", "fuzz", "a" * 64, "a" * 65, "", "bad id", "..", "%", "🔥"]),
    st.text(max_size=70),
)

# What an HTTP client can put in a header value at all (visible ASCII and obs-text).
header_tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
    min_size=1,
    max_size=60,
)


def dump_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def dump_msgpack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, unicode_errors="surrogatepass")
    return packed


bodies = st.one_of(
    st.tuples(st.just("application/json"), json_payloads.map(dump_json)),
    st.tuples(st.just("application/msgpack"), msgpack_values.map(dump_msgpack)),
    st.tuples(st.sampled_from(CONTENT_TYPES), st.binary(max_size=300)),
    st.tuples(st.just("application/json"), deep),
)


@pytest.fixture(scope="module")
def up(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    if redis_server.process is None:
        redis_server.start()
    factory = ProcessFactory(redis_server.url, str(tmp_path_factory.mktemp("fuzz")))
    try:
        # Registration is rate limited per address; the fuzzer is one address.
        yield factory.role("up", EMOSTREAM_REGISTRATION_RATE_PER_S="10000")
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def client(up: Process) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.url, timeout=30.0) as session:
        yield session


def check(response: httpx.Response) -> None:
    """Never a 5xx; every error in the one JSON shape; every success readable."""
    status = response.status_code
    assert status < 500, (status, response.text[:500])
    # 204: unregistered. 307: Starlette's redirect of a path ending in a slash (an empty
    # client id) to the same path without it.
    if status in (204, 307):
        return
    assert response.headers.get("content-type", "").startswith("application/json"), (
        status,
        response.headers,
    )
    body = response.json()
    if status >= 400:
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"code", "message", "field"}, error
        assert isinstance(error["code"], str) and error["code"], error
        assert isinstance(error["message"], str) and error["message"], error
        assert error["field"] is None or isinstance(error["field"], str), error


def assert_no_crash_logged(up: Process) -> None:
    log = up.log()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log


def post(client: httpx.Client, path: str, content_type: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(path, content=body, headers=headers)


@FUZZ
@given(body=bodies, event_id=ids)
def test_reactions_never_fail_with_a_5xx(
    client: httpx.Client, up: Process, body: tuple[str, bytes], event_id: str
) -> None:
    content_type, content = body
    check(post(client, f"/v1/events/{quote(event_id, safe='')}/reactions", content_type, content))


@FUZZ
@given(body=bodies)
def test_send_emoji_never_fails_with_a_5xx(
    client: httpx.Client, up: Process, body: tuple[str, bytes]
) -> None:
    check(post(client, "/send_emoji", *body))


@FUZZ
@given(body=bodies, event_id=ids)
def test_registration_never_fails_with_a_5xx(
    client: httpx.Client, up: Process, body: tuple[str, bytes], event_id: str
) -> None:
    content_type, content = body
    path = f"/v1/events/{quote(event_id, safe='')}/subscribers"
    check(post(client, path, content_type, content))


@FUZZ
@given(
    event_id=ids,
    client_id=ids,
    authorization=st.one_of(
        st.none(),
        header_tokens.map(lambda token: "Bearer " + token),
        header_tokens,
        st.sampled_from(["Bearer", "Basic abc", "bearer x y", "BEARER  x"]),
    ),
    body=st.binary(max_size=64),
)
def test_unregistration_never_fails_with_a_5xx(
    client: httpx.Client,
    up: Process,
    event_id: str,
    client_id: str,
    authorization: str | None,
    body: bytes,
) -> None:
    headers: dict[bytes, bytes] = {}
    if authorization is not None:
        headers[b"Authorization"] = authorization.encode("latin-1")
    path = f"/v1/events/{quote(event_id, safe='')}/subscribers/{quote(client_id, safe='')}"
    check(client.request("DELETE", path, headers=headers, content=body))


@FUZZ
@given(body=bodies, path=st.sampled_from(["/register", "/unregister"]))
def test_the_seed_registration_aliases_never_fail_with_a_5xx(
    client: httpx.Client, up: Process, body: tuple[str, bytes], path: str
) -> None:
    check(post(client, path, *body))


def test_a_registration_can_be_undone_after_fuzzing(client: httpx.Client, up: Process) -> None:
    """The fuzzed routes still do their job, and nothing crashed on the way."""
    registered = client.post("/v1/events/fuzz/subscribers", json={"client_id": "after-fuzz"})
    assert registered.status_code == 201, registered.text
    token = registered.json().get("token")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    removed = client.delete("/v1/events/fuzz/subscribers/after-fuzz", headers=headers)
    assert removed.status_code == 204
    accepted = client.post("/v1/events/fuzz/reactions", json={"user_id": "u", "emoji": "🔥"})
    assert accepted.status_code == 202
    assert_no_crash_logged(up)


def test_known_crashers_are_refused_cleanly(client: httpx.Client, up: Process) -> None:
    """What the fuzzing found once, kept as plain examples."""
    cases = [
        ("/v1/events/fuzz/reactions", "application/json", b"[" * 100_000),
        ("/send_emoji", "application/json", b'{"a":' * 100_000),
        ("/v1/events/fuzz/subscribers", "application/json", b"[" * 4000),
        ("/register", "application/json", b"[" * 4000),
    ]
    for path, content_type, body in cases:
        response = post(client, path, content_type, body)
        check(response)
        assert response.status_code in (400, 413), response.text
    assert_no_crash_logged(up)
