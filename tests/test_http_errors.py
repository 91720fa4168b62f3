"""Bad input through real HTTP: the documented 4xx JSON error, never a 500, and the valid
reactions sent alongside are counted exactly."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest

from .conftest import Process, ProcessFactory

pytestmark = pytest.mark.e2e

GOOD = {"user_id": "u-1", "emoji": "🔥"}
JSON = {"Content-Type": "application/json"}
R = "/v1/events/errors/reactions"

# (method, path, headers, body, status, code, field)
CASES: list[tuple[str, str, dict[str, str], bytes, int, str, str | None]] = [
    ("POST", R, JSON, b'{"user_id": "u1", "emoji": ', 400, "malformed", None),
    ("POST", R, JSON, b"\xff\xfe\x00", 400, "malformed", None),
    ("POST", R, JSON, b'"a string"', 400, "malformed", None),
    ("POST", R, JSON, b"[]", 400, "malformed", None),
    (
        "POST",
        R,
        {"Content-Type": "text/plain"},
        '{"user_id":"u","emoji":"🔥"}'.encode(),
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    (
        "POST",
        R,
        {},
        '{"user_id":"u","emoji":"🔥"}'.encode(),
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    ("POST", R, JSON, b'{"emoji": "\xf0\x9f\x94\xa5"}', 422, "missing_field", "user_id"),
    (
        "POST",
        R,
        JSON,
        b'{"user_id": "' + b"u" * 65 + b'", "emoji": "x"}',
        422,
        "invalid_field",
        "user_id",
    ),
    ("POST", R, JSON, b'{"user_id": "has space", "emoji": "x"}', 422, "invalid_field", "user_id"),
    ("POST", R, JSON, b'{"user_id": "u1"}', 422, "missing_field", "emoji"),
    ("POST", R, JSON, '{"user_id": "u1", "emoji": "🔥🔥"}'.encode(), 422, "invalid_field", "emoji"),
    ("POST", R, JSON, b'{"user_id": "u1", "emoji": "fire"}', 422, "invalid_field", "emoji"),
    ("POST", R, JSON, b'{"user_id": "u1", "emoji": ""}', 422, "invalid_field", "emoji"),
    (
        "POST",
        R,
        JSON,
        '{"user_id": "u1", "emoji": "🔥", "ts": "later"}'.encode(),
        422,
        "invalid_field",
        "ts",
    ),
    (
        "POST",
        R,
        JSON,
        ('[{"user_id": "u1", "emoji": "🔥"}, {"user_id": "u2", "emoji": "ab"}]').encode(),
        422,
        "invalid_field",
        "[1].emoji",
    ),
    (
        "POST",
        R,
        JSON,
        ("[" + ",".join(['{"user_id":"u","emoji":"🔥"}'] * 501) + "]").encode(),
        413,
        "too_many_reactions",
        None,
    ),
    (
        "POST",
        R,
        JSON,
        b'{"user_id": "u1", "emoji": "' + b"x" * 300_000 + b'"}',
        413,
        "too_large",
        None,
    ),
    (
        "POST",
        "/v1/events/bad!id/reactions",
        JSON,
        b'{"user_id":"u","emoji":"x"}',
        422,
        "invalid_field",
        "event_id",
    ),
    (
        "POST",
        "/v1/events/" + "e" * 65 + "/reactions",
        JSON,
        b"{}",
        422,
        "invalid_field",
        "event_id",
    ),
    (
        "POST",
        "/send_emoji",
        JSON,
        '{"user_id": "u1", "emoji_type": "🔥🔥"}'.encode(),
        422,
        "invalid_field",
        "emoji_type",
    ),
    (
        "POST",
        "/send_emoji",
        JSON,
        '{"user_id": "u1", "emoji_type": "🔥", "event_id": "a b"}'.encode(),
        422,
        "invalid_field",
        "event_id",
    ),
    (
        "POST",
        "/v1/events/errors/reactions",
        {"Content-Type": "application/msgpack"},
        b"\xc1",
        400,
        "malformed",
        None,
    ),
    ("GET", R, {}, b"", 405, "method_not_allowed", None),
    ("GET", "/nowhere", {}, b"", 404, "not_found", None),
    ("GET", "/v1/events/errors/windows?after=-1", {}, b"", 422, "invalid_field", "after"),
    ("GET", "/v1/events/errors/windows?limit=abc", {}, b"", 422, "invalid_field", "limit"),
    ("GET", "/v1/events/errors/windows?limit=", {}, b"", 422, "invalid_field", "limit"),
    ("GET", "/v1/events/bad!id/windows", {}, b"", 422, "invalid_field", "event_id"),
    (
        "GET",
        "/v1/events/errors/stream",
        {"Last-Event-ID": "yesterday"},
        b"",
        422,
        "invalid_field",
        "Last-Event-ID",
    ),
]

VALID: list[tuple[dict[str, str], bytes, int]] = [
    (JSON, b'{"user_id": "v1", "emoji": "\xf0\x9f\x94\xa5"}', 1),
    (JSON, '[{"user_id": "v2", "emoji": "😂"}, {"user_id": "v3", "emoji": "❤"}]'.encode(), 2),
    (
        {"Content-Type": "application/msgpack"},
        msgpack.packb([{"user_id": "v4", "emoji": "🔥", "ts": 1795000000.5}]),
        1,
    ),
    (
        {"Content-Type": "application/json; charset=utf-8"},
        '{"user_id": "v5", "emoji": "👍🏽", "ts": "2026-11-22T12:00:00.250Z"}'.encode(),
        1,
    ),
]


@pytest.fixture(scope="module")
def up(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    import redis

    if redis_server.process is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    factory = ProcessFactory(redis_server.url, str(tmp_path_factory.mktemp("errors")))
    try:
        yield factory.role("up")
    finally:
        factory.stop_all()


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "code", "field"), CASES)
def test_bad_input_gets_a_clear_json_error(
    up: Process,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    code: str,
    field: str | None,
) -> None:
    response = httpx.request(method, f"{up.url}{path}", headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert isinstance(error["message"], str) and error["message"]


def test_seed_alias_counts_under_the_default_event(up: Process) -> None:
    response = httpx.post(
        f"{up.url}/send_emoji",
        json={"user_id": "seed-1", "emoji_type": "🔥", "timestamp": "2026-11-22T12:00:00Z"},
    )
    assert response.status_code == 200 and response.json() == {"accepted": 1, "ts_dropped": 0}
    windows = wait_for_total(up, "live", 1)
    assert [item["emoji"] for w in windows for item in w["top"]] == ["🔥"]


def test_any_origin_may_send_reactions(up: Process) -> None:
    for path in ("/v1/events/cors/reactions", "/send_emoji"):
        preflight = httpx.options(
            f"{up.url}{path}",
            headers={
                "Origin": "https://embedder.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        # authorization: a page sending with a signed user token (EMOSTREAM_TOKEN_SECRET)
        assert preflight.headers["access-control-allow-headers"] == "content-type, authorization"
    headers = {"Origin": "https://embedder.example"}
    accepted = httpx.post(
        f"{up.url}/v1/events/cors/reactions", json={"user_id": "u", "emoji": "🔥"}, headers=headers
    )
    refused = httpx.post(f"{up.url}/v1/events/cors/reactions", json={}, headers=headers)
    # Both answers are readable by the other origin's script, the error too.
    assert accepted.status_code == 202 and refused.status_code == 422
    assert accepted.headers["access-control-allow-origin"] == "*"
    assert refused.headers["access-control-allow-origin"] == "*"


def test_valid_reactions_sent_alongside_are_all_counted(up: Process) -> None:
    """Every bad request again, each after a valid one, all on the event `mixed`."""
    expected = 0
    for index, (method, path, headers, body, status, _code, _field) in enumerate(CASES):
        valid_headers, valid_body, count = VALID[index % len(VALID)]
        ok = httpx.post(
            f"{up.url}/v1/events/mixed/reactions", headers=valid_headers, content=valid_body
        )
        assert ok.status_code == 202
        expected += count
        bad_path = path.replace("/errors/", "/mixed/")
        bad = httpx.request(method, f"{up.url}{bad_path}", headers=headers, content=body)
        assert bad.status_code == status
    windows = wait_for_total(up, "mixed", expected)
    assert sum(w["total"] for w in windows) == expected
    assert sum(item["count"] for w in windows for item in w["top"]) == expected


def wait_for_total(up: Process, event: str, expected: int) -> list[dict[str, Any]]:
    """Poll the history until ``expected`` reactions are counted, then one more window to see
    that nothing beyond them was."""
    deadline = time.monotonic() + 20
    windows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        windows = httpx.get(f"{up.url}/v1/events/{event}/windows?limit=1000").json()
        if sum(w["total"] for w in windows) >= expected:
            break
        time.sleep(0.2)
    last_seq = windows[-1]["seq"] if windows else 0
    while time.monotonic() < deadline:
        more = httpx.get(f"{up.url}/v1/events/{event}/windows?after={last_seq}").json()
        if more:
            windows += more
            break
        time.sleep(0.2)
    return windows


def test_content_headers_are_read_as_written(up: Process) -> None:
    """Two Content-Type headers are a 400 (which one was meant?), a compressed body a 415
    (it would be read as plain), JSON in any charset but UTF-8 a 415; UTF-8 said aloud is
    fine."""
    url = f"{up.url}{R}"
    body = json.dumps(GOOD).encode()
    cases: list[tuple[list[tuple[str, str]], int, str, str]] = [
        (
            [("Content-Type", "application/json"), ("Content-Type", "text/plain")],
            400,
            "malformed",
            "Content-Type",
        ),
        (
            [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            415,
            "unsupported_media_type",
            "Content-Encoding",
        ),
        (
            [("Content-Type", "application/json; charset=iso-8859-1")],
            415,
            "unsupported_media_type",
            "Content-Type",
        ),
    ]
    for headers, status, code, field in cases:
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == status, (headers, response.text)
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["field"] == field
    for spelled in ("application/json; charset=utf-8", 'application/json; charset="UTF-8"'):
        response = httpx.post(url, content=body, headers={"Content-Type": spelled})
        assert response.status_code == 202, (spelled, response.text)
