"""Redis clients, configured once for every role: a single Redis, or a Redis Cluster.

On a cluster every role uses redis-py's asyncio ``RedisCluster``. It offers the same command
methods, so the roles hold it where they hold a ``Redis``; the few places that must act
differently on a cluster (one XREADGROUP per shard, sharded pub/sub, EVALSHA in pipelines)
ask ``is_cluster``. Every Lua call and every MULTI stays in one slot (keys.py decides the
hash tags), so it runs unchanged on the primary of its slot.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import redis as sync_redis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterPipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ConnectionError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
    TimeoutError,
)

from . import keys
from .settings import Settings

log = logging.getLogger(__name__)

# Blocking stream reads are bounded by read_block_ms, well below this socket timeout, so a
# silent, half-open connection surfaces as an error instead of hanging a role forever.
SOCKET_TIMEOUT_S = 5.0
SOCKET_TIMEOUTS = {"socket_timeout": SOCKET_TIMEOUT_S, "socket_connect_timeout": SOCKET_TIMEOUT_S}
# What a Redis fault can raise: RedisError, an OS-level socket error, and the cluster client's
# own exceptions, which are not RedisErrors (SlotNotCoveredError while a failover leaves a
# slot without a primary). A role meeting one pauses and retries; it never dies of it.
REDIS_FAULTS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)

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
    cluster: bool = False,
) -> Redis:
    """A client of a single Redis, or with ``cluster`` of the Redis Cluster that ``url`` names
    one node of: typed as ``Redis`` then too, since RedisCluster has the same command methods
    and the roles are written against them (the module docstring says where they differ)."""
    if cluster:
        return _connect_cluster(url, max_connections, pool_timeout_ms / 1000)
    # A caller finding every connection busy waits for one, up to the pool timeout: redis-py's
    # default pool raises "Too many connections" at once, which turned 2,000 simultaneous
    # history reads into 95% 503s.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_ms / 1000,
        **SOCKET_TIMEOUTS,
        health_check_interval=10,
        # A pooled connection that Redis closed (a restart) fails its next command once; it
        # is retried on a fresh connection.
        retry=_retry(),
        retry_on_error=[ConnectionError, TimeoutError],
    )
    return Redis.from_pool(pool)


class WaitingCluster(RedisCluster):
    """A cluster client whose callers wait for a connection, as on a single Redis.

    redis-py's cluster client has no blocking pool: a command finding ``max_connections``
    in use on its node raises MaxConnectionsError at once (2,000 simultaneous reads on a
    client of 100 connections: 1,900 failed in 0.1 s). So at most ``max_connections``
    commands and pipelines are under way at once on this client; the others wait for a turn
    up to ``pool_timeout_s``. Each holds at most one connection per node, so no node's pool
    is ever full. Pub/sub connections are not the pool's (deliver/subscription.py)."""

    def __init__(self, *args: Any, pool_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_timeout_s = pool_timeout_s
        self.turns = asyncio.Semaphore(kwargs.get("max_connections", 100))

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """A turn, waited for; MaxConnectionsError (a ConnectionError) after the pool timeout."""
        try:
            # asyncio.timeout, not wait_for: wait_for can lose a turn acquired as it times out
            async with asyncio.timeout(self.pool_timeout_s):
                await self.turns.acquire()
        except builtins.TimeoutError:  # TimeoutError in this module is redis-py's
            raise MaxConnectionsError("no Redis connection free within the pool timeout") from None
        try:
            yield
        finally:
            self.turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused there
        # redis-py declares an attribute abstract that its own pipeline never defines either
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]


class _WaitingPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        async with cast(WaitingCluster, self.cluster_client).turn():
            return await super().execute(raise_on_error, allow_redirections)


def _connect_cluster(url: str, max_connections: int, pool_timeout_s: float) -> Redis:
    cluster = WaitingCluster.from_url(
        url,
        max_connections=max_connections,
        pool_timeout_s=pool_timeout_s,
        **SOCKET_TIMEOUTS,
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
    client = sync_redis.Redis.from_url(url, **SOCKET_TIMEOUTS)
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
        except REDIS_FAULTS as exc:
            log.warning("waiting for Redis to say whether it is a cluster: %s", exc)
            await asyncio.sleep(DETECT_PAUSE_S)
    if clustered:
        log.info("Redis Cluster mode: the Redis URL names a cluster node")
    return connect(
        url, settings.redis_max_connections, settings.redis_pool_timeout_ms, cluster=clustered
    )


class _SyncCluster(sync_redis.RedisCluster):
    def close(self) -> None:
        """Close every node's connections too: redis-py's close leaves their pools open (a
        ResourceWarning for each socket once it is collected)."""
        super().close()
        for node in self.get_nodes():  # type: ignore[no-untyped-call]
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()


def sync_client(url: str) -> sync_redis.Redis:
    """A synchronous client (the container health check), for a cluster too."""
    if cluster_enabled(url):
        return cast(sync_redis.Redis, _SyncCluster.from_url(url))
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
