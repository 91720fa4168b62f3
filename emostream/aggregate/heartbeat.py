"""A worker's heartbeat: the one record a live worker writes with a TTL and the operator
stats read back. Its counters are cumulative since the worker started."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


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
