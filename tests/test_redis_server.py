"""The private redis-server: a data directory outlives it and is used by one server at a time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from emostream.errors import RedisServerError
from emostream.redis_server import PrivateRedis


def test_a_data_directory_keeps_its_data_and_is_never_removed(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "made-if-missing")
    with PrivateRedis(appendonly=True, directory=data_dir) as server:
        client = redis.Redis.from_url(server.url)
        client.set("kept", "yes")
        client.close()
    assert os.path.isdir(data_dir)
    with PrivateRedis(appendonly=True, directory=data_dir) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("kept") == b"yes"
        client.close()
    assert os.path.isdir(data_dir)


def test_a_temporary_directory_is_removed_with_its_server() -> None:
    server = PrivateRedis().start()
    assert os.path.isdir(server.directory)
    server.close()
    assert not os.path.exists(server.directory)


def test_two_servers_never_share_a_data_directory(tmp_path: Path) -> None:
    with PrivateRedis(appendonly=True, directory=str(tmp_path)):
        other = PrivateRedis(appendonly=True, directory=str(tmp_path))
        with pytest.raises(RedisServerError, match=f"{tmp_path} is in use by emostream pid"):
            other.start()
        assert other.process is None
    # Free again once the first one stopped.
    with PrivateRedis(appendonly=True, directory=str(tmp_path)) as server:
        assert server.process is not None


def test_a_killed_server_frees_its_directory_for_a_restart(tmp_path: Path) -> None:
    server = PrivateRedis(appendonly=True, directory=str(tmp_path)).start()
    try:
        server.restart()
        assert server.process is not None and server.process.poll() is None
    finally:
        server.close()
