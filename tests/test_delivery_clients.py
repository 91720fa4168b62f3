"""Slow, stalled and vanished clients of a real delivery server (uvicorn and hypercorn, real
sockets), and HTTP/2 over TLS on hypercorn.

Windows are written the way ``close_window.lua`` writes them (history entry + PUBLISH), with a
wide top-N so each frame is ~10 KB and socket buffers fill in a few dozen windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.deliver.app import create_delivery_app
from emostream.deliver.frames import stream_swarm_windows
from emostream.deliver.hub import Hub
from emostream.deliver.sockets import tune_client_sockets
from emostream.records import HISTORY_FIELD, WindowRecord, encode_record, history_entry_id
from emostream.redis_server import PrivateRedis, free_port
from emostream.roles import client_sockets
from emostream.rules import EmojiSwarmRule
from emostream.serving import serve_until
from emostream.settings import Settings

from .helpers import eventually, read_swarm, sse_events

pytestmark = pytest.mark.anyio

EVENT = "big"
EMOJIS_PER_WINDOW = 300
WINDOWS = 60


@pytest.fixture(params=["uvicorn", "hypercorn"])
def wide(request: pytest.FixtureRequest, redis_server: PrivateRedis) -> Settings:
    return Settings(
        server=request.param,
        redis_url=redis_server.url,
        shards=2,
        top_n=EMOJIS_PER_WINDOW,
        heartbeat_s=0.5,
        send_timeout_s=3.0,
        client_queue_max=4,
        port=free_port(),
    )


@pytest.fixture
async def server(redis: Redis, wide: Settings) -> AsyncIterator[Hub]:
    hub = Hub(redis, wide, EmojiSwarmRule(wide.top_n, wide.scale))
    stop = asyncio.Event()
    hub_task = asyncio.create_task(hub.run(stop))
    serving = asyncio.create_task(
        serve_until(create_delivery_app(wide, hub), wide, stop, hub.close, client_sockets(wide))
    )
    await asyncio.wait_for(hub.subscribed.wait(), 10)
    try:
        yield hub
    finally:
        stop.set()
        hub.close()
        await asyncio.gather(hub_task, serving)


async def publish_window(redis: Redis, settings: Settings, seq: int) -> None:
    start = 1_795_000_000_000 + seq * 2000
    counts = tuple(
        (f"emoji-{index:04d}-padding", 1000 + index) for index in range(EMOJIS_PER_WINDOW)
    )
    record = encode_record(WindowRecord(EVENT, seq, start, start + 2000, 10**6, 5000, counts))
    shard = keys.shard_of(EVENT, settings.shards)
    history = keys.window_history(shard, EVENT)
    await redis.xadd(history, {HISTORY_FIELD: record}, id=history_entry_id(seq))
    await redis.publish(keys.WINDOWS_CHANNEL, record)


def raw_client(port: int) -> socket.socket:
    """A client with a tiny receive buffer that sends its GET and reads only when told."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/events/{EVENT}/stream HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


async def stream_started(sock: socket.socket) -> None:
    """Reads until the client has been sent its retry hint: its stream writes from then on."""
    sock.setblocking(False)
    received = b""
    while b"retry: " not in received:
        chunk = await asyncio.get_running_loop().sock_recv(sock, 4096)
        if not chunk:
            raise ConnectionError("the server closed the stream")
        received += chunk


class SlowReader(threading.Thread):
    """Reads 4 KB every 50 ms (80 KB/s), far below the ~400 KB/s the windows are sent at."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.received = bytearray()
        self.done = threading.Event()

    def run(self) -> None:
        self.sock.settimeout(0.5)
        while not self.done.is_set():
            time.sleep(0.05)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.received += chunk

    def seqs(self) -> list[int]:
        body = bytes(self.received).split(b"\r\n\r\n", 1)[-1]
        # Chunked transfer encoding interleaves size lines; frames never span them in a way
        # that breaks "id: <seq>" lines, which is all this reads.
        return [
            int(line[4:])
            for line in body.decode(errors="replace").split("\n")
            if line.startswith("id: ") and line[4:].strip().isdigit()
        ]


def connections_at_most(hub: Hub, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return hub.connections <= count

    return check


def connections_at_least(hub: Hub, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return hub.connections >= count

    return check


async def test_slow_and_vanished_clients_never_delay_a_normal_one(
    server: Hub, redis: Redis, wide: Settings
) -> None:
    hub = server
    stalled = raw_client(wide.port)  # vanished: never reads again, never closes
    slow_socket = raw_client(wide.port)
    slow = SlowReader(slow_socket)
    slow.start()
    normal = asyncio.create_task(
        read_swarm(
            f"{wide.node_url}/v1/events/{EVENT}/stream",
            lambda got: bool(got) and got[-1]["seq"] >= WINDOWS,
            timeout_s=60,
        )
    )
    try:
        await eventually(connections_at_least(hub, 3), timeout_s=20)
        for seq in range(1, WINDOWS + 1):
            await publish_window(redis, wide, seq)
            await asyncio.sleep(0.03)
        windows = await normal
        # The normal client has left; the slow and stalled ones are still attached, and the
        # server made writes to both wait (finished, or timed out, in their own tasks).
        subscribers = hub.subscribers_of(EVENT)
        assert [s.waits > 0 for s in subscribers] == [True, True]
        # Every window, in order, while the others were stuck behind their sockets.
        assert [w["seq"] for w in windows] == list(range(1, WINDOWS + 1))
        assert len(windows[-1]["top"]) == EMOJIS_PER_WINDOW

        # The stalled client accepts nothing: its sends time out and it is freed, while the
        # slow one keeps its stream (it makes progress within every send timeout).
        started = time.monotonic()
        await eventually(connections_at_most(hub, 1), timeout_s=40)
        freed_after_s = time.monotonic() - started
        print(f"stalled client freed {freed_after_s:.1f} s after the last window")

        # Latest wins: the slow client skipped windows but ends on the newest one, in order.
        def slow_caught_up() -> bool:
            got = slow.seqs()
            return bool(got) and got[-1] == WINDOWS

        async def check() -> bool:
            return slow_caught_up()

        await eventually(check, timeout_s=40)
        got = slow.seqs()
        assert got == sorted(set(got))
        assert len(got) < WINDOWS, "the slow client should have skipped windows"
        assert hub.connections == 1
    finally:
        slow.done.set()
        for sock in (stalled, slow_socket):
            # Unread data makes close() send a RST: the server's transport is released too.
            with contextlib.suppress(OSError):
                sock.close()
        normal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await normal


async def test_a_client_that_disconnects_is_freed(server: Hub, wide: Settings) -> None:
    hub = server
    sock = raw_client(wide.port)
    await eventually(connections_at_least(hub, 1), timeout_s=20)
    sock.close()
    await eventually(connections_at_most(hub, 0), timeout_s=20)


async def test_idle_runs_once_every_client_has_written_the_window(
    server: Hub, redis: Redis, wide: Settings
) -> None:
    """The collection pacer's moment: queued behind every client's wake-up, so each client
    has taken the window and finished writing it (nothing here reads slowly)."""
    hub = server
    clients = [raw_client(wide.port) for _ in range(50)]
    seen: list[list[tuple[int, bool]]] = []

    def idle() -> None:
        if not hub.windows_received:
            return  # a quiet tick before the window
        subscribers = hub.subscribers_of(EVENT)
        seen.append([(s.sent[0], s.sending_since is None) for s in subscribers])

    try:
        await eventually(connections_at_least(hub, 50), timeout_s=20)
        # A client counts as connected once it has joined, which can be before its stream
        # has started writing; the window must find every stream started.
        await asyncio.wait_for(asyncio.gather(*(stream_started(sock) for sock in clients)), 20)
        hub.idle = idle
        await publish_window(redis, wide, 1)
        await eventually(_true_when(lambda: bool(seen)), timeout_s=10)
        assert seen[0] == [(1, True)] * 50
    finally:
        for sock in clients:
            sock.close()


@pytest.mark.parametrize("server_software", ["uvicorn", "hypercorn"])
def test_accepted_client_sockets_inherit_the_listener_options(server_software: str) -> None:
    """What bounds a vanished peer (no FIN, no ACKs) on uvicorn: the kernel's TCP_USER_TIMEOUT
    (here it could not be exercised: this machine's kernel has no tc classifiers to drop a
    peer's packets), inherited by every accepted socket from the listener."""
    settings = Settings(server=server_software, send_timeout_s=3.0)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        tune_client_sockets(listener, settings)
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _address = listener.accept()
            with accepted:
                user_timeout = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
                send_buffer = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    assert user_timeout == (3000 if server_software == "uvicorn" else 0)
    assert send_buffer == 2 * settings.client_send_buffer_bytes  # Linux doubles it


def _true_when(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


async def test_hypercorn_streams_windows_over_http2_with_tls(
    redis: Redis, redis_server: PrivateRedis, tls_files: tuple[str, str]
) -> None:
    import httpx

    certfile, keyfile = tls_files
    settings = Settings(
        server="hypercorn",
        redis_url=redis_server.url,
        shards=2,
        port=free_port(),
        tls_certfile=certfile,
        tls_keyfile=keyfile,
    )
    hub = Hub(redis, settings, EmojiSwarmRule(settings.top_n, settings.scale))
    stop = asyncio.Event()
    hub_task = asyncio.create_task(hub.run(stop))
    serving = asyncio.create_task(
        serve_until(create_delivery_app(settings, hub), settings, stop, hub.close)
    )
    try:
        await asyncio.wait_for(hub.subscribed.wait(), 10)
        async with httpx.AsyncClient(http2=True, verify=False, timeout=10) as client:
            for _ in range(100):  # the listener may not be up yet
                try:
                    health = await client.get(f"{settings.node_url}/healthz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert settings.node_url.startswith("https://")
            assert health.http_version == "HTTP/2"
            assert health.json()["role"] == "delivery"

            got: list[dict[str, Any]] = []
            url = f"{settings.node_url}/v1/events/{EVENT}/stream"
            async with client.stream("GET", url) as response:
                assert response.http_version == "HTTP/2"
                await eventually(connections_at_least(hub, 1), timeout_s=10)
                for seq in (1, 2):
                    await publish_window(redis, settings, seq)
                lines = response.aiter_lines()
                async for window in stream_swarm_windows(lines):
                    got.append(window)
                    if len(got) == 2:
                        break
        assert [w["seq"] for w in got] == [1, 2]
        assert len(got[0]["top"]) == settings.top_n
    finally:
        stop.set()
        hub.close()
        await asyncio.gather(hub_task, serving)


def test_sse_parse_helper_is_shared() -> None:
    assert sse_events("id: 1\nevent: swarm\ndata: {}\n\n") == [{}]
