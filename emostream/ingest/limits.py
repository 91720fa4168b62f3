"""Rate limits per user id and per client address, shared by every ingest process.

A limit of ``rate`` a second with a ``burst`` is counted in fixed windows of
``burst / rate`` seconds, aligned to the wall clock so every process shares them: at most
``burst`` in a window, which is ``rate`` a second in the long run (a client may get up to two
bursts across a window boundary). A window's counts are one ``Counter``, updated for a whole
request in C (``Counter.update`` over the request's user column, then the highest count of
its users read back with ``map``): no Python work per reaction, and no Redis round trip inside
a request. A request is all-or-nothing: refused whole (429 with Retry-After, its counts taken
back) or counted whole.

Sharing: every ``rate_sync_interval_ms`` a process adds to a counter per key and window in
Redis what it counted for the keys that took a noticeable share of the burst since the last
sync (the heaviest, found by ``most_common``; a person tapping a few times a second never
costs a Redis command), and adds to its own window counts what the other processes counted
for them meanwhile. So the processes together allow about one burst per window, late by one
sync interval, plus what each counted below the share before it was reported.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import Counter, _count_elements  # type: ignore[attr-defined]
from collections.abc import Iterable, Sequence
from itertools import compress
from operator import sub
from typing import Any

from redis.asyncio import Redis

from .. import keys
from ..connection import REDIS_FAULTS
from ..errors import RateLimited
from ..lifecycle import sleep_unless
from ..settings import Settings

log = logging.getLogger(__name__)

# A key is reported once it took this share of the burst since its last report.
REPORT_SHARE = 0.1
# Keys reported per sync at most (the heaviest): bounds one sync's Redis work.
REPORT_MAX = 256

Counts = dict[str, int]


class WindowCounts:
    """Counts per key in the current fixed window, shared with other processes."""

    def __init__(self, kind: str, rate: float, burst: float) -> None:
        self.kind = kind
        self.burst = burst
        self.window_s = burst / rate
        # A key is worth reporting to the other processes from this count on.
        self.noticeable = max(1, int(burst * REPORT_SHARE))
        self.window = -1
        # This window's counts (a plain dict: its lookups are twice a Counter's): this
        # process's, plus what the others reported for the key.
        self.counts: dict[str, int] = {}
        # The keys past the noticeable share, and for them what this process reported and
        # what came from others.
        self.heavy: set[str] = set()
        self.reported: Counter[str] = Counter()
        self.others: Counter[str] = Counter()

    def _roll(self, now_s: float) -> None:
        window = int(now_s // self.window_s)
        if window != self.window:
            self.window = window
            self.counts = {}
            self.heavy = set()
            self.reported = Counter()
            self.others = Counter()

    def take(self, keys_: list[str], now_s: float) -> float:
        """Count one for each item of ``keys_`` (a key may repeat) if no key passes the burst
        with it; 0 then, else the seconds until the window ends (nothing counted)."""
        self._roll(now_s)
        counts = self.counts
        first = keys_[0]
        if first == keys_[-1] and keys_.count(first) == len(keys_):  # one key: the usual case
            top = counts.get(first, 0) + len(keys_)
            if top > self.burst:
                return self._wait(now_s)
            counts[first] = top
            if top >= self.noticeable:
                self.heavy.add(first)
            return 0.0
        # Every loop below runs in C (map, compress, dict.update): a request of many users
        # costs no Python bytecode per reaction or per user, refused or not.
        _count_elements(counts, keys_)  # Counter.update's C loop, on the plain dict
        totals = list(map(counts.__getitem__, keys_))
        top = max(totals)
        if top > self.burst:
            mine: dict[str, int] = {}
            _count_elements(mine, keys_)
            counts.update(
                zip(mine, map(sub, map(counts.__getitem__, mine), mine.values()), strict=True)
            )
            return self._wait(now_s)
        if top >= self.noticeable:
            self.heavy.update(compress(keys_, map(self.noticeable.__le__, totals)))
        return 0.0

    def take_one(self, key: str, now_s: float) -> float:
        """``take([key], now_s)`` without the list: the per-address check of every request."""
        self._roll(now_s)
        top = self.counts.get(key, 0) + 1
        if top > self.burst:
            return self._wait(now_s)
        self.counts[key] = top
        if top >= self.noticeable:
            self.heavy.add(key)
        return 0.0

    def _wait(self, now_s: float) -> float:
        return (self.window + 1) * self.window_s - now_s

    def to_report(self) -> list[tuple[str, int]]:
        """(key, count not yet reported) of the heavy keys with a noticeable share unreported,
        the heaviest first."""
        unreported = [
            (key, self.counts[key] - self.others[key] - self.reported[key]) for key in self.heavy
        ]
        heavy = [item for item in unreported if item[1] >= self.noticeable]
        return sorted(heavy, key=lambda item: -item[1])[:REPORT_MAX]

    def synced(self, window: int, key: str, reported: int, total: int) -> None:
        """Redis now holds ``total`` for ``key`` in ``window`` after our ``reported``."""
        if window != self.window:
            return  # the window rolled over meanwhile: its counts are gone
        self.reported[key] += reported
        others = total - self.reported[key]
        if others > self.others[key]:
            self.counts[key] += others - self.others[key]
            self.others[key] = others


class TrustedProxies:
    """The client address of a request: the peer, or, when the peer is a trusted proxy, the
    nearest address in ``X-Forwarded-For`` that is not one (proxies append to it)."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in networks if n]

    def trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        if not self.networks or forwarded_for is None or not self.trusted(peer):
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            if hop and not self.trusted(hop):
                return hop
        return peer


class RateLimiter:
    """Per-user reactions/s and per-address requests/s; a rate of 0 turns a limit off."""

    def __init__(
        self,
        user_rate: float,
        user_burst: float,
        ip_rate: float,
        ip_burst: float,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.users = WindowCounts("user", user_rate, user_burst) if user_rate > 0 else None
        self.addresses = WindowCounts("ip", ip_rate, ip_burst) if ip_rate > 0 else None
        self.proxies = TrustedProxies(trusted_proxies)
        self.refused = 0

    def check_address(self, address: str) -> None:
        if self.addresses is not None:
            wait_s = self.addresses.take_one(address, time.time())
            if wait_s:
                self._refuse(wait_s, "client address")

    def check_users(self, users: list[str]) -> None:
        if self.users is not None:
            self._check(self.users, users, "user_id")

    def _check(self, counts: WindowCounts, keys_: list[str], field_name: str) -> None:
        wait_s = counts.take(keys_, time.time())
        if wait_s:
            self._refuse(wait_s, field_name)

    def _refuse(self, wait_s: float, field_name: str) -> None:
        self.refused += 1
        raise RateLimited(
            f"too many requests for this {field_name}; retry later",
            field_name,
            retry_after_s=max(1, math.ceil(wait_s)),
        )

    async def sync(self, redis: Redis) -> None:
        """Share what this process counted for its heavy keys; learn what others counted."""
        work = [
            (counts, counts.window, key, count)
            for counts in (self.users, self.addresses)
            if counts is not None
            for key, count in counts.to_report()
        ]
        if not work:
            return
        pipe = redis.pipeline(transaction=False)
        for counts, window, key, count in work:
            counter = keys.rate_counter(counts.kind, key, window)
            pipe.incrby(counter, count)
            pipe.pexpire(counter, int(counts.window_s * 2000) + 1000)
        replies: list[Any] = await pipe.execute()
        for index, (counts, window, key, count) in enumerate(work):
            counts.synced(window, key, count, int(replies[2 * index]))

    async def run(self, redis: Redis, settings: Settings, stop: asyncio.Event) -> None:
        """Sync every ``rate_sync_interval_ms`` until ``stop``."""
        while not await sleep_unless(stop, settings.rate_sync_interval_ms / 1000):
            try:
                await self.sync(redis)
            except REDIS_FAULTS as exc:  # the local counts go on limiting alone
                log.warning("rate-limit sync failed: %s", exc)
