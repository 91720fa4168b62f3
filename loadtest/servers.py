"""The HTTP targets of the ingest benchmark, each one process: ``python -m loadtest.servers``.

- ``ingest``: our ingest app (Quart), buffered and flushed to Redis exactly as ``emostream
  ingest`` runs it, on the chosen server software.
- ``bare``: the Python ceiling. A bare ASGI handler that reads the body, parses the same JSON
  with the same ``json.loads``, counts the reactions and answers the same 202: no framework,
  no validation, no buffer.
- ``noparse``: the server software's own limit. The same bare handler, reading the body and
  answering 202 without parsing it.
- ``flask``: the seed-style design. Flask, one synchronous Redis write (XADD) per reaction
  before answering, served as WSGI by hypercorn (its thread pool), so the server software is
  the same and the ratio is about the design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from emostream.roles import ingest_running, redis_for
from emostream.serving import answer_lifespan, run_on_fastest_loop
from emostream.settings import Settings

ASGIApp = Callable[..., Awaitable[None]]
SERVERS = ("hypercorn", "uvicorn", "granian")
HEADERS_202 = [(b"content-type", b"application/json")]


async def _request_body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [*HEADERS_202, (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _reference_app(role: bytes, parse: bool) -> ASGIApp:
    """A bare handler: it reads the body whole and, with ``parse``, ``json.loads`` it and
    counts the reactions; no framework, no validation, no buffer."""
    health = b'{"role":"%s"}' % role

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await answer_lifespan(receive, send)
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            return await _answer(send, 200, health)
        body = await _request_body(receive)
        accepted = 1
        if parse:
            payload = json.loads(body)
            accepted = len(payload) if isinstance(payload, list) else 1
        await _answer(send, 202, b'{"accepted":%d}' % accepted)

    return app


bare_app = _reference_app(b"bare", parse=True)
# The server's own limit: the body is read whole and not parsed.
noparse_app = _reference_app(b"noparse", parse=False)


def flask_app(redis_url: str) -> Any:
    """The seed's shape: parse, then one blocking Redis write per reaction, then answer."""
    import redis
    from flask import Flask, request

    app = Flask("seed")
    client = redis.Redis.from_url(redis_url)

    @app.post("/v1/events/<event_id>/reactions")
    def post(event_id: str) -> tuple[dict[str, int], int]:
        payload = request.get_json()
        reactions = payload if isinstance(payload, list) else [payload]
        for reaction in reactions:
            client.xadd(
                f"seed:{event_id}",
                {"user_id": reaction["user_id"], "emoji": reaction["emoji"]},
                maxlen=100_000,
                approximate=True,
            )
        return {"accepted": len(reactions)}, 202

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"role": "seed"}

    return app


async def serve(app: Any, server: str, port: int, stop: asyncio.Event, wsgi: bool = False) -> None:
    if server == "hypercorn":
        from hypercorn.asyncio import serve as hypercorn_serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = None
        config.graceful_timeout = 2.0
        config.backlog = 1024
        await hypercorn_serve(
            app, config, shutdown_trigger=stop.wait, mode="wsgi" if wsgi else "asgi"
        )
    elif server == "uvicorn":
        import uvicorn

        config_u = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            access_log=False,
            log_level="warning",
            lifespan="off",
            backlog=1024,
            interface="wsgi" if wsgi else "asgi3",
        )
        userver = uvicorn.Server(config_u)
        task = asyncio.create_task(userver.serve())
        await stop.wait()
        userver.should_exit = True
        await task
    elif server == "granian":
        from granian.constants import Interfaces
        from granian.server.embed import Server

        gserver = Server(
            app,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGINL,
            backlog=1024,
            log_enabled=False,
        )
        task = asyncio.create_task(gserver.serve())
        await stop.wait()
        # granian is in the bench extra only: untyped where it is installed, absent (Any)
        # where it is not, so no type: ignore can be right in both.
        stop_granian: Any = gserver.stop
        stop_granian()
        await task
    else:
        raise SystemExit(f"unknown server {server!r}")


async def run(target: str, server: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    settings = Settings.from_env(port=port)
    if target == "bare":
        await serve(bare_app, server, port, stop)
    elif target == "noparse":
        await serve(noparse_app, server, port, stop)
    elif target == "flask":
        assert settings.redis_url is not None, "the seed app needs EMOSTREAM_REDIS_URL"
        await serve(flask_app(settings.redis_url), server, port, stop, wsgi=True)
    elif target == "ingest":
        async with redis_for(settings) as (redis, settings), ingest_running(redis, settings) as app:
            await serve(app, server, port, stop)
    else:
        raise SystemExit(f"unknown target {target!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=("ingest", "bare", "noparse", "flask"))
    parser.add_argument("--server", choices=SERVERS, default="hypercorn")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # The loop every emostream role runs on, for every server compared here alike.
    run_on_fastest_loop(run(args.target, args.server, args.port))


if __name__ == "__main__":
    main()
