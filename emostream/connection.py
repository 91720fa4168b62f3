"""Redis clients, configured once for every role."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

from .settings import Settings

# Blocking stream reads are bounded by read_block_ms, well below this socket timeout, so a
# silent, half-open connection surfaces as an error instead of hanging a role forever.
SOCKET_TIMEOUT_S = 5.0


def connect(
    url: str,
    max_connections: int = Settings.redis_max_connections,
    pool_timeout_ms: int = Settings.redis_pool_timeout_ms,
) -> Redis:
    # A caller finding every connection busy waits for one, up to the pool timeout: redis-py's
    # default pool raises "Too many connections" at once, which turned 2,000 simultaneous
    # history reads into 95% 503s.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_ms / 1000,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=10,
        # A pooled connection that Redis closed (a restart) fails its next command once; it
        # is retried on a fresh connection. The asyncio client needs redis.asyncio's Retry:
        # the synchronous one is not awaited and retries nothing (redis-py #2179, #2555).
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis.from_pool(pool)


def connect_for(settings: Settings) -> Redis:
    """A client of the configured Redis with its own pool, sized by the settings."""
    assert settings.redis_url is not None
    return connect(
        settings.redis_url, settings.redis_max_connections, settings.redis_pool_timeout_ms
    )
