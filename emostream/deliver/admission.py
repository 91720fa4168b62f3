"""Registrations per client address: a token bucket each, refilled at ``rate_per_s`` up to
``burst``, in this process (each delivery node limits what it is asked itself).

Memory is bounded: at most ``max_addresses`` buckets, least recently used dropped first. A
dropped address starts over with a full bucket, which only matters when more distinct
addresses than that register within one refill period. Behind a proxy, the address is the
one uvicorn reports (it honours X-Forwarded-For from 127.0.0.1 only).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_ADDRESSES = 10_000


@dataclass(eq=False)
class AddressBuckets:
    rate_per_s: float
    burst: int
    max_addresses: int = MAX_ADDRESSES
    clock: Callable[[], float] = time.monotonic
    # address -> (tokens, when they were counted)
    _buckets: OrderedDict[str, tuple[float, float]] = field(init=False, default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str) -> float:
        """Take one token for ``address``: 0.0 when there was one, else the seconds until
        there will be."""
        now = self.clock()
        tokens, then = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[address] = (tokens - 1.0, now)
            wait_s = 0.0
        else:
            self._buckets[address] = (tokens, now)
            wait_s = (1.0 - tokens) / self.rate_per_s
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)
        return wait_s
