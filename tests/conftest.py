"""Fixtures: a private redis-server on a free port (the same binary `emostream up` uses), and
real emostream processes. Nothing here touches a Redis the tests did not start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from redis.asyncio import Redis

from emostream.connection import connect
from emostream.redis_cluster import PrivateCluster, private_cluster
from emostream.redis_server import PrivateRedis, free_port
from emostream.settings import Settings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    with PrivateRedis(appendonly=True) as server:
        yield server


@pytest.fixture
async def redis(redis_server: PrivateRedis) -> AsyncIterator[Redis]:
    """A client of the private server, emptied before each test (it is ours alone)."""
    if redis_server.process is None:
        redis_server.start()
    client = connect(redis_server.url)
    await client.flushall()
    await client.script_flush()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def settings(redis_server: PrivateRedis) -> Settings:
    return Settings(redis_url=redis_server.url, shards=2)


@dataclass
class Process:
    """An `emostream` role running as a real child process."""

    args: list[str]
    env: dict[str, str]
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, tmp_path: str) -> Process:
        self.spawn(tmp_path)
        if self.port is not None:
            self.wait_healthy()
        return self

    def spawn(self, tmp_path: str) -> Process:
        """Start the process without waiting for it to answer."""
        self.log_path = os.path.join(tmp_path, f"{self.args[0]}-{time.monotonic_ns()}.log")
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "emostream", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.args} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.args} not healthy in {timeout_s} s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()[-4000:]

    def terminate(self, timeout_s: float = 20.0) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.args} ignored SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


class ProcessFactory:
    def __init__(self, redis_url: str, tmp_path: str) -> None:
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.started: list[Process] = []

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMOSTREAM_")}
        env.update({"EMOSTREAM_REDIS_URL": self.redis_url, "EMOSTREAM_SHARDS": "2"})
        env.update(overrides)
        return env

    def role(self, role: str, **env: str) -> Process:
        port = None if role == "worker" else free_port()
        args = [role] if port is None else [role, "--port", str(port)]
        process = Process(args, self.env(**env), port).start(self.tmp_path)
        self.started.append(process)
        return process

    def start_many(self, specs: list[tuple[str, dict[str, str]]]) -> list[Process]:
        """Start several roles at once (each takes a second or more to import and bind on a
        loaded machine), then wait until every one answers."""
        started = []
        for role, env in specs:
            port = None if role == "worker" else free_port()
            args = [role] if port is None else [role, "--port", str(port)]
            process = Process(args, self.env(**env), port).spawn(self.tmp_path)
            self.started.append(process)
            started.append(process)
        for process in started:
            if process.port is not None:
                process.wait_healthy(timeout_s=60.0)
        return started

    def stop_all(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture
def processes(redis_server: PrivateRedis, tmp_path: object) -> Iterator[ProcessFactory]:
    if redis_server.process is None:
        redis_server.start()
    import redis as sync_redis

    client = sync_redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    factory = ProcessFactory(redis_server.url, str(tmp_path))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[PrivateCluster]:
    """A private 3-primary, 3-replica Redis Cluster on free loopback ports."""
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_processes(redis_cluster: PrivateCluster, tmp_path: object) -> Iterator[ProcessFactory]:
    """Role processes pointed at one node of the private cluster, emptied first (a test
    that killed a node has it back, as a replica, before the next one starts)."""
    redis_cluster.restore()
    redis_cluster.flushall()
    factory = ProcessFactory(redis_cluster.url, str(tmp_path))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(params=["redis", "cluster"])
def any_processes(request: pytest.FixtureRequest) -> ProcessFactory:
    """The same test on a single Redis and on a Redis Cluster."""
    name = "processes" if request.param == "redis" else "cluster_processes"
    factory: ProcessFactory = request.getfixturevalue(name)
    return factory
