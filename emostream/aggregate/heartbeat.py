"""A worker's heartbeat: the one record a live worker writes with a TTL and the operator
stats read back. Its counters are cumulative since the worker started.

Each heartbeat also puts the worker in the live-workers index (``keys.LIVE_WORKERS``), so
readers find the workers without scanning the keyspace."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from .. import keys

# Index members whose last beat is this many TTLs old are dropped by any worker's beat, so
# the index stays small even when no one reads the stats. A wide margin, because each
# member's time comes from its own worker's clock.
STALE_AFTER_TTLS = 10


@dataclass(frozen=True)
class Heartbeat:
    worker: str
    at_ms: int
    reactions: int = 0
    batches: int = 0
    # Reactions counted into a window after it closed (published as a revision).
    late: int = 0
    # Raw entries dead-lettered by this worker.
    dead: int = 0
    # Reactions later than the revision horizon: never counted.
    lost: int = 0
    # Attempts to apply a raw entry that failed (it stays pending, to be retried).
    failed: int = 0

    def encode(self) -> str:
        return json.dumps(asdict(self))


def parse_heartbeat(worker: str, raw: bytes | str | None) -> Heartbeat | None:
    """A worker's heartbeat, or None if it vanished or is not ours to read."""
    if raw is None:
        return None
    try:
        info = json.loads(raw)
        counters = {
            name: int(info.get(name, 0))
            for name in ("reactions", "batches", "late", "dead", "lost", "failed")
        }
        return Heartbeat(worker, int(info["at_ms"]), **counters)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def record_heartbeat(pipe: Any, beat: Heartbeat, ttl_ms: int) -> None:
    """Queue a heartbeat's writes on ``pipe``: its key with a TTL, and its index entry."""
    pipe.set(keys.worker_heartbeat(beat.worker), beat.encode(), px=ttl_ms)
    pipe.zadd(keys.LIVE_WORKERS, {beat.worker: beat.at_ms})
    pipe.zremrangebyscore(keys.LIVE_WORKERS, "-inf", beat.at_ms - STALE_AFTER_TTLS * ttl_ms)


def forget_worker(pipe: Any, worker_id: str) -> None:
    """Queue the writes of a worker leaving: its heartbeat and its index entry go."""
    pipe.delete(keys.worker_heartbeat(worker_id))
    pipe.zrem(keys.LIVE_WORKERS, worker_id)
