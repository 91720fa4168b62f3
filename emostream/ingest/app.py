"""The ingest HTTP app: validate, stamp the receive time, buffer, answer 202.

Nothing here waits on Redis: the flusher writes in the background, so a request costs parsing
and validation only. All-or-nothing: a request is validated whole before any of it is
buffered, and refused whole (503) when the buffer has no room for all of it.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from ..api_errors import error_json, from_http_status
from ..errors import ApiError
from ..settings import Settings
from .accept import Acceptor
from .buffer import ReactionBuffer
from .fastpath import ASGIApp, fast_ingest
from .flusher import Flusher

JSON = "application/json"


def _error_response(error: ApiError) -> Response:
    return Response(error_json(error), error.status, error.headers(), content_type=JSON)


def create_ingest_app(settings: Settings, buffer: ReactionBuffer, flusher: Flusher) -> ASGIApp:
    """The Quart app, behind the plain-ASGI fast path for the two reaction POSTs."""
    acceptor = Acceptor(settings, buffer, flusher)
    return fast_ingest(
        create_quart_app(settings, acceptor, buffer, flusher), acceptor, settings.max_body_bytes
    )


def create_quart_app(
    settings: Settings, acceptor: Acceptor, buffer: ReactionBuffer, flusher: Flusher
) -> Quart:
    app = Quart("emostream.ingest")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Ingest answers in microseconds; a request that takes longer than this is stuck.
    app.config["BODY_TIMEOUT"] = 30

    def accepted(count: int) -> Response:
        return Response(b'{"accepted":%d}' % count, 202, content_type=JSON)

    async def body() -> bytes:
        return await request.get_data(cache=False, as_text=False, parse_form_data=False)

    @app.post("/v1/events/<event_id>/reactions")
    async def post_reactions(event_id: str) -> Response:
        content_type = request.headers.get("Content-Type")
        return accepted(acceptor.reactions(event_id, content_type, await body()))

    @app.post("/send_emoji")
    async def send_emoji() -> Response:
        return accepted(acceptor.send_emoji(request.headers.get("Content-Type"), await body()))

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
        return _error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 413:
            message = f"body is larger than {settings.max_body_bytes} bytes"
        return _error_response(from_http_status(status, message))

    return app
