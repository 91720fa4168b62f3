"""Serving an ASGI app: the server software (uvicorn by default, hypercorn for HTTP/2), its
listening socket, graceful shutdown that ends open streams first, and the one-port
composition of ingest and delivery for `emostream up`."""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple, TypeVar

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets

from .deadlines import Deadlines
from .ingest.fastpath import is_reaction_path
from .lifecycle import running
from .polls.http_ingest import is_poll_write
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
    job = _Serving(app, settings, stop, before_shutdown, tune)
    await (_serve_with_uvicorn if settings.server == "uvicorn" else _serve_with_hypercorn)(job)


class _Serving(NamedTuple):
    app: ASGIApp
    settings: Settings
    stop: asyncio.Event
    # Runs as the server begins its graceful shutdown: ends the streams, which never end
    # by themselves.
    before_shutdown: Callable[[], None] | None
    # Options set on the listening socket, inherited by every accepted client socket.
    tune: Callable[[socket.socket], None] | None


async def _serve_with_hypercorn(job: _Serving) -> None:
    app, settings, stop, before_shutdown, tune = job
    config = TunedConfig(tune)
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = GRACEFUL_TIMEOUT_S
    # Heads over the limit are refused by h11 with 431 (HTTP/2: the header list limit).
    config.h11_max_incomplete_size = settings.max_header_bytes
    config.h2_max_header_list_size = settings.max_header_bytes
    # hypercorn has one timer from the end of a request (or the connection's start) to the
    # end of the next head: it bounds idle connections and slow heads alike, so it gets the
    # shorter of the two limits. (No read_timeout: SSE clients rightly send nothing.)
    config.keep_alive_timeout = min(settings.idle_timeout_s, settings.header_timeout_s)
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


async def _serve_with_uvicorn(job: _Serving) -> None:
    """uvicorn (httptools) is the default: side by side it answered 3.7x hypercorn's
    requests/s on ingest (docs/benchmarks.md) and its per-send path is a direct transport
    write. It speaks HTTP/1.1 only; hypercorn (EMOSTREAM_SERVER=hypercorn) adds HTTP/2.
    Its httptools protocol runs with the head limits it lacks (protocol.py)."""
    app, settings, stop, before_shutdown, tune = job
    import uvicorn

    from .protocol import limited_protocol

    deadlines = Deadlines()
    config = uvicorn.Config(
        app,
        http=limited_protocol(settings, deadlines),
        lifespan="off",
        access_log=False,
        log_level="warning",
        # A keep-alive connection idle this long between requests is dropped.
        timeout_keep_alive=math.ceil(settings.idle_timeout_s),
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
        async with running("head deadlines", deadlines.run):
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
    """One port for every public path: reaction POSTs and poll writes to ingest, everything
    else to delivery.

    Neither app needs the lifespan protocol (their resources are started by the runner), so
    it is answered here."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        if is_reaction_path(scope.get("path", "")) or is_poll_write(scope):
            await ingest(scope, receive, send)
        else:
            await delivery(scope, receive, send)

    return app
