"""The closed-window record: one owner encodes, decodes and names its history field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from emostream import keys
from emostream.clock import now_ms
from emostream.errors import EmostreamError, RecordError
from emostream.records import (
    HISTORY_FIELD,
    WindowRecord,
    decode_record,
    encode_record,
    record_of_entry,
)
from emostream.redis_server import PrivateRedis
from emostream.settings import Settings
from emostream.windows import window_start

from .helpers import make_pipeline, reactions

WINDOW_MS = 300


def test_a_record_reads_back_as_it_was_written() -> None:
    record = WindowRecord("live", 42, 1000, 3000, 7, 2, (("🔥", 5), ("😂", 2)), revision=1)
    assert decode_record(encode_record(record)) == record
    assert record_of_entry({HISTORY_FIELD.encode(): encode_record(record)}) == record


def test_a_bad_record_is_a_named_error() -> None:
    with pytest.raises(RecordError):
        decode_record(b"\x93\x01\x02\x03")
    with pytest.raises(RecordError):
        record_of_entry({b"other": encode_record(WindowRecord("live", 1, 0, 1, 0, 0, ()))})
    assert issubclass(RecordError, EmostreamError) and issubclass(RecordError, ValueError)


@pytest.mark.anyio
async def test_encode_record_writes_the_bytes_close_window_lua_writes(
    redis: Redis, redis_server: PrivateRedis
) -> None:
    settings = Settings(redis_url=redis_server.url, shards=2, window_s=WINDOW_MS / 1000)
    buffer, flusher, worker = await make_pipeline(redis, settings)
    start = window_start(now_ms(), WINDOW_MS)
    buffer.add("live", reactions([("u1", "🔥"), ("u2", "🔥"), ("u2", "😂")]), now_ms())
    await flusher.flush()
    await worker.drain()
    await asyncio.sleep(max(0, start + 2 * WINDOW_MS - now_ms()) / 1000 + 0.01)
    await flusher.flush()  # the watermark passes the window's end
    assert await worker.closer.tick() >= 1
    shard = keys.shard_of("live", settings.shards)
    entries: Any = await redis.xrange(keys.window_history(shard, "live"))
    for _entry_id, fields in entries:
        assert encode_record(record_of_entry(fields)) == fields[HISTORY_FIELD.encode()]
    assert [record_of_entry(fields).total for _id, fields in entries][0] == 3
