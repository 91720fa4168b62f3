"""Departed clients leave no reference cycles in a real delivery process.

The collection pacer (deliver/collector.py) freezes the heap after each full collection, so
a client connected then is never walked again. That is only sound if everything a client
leaves behind when it goes is freed by reference counting: a cycle among frozen objects would
never be collected. Here a real ``emostream delivery`` process serves real sockets; clients
connect, receive windows and leave, many times over, and the process (on SIGUSR1) thaws its
heap, runs a full collection with ``DEBUG_SAVEALL`` and reports what it found unreachable.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis

from emostream import keys
from emostream.records import HISTORY_FIELD, WindowRecord, encode_record, history_entry_id
from emostream.redis_server import PrivateRedis, free_port

EVENT = "churn"
CLIENTS = 300
SHARDS = 2
ROUNDS = 3

# The delivery process under test, plus a hook: on SIGUSR1 a full collection that keeps what
# it finds (DEBUG_SAVEALL) and writes a count per type to the log, one JSON line.
HOOKED_DELIVERY = """
import gc, json, signal, sys
from collections import Counter
log = open(sys.argv[1], "a", buffering=1)
def collect(_signum, _frame):
    gc.unfreeze()  # frozen or not, everything is walked
    gc.set_debug(gc.DEBUG_SAVEALL)
    found = gc.collect()
    kinds = Counter(type(o).__qualname__ for o in gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)
    log.write(json.dumps({"found": found, "frozen": gc.get_freeze_count(),
                          "kinds": dict(kinds.most_common(12))}) + "\\n")
signal.signal(signal.SIGUSR1, collect)
from emostream.cli import main
sys.exit(main(["delivery", "--host", "127.0.0.1", "--port", sys.argv[2]]))
"""


def publish_window(client: sync_redis.Redis, seq: int) -> None:
    start = 1_795_000_000_000 + seq * 2000
    record = WindowRecord(EVENT, seq, start, start + 2000, 10, 3, (("🔥", 7), ("👏", 3)))
    payload = encode_record(record)
    history = keys.window_history(keys.shard_of(EVENT, SHARDS), EVENT)
    client.xadd(history, {HISTORY_FIELD: payload}, id=history_entry_id(seq))
    client.publish(keys.WINDOWS_CHANNEL, payload)


def open_clients(port: int, count: int) -> list[socket.socket]:
    request = f"GET /v1/events/{EVENT}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    clients = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        clients.append(sock)
    for sock in clients:
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return clients


def receive_until(clients: list[socket.socket], marker: bytes) -> None:
    for sock in clients:
        seen = b""
        while marker not in seen:
            chunk = sock.recv(65536)
            assert chunk, "the server closed a client that had not left"
            seen += chunk


def collected(log: Path, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    lines = len(log.read_text().splitlines()) if log.exists() else 0
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = log.read_text().splitlines() if log.exists() else []
        if len(found) > lines:
            return dict(json.loads(found[-1]))
        time.sleep(0.05)
    raise AssertionError("the delivery process did not report its collection")


Delivery = tuple[subprocess.Popen[bytes], Path, int]


@pytest.fixture
def delivery(redis_server: PrivateRedis, tmp_path: Path) -> Iterator[Delivery]:
    port = free_port()
    log = tmp_path / "gc.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOSTREAM_")}
    env.update({"EMOSTREAM_REDIS_URL": redis_server.url, "EMOSTREAM_SHARDS": str(SHARDS)})
    process = subprocess.Popen(
        [sys.executable, "-c", HOOKED_DELIVERY, str(log), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield process, log, port
    finally:
        process.terminate()
        process.wait(timeout=20)


def churn(port: int, client: sync_redis.Redis, first_seq: int) -> int:
    """CLIENTS clients connect, receive two windows and leave; the next seq to publish."""
    clients = open_clients(port, CLIENTS)
    try:
        for seq in (first_seq, first_seq + 1):
            publish_window(client, seq)
            receive_until(clients, f"id: {seq}".encode())
    finally:
        for sock in clients:
            sock.close()
    time.sleep(0.5)  # the server notices every close
    return first_seq + 2


def test_clients_that_leave_leave_no_cycles_behind(
    redis_server: PrivateRedis, delivery: Delivery
) -> None:
    process, log, port = delivery
    client = sync_redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
        # A first round warms every lazy import and cache; its collection is the baseline.
        seq = churn(port, client, 1)
        baseline = collected(log, process)
        for _ in range(ROUNDS):
            seq = churn(port, client, seq)
        after = collected(log, process)
    finally:
        client.close()
    # A cycle per departed client would be several objects each of ROUNDS x CLIENTS.
    assert after["found"] < CLIENTS, f"baseline {baseline}, after churn {after}"
