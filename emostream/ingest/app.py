"""The ingest HTTP app: the plain-ASGI fast path for the two reaction POSTs, in front of the
Quart app that serves everything else of the role (health, errors, and the admin and poll
API to come), with the one JSON error response.

Nothing here waits on Redis: the flusher writes in the background, so a request costs parsing
and validation only. All-or-nothing: a request is validated whole before any of it is
buffered, and refused whole (503) when the buffer has no room for all of it.
"""

from __future__ import annotations

from typing import Any, TypedDict

from quart import Quart, Response
from quart_schema import OpenAPIProvider, QuartSchema, document_response, hide
from werkzeug.exceptions import HTTPException

from ..bodies import BodyLimits, TimedBodies, guarded
from ..deadlines import Deadlines
from ..errors import ApiError, BodyTooLarge, from_http_status
from ..metrics import Metrics, ingest_families
from ..openapi import with_reaction_paths
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
    deadlines: Deadlines,
    limiter: RateLimiter | None = None,
    metrics: Metrics | None = None,
) -> ASGIApp:
    """The role's app; ``deadlines`` must be running (it cuts slow bodies). Its figures join
    ``metrics``, the process's registry (a registry of its own when none is given)."""
    acceptor = Acceptor(settings, buffer, flusher, limiter)
    metrics = metrics or Metrics()
    metrics.add(*ingest_families(acceptor, buffer, flusher))
    limits = BodyLimits.of(settings)
    quart = create_quart_app(settings, buffer, flusher, metrics)
    if flusher.votes is not None:
        # Polls: the admin's writes in Quart, votes on a plain-ASGI path of their own.
        quart.register_blueprint(poll_admin(settings, PollStore(flusher.redis, settings)))
    bodies = TimedBodies(deadlines, settings.body_timeout_s)
    app = guarded(quart, limits)
    if flusher.votes is not None:
        # Votes pass the same event admission and per-user rate limits as reactions.
        gate = PollGate(
            flusher.redis, settings, flusher.votes, flusher.poke, limiter, flusher.events
        )
        app = fast_votes(app, gate, limits, bodies)
    # The reaction POSTs first: they are the hot path, and reach their handler with one
    # path test rather than the votes' too.
    return fast_ingest(app, acceptor, limits, bodies)


class IngestHealth(TypedDict):
    role: str
    producer: str
    held: int
    redis_available: bool
    # Active events as this process counts them against EMOSTREAM_MAX_ACTIVE_EVENTS.
    events_known: int


class IngestOpenAPI(OpenAPIProvider):
    """quart-schema's document of the Quart routes, plus the fast path's operations, which
    never reach Quart (openapi.py writes them)."""

    def schema(self) -> dict[str, Any]:
        return with_reaction_paths(super().schema())


def create_quart_app(
    settings: Settings, buffer: ReactionBuffer, flusher: Flusher, metrics: Metrics
) -> Quart:
    app = Quart("emostream.ingest")
    # /openapi.json only: the documentation pages would load scripts from CDNs.
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={"title": "emostream ingest", "version": "1"},
        conversion_preference="msgspec",
        openapi_provider_class=IngestOpenAPI,
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # The body limits are the guard's (bodies.py); Quart's own apply the same numbers.
    app.config["BODY_TIMEOUT"] = settings.body_timeout_s

    @app.get("/healthz")
    @document_response(IngestHealth)
    async def healthz() -> IngestHealth:
        """Health of this ingest process"""
        return {
            "role": "ingest",
            "producer": flusher.producer_id,
            "held": buffer.held,
            "redis_available": flusher.redis_available,
            "events_known": flusher.events.known,
        }

    @app.get("/metrics")
    @hide  # Prometheus text, not a JSON route
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
