"""Rate limits per user id and per client address, shared by every ingest process.

No Redis round trip inside a request: each process keeps a token bucket per key and answers
from it at once. Every ``sync_interval_ms`` the process adds what it took since the last sync
to a counter per key in Redis (one pipeline for every key that was active) and takes from its
own buckets what the other processes took meanwhile, so the processes together behave as one
bucket per key, late by at most one sync interval. A user sending through several processes
at once can therefore pass the limit by what the others accepted within one interval (plus
one burst per process for a key it had not seen); the test with two processes measures it.

A request is all-or-nothing here too: it is refused (429 with Retry-After) unless every user
in it has tokens for all of its reactions, and then nothing is taken.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keys
from ..errors import RateLimited
from ..lifecycle import sleep_unless
from ..settings import Settings

log = logging.getLogger(__name__)

# A shared counter outlives its last update this long: enough for every process to sync.
COUNTER_TTL_MS = 60_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float
    # Taken here since the last sync, and the shared counter as last seen.
    unsynced: int = 0
    seen: int = 0


@dataclass
class TokenBuckets:
    """One bucket per key: ``rate`` tokens a second, holding at most ``burst``."""

    kind: str
    rate: float
    burst: float
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _refilled(self, key: str, now_s: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now_s)
        elif now_s > bucket.at_s:
            bucket.tokens = min(self.burst, bucket.tokens + (now_s - bucket.at_s) * self.rate)
            bucket.at_s = now_s
        return bucket

    def wait_s(self, wanted: dict[str, int], now_s: float) -> float:
        """0 if every key has its wanted tokens (then they are taken), else the seconds until
        the scarcest one would (nothing is taken)."""
        buckets = [(self._refilled(key, now_s), count) for key, count in wanted.items()]
        short = max(count - bucket.tokens for bucket, count in buckets)
        if short > 0:
            return short / self.rate
        for bucket, count in buckets:
            bucket.tokens -= count
            bucket.unsynced += count
        return 0.0

    def unsynced(self) -> dict[str, int]:
        return {key: b.unsynced for key, b in self._buckets.items() if b.unsynced}

    def synced(self, key: str, reported: int, total: int) -> None:
        """The shared counter of ``key`` is now ``total`` after adding our ``reported``: take
        what the other processes took since we last looked."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        others = total - bucket.seen - reported if bucket.seen else 0
        # Never below one burst in debt: a flood through another process refuses this key
        # here for about two bursts' time, not for as long as the flood lasted.
        bucket.tokens = max(bucket.tokens - max(others, 0), -self.burst)
        bucket.unsynced -= reported
        bucket.seen = total

    def forget_idle(self, now_s: float) -> None:
        """Drop buckets that have refilled completely: they hold nothing to remember."""
        full_after_s = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now_s - b.at_s > full_after_s]:
            if not self._buckets[key].unsynced:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


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
        self.users = TokenBuckets("user", user_rate, user_burst) if user_rate > 0 else None
        self.addresses = TokenBuckets("ip", ip_rate, ip_burst) if ip_rate > 0 else None
        self.proxies = TrustedProxies(trusted_proxies)
        self.refused = 0

    def check_address(self, address: str) -> None:
        if self.addresses is not None:
            self._check(self.addresses, {address: 1}, "client address")

    def check_users(self, users: list[str]) -> None:
        if self.users is not None:
            wanted = {users[0]: len(users)} if len(set(users)) == 1 else dict(Counter(users))
            self._check(self.users, wanted, "user_id")

    def _check(self, buckets: TokenBuckets, wanted: dict[str, int], field_name: str) -> None:
        wait_s = buckets.wait_s(wanted, time.monotonic())
        if wait_s:
            self.refused += 1
            raise RateLimited(
                f"too many requests for this {field_name}; retry later",
                field_name,
                retry_after_s=max(1, math.ceil(wait_s)),
            )

    async def sync(self, redis: Redis) -> None:
        """Share what this process took since the last sync and learn what others took."""
        groups = [b for b in (self.users, self.addresses) if b is not None]
        work = [(b, key, count) for b in groups for key, count in b.unsynced().items()]
        now_s = time.monotonic()
        for buckets in groups:
            buckets.forget_idle(now_s)
        if not work:
            return
        pipe = redis.pipeline(transaction=False)
        for buckets, key, count in work:
            counter = keys.rate_counter(buckets.kind, key)
            pipe.incrby(counter, count)
            pipe.pexpire(counter, COUNTER_TTL_MS)
        replies: list[Any] = await pipe.execute()
        for index, (buckets, key, count) in enumerate(work):
            buckets.synced(key, count, int(replies[2 * index]))

    async def run(self, redis: Redis, settings: Settings, stop: asyncio.Event) -> None:
        """Sync every ``rate_sync_interval_ms`` until ``stop``."""
        while not await sleep_unless(stop, settings.rate_sync_interval_ms / 1000):
            try:
                await self.sync(redis)
            except (RedisError, OSError) as exc:  # the local buckets go on limiting alone
                log.warning("rate-limit sync failed: %s", exc)
