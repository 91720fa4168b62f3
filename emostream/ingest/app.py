"""The ingest HTTP app (Quart): validate, stamp the receive time, buffer, answer 202.

Nothing here waits on Redis: the flusher writes in the background, so a request costs parsing
and validation only. All-or-nothing: a request is validated whole before any of it is
buffered, and refused whole (503) when the buffer has no room for all of it.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from ..api_errors import error_json, from_http_status
from ..clock import now_ms
from ..errors import ApiError, Unavailable
from ..settings import Settings
from .buffer import ReactionBuffer
from .flusher import Flusher
from .validation import (
    SEED_FIELDS,
    FieldNames,
    normalize_emoji,
    parse_body,
    validate_event_id,
    validate_reactions,
)

DEFAULT_EVENT = "live"
JSON = "application/json"


def _error_response(error: ApiError) -> Response:
    return Response(error_json(error), error.status, error.headers(), content_type=JSON)


def create_ingest_app(settings: Settings, buffer: ReactionBuffer, flusher: Flusher) -> Quart:
    app = Quart("emostream.ingest")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    # Ingest answers in microseconds; a request that takes longer than this is stuck.
    app.config["BODY_TIMEOUT"] = 30
    allowed = frozenset(
        normalized
        for normalized in (normalize_emoji(e) for e in settings.allowed_emojis)
        if normalized is not None
    )

    async def accept(event_id: str, names: FieldNames, payload: Any) -> Response:
        reactions = validate_reactions(payload, settings.max_batch, allowed, names)
        if buffer.room() < len(reactions):
            raise Unavailable("the ingest buffer is full; retry shortly", retry_after_s=1)
        buffer.add(event_id, reactions, now_ms())
        if buffer.pending >= settings.flush_max:
            flusher.poke()
        return Response(b'{"accepted":%d}' % len(reactions), 202, content_type=JSON)

    async def read_payload() -> Any:
        body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        return parse_body(request.headers.get("Content-Type"), body)

    @app.post("/v1/events/<event_id>/reactions")
    async def post_reactions(event_id: str) -> Response:
        validate_event_id(event_id)
        return await accept(event_id, FieldNames(), await read_payload())

    @app.post("/send_emoji")
    async def send_emoji() -> Response:
        """Seed-compatible alias: ``{"user_id", "emoji_type", "timestamp", "event_id"?}``."""
        payload = await read_payload()
        event_id = DEFAULT_EVENT
        if isinstance(payload, dict) and "event_id" in payload:
            candidate = payload["event_id"]
            if not isinstance(candidate, str):
                raise ApiError(422, "invalid_field", "event_id must be a string", "event_id")
            event_id = validate_event_id(candidate)
        return await accept(event_id, SEED_FIELDS, payload)

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
