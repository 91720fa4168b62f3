"""Least privilege in Redis: every role as a real process under its own ACL user
(emostream/acl.py), counting exactly end to end, and each user refused what its role never
does."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from emostream import acl, keys
from emostream.redis_server import PrivateRedis

from .conftest import ProcessFactory
from .test_e2e import check_pipeline
from .test_polls_e2e import AUTH, FAST, poll_url, wait_for

PASSWORDS = {role: secrets.token_hex(16) for role in acl.ROLES}


def command(client: redis.Redis, *args: str) -> Any:
    """A command as typed, its refusal raised as redis-py's error."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def server_version(client: redis.Redis) -> tuple[int, int]:
    info: Any = client.info("server")
    major, minor = str(info["redis_version"]).split(".")[:2]
    return int(major), int(minor)


def add_role_users(client: redis.Redis) -> None:
    """The README's ACL SETUSER lines, applied to the server ``client`` talks to."""
    version = server_version(client)
    for role in acl.ROLES:
        command(
            client,
            "ACL",
            "SETUSER",
            acl.user_name(role),
            *acl.rules(role, PASSWORDS[role], version),
        )


def role_url(server: PrivateRedis, role: str) -> str:
    return f"redis://{acl.user_name(role)}:{PASSWORDS[role]}@127.0.0.1:{server.port}/0"


@pytest.fixture(scope="module")
def acl_server() -> Iterator[PrivateRedis]:
    with PrivateRedis() as server:
        admin = redis.Redis.from_url(server.url)
        add_role_users(admin)
        admin.close()
        yield server


@pytest.fixture
def admin(acl_server: PrivateRedis) -> Iterator[redis.Redis]:
    """The default user (the operator): empties the server and reads its ACL LOG."""
    client = redis.Redis.from_url(acl_server.url)
    client.flushall()
    client.acl_log_reset()
    yield client
    client.close()


@pytest.fixture
def role_processes(acl_server: PrivateRedis, tmp_path: Path) -> Iterator[ProcessFactory]:
    factory = ProcessFactory(acl_server.url, str(tmp_path))
    yield factory
    factory.stop_all()


def refusals(admin: redis.Redis) -> list[str]:
    """What the server refused since the test began: user, reason, command or key."""
    entries: Any = admin.acl_log()
    return [f"{e['username']} {e['reason']} {e['object']} ({e['context']})" for e in entries]


def users_connected(admin: redis.Redis) -> set[str]:
    clients: Any = admin.client_list()
    return {client["user"] for client in clients}


@pytest.mark.anyio
@pytest.mark.e2e
async def test_every_role_counts_exactly_under_its_own_user(
    acl_server: PrivateRedis, admin: redis.Redis, role_processes: ProcessFactory
) -> None:
    ingest = role_processes.role("ingest", EMOSTREAM_REDIS_URL=role_url(acl_server, "ingest"))
    role_processes.role("worker", EMOSTREAM_REDIS_URL=role_url(acl_server, "worker"))
    delivery = role_processes.role("delivery", EMOSTREAM_REDIS_URL=role_url(acl_server, "delivery"))

    await check_pipeline(ingest.url, delivery.url, "acl-1")

    # The stats (delivery's reads of the workers, groups and shards) and a registration.
    stats = httpx.get(f"{delivery.url}/v1/stats")
    assert stats.status_code == 200, stats.text
    assert stats.json()["workers"], stats.text
    registered = httpx.post(f"{delivery.url}/v1/events/acl-1/subscribers", json={})
    assert registered.status_code == 201, registered.text
    token = registered.json()["token"]
    client_id = registered.json()["client_id"]
    gone = httpx.delete(
        f"{delivery.url}/v1/events/acl-1/subscribers/{client_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert gone.status_code == 204, gone.text

    assert users_connected(admin) >= {acl.user_name(role) for role in acl.ROLES}
    assert refusals(admin) == []


@pytest.mark.anyio
@pytest.mark.e2e
async def test_a_poll_runs_under_the_role_users(
    acl_server: PrivateRedis, admin: redis.Redis, role_processes: ProcessFactory
) -> None:
    """Poll admin calls and votes (ingest), the vote count, freeze and audit (worker), the
    poll read (delivery): the poll commands of each rule are the ones its role sends."""
    ingest = role_processes.role(
        "ingest", EMOSTREAM_REDIS_URL=role_url(acl_server, "ingest"), **FAST
    )
    role_processes.role("worker", EMOSTREAM_REDIS_URL=role_url(acl_server, "worker"), **FAST)
    delivery = role_processes.role(
        "delivery", EMOSTREAM_REDIS_URL=role_url(acl_server, "delivery"), **FAST
    )
    async with httpx.AsyncClient(timeout=30.0) as client:  # the lock answers once frozen
        url = poll_url(ingest.url, "acl-2", "mvp")
        made = await client.put(url, json={"question": "Who?", "options": ["a", "b"]}, headers=AUTH)
        assert made.status_code == 201, made.text
        assert (await client.post(f"{url}/open", headers=AUTH)).status_code == 200
        for user, option in [("u1", "a"), ("u2", "b"), ("u3", "a")]:
            voted = await client.post(f"{url}/votes", json={"user_id": user, "option": option})
            assert voted.status_code == 202, voted.text
        locked = await client.post(f"{url}/lock", headers=AUTH)
        assert locked.status_code == 200, locked.text

        def frozen() -> Any:
            read = httpx.get(poll_url(delivery.url, "acl-2", "mvp"), headers=AUTH)
            body = read.json()
            return body if read.status_code == 200 and body.get("frozen") else None

        poll = await wait_for(frozen)
    assert {o["option"]: o["votes"] for o in poll["options"]} == {"a": 2, "b": 1}
    assert poll["audit"]
    assert refusals(admin) == []


REFUSED_TO_ALL = [
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("CONFIG", "GET", "*"),
    ("CONFIG", "SET", "appendonly", "no"),
    ("KEYS", "*"),
    ("SCRIPT", "FLUSH"),
    ("CLIENT", "KILL", "TYPE", "normal"),
    ("BGSAVE",),
    ("ACL", "LIST"),
    ("SHUTDOWN", "NOSAVE"),
    ("EVAL", "return 1", "0"),
    ("MONITOR",),
]

RAW = keys.raw_stream(0)
STATE = keys.event_state(0, "live")

REFUSED = {
    # Delivery only reads the pipeline's keys: nothing appended, counted or acknowledged.
    "delivery": [
        ("XADD", RAW, "*", "b", "x"),
        ("XREADGROUP", "GROUP", keys.AGGREGATORS_GROUP, "c", "STREAMS", RAW, ">"),
        ("XACK", RAW, keys.AGGREGATORS_GROUP, "1-0"),
        ("EVALSHA", "0" * 40, "0"),
        ("PUBLISH", keys.WINDOWS_CHANNEL, "x"),
        ("HSET", STATE, "seq", "99"),  # a command it has, on a key it may only read
        ("SET", keys.window_total(0, "live", 0), "5"),
        ("DEL", RAW),
    ],
    # Ingest appends; it never reads the groups, acknowledges or deletes.
    "ingest": [
        ("XREADGROUP", "GROUP", keys.AGGREGATORS_GROUP, "c", "STREAMS", RAW, ">"),
        ("XACK", RAW, keys.AGGREGATORS_GROUP, "1-0"),
        ("XTRIM", RAW, "MAXLEN", "0"),
        ("DEL", RAW),
        ("SUBSCRIBE", keys.WINDOWS_CHANNEL),
        ("HSET", "elsewhere", "f", "v"),  # outside the prefix
        ("PUBLISH", "elsewhere", "x"),
    ],
    # The worker counts and closes; it never registers nodes or subscribes.
    "worker": [
        ("SUBSCRIBE", keys.WINDOWS_CHANNEL),
        ("SET", "elsewhere", "1"),
        ("XADD", "elsewhere", "*", "b", "x"),
        ("XGROUP", "DESTROY", RAW, keys.AGGREGATORS_GROUP),
    ],
}


@pytest.mark.parametrize("role", acl.ROLES)
def test_each_user_is_refused_what_its_role_never_does(
    acl_server: PrivateRedis, admin: redis.Redis, role: str
) -> None:
    admin.xadd(RAW, {"b": "seed"})
    admin.xgroup_create(RAW, keys.AGGREGATORS_GROUP, id="0")
    client = redis.Redis.from_url(role_url(acl_server, role))
    try:
        assert client.ping()
        for refused in [*REFUSED_TO_ALL, *REFUSED[role]]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                command(client, *refused)
    finally:
        client.close()
    assert admin.xlen(RAW) == 1
    assert admin.exists(STATE) == 0
    assert admin.xinfo_groups(RAW)[0]["name"] == keys.AGGREGATORS_GROUP.encode()


def test_the_readme_quotes_the_rules_of_the_code() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    quoted = re.findall(r"^\s*(ACL SETUSER .*)$", readme, re.MULTILINE)
    assert quoted == [acl.setuser_line(role, f"CHANGE-ME-{role}") for role in acl.ROLES]
