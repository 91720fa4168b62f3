"""The roles and their lifecycles: ingest, worker, delivery, or all of them on one port
(`emostream up`), the composition root.

Long-lived pieces (flusher, worker loops, the hub's subscription, the node registration) are
started before serving and stopped after: streams are ended first, then the buffer is
flushed, so a SIGTERM keeps every accepted reaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import NamedTuple

from redis.asyncio import Redis

from .aggregate.worker import Worker
from .connection import connect_for
from .deadlines import Deadlines
from .deliver.app import create_delivery_app
from .deliver.collector import CollectionPacer
from .deliver.hub import Hub
from .deliver.registry import Registry
from .deliver.sockets import tune_client_sockets
from .ingest.app import create_ingest_app
from .ingest.buffer import ReactionBuffer
from .ingest.flusher import Flusher
from .ingest.limits import RateLimiter
from .lifecycle import running, serving
from .metrics import Metrics, delivery_families, worker_families
from .polls.fanout import PollFanout
from .polls.gate import VoteBuffer
from .polls.store import PollStore
from .redis_server import PrivateRedis
from .rules import EmojiSwarmRule
from .serving import ASGIApp, combine, serve_until
from .settings import Settings

log = logging.getLogger("emostream")


@contextlib.asynccontextmanager
async def redis_for(
    settings: Settings, data_dir: str = ""
) -> AsyncIterator[tuple[Redis, Settings]]:
    """A client for the configured Redis, or for a private one started (and stopped) here:
    persisted in ``data_dir`` (AOF everysec) when one is given, else in a throwaway one."""
    private: PrivateRedis | None = None
    if settings.redis_url is None:
        private = PrivateRedis(appendonly=bool(data_dir), directory=data_dir or None).start()
        log.info(
            "started a private redis-server (%s) on port %d, data in %s",
            private.binary,
            private.port,
            private.directory if data_dir else "a temporary directory (ephemeral)",
        )
        settings = Settings(**{**settings.__dict__, "redis_url": private.url})
    assert settings.redis_url is not None
    redis = await connect_for(settings)
    try:
        yield redis, settings
    finally:
        await redis.aclose()
        if private is not None:
            private.close()


@contextlib.asynccontextmanager
async def own_client(settings: Settings) -> AsyncIterator[Redis]:
    """Another client of the same Redis, with a pool of its own."""
    redis = await connect_for(settings)
    try:
        yield redis
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def ingest_running(
    redis: Redis, settings: Settings, metrics: Metrics | None = None
) -> AsyncIterator[ASGIApp]:
    buffer = ReactionBuffer(settings.shards, settings.buffer_max, settings.event_split)
    flusher = Flusher(
        redis, settings, buffer, votes=VoteBuffer(settings.shards, settings.buffer_max)
    )
    limiter = rate_limiter(settings)
    await flusher.flush()  # registers this producer's watermark before any request
    task = asyncio.create_task(flusher.run(), name="flusher")
    deadlines = Deadlines()
    try:
        async with (
            running("rate-limits", partial(limiter.run, redis, settings)),
            running("body deadlines", deadlines.run),
        ):
            yield create_ingest_app(settings, buffer, flusher, deadlines, limiter, metrics)
    finally:
        await flusher.stop()
        await task
        log.info("ingest stopped: %d reactions written", flusher.reactions_written)


def worker_running(
    redis: Redis, settings: Settings, metrics: Metrics
) -> contextlib.AbstractAsyncContextManager[Worker]:
    worker = Worker(redis, settings)
    metrics.add(*worker_families(worker))
    return serving("worker", worker)


def node_registered(
    redis: Redis, settings: Settings, hub: Hub
) -> contextlib.AbstractAsyncContextManager[Registry]:
    """This delivery node's registration in its cluster, heartbeating until shutdown."""
    return serving("registry", Registry(redis, settings, hub))


@contextlib.asynccontextmanager
async def hub_running(redis: Redis, settings: Settings, metrics: Metrics) -> AsyncIterator[Hub]:
    hub = Hub(redis, settings, EmojiSwarmRule(settings.top_n, settings.scale))
    hub.on_poll = PollFanout(PollStore(redis, settings), hub)
    pacer = CollectionPacer()
    metrics.add(*delivery_families(hub, pacer))
    pacer.install()
    hub.idle = pacer.idle
    try:
        async with running("hub", hub.run):
            try:
                yield hub
            finally:
                hub.close()
    finally:
        pacer.uninstall()


def rate_limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(
        settings.user_rate,
        settings.user_burst,
        settings.ip_rate,
        settings.ip_burst,
        settings.trusted_proxies,
    )


def client_sockets(settings: Settings) -> Callable[[socket.socket], None]:
    return lambda listener: tune_client_sockets(listener, settings)


class Served(NamedTuple):
    """What a role serves over HTTP (``serve_until``'s arguments): its app, what ends its
    streams as shutdown begins, and how its client sockets are tuned."""

    app: ASGIApp
    before_shutdown: Callable[[], None] | None = None
    tune: Callable[[socket.socket], None] | None = None


@contextlib.asynccontextmanager
async def ingest_served(
    redis: Redis, settings: Settings, metrics: Metrics
) -> AsyncIterator[Served]:
    async with ingest_running(redis, settings, metrics) as app:
        yield Served(app)


@contextlib.asynccontextmanager
async def delivery_served(
    redis: Redis, settings: Settings, metrics: Metrics, with_reactions: bool = False
) -> AsyncIterator[Served]:
    """The hub and this node's registration running, and the role's app; ``with_reactions``
    when ingest shares its port (`emostream up`)."""
    async with (
        hub_running(redis, settings, metrics) as hub,
        node_registered(redis, settings, hub) as registry,
    ):
        app = create_delivery_app(settings, hub, registry, metrics, with_reactions)
        yield Served(app, hub.close, client_sockets(settings))


# Each runner makes the process's one metrics registry; every role it runs adds its figures.


async def run_alone(
    settings: Settings,
    stop: asyncio.Event,
    role: Callable[[Redis, Settings, Metrics], contextlib.AbstractAsyncContextManager[Served]],
) -> None:
    """A serving role in a process of its own, against the configured Redis, until ``stop``."""
    metrics = Metrics()
    async with redis_for(settings) as (redis, settings), role(redis, settings, metrics) as served:
        await serve_until(served.app, settings, stop, served.before_shutdown, served.tune)


async def run_ingest(settings: Settings, stop: asyncio.Event) -> None:
    await run_alone(settings, stop, ingest_served)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """The worker serves no HTTP: its metrics have a port of their own, when one is set."""
    metrics = Metrics()
    with metrics.served(settings.host, settings.metrics_port):
        async with (
            redis_for(settings) as (redis, settings),
            worker_running(redis, settings, metrics),
        ):
            log.info("worker running")
            await stop.wait()


async def run_delivery(settings: Settings, stop: asyncio.Event) -> None:
    await run_alone(settings, stop, delivery_served)


async def run_up(settings: Settings, stop: asyncio.Event) -> None:
    if not settings.admin_token:
        # One command for a demo: make the admin token rather than leave the console locked.
        settings = dataclasses.replace(settings, admin_token=secrets.token_urlsafe(24))
        log.info("no EMOSTREAM_ADMIN_TOKEN set; this run's admin token: %s", settings.admin_token)
    metrics = Metrics()
    async with (
        redis_for(settings, settings.data_dir) as (redis, settings),
        worker_running(redis, settings, metrics),
        # Each role its own pool: a burst of history reads cannot take the connections the
        # worker needs to close windows, nor the flusher's.
        own_client(settings) as delivery_redis,
        delivery_served(delivery_redis, settings, metrics, with_reactions=True) as delivery,
        own_client(settings) as ingest_redis,
        ingest_running(ingest_redis, settings, metrics) as ingest_app,
    ):
        app = combine(ingest_app, delivery.app)
        await serve_until(app, settings, stop, delivery.before_shutdown, delivery.tune)
