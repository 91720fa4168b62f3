"""A reconnect storm: thousands of SSE joins within about a second against one delivery node,
each a raw HTTP/1.1 connection on one asyncio loop (no thread per client), held open until
every join has its answer.

A join's answer is its status and its first body chunk: the node writes the retry hint and
the client's backlog (the latest window, or every window after its ``Last-Event-ID``) as one
write, so the first chunk is what the client is owed at once. ``tests/test_sse_joins.py``
checks those chunks; ``python -m loadtest.sse_joins`` measures a storm against a delivery
node of a private Redis seeded with history, and prints what Redis served per join.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from emostream import keys
from emostream.records import HISTORY_FIELD, WindowRecord, encode_record, history_entry_id
from emostream.redis_server import PrivateRedis, free_port

from .procs import child, child_env

HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Join:
    path: str
    last_event_id: int | None = None


@dataclass
class Answer:
    status: int = 0
    first_chunk: bytes = b""
    error: str = ""


@dataclass
class Storm:
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0  # from the first connect to the last answer

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers:
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts


def window_ids(chunk: bytes) -> list[int]:
    """The ``id:`` of every window frame in a chunk of an SSE body."""
    return [int(line[4:]) for line in chunk.decode().split("\n") if line.startswith("id: ")]


async def _join(host: str, port: int, join: Join, start_at: float, held: list[object]) -> Answer:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    answer = Answer()
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=HEAD_LIMIT)
        held.append(writer)
        resume = f"Last-Event-ID: {join.last_event_id}\r\n" if join.last_event_id else ""
        writer.write(
            f"GET {join.path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
            f"{resume}\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        answer.status = int(head.split(b" ", 2)[1])
        if answer.status != 200:
            answer.first_chunk = await reader.read(HEAD_LIMIT)
            return answer
        # The stream is chunked: one size line, then the first write.
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        answer.first_chunk = await reader.readexactly(size)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        answer.error = repr(exc)
    return answer


async def storm(host: str, port: int, joins: list[Join], spread_s: float) -> Storm:
    """Start ``joins`` evenly over ``spread_s``; return once every one is answered (or
    failed), then close them all."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    held: list[object] = []
    step = spread_s / max(1, len(joins))
    tasks = [_join(host, port, join, began + i * step, held) for i, join in enumerate(joins)]
    try:
        answers = await asyncio.gather(*tasks)
        seconds = loop.time() - began
    finally:
        for writer in held:
            assert isinstance(writer, asyncio.StreamWriter)
            writer.close()
    return Storm(list(answers), seconds)


def seed_history(client: redis.Redis, event_id: str, shards: int, windows: int) -> None:
    """``windows`` closed windows of ``event_id`` in its history stream, as the closer writes
    them (seq 1 to ``windows``)."""
    shard = keys.shard_of(event_id, shards)
    now_ms = int(time.time() * 1000) // 2000 * 2000
    pipe = client.pipeline(transaction=False)
    for seq in range(1, windows + 1):
        start = now_ms - (windows - seq + 1) * 2000
        record = WindowRecord(event_id, seq, start, start + 2000, seq, 1, (("🔥", seq),))
        pipe.xadd(
            keys.window_history(shard, event_id),
            {HISTORY_FIELD: encode_record(record)},
            id=history_entry_id(seq),
        )
    pipe.execute()


HISTORY_READS = ("xrange", "xrevrange")


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats), lower-case names."""
    stats: Any = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): values["calls"] for name, values in stats.items()}


def owed(join: Join, newest: int) -> list[int]:
    """The window ids a join of ``mixed_joins`` is owed in its first chunk."""
    return (
        [newest] if join.last_event_id is None else list(range(join.last_event_id + 1, newest + 1))
    )


def mixed_joins(event_id: str, count: int, newest: int) -> list[Join]:
    """Half new viewers, half resuming two windows back (the reconnect of a storm)."""
    path = f"/v1/events/{event_id}/stream"
    return [Join(path, None if i % 2 == 0 else newest - 2) for i in range(count)]


@contextlib.contextmanager
def delivery_node(redis_url: str, **settings: str) -> Iterator[str]:
    port = free_port()
    env = child_env(redis_url, EMOSTREAM_SHARDS="2", **settings)
    url = f"http://127.0.0.1:{port}"
    with child(["-m", "emostream", "delivery", "--port", str(port)], env, url):
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--joins", type=int, default=5000)
    parser.add_argument("--spread-s", type=float, default=1.0)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--pool", type=int, default=0, help="the node's Redis connections")
    parser.add_argument("--pool-timeout-ms", type=int, default=0)
    args = parser.parse_args()
    settings = {}
    if args.pool:
        settings["EMOSTREAM_REDIS_MAX_CONNECTIONS"] = str(args.pool)
    if args.pool_timeout_ms:
        settings["EMOSTREAM_REDIS_POOL_TIMEOUT_MS"] = str(args.pool_timeout_ms)
    event_id = "storm"
    with PrivateRedis() as server:
        client = redis.Redis.from_url(server.url)
        seed_history(client, event_id, 2, args.windows)
        joins = mixed_joins(event_id, args.joins, args.windows)
        with delivery_node(server.url, **settings) as url:
            port = int(url.rsplit(":", 1)[1])
            before = command_calls(client)
            result = asyncio.run(storm("127.0.0.1", port, joins, args.spread_s))
            after = command_calls(client)
        delta = {name: after[name] - before.get(name, 0) for name in after}
        delta = {name: calls for name, calls in delta.items() if calls and name != "info"}
        answered = result.statuses().get(200, 0)
        report = {
            "joins": args.joins,
            "spread_s": args.spread_s,
            "statuses": result.statuses(),
            "errors": sum(1 for a in result.answers if a.error),
            "first_chunk_right": sum(
                window_ids(a.first_chunk) == owed(j, args.windows)
                for j, a in zip(joins, result.answers, strict=True)
            ),
            "all_answered_s": round(result.seconds, 2),
            "history_reads": sum(delta.get(name, 0) for name in HISTORY_READS),
            "redis_commands": delta,
            "redis_commands_per_join": round(sum(delta.values()) / max(1, answered), 3),
        }
        client.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
