"""Rate limits: token buckets and the client address (pure), then two real ingest processes
sharing one user's limit through Redis."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from emostream.errors import RateLimited
from emostream.ingest.limits import RateLimiter, TrustedProxies, WindowCounts

from .conftest import ProcessFactory


def test_a_window_holds_one_burst_and_a_new_window_starts_over() -> None:
    counts = WindowCounts("user", rate=10, burst=20)  # windows of 2 s
    assert counts.take(["u"] * 20, now_s=100.0) == 0
    assert counts.take(["u"], now_s=100.5) == pytest.approx(1.5), "until the window ends"
    assert counts.take(["u"] * 20, now_s=102.0) == 0, "the next window"


def test_a_request_is_counted_for_every_user_or_for_none() -> None:
    counts = WindowCounts("user", rate=1, burst=3)
    assert counts.take(["a", "a", "a"], now_s=0.0) == 0
    assert counts.take(["b", "a"], now_s=0.0) > 0
    assert counts.take(["b", "b", "b"], now_s=0.0) == 0, "b was not counted when a was refused"


def test_heavy_keys_are_reported_and_what_others_counted_is_counted_here() -> None:
    counts = WindowCounts("user", rate=10, burst=100)  # noticeable from 10
    counts.take(["light"] * 5 + ["heavy"] * 30, now_s=0.0)
    assert counts.to_report() == [("heavy", 30)]
    counts.synced(counts.window, "heavy", reported=30, total=90)  # others counted 60
    assert counts.to_report() == []
    assert counts.take(["heavy"] * 11, now_s=0.0) > 0, "30 + 60 + 11 passes 100"
    assert counts.take(["heavy"] * 10, now_s=0.0) == 0


def test_the_limiter_refuses_with_retry_after_and_the_field() -> None:
    limiter = RateLimiter(user_rate=1, user_burst=2, ip_rate=0, ip_burst=1)
    limiter.check_users(["u", "u"])
    with pytest.raises(RateLimited) as refused:
        limiter.check_users(["u"])
    assert refused.value.field == "user_id"
    assert 1 <= int(refused.value.headers()["Retry-After"]) <= 2, "the rest of a 2 s window"
    limiter.check_address("10.0.0.1")  # the address limit is off: never refused


def test_the_client_address_comes_from_trusted_proxies_only() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    assert proxies.client("127.0.0.1", "203.0.113.9, 10.1.2.3") == "203.0.113.9"
    assert proxies.client("198.51.100.7", "203.0.113.9") == "198.51.100.7", "not a proxy"
    assert proxies.client("127.0.0.1", None) == "127.0.0.1"
    assert TrustedProxies([]).client("127.0.0.1", "203.0.113.9") == "127.0.0.1"


RATE, BURST, SECONDS = 100, 100, 5.0


@pytest.mark.anyio
@pytest.mark.e2e
async def test_two_ingest_processes_share_one_users_limit(processes: ProcessFactory) -> None:
    """One user sends at twice the limit, half through each ingest process; another user
    sends well under it alongside. Together the processes accept about one bucket's worth."""
    env = {"EMOSTREAM_USER_RATE": str(RATE), "EMOSTREAM_USER_BURST": str(BURST)}
    ingests = processes.start_many([("ingest", env), ("ingest", env)])
    accepted = {"flood": 0, "normal": 0}
    refused = {"flood": 0, "normal": 0}

    async def send(client: httpx.AsyncClient, url: str, user: str, per_request: int) -> None:
        body = [{"user_id": user, "emoji": "🔥"}] * per_request
        response = await client.post(f"{url}/v1/events/limits/reactions", json=body)
        if response.status_code == 202:
            accepted[user] += per_request
        else:
            assert response.status_code == 429, response.text
            assert response.json()["error"]["field"] == "user_id"
            assert int(response.headers["retry-after"]) >= 1
            refused[user] += per_request

    async with httpx.AsyncClient(timeout=5.0) as client:
        started = time.monotonic()
        tick = 0
        while time.monotonic() - started < SECONDS:
            # Every 50 ms: 5 reactions through each process (2 x 100/s), and one normal user
            # sending 2 reactions a second through the first.
            sends = [send(client, ingest.url, "flood", 5) for ingest in ingests]
            if tick % 10 == 0:
                sends.append(send(client, ingests[0].url, "normal", 1))
            await asyncio.gather(*sends)
            tick += 1
            await asyncio.sleep(max(0, started + tick * 0.05 - time.monotonic()))
        elapsed = time.monotonic() - started
    allowed = RATE * elapsed + BURST
    assert refused["normal"] == 0 and accepted["normal"] > 0
    assert refused["flood"] > 0
    assert accepted["flood"] <= 1.2 * allowed, (accepted, allowed)
    print(
        f"flood accepted {accepted['flood']} of {accepted['flood'] + refused['flood']}, "
        f"one bucket allows {allowed:.0f}: {accepted['flood'] / allowed:.2f}x"
    )
