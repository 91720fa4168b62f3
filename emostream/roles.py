"""Run the roles: ingest, worker, delivery, or all of them on one port (`emostream up`).

Long-lived pieces (flusher, worker loops, the hub's subscription) are started here, before
serving, and stopped after: streams are ended first, then the buffer is flushed, so a SIGTERM
keeps every accepted reaction. hypercorn serves the apps; it has no response timeout, and
sse-starlette's own shutdown hook only knows uvicorn, so the hub ends streams explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets
from redis.asyncio import Redis
from sse_starlette.sse import AppStatus

from .aggregate.worker import Worker
from .connection import connect
from .deliver.app import create_delivery_app
from .deliver.hub import Hub
from .deliver.registry import Registry
from .deliver.sockets import tune_client_sockets
from .ingest.app import create_ingest_app
from .ingest.buffer import ReactionBuffer
from .ingest.flusher import Flusher
from .redis_server import PrivateRedis
from .rules import EmojiSwarmRule
from .settings import Settings

log = logging.getLogger("emostream")

ASGIApp = Callable[..., Awaitable[None]]


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


class TunedConfig(Config):
    """hypercorn's Config, with options set on its listening sockets before it serves."""

    def __init__(self, tune: Callable[[socket.socket], None] | None = None) -> None:
        super().__init__()
        self.tune = tune

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        if self.tune is not None:
            for listener in (*sockets.secure_sockets, *sockets.insecure_sockets):
                self.tune(listener)
        return sockets


async def serve_until(
    app: ASGIApp,
    settings: Settings,
    stop: asyncio.Event,
    before_shutdown: Callable[[], None] | None = None,
    tune: Callable[[socket.socket], None] | None = None,
) -> None:
    config = TunedConfig(tune)
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 5.0
    if settings.tls_certfile:
        # hypercorn then offers h2 and http/1.1 over ALPN: browsers multiplex every stream
        # of an origin over one connection instead of six per origin.
        config.certfile = settings.tls_certfile
        config.keyfile = settings.tls_keyfile

    async def shutdown_trigger() -> None:
        await stop.wait()
        if before_shutdown is not None:
            before_shutdown()

    scheme = "https" if settings.tls_certfile else "http"
    log.info("serving on %s://%s:%d", scheme, settings.host, settings.port)
    await serve(app, config, shutdown_trigger=shutdown_trigger)


async def serve_with_uvicorn(app: ASGIApp, settings: Settings, stop: asyncio.Event) -> None:
    """uvicorn for `emostream ingest`: with the plain-ASGI fast path it answered 3.7x the
    requests/s of hypercorn in a side-by-side run (docs/benchmarks.md). TLS and HTTP/2 are for
    delivery, which stays on hypercorn."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        # Ingest answers at once; a keep-alive connection idle this long is dropped.
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    async def stop_server() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_server())
    log.info("serving on http://%s:%d (uvicorn)", settings.host, settings.port)
    try:
        # uvicorn takes SIGTERM/SIGINT itself while it serves, and ends serve() on them.
        await server.serve()
    finally:
        watcher.cancel()


async def answer_lifespan(receive: Any, send: Any) -> None:
    """Complete the ASGI lifespan protocol for an app whose resources are started elsewhere."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def combine(ingest: ASGIApp, delivery: ASGIApp) -> ASGIApp:
    """One port for every public path: reaction POSTs to ingest, everything else to delivery.

    Neither app needs the lifespan protocol (their resources are started by the runner), so
    it is answered here."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        path: str = scope.get("path", "")
        if path == "/send_emoji" or path.endswith("/reactions"):
            await ingest(scope, receive, send)
        else:
            await delivery(scope, receive, send)

    return app


@contextlib.asynccontextmanager
async def redis_for(settings: Settings) -> AsyncIterator[tuple[Redis, Settings]]:
    """A client for the configured Redis, or for a private one started (and stopped) here."""
    private: PrivateRedis | None = None
    if settings.redis_url is None:
        private = PrivateRedis().start()
        log.info("started a private redis-server (%s) on port %d", private.binary, private.port)
        settings = Settings(**{**settings.__dict__, "redis_url": private.url})
    assert settings.redis_url is not None
    redis = connect(settings.redis_url)
    try:
        yield redis, settings
    finally:
        await redis.aclose()
        if private is not None:
            private.close()


@contextlib.asynccontextmanager
async def ingest_running(redis: Redis, settings: Settings) -> AsyncIterator[ASGIApp]:
    buffer = ReactionBuffer(settings.shards, settings.buffer_max)
    flusher = Flusher(redis, settings, buffer)
    await flusher.flush()  # registers this producer's watermark before any request
    task = asyncio.create_task(flusher.run(), name="flusher")
    try:
        yield create_ingest_app(settings, buffer, flusher)
    finally:
        await flusher.stop()
        await task
        log.info("ingest stopped: %d reactions written", flusher.reactions_written)


@contextlib.asynccontextmanager
async def worker_running(redis: Redis, settings: Settings) -> AsyncIterator[Worker]:
    worker = Worker(redis, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="worker")
    try:
        yield worker
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def node_registered(redis: Redis, settings: Settings, hub: Hub) -> AsyncIterator[Registry]:
    """This delivery node's registration in its cluster, heartbeating until shutdown."""
    registry = Registry(redis, settings, hub)
    stop = asyncio.Event()
    task = asyncio.create_task(registry.run(stop), name="registry")
    try:
        yield registry
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def hub_running(redis: Redis, settings: Settings) -> AsyncIterator[Hub]:
    hub = Hub(redis, settings, EmojiSwarmRule(settings.top_n, settings.scale))
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop), name="hub")
    try:
        yield hub
    finally:
        hub.close()
        stop.set()
        await task


def _end_streams(hub: Hub) -> Callable[[], None]:
    def end() -> None:
        hub.close()
        AppStatus.should_exit = True

    return end


def client_sockets(settings: Settings) -> Callable[[socket.socket], None]:
    return lambda listener: tune_client_sockets(listener, settings)


async def run_ingest(settings: Settings, stop: asyncio.Event) -> None:
    async with redis_for(settings) as (redis, settings), ingest_running(redis, settings) as app:
        if settings.ingest_server == "uvicorn":
            await serve_with_uvicorn(app, settings, stop)
        else:
            await serve_until(app, settings, stop)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    async with redis_for(settings) as (redis, settings), worker_running(redis, settings):
        log.info("worker running")
        await stop.wait()


async def run_delivery(settings: Settings, stop: asyncio.Event) -> None:
    async with (
        redis_for(settings) as (redis, settings),
        hub_running(redis, settings) as hub,
        node_registered(redis, settings, hub) as registry,
    ):
        app = create_delivery_app(settings, hub, registry)
        await serve_until(app, settings, stop, _end_streams(hub), client_sockets(settings))


async def run_up(settings: Settings, stop: asyncio.Event) -> None:
    async with (
        redis_for(settings) as (redis, settings),
        worker_running(redis, settings),
        hub_running(redis, settings) as hub,
        node_registered(redis, settings, hub) as registry,
        ingest_running(redis, settings) as ingest_app,
    ):
        app = combine(ingest_app, create_delivery_app(settings, hub, registry))
        await serve_until(app, settings, stop, _end_streams(hub), client_sockets(settings))
