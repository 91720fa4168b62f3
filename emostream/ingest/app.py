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
from ..metrics import Metrics, ingest_families
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
    metrics: Metrics | None = None,
) -> ASGIApp:
    """The role's app; its figures join ``metrics``, the process's registry (a registry of
    its own when none is given)."""
    acceptor = Acceptor(settings, buffer, flusher, limiter)
    metrics = metrics or Metrics()
    metrics.add(*ingest_families(acceptor, buffer, flusher))
    quart = create_quart_app(settings, buffer, flusher, metrics)
    return fast_ingest(quart, acceptor, settings.max_body_bytes)


def create_quart_app(
    settings: Settings, buffer: ReactionBuffer, flusher: Flusher, metrics: Metrics
) -> Quart:
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
            "events_known": flusher.events.known,
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, 200, content_type=content_type)

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
