"""Polls end to end with real processes: HTTP votes through two ingest processes, a worker,
`poll` frames on the event's SSE stream, the frozen result, `emostream recount`, a trivia
round, and who may call what."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import httpx
import jwt
import pytest
import redis

from emostream import keys

from .conftest import Process, ProcessFactory

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ADMIN = "admin-secret-token"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
FAST = {
    "EMOSTREAM_ADMIN_TOKEN": ADMIN,
    "EMOSTREAM_FLUSH_INTERVAL_MS": "100",
    "EMOSTREAM_POLL_LOCK_GRACE_MS": "300",
    "EMOSTREAM_POLL_CACHE_MS": "100",
}


def poll_url(base: str, event: str, poll: str, tail: str = "") -> str:
    return f"{base}/v1/events/{event}/polls/{poll}{tail}"


@contextlib.asynccontextmanager
async def sse_lines(url: str) -> AsyncIterator[list[str]]:
    """Every line of an SSE stream, collected in the background while the block runs."""
    lines: list[str] = []
    opened = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=60.0)) as client,
            client.stream("GET", url) as response,
        ):
            opened.set()
            async for line in response.aiter_lines():
                lines.append(line)

    task = asyncio.create_task(read())
    await asyncio.wait_for(opened.wait(), 10)
    try:
        yield lines
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


def poll_frames(lines: list[str]) -> list[dict[str, Any]]:
    from emostream.deliver.frames import poll_events

    return poll_events(list(lines))


async def wait_for(check: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_a_poll_runs_end_to_end_through_http_and_sse(processes: ProcessFactory) -> None:
    ingests = processes.start_many([("ingest", FAST), ("ingest", FAST)])
    processes.role("worker", **FAST)
    delivery = processes.role("delivery", **FAST)
    event, poll = "match-7", "mvp"
    rng = random.Random(11)
    choice = {f"user-{i}": rng.choice(["Kohli", "Rohit", "Bumrah"]) for i in range(60)}
    async with (
        httpx.AsyncClient(timeout=30.0) as client,
        sse_lines(f"{delivery.url}/v1/events/{event}/stream") as lines,
    ):
        definition = {"question": "Player of the match?", "options": ["Kohli", "Rohit", "Bumrah"]}
        created = await client.put(
            poll_url(ingests[0].url, event, poll), json=definition, headers=AUTH
        )
        assert created.status_code == 201, created.text
        replaced = await client.put(
            poll_url(ingests[1].url, event, poll), json=definition, headers=AUTH
        )
        assert replaced.status_code == 200 and replaced.json()["state"] == "draft"
        early = await client.post(
            poll_url(ingests[0].url, event, poll, "/votes"),
            json={"user_id": "u", "option": "Kohli"},
        )
        assert early.status_code == 409 and early.json()["error"]["code"] == "poll_not_open"
        opened = await client.post(poll_url(ingests[0].url, event, poll, "/open"), headers=AUTH)
        assert opened.status_code == 200 and opened.json()["state"] == "open"
        await asyncio.sleep(0.2)  # the other process's copy of the poll expires

        async def vote(user: str, option: str, ingest: Process) -> None:
            url = poll_url(ingest.url, event, poll, "/votes")
            response = await client.post(url, json={"user_id": user, "option": option})
            assert response.status_code == 202 and response.json() == {"accepted": 1}

        # Every user votes three times through both processes at once: counted once each.
        for _ in range(3):
            await asyncio.gather(
                *(
                    vote(user, option, ingest)
                    for user, option in choice.items()
                    for ingest in ingests
                )
            )
        sent = Counter(choice.values())
        live = await wait_for(
            lambda: [p for p in poll_frames(lines) if p.get("total") == len(choice)], 15
        )
        assert {o["option"]: o["votes"] for o in live[-1]["options"]} == dict(sent)
        for url, body, status, code in [
            (
                poll_url(ingests[0].url, event, poll, "/votes"),
                {"user_id": "u", "option": "Dhoni"},
                422,
                "invalid_field",
            ),
            (
                poll_url(ingests[0].url, event, "nope", "/votes"),
                {"user_id": "u", "option": "Kohli"},
                404,
                "not_found",
            ),
        ]:
            response = await client.post(url, json=body)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)

        locked = await client.post(poll_url(ingests[1].url, event, poll, "/lock"), headers=AUTH)
        assert locked.status_code == 200, locked.text
        frozen = locked.json()
        assert (
            frozen["state"] == "locked"
            and frozen["frozen"]
            and frozen["audit"].startswith("sha256:")
        )
        assert {o["option"]: o["votes"] for o in frozen["options"]} == dict(sent)
        assert frozen["total"] == len(choice)
        after = await client.post(
            poll_url(ingests[0].url, event, poll, "/votes"),
            json={"user_id": "late", "option": "Rohit"},
        )
        assert after.status_code == 409 and after.json()["error"]["code"] == "poll_not_open"
        again = await client.post(poll_url(ingests[0].url, event, poll, "/open"), headers=AUTH)
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"

        public = (await client.get(poll_url(delivery.url, event, poll))).json()
        assert public["audit"] == frozen["audit"] and public["total"] == len(choice)
        mine = await client.get(poll_url(delivery.url, event, poll, "/votes/user-3"))
        assert mine.json() == {"user_id": "user-3", "options": [choice["user-3"]]}
        assert (
            await client.get(poll_url(delivery.url, event, poll, "/votes/late"))
        ).status_code == 404

        recounted = subprocess.run(
            [sys.executable, "-m", "emostream", "recount", event, poll],
            env=processes.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert recounted.returncode == 0, recounted.stdout + recounted.stderr
        assert "agree" in recounted.stdout and frozen["audit"] in recounted.stdout

        for action, state in (("reveal", "revealed"), ("close", "closed")):
            response = await client.post(
                poll_url(ingests[0].url, event, poll, f"/{action}"), headers=AUTH
            )
            assert response.status_code == 200 and response.json()["state"] == state
        await wait_for(lambda: any(p["state"] == "closed" for p in poll_frames(lines)))
    frames = poll_frames(lines)
    assert not any(p.get("_id") for p in frames), "poll frames carry no id: line"
    states = [p["state"] for p in frames]
    assert {"open", "locked", "revealed", "closed"} <= set(states), states
    versions = [p["version"] for p in frames]
    assert versions == sorted(versions)

    # A tampered result makes the recount fail.
    store = redis.Redis.from_url(processes.redis_url)
    store.hset(keys.poll(keys.shard_of(event, 2), event, poll), "result", '{"Kohli": 1}')
    store.close()
    recounted = subprocess.run(
        [sys.executable, "-m", "emostream", "recount", event, poll],
        env=processes.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert recounted.returncode == 1 and "DIFFER" in recounted.stdout


def model_points(elapsed_ms: int, window_ms: int) -> int:
    """The test's own model of trivia points: 1000 at the open, 500 at the window's end,
    linear between, rounded half up."""
    elapsed = min(max(elapsed_ms, 0), window_ms)
    exact = 1000 - Fraction(500 * elapsed, window_ms)
    return int(exact + Fraction(1, 2)) if exact.denominator != 1 else int(exact)


async def test_a_trivia_round_scores_and_ranks_as_the_model(processes: ProcessFactory) -> None:
    up = processes.role("up", **FAST)
    event = "quiz-night"
    store = redis.Redis.from_url(processes.redis_url)
    shard = keys.shard_of(event, 2)
    expected: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=30.0) as client:
        for round_, (answer, given_at_creation) in enumerate([("Paris", True), ("Lima", False)]):
            poll = f"q{round_}"
            body: dict[str, Any] = {
                "question": "Capital?",
                "options": ["Paris", "Lima", "Oslo"],
                "kind": "trivia",
                "results": "on_reveal",
                "duration_s": 4,
            }
            if given_at_creation:
                body["answer"] = answer
            assert (
                await client.put(poll_url(up.url, event, poll), json=body, headers=AUTH)
            ).status_code == 201
            assert (
                await client.post(poll_url(up.url, event, poll, "/open"), headers=AUTH)
            ).status_code == 200
            await asyncio.sleep(0.15)
            for i in range(8):
                user = f"player-{i}"
                option = answer if i % 3 else "Oslo"
                response = await client.post(
                    poll_url(up.url, event, poll, "/votes"),
                    json={"user_id": user, "option": option},
                )
                assert response.status_code == 202
                await asyncio.sleep(0.25)
            hidden = (await client.get(poll_url(up.url, event, poll))).json()
            assert "total" not in hidden and "answer" not in hidden, "hidden until the reveal"
            assert "total" in (await client.get(poll_url(up.url, event, poll), headers=AUTH)).json()
            locked = await client.post(poll_url(up.url, event, poll, "/lock"), headers=AUTH)
            assert locked.json()["frozen"] and locked.json()["total"] == 8
            reveal = {} if given_at_creation else {"answer": answer}
            revealed = await client.post(
                poll_url(up.url, event, poll, "/reveal"), json=reveal, headers=AUTH
            )
            assert revealed.status_code == 200, revealed.text
            revealed_poll = revealed.json()
            assert revealed_poll["answer"] == answer
            # The model, from what the server recorded: the open and each answer's receive time.
            opened_ms = int(store.hget(keys.poll(shard, event, poll), "opened_ms"))  # type: ignore[arg-type]
            times: Any = store.hgetall(keys.poll_times(shard, event, poll))
            for i in range(8):
                if i % 3:
                    user = f"player-{i}"
                    expected[user] += model_points(int(times[user.encode()]) - opened_ms, 4000)
            board = (await client.get(f"{up.url}/v1/events/{event}/leaderboard?limit=100")).json()
            assert {e["user_id"]: e["points"] for e in board} == dict(expected)
            # Equal points share a rank: one more than the players with more points.
            ranks = [1 + sum(p > e["points"] for p in expected.values()) for e in board]
            assert [e["rank"] for e in board] == ranks
            assert [e["points"] for e in board] == sorted(expected.values(), reverse=True)
            assert revealed_poll["leaderboard"] == board[:10]
        first = board[0]
        mine = (
            await client.get(f"{up.url}/v1/events/{event}/leaderboard/{first['user_id']}")
        ).json()
        assert mine == first
        assert (
            await client.get(f"{up.url}/v1/events/{event}/leaderboard/player-0")
        ).status_code == 404
    store.close()


def user_token(secret: str, **claims: Any) -> str:
    payload = {"sub": "viewer-1", "aud": "emostream", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


async def test_user_tokens_and_the_admin_token_are_enforced(processes: ProcessFactory) -> None:
    secret = "s" * 32
    up = processes.role("up", EMOSTREAM_TOKEN_SECRET=secret, **FAST)
    no_admin = processes.role("ingest")  # no admin token configured on this one
    event, poll = "secure", "p1"
    unsigned = jwt.encode(
        {"sub": "x", "aud": "emostream", "exp": time.time() + 300}, "", algorithm="none"
    )
    bad_tokens = {
        "missing": None,
        "forged": user_token("another-secret-of-32-characters!"),
        "expired": user_token(secret, exp=int(time.time()) - 60),
        "wrong audience": user_token(secret, aud="someone-else"),
        "alg none": unsigned,
        "not a jwt": "abc.def",
    }
    async with httpx.AsyncClient(timeout=30.0) as client:
        definition = {"question": "?", "options": ["A", "B"]}
        url = poll_url(up.url, event, poll)
        assert (await client.put(url, json=definition)).status_code == 401
        assert (
            await client.put(url, json=definition, headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        refused = await client.put(
            poll_url(no_admin.url, event, poll), json=definition, headers=AUTH
        )
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert (await client.put(url, json=definition, headers=AUTH)).status_code == 201
        assert (await client.post(f"{url}/open", headers=AUTH)).status_code == 200
        assert (await client.post(f"{url}/lock")).status_code == 401
        await asyncio.sleep(0.15)
        for name, token in bad_tokens.items():
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            for target, body in [
                (f"{url}/votes", {"user_id": "viewer-1", "option": "A"}),
                (f"{up.url}/v1/events/{event}/reactions", {"user_id": "viewer-1", "emoji": "🔥"}),
            ]:
                response = await client.post(target, json=body, headers=headers)
                assert response.status_code == 401, (name, target, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
        good = {"Authorization": f"Bearer {user_token(secret)}"}
        # The user is the token's subject, whatever the body says.
        response = await client.post(
            f"{url}/votes", json={"user_id": "someone", "option": "B"}, headers=good
        )
        assert response.status_code == 202
        reaction = await client.post(
            f"{up.url}/v1/events/{event}/reactions",
            json={"user_id": "x", "emoji": "🔥"},
            headers=good,
        )
        assert reaction.status_code == 202
        mine = await wait_for_ballot(client, f"{url}/votes/viewer-1", good)
        assert mine == {"user_id": "viewer-1", "options": ["B"]}
        other = await client.get(f"{url}/votes/someone", headers=good)
        assert other.status_code == 403


async def wait_for_ballot(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> Any:
    for _ in range(100):
        response = await client.get(url, headers=headers)
        if response.status_code == 200:
            return response.json()
        await asyncio.sleep(0.1)
    raise AssertionError("the vote was never recorded")


async def test_up_makes_an_admin_token_when_none_is_set(processes: ProcessFactory) -> None:
    up = processes.role("up")
    logged = [line for line in up.log().splitlines() if "admin token: " in line]
    assert logged, up.log()
    token = logged[0].rsplit("admin token: ", 1)[1].strip()
    url = poll_url(up.url, "demo", "p")
    definition = {"question": "?", "options": ["A", "B"]}
    async with httpx.AsyncClient(timeout=10.0) as client:
        assert (await client.put(url, json=definition)).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.put(url, json=definition, headers=headers)).status_code == 201
