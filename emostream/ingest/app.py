"""The ingest HTTP app: the plain-ASGI fast path for the two reaction POSTs, in front of the
Quart app that serves everything else of the role (health, errors, and the admin and poll
API to come), with the one JSON error response.

Nothing here waits on Redis: the flusher writes in the background, so a request costs parsing
and validation only. All-or-nothing: a request is validated whole before any of it is
buffered, and refused whole (503) when the buffer has no room for all of it.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from ..errors import ApiError, BodyTooLarge, from_http_status
from ..polls.gate import PollGate
from ..polls.http_ingest import fast_votes, poll_admin
from ..polls.store import PollStore
from ..settings import Settings
from ..web import error_parts
from .accept import Acceptor
from .buffer import ReactionBuffer
from .fastpath import ASGIApp, fast_ingest
from .flusher import Flusher
from .limits import RateLimiter


def create_ingest_app(
    settings: Settings,
    buffer: ReactionBuffer,
    flusher: Flusher,
    limiter: RateLimiter | None = None,
) -> ASGIApp:
    acceptor = Acceptor(settings, buffer, flusher, limiter)
    quart = create_quart_app(settings, buffer, flusher)
    app = fast_ingest(quart, acceptor, settings.max_body_bytes)
    if flusher.votes is None:
        return app
    # Polls: the admin's writes in Quart, votes on a plain-ASGI path of their own.
    quart.register_blueprint(poll_admin(settings, PollStore(flusher.redis, settings)))
    gate = PollGate(flusher.redis, settings, flusher.votes, flusher.poke)
    return fast_votes(app, gate, settings)


def create_quart_app(settings: Settings, buffer: ReactionBuffer, flusher: Flusher) -> Quart:
    app = Quart("emostream.ingest")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Ingest answers in microseconds; a request that takes longer than this is stuck.
    app.config["BODY_TIMEOUT"] = 30

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "role": "ingest",
            "producer": flusher.producer_id,
            "held": buffer.held,
            "redis_available": flusher.redis_available,
        }

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return Response(*error_parts(error))

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 413:
            return Response(*error_parts(BodyTooLarge(settings.max_body_bytes)))
        return Response(*error_parts(from_http_status(status, error.description or error.name)))

    return app
