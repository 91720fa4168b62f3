"""Forgetting dead workers: a worker killed with SIGKILL never leaves the consumer group, so
its name would stay listed (XINFO CONSUMERS, the dashboard) forever. Once its pending entries
have been claimed, a live worker deletes its consumer.

A consumer is dead when it holds no pending entries, has not read for ``idle_ms`` and has no
live heartbeat. XGROUP DELCONSUMER drops the consumer's pending entries with it, and neither
WATCH nor a check before it can stop a stalled worker that wakes up from reading one in
between (XREADGROUP does not touch WATCHed keys), so the pending list is read in the same
script as the delete (lua/delete_consumer.lua): whatever the consumer held at that instant is
appended again.
apply_batch.lua counts an entry only while it is pending and a batch id once, so the copy is
counted once, and the woken worker's late apply of the original counts nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import keys
from ..replies import text
from ..scripts import Scripts

log = logging.getLogger(__name__)

# A consumer idle this many claim intervals (and without a heartbeat) is dead: long past the
# moment another worker claimed what it held.
DEAD_AFTER_CLAIM_INTERVALS = 4
# Entries a consumer can hold is bounded by what its readers took in one read each; far more
# than that is read back when one is deleted.
RESCUE_MAX = 100_000


async def forget_dead_consumers(scripts: Scripts, stream: str, me: str, idle_ms: int) -> list[str]:
    """Delete the group's consumers on ``stream`` that are dead; returns their names."""
    redis = scripts.redis
    consumers: Any = await redis.xinfo_consumers(stream, keys.AGGREGATORS_GROUP)
    candidates = [
        text(consumer["name"])
        for consumer in consumers
        if consumer["pending"] == 0 and consumer["idle"] > idle_ms
    ]
    candidates = [name for name in candidates if name != me]
    if not candidates:
        return []
    pipe = redis.pipeline(transaction=False)
    for name in candidates:
        pipe.exists(keys.worker_heartbeat(name))
    beating = await pipe.execute()
    dead = [name for name, alive in zip(candidates, beating, strict=True) if not alive]
    for name in dead:
        await delete_consumer(scripts, stream, name)
    return dead


async def delete_consumer(scripts: Scripts, stream: str, name: str) -> int:
    """XGROUP DELCONSUMER, appending again what the consumer held at that instant; returns
    how many entries were appended again."""
    redis = scripts.redis
    held = await scripts.delete_consumer(stream, name, RESCUE_MAX)
    log.info("removed consumer %s of a dead worker from %s", name, stream)
    if not held:
        return 0
    log.warning(
        "consumer %s read %d entries of %s just before it was removed; appending them again",
        name,
        len(held),
        stream,
    )
    pipe = redis.pipeline(transaction=False)
    for entry_id in held:
        pipe.xrange(stream, entry_id, entry_id)
    found = await pipe.execute()
    pipe = redis.pipeline(transaction=False)
    for entries in found:
        for _entry_id, fields in entries:  # a trimmed entry is gone either way
            pipe.xadd(stream, fields)
    return len(await pipe.execute())
