"""Slow, stalled and vanished clients of a real delivery server (hypercorn, real sockets).

Windows are written the way ``close_window.lua`` writes them (history entry + PUBLISH), with a
wide top-N so each frame is ~10 KB and socket buffers fill in a few dozen windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgpack
import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.deliver.app import create_delivery_app
from emostream.deliver.hub import Hub
from emostream.redis_server import PrivateRedis, free_port
from emostream.roles import client_sockets, serve_until
from emostream.rules import EmojiSwarmRule
from emostream.settings import Settings

from .helpers import eventually, read_swarm, sse_events

pytestmark = pytest.mark.anyio

EVENT = "big"
EMOJIS_PER_WINDOW = 300
WINDOWS = 60


@pytest.fixture
def wide(redis_server: PrivateRedis) -> Settings:
    return Settings(
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
    flat: list[object] = []
    for index in range(EMOJIS_PER_WINDOW):
        flat += [f"emoji-{index:04d}-padding", 1000 + index]
    record = msgpack.packb([EVENT, seq, start, start + 2000, 10**6, 5000, 0, flat])
    shard = keys.shard_of(EVENT, settings.shards)
    await redis.xadd(keys.window_history(shard, EVENT), {"w": record}, id=f"{seq}-0")
    await redis.publish(keys.WINDOWS_CHANNEL, record)


def raw_client(port: int) -> socket.socket:
    """A client with a tiny receive buffer that sends its GET and reads only when told."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/events/{EVENT}/stream HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


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


def test_sse_parse_helper_is_shared() -> None:
    assert sse_events("id: 1\nevent: swarm\ndata: {}\n\n") == [{}]
