"""The seed's own clients against `emostream up`, through real HTTP: what its generator, its
tests and its client send to `/send_emoji` gets 200 and is counted exactly, per emoji; its
`/register` and `/unregister` round trip; v1 keeps its strict ts rule."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from .conftest import Process, ProcessFactory
from .test_http_errors import wait_for_total

pytestmark = pytest.mark.e2e

HEART = "❤️"
EYE_IN_SPEECH = "\U0001f441\ufe0f\u200d\U0001f5e8\ufe0f"


def post_like_requests(url: str, payload: Any) -> httpx.Response:
    """What ``requests.post(url, json=payload)`` sends: ASCII-escaped JSON, no charset."""
    body = json.dumps(payload, allow_nan=False).encode()
    return httpx.post(url, content=body, headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def up(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    import redis

    if redis_server.process is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    factory = ProcessFactory(redis_server.url, str(tmp_path_factory.mktemp("seed")))
    try:
        # Every emoji of a window in its top, so the counts can be compared whole.
        yield factory.role("up", EMOSTREAM_TOP_N="20")
    finally:
        factory.stop_all()


def test_the_seed_clients_get_200_and_every_reaction_is_counted_once(up: Process) -> None:
    rng = random.Random(15)
    sent: list[tuple[Any, str]] = []  # (payload, the emoji it must be counted as)
    # The seed's generator: string user ids, datetime.now().isoformat() (no zone).
    for i in range(40):
        emoji = rng.choice([HEART, "🔥", "😂", "👏"])
        now = datetime.now().isoformat()
        sent.append(({"user_id": f"user_{i % 7}", "emoji_type": emoji, "timestamp": now}, emoji))
    # The seed's tests: numeric user ids.
    for user in (1, 2, 3):
        sent.append(({"user_id": user, "emoji_type": "🔥", "timestamp": time.time()}, "🔥"))
    # Its client: str(datetime) with a space, epochs in seconds and in ms, an int id.
    sent += [
        ({"user_id": 7, "emoji_type": "😂", "timestamp": str(datetime.now())}, "😂"),
        ({"user_id": 8, "emoji_type": "👏", "timestamp": int(time.time() * 1000)}, "👏"),
        ({"user_id": 9, "emoji_type": HEART, "timestamp": int(time.time())}, HEART),
        ({"user_id": 10, "emoji_type": "🔥"}, "🔥"),
    ]
    # Other forms of the same emojis count with their fully-qualified twins.
    sent += [
        ({"user_id": "twin-1", "emoji_type": "\u2764"}, HEART),
        ({"user_id": "twin-2", "emoji_type": "\u2764\ufe0e"}, HEART),
        ({"user_id": "twin-3", "emoji_type": "🔥\ufe0f"}, "🔥"),
        ({"user_id": "twin-4", "emoji_type": "\U0001f441\u200d\U0001f5e8"}, EYE_IN_SPEECH),
        ({"user_id": "twin-5", "emoji_type": EYE_IN_SPEECH}, EYE_IN_SPEECH),
    ]
    for payload, _emoji in sent:
        response = post_like_requests(f"{up.url}/send_emoji", payload)
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": 1, "ts_dropped": 0}
    batch = [{"user_id": 11, "emoji_type": "😂"}, {"user_id": 12, "emoji_type": "😂"}]
    response = post_like_requests(f"{up.url}/send_emoji", batch)
    assert (response.status_code, response.json()) == (200, {"accepted": 2, "ts_dropped": 0})
    expected = Counter(emoji for _payload, emoji in sent) + Counter({"😂": 2})

    windows = wait_for_total(up, "live", expected.total())
    counted: Counter[str] = Counter()
    for window in windows:
        counted.update({item["emoji"]: item["count"] for item in window["top"]})
    assert counted == expected
    assert sum(window["total"] for window in windows) == expected.total()


def test_an_unreadable_timestamp_is_dropped_and_reported_not_refused(up: Process) -> None:
    payloads = [
        {"user_id": 1, "emoji_type": "🔥", "timestamp": "tomorrow at noon", "event_id": "drops"},
        {"user_id": 2, "emoji_type": "🔥", "timestamp": -1, "event_id": "drops"},
        {"user_id": 3, "emoji_type": "🔥", "timestamp": [2026], "event_id": "drops"},
    ]
    for payload in payloads:
        response = post_like_requests(f"{up.url}/send_emoji", payload)
        assert (response.status_code, response.json()) == (200, {"accepted": 1, "ts_dropped": 1})
    windows = wait_for_total(up, "drops", 3)
    assert sum(window["total"] for window in windows) == 3
    # A bad user id or emoji is still refused, in the one error shape, under the seed's names.
    refused = post_like_requests(f"{up.url}/send_emoji", {"user_id": 1.5, "emoji_type": "🔥"})
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "user_id"


def test_v1_keeps_its_strict_ts_rule(up: Process) -> None:
    url = f"{up.url}/v1/events/strict/reactions"
    lower = {"user_id": "u1", "emoji": "🔥", "ts": "2026-11-22t12:00:00.250z"}
    assert post_like_requests(url, lower).status_code == 202
    for ts in ("2026-11-27T14:50:00.123456", 1795348800250, -1, "0001-01-01T00:00:00Z"):
        response = post_like_requests(url, {"user_id": "u1", "emoji": "🔥", "ts": ts})
        assert response.status_code == 422 and response.json()["error"]["field"] == "ts"


def test_register_and_unregister_round_trip(up: Process) -> None:
    registered = post_like_requests(f"{up.url}/register", {"user_id": 17, "group_id": "default"})
    assert registered.status_code == 200, registered.text
    assignment = registered.json()
    assert assignment["client_id"] == assignment["user_id"] == "17"
    assert assignment["cluster"] == assignment["group_id"] == "default"
    assert assignment["event_id"] == "live"
    assert assignment["stream_url"] == f"{up.url}/v1/events/live/stream"
    with httpx.stream("GET", assignment["stream_url"], timeout=5.0) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")

    left = post_like_requests(f"{up.url}/unregister", {"user_id": 17, "group_id": "default"})
    assert (left.status_code, left.json()["unregistered"]) == (200, True)
    again = post_like_requests(f"{up.url}/unregister", {"user_id": 17})
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"

    # The same registry as the subscribers API, either way round, for any event.
    post_like_requests(f"{up.url}/register", {"user_id": "viewer-9", "event_id": "final"})
    assert httpx.delete(f"{up.url}/v1/events/final/subscribers/viewer-9").status_code == 204
    # A registration made through the subscribers API keeps its token: /unregister needs it.
    made = httpx.post(f"{up.url}/v1/events/final/subscribers", json={"client_id": "viewer-10"})
    leave = {"user_id": "viewer-10", "event_id": "final"}
    refused = post_like_requests(f"{up.url}/unregister", leave)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    left = httpx.post(f"{up.url}/unregister", json=leave, headers=bearer)
    assert left.status_code == 200


@pytest.mark.parametrize(
    ("path", "payload", "status", "field"),
    [
        ("/register", {"group_id": "default"}, 422, "user_id"),
        ("/register", {"user_id": "has space"}, 422, "user_id"),
        ("/register", {"user_id": 1, "group_id": "no such group"}, 422, "group_id"),
        ("/register", {"user_id": 1, "event_id": "a b"}, 422, "event_id"),
        ("/register", [1], 400, None),
        ("/unregister", {"user_id": True}, 422, "user_id"),
    ],
)
def test_bad_registrations_get_the_one_error_shape(
    up: Process, path: str, payload: Any, status: int, field: str | None
) -> None:
    response = post_like_requests(f"{up.url}{path}", payload)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_a_group_no_node_joined_is_refused_as_the_clients_mistake(up: Process) -> None:
    """No 5xx for what a client sent: a group no node ever joined is a 422 (a known group
    whose nodes are all gone is a 503, tests/test_operator_access.py)."""
    response = post_like_requests(f"{up.url}/register", {"user_id": 1, "group_id": "group_2"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unknown_cluster", "group_id")


def test_a_seed_registration_is_open_and_cannot_take_over_a_held_id(up: Process) -> None:
    """The seed's protocol has no token: what /register made anyone may make again or
    remove, as in the seed; an id held through the subscribers API stays its holder's."""
    first = post_like_requests(f"{up.url}/register", {"user_id": "seed-7"})
    again = post_like_requests(f"{up.url}/register", {"user_id": "seed-7"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert "token" not in again.json()
    held = httpx.post(f"{up.url}/v1/events/live/subscribers", json={"client_id": "held-7"})
    assert held.status_code == 201
    taken = post_like_requests(f"{up.url}/register", {"user_id": "held-7"})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "client_id_taken"
    assert httpx.delete(f"{up.url}/v1/events/live/subscribers/seed-7").status_code == 204
