"""Redis clients, configured once for every role."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

# Blocking stream reads are bounded by read_block_ms, well below this socket timeout, so a
# silent, half-open connection surfaces as an error instead of hanging a role forever.
SOCKET_TIMEOUT_S = 5.0


def connect(url: str) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=10,
        # A pooled connection that Redis closed (a restart) fails its next command once; it
        # is retried on a fresh connection. The asyncio client needs redis.asyncio's Retry:
        # the synchronous one is not awaited and retries nothing (redis-py #2179, #2555).
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
