"""Who may do what, on real delivery processes: the admin token in front of /v1/stats, the
token a registration is given (and needed to undo or take it over), registrations limited
per client address, and the pages' framing and referrer headers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis as AsyncRedis

from emostream import keys
from emostream.auth import bearer_token
from emostream.deliver.admission import AddressBuckets
from emostream.deliver.app import create_delivery_app
from emostream.deliver.hub import Hub
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings

from .conftest import Process, ProcessFactory

ADMIN_TOKEN = "operator-secret-3f9a"
EVENT = "access"


@pytest.fixture(scope="module")
def delivery(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    if redis_server.process is None:
        redis_server.start()
    factory = ProcessFactory(redis_server.url, str(tmp_path_factory.mktemp("access")))
    env = {
        "EMOSTREAM_ADMIN_TOKEN": ADMIN_TOKEN,
        "EMOSTREAM_REGISTRATION_RATE_PER_S": "0.01",
        "EMOSTREAM_REGISTRATION_BURST": "8",
    }
    try:
        yield factory.role("delivery", **env)
    finally:
        factory.stop_all()


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.e2e
def test_stats_need_the_admin_token_once_one_is_configured(delivery: Process) -> None:
    stats = f"{delivery.url}/v1/stats"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    ):
        refused = httpx.get(stats, headers=headers)
        assert refused.status_code == 401, headers
        assert error_of(refused)["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    allowed = httpx.get(stats, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert allowed.status_code == 200 and "shards" in allowed.json()
    # The token is a secret: the settings line the process logs at start never shows it.
    assert ADMIN_TOKEN not in delivery.log()
    settings = Settings.from_env({"EMOSTREAM_ADMIN_TOKEN": ADMIN_TOKEN})
    assert settings.admin_token == ADMIN_TOKEN
    assert ADMIN_TOKEN not in repr(settings) and ADMIN_TOKEN not in settings.describe()


@pytest.mark.e2e
def test_a_registration_is_undone_only_with_its_token(delivery: Process, redis_server: Any) -> None:
    base = f"{delivery.url}/v1/events/{EVENT}/subscribers"
    registered = httpx.post(base, json={"client_id": "viewer-1"})
    assert registered.status_code == 201, registered.text
    token = registered.json()["token"]
    assert isinstance(token, str) and len(token) >= 32

    # Redis keeps the token's digest only.
    stored = sync_redis.Redis.from_url(redis_server.url).hget(
        keys.event_clients(keys.shard_of(EVENT, 2), EVENT), "viewer-1"
    )
    assert stored is not None and token.encode() not in stored
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored

    one = f"{base}/viewer-1"
    no_token = httpx.delete(one)
    assert no_token.status_code == 401 and error_of(no_token)["code"] == "unauthorized"
    wrong = httpx.delete(one, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403 and error_of(wrong)["code"] == "forbidden"

    # Nobody takes the client id over without its token; its holder may register again.
    taken = httpx.post(base, json={"client_id": "viewer-1"})
    assert taken.status_code == 409 and error_of(taken)["code"] == "client_id_taken"
    stolen = httpx.post(
        base, json={"client_id": "viewer-1"}, headers={"Authorization": "Bearer guess"}
    )
    assert stolen.status_code == 409
    again = httpx.post(
        base, json={"client_id": "viewer-1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert again.status_code == 201 and again.json()["token"] == token

    done = httpx.delete(one, headers={"Authorization": f"Bearer {token}"})
    assert done.status_code == 204
    gone = httpx.delete(one, headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 404 and error_of(gone)["code"] == "not_found"


@pytest.mark.e2e
def test_registrations_are_rate_limited_per_client_address(delivery: Process) -> None:
    """The bucket holds 8 here and refills at 1 per 100 s: the ninth registration from one
    address is refused (the other tests of this module took some of the 8 already)."""
    base = f"{delivery.url}/v1/events/{EVENT}/subscribers"
    answers = [httpx.post(base, json={}) for _ in range(9)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert all(a.status_code == 201 for a in answers[: answers.index(limited[0])])
    refused = limited[0]
    assert error_of(refused)["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # Another address has a bucket of its own (the loopback range is all this machine).
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with other:
        assert other.post(base, json={}).status_code == 201


def test_only_a_well_formed_bearer_token_is_read() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for header in (None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "Token abc"):
        assert bearer_token(header) is None, header


def test_address_buckets_refill_and_stay_bounded() -> None:
    now = [0.0]
    buckets = AddressBuckets(rate_per_s=2.0, burst=3, max_addresses=100, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5), "one token comes back in 1/rate s"
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0, "each address has its own bucket"
    now[0] += 10.0
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0], "refilled to the burst"
    for index in range(1000):
        buckets.take(f"10.0.{index // 256}.{index % 256}")
    assert len(buckets) == 100


def test_pages_may_not_be_framed_and_send_no_referrer() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0")

    async def fetch() -> list[httpx.Response]:
        hub = Hub(AsyncRedis.from_url(settings.redis_url or ""), settings, EmojiSwarmRule())
        transport = httpx.ASGITransport(app=create_delivery_app(settings, hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            pages = [await client.get(path) for path in ("/", "/events/x", "/dashboard")]
        await hub.redis.aclose()
        return pages

    for page in asyncio.run(fetch()):
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert ADMIN_TOKEN not in page.text


@pytest.mark.e2e
def test_an_unknown_cluster_is_the_clients_mistake_a_dead_one_is_ours(
    delivery: Process, redis_server: Any
) -> None:
    base = f"{delivery.url}/v1/events/{EVENT}/subscribers"
    # From an address of its own: the rate limit test above spent this address's bucket.
    client = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"))
    unknown = client.post(base, json={"cluster": "nowhere"})
    assert unknown.status_code == 422
    assert (error_of(unknown)["code"], error_of(unknown)["field"]) == ("unknown_cluster", "cluster")
    # A cluster whose nodes have all gone (they joined once) may come back: retry later.
    sync_redis.Redis.from_url(redis_server.url).sadd(keys.CLUSTERS, "ghosts")
    dead = client.post(base, json={"cluster": "ghosts"})
    client.close()
    assert dead.status_code == 503 and error_of(dead)["code"] == "no_live_node"
    assert int(dead.headers["retry-after"]) >= 1
