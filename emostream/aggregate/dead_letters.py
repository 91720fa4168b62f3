"""The dead-letter stream of each raw shard: where an entry goes when it cannot be decoded,
or after it was delivered ``max_deliveries`` times (it failed, or killed the workers that
took it), so the rest of the shard keeps flowing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..batch import PAYLOAD_FIELD

log = logging.getLogger(__name__)


async def bury_poison(
    redis: Redis, worker_id: str, max_deliveries: int, shard: int, min_idle_ms: int
) -> AsyncIterator[bytes]:
    """Dead-letter the shard's pending entries idle for ``min_idle_ms`` that were delivered
    ``max_deliveries`` times; yields the id of each one this worker buried."""
    stream = keys.raw_stream(shard)
    pending: Any = await redis.xpending_range(
        stream, keys.AGGREGATORS_GROUP, min="-", max="+", count=100, idle=min_idle_ms
    )
    for item in pending:
        if item["times_delivered"] < max_deliveries:
            continue
        entry_id = item["message_id"]
        claimed: Any = await redis.xclaim(
            stream, keys.AGGREGATORS_GROUP, worker_id, min_idle_ms, [entry_id]
        )
        if not claimed:
            continue  # someone else took it first
        reason: Any = await redis.hget(keys.failures(shard), entry_id)
        # No MULTI (see closer.safe_watermark): the dead letter is written before the
        # XACK, so a crash in between can only write it twice, never lose the entry.
        pipe = redis.pipeline(transaction=False)
        dead_letter(
            pipe,
            shard,
            entry_id,
            claimed[0][1],
            f"failed {item['times_delivered']} times; last: "
            f"{reason.decode() if reason else 'the worker died while processing it'}",
        )
        await pipe.execute()
        yield entry_id


def dead_letter(
    pipe: Any,
    shard: int,
    entry_id: bytes,
    fields: dict[bytes, bytes] | None,
    reason: str,
) -> None:
    """Queue on ``pipe``: the entry to the dead-letter stream, acknowledged, its recorded
    failure forgotten."""
    log.error("dead-lettering raw entry %s of shard %d: %s", entry_id, shard, reason)
    pipe.xadd(
        keys.dead_letters(shard),
        {
            "entry": entry_id,
            "reason": reason,
            "payload": (fields or {}).get(PAYLOAD_FIELD, b""),
        },
        maxlen=10_000,
        approximate=True,
    )
    pipe.xack(keys.raw_stream(shard), keys.AGGREGATORS_GROUP, entry_id)
    pipe.hdel(keys.failures(shard), entry_id)
