"""Redis clients, configured once for every role: a single Redis, or a Redis Cluster.

On a cluster every role uses redis-py's asyncio ``RedisCluster``. It offers the same command
methods, so the roles hold it where they hold a ``Redis``; the few places that must act
differently on a cluster (one XREADGROUP per shard, sharded pub/sub, EVALSHA in pipelines)
ask ``is_cluster``. Every Lua call and every MULTI stays in one slot (keys.py decides the
hash tags), so it runs unchanged on the primary of its slot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from . import keys
from .settings import Settings

log = logging.getLogger(__name__)

# Blocking stream reads are bounded by read_block_ms, well below this socket timeout, so a
# silent, half-open connection surfaces as an error instead of hanging a role forever.
SOCKET_TIMEOUT_S = 5.0
# How often a role that starts before its Redis asks again whether it is a cluster.
DETECT_PAUSE_S = 0.5


def _retry() -> Retry:
    # The asyncio client needs redis.asyncio's Retry: the synchronous one is not awaited and
    # retries nothing (redis-py #2179, #2555).
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3)


def connect(
    url: str,
    max_connections: int = Settings.redis_max_connections,
    pool_timeout_ms: int = Settings.redis_pool_timeout_ms,
) -> Redis:
    """A client of a single Redis."""
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
        # is retried on a fresh connection.
        retry=_retry(),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis.from_pool(pool)


def connect_cluster(url: str, max_connections: int = Settings.redis_max_connections) -> Redis:
    """A client of the Redis Cluster that ``url`` names one node of.

    Typed as ``Redis``: RedisCluster has the same command methods, and the roles are written
    against them (see the module docstring for where they differ)."""
    cluster = RedisCluster.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        # MOVED, ASK, a failover (a primary that stops answering until its replica is
        # promoted, cluster-node-timeout plus the election): retried with backoff for about
        # ten seconds, refreshing the slot map, before the caller sees the error.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=12),
    )
    return cast(Redis, cluster)


def is_cluster(redis: Redis) -> bool:
    return isinstance(redis, RedisCluster)


def cluster_enabled(url: str) -> bool:
    """Whether the Redis at ``url`` is a node of a cluster (INFO cluster); raises RedisError
    if it cannot be asked."""
    client = sync_redis.Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
    )
    try:
        info: Any = client.info("cluster")
    finally:
        client.close()
    return bool(info.get("cluster_enabled"))


async def connect_for(settings: Settings) -> Redis:
    """A client of the configured Redis with its own pool, sized by the settings: a cluster
    client when the URL names a cluster node. With ``redis_cluster=auto`` a Redis that does
    not answer yet is waited for, as every role waits for it anyway."""
    url = settings.redis_url
    assert url is not None
    clustered = settings.redis_cluster == "yes"
    while settings.redis_cluster == "auto":
        try:
            clustered = await asyncio.to_thread(cluster_enabled, url)
            break
        except (RedisError, OSError) as exc:
            log.warning("waiting for Redis to say whether it is a cluster: %s", exc)
            await asyncio.sleep(DETECT_PAUSE_S)
    if clustered:
        log.info("Redis Cluster mode: the Redis URL names a cluster node")
        return connect_cluster(url, settings.redis_max_connections)
    return connect(url, settings.redis_max_connections, settings.redis_pool_timeout_ms)


def sync_client(url: str) -> sync_redis.Redis:
    """A synchronous client (the container health check), for a cluster too."""
    if cluster_enabled(url):
        return cast(sync_redis.Redis, sync_redis.RedisCluster.from_url(url))
    return sync_redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S)


async def publish_live(redis: Redis, shard: int, message: bytes) -> None:
    """Publish a record to the delivery nodes: the shard's sharded channel on a cluster, the
    one windows channel on a single Redis (the Lua scripts choose the same way)."""
    if is_cluster(redis):
        await redis.spublish(keys.windows_channel(shard), message)
    else:
        await redis.publish(keys.WINDOWS_CHANNEL, message)


def live_channel(redis: Redis, shard: int) -> str:
    """The channel the Lua scripts publish a shard's records on (see publish_live)."""
    return keys.windows_channel(shard) if is_cluster(redis) else keys.WINDOWS_CHANNEL
