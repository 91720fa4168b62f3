"""Run the roles: ingest, worker, delivery, or all of them on one port (`emostream up`).

Long-lived pieces (flusher, worker loops, the hub's subscription) are started here, before
serving, and stopped after: streams are ended first, then the buffer is flushed, so a SIGTERM
keeps every accepted reaction. uvicorn (default) or hypercorn serves the apps; neither ends
an open stream by itself, so the hub ends them before the server's graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets
from redis.asyncio import Redis

from .aggregate.worker import Worker
from .connection import connect
from .deliver.app import create_delivery_app
from .deliver.collector import CollectionPacer
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
T = TypeVar("T")
GRACEFUL_TIMEOUT_S = 5
# Room for a reconnect storm: thousands of clients coming back within the retry jitter.
LISTEN_BACKLOG = 4096


def run_on_fastest_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a role on uvloop where it is installed (a dependency everywhere but Windows), else
    on asyncio's own loop: uvloop's transports write and read from C, and a delivery node
    spends most of its time in one socket write per client per window."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


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
    """Serve ``app`` on the configured server software until ``stop`` (or, on uvicorn, its
    own SIGTERM/SIGINT handling); ``before_shutdown`` runs first, to end open streams."""
    scheme = "https" if settings.tls_certfile else "http"
    log.info("serving on %s://%s:%d (%s)", scheme, settings.host, settings.port, settings.server)
    if settings.server == "uvicorn":
        await _serve_with_uvicorn(app, settings, stop, before_shutdown, tune)
    else:
        await _serve_with_hypercorn(app, settings, stop, before_shutdown, tune)


async def _serve_with_hypercorn(
    app: ASGIApp,
    settings: Settings,
    stop: asyncio.Event,
    before_shutdown: Callable[[], None] | None,
    tune: Callable[[socket.socket], None] | None,
) -> None:
    config = TunedConfig(tune)
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    if settings.tls_certfile:
        # hypercorn then offers h2 and http/1.1 over ALPN: browsers multiplex every stream
        # of an origin over one connection instead of six per origin.
        config.certfile = settings.tls_certfile
        config.keyfile = settings.tls_keyfile

    async def shutdown_trigger() -> None:
        await stop.wait()
        if before_shutdown is not None:
            before_shutdown()

    await serve(app, config, shutdown_trigger=shutdown_trigger)


async def _serve_with_uvicorn(
    app: ASGIApp,
    settings: Settings,
    stop: asyncio.Event,
    before_shutdown: Callable[[], None] | None,
    tune: Callable[[socket.socket], None] | None,
) -> None:
    """uvicorn (httptools) is the default: side by side it answered 3.7x hypercorn's
    requests/s on ingest (docs/benchmarks.md) and its per-send path is a direct transport
    write. It speaks HTTP/1.1 only; hypercorn (EMOSTREAM_SERVER=hypercorn) adds HTTP/2."""
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        log_level="warning",
        # A keep-alive connection idle this long between requests is dropped.
        timeout_keep_alive=30,
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        backlog=LISTEN_BACKLOG,
        ssl_certfile=settings.tls_certfile or None,
        ssl_keyfile=settings.tls_keyfile or None,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Streams never finish by themselves: end them before uvicorn waits for them.
            if before_shutdown is not None:
                before_shutdown()
            await super().shutdown(sockets)

    server = Server(config)
    logging.getLogger("uvicorn.error").addFilter(_ended_streams_filter)
    listener = _listen(settings.host, settings.port, tune)

    async def stop_server() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_server())
    try:
        # uvicorn takes SIGTERM/SIGINT itself while it serves, and ends serve() on them.
        await server.serve(sockets=[listener])
    finally:
        watcher.cancel()
        listener.close()


def _ended_streams_filter(record: logging.LogRecord) -> bool:
    """Drop uvicorn's error for a response left incomplete: our apps always complete theirs,
    except an SSE stream ended by the send timeout (its client accepts nothing, so the end
    of the body cannot be written either); the hub logs those itself."""
    return record.getMessage() != "ASGI callable returned without completing response."


def _listen(host: str, port: int, tune: Callable[[socket.socket], None] | None) -> socket.socket:
    """The listening socket uvicorn would make (IPv6 only for an address with a colon, so
    "localhost" listens on 127.0.0.1 as before), tuned before it listens."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if tune is not None:
        tune(listener)
    listener.bind((host.strip("[]"), port))
    listener.listen(LISTEN_BACKLOG)
    listener.setblocking(False)
    return listener


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
    pacer = CollectionPacer()
    pacer.install()
    hub.idle = pacer.idle
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop), name="hub")
    try:
        yield hub
    finally:
        try:
            hub.close()
            stop.set()
            await task
        finally:
            pacer.uninstall()


def client_sockets(settings: Settings) -> Callable[[socket.socket], None]:
    return lambda listener: tune_client_sockets(listener, settings)


async def run_ingest(settings: Settings, stop: asyncio.Event) -> None:
    async with redis_for(settings) as (redis, settings), ingest_running(redis, settings) as app:
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
        await serve_until(app, settings, stop, hub.close, client_sockets(settings))


async def run_up(settings: Settings, stop: asyncio.Event) -> None:
    async with (
        redis_for(settings, settings.data_dir) as (redis, settings),
        worker_running(redis, settings),
        hub_running(redis, settings) as hub,
        node_registered(redis, settings, hub) as registry,
        ingest_running(redis, settings) as ingest_app,
    ):
        app = combine(ingest_app, create_delivery_app(settings, hub, registry))
        await serve_until(app, settings, stop, hub.close, client_sockets(settings))
