"""The delivery HTTP app (Starlette + sse-starlette): the swarm stream and window history."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError
from sse_starlette.event import ServerSentEvent
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..api_errors import error_json, from_http_status
from ..errors import ApiError, InvalidField, Unavailable
from ..ingest.validation import validate_event_id
from ..settings import Settings
from .frames import parse_last_event_id, retry_frame
from .hub import Frame, Hub, Subscriber
from .pages import page_routes

log = logging.getLogger(__name__)

# A client whose socket accepts nothing for this long is gone: its stream is ended.
SEND_TIMEOUT_S = 10.0
# Browsers reconnect after retry ms; jitter spreads a reconnect storm over a few seconds.
RETRY_BASE_MS = 1000
RETRY_JITTER_MS = 2000
WINDOWS_LIMIT_MAX = 1000


def _error_response(error: ApiError) -> Response:
    return Response(error_json(error), error.status, error.headers(), media_type="application/json")


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidField(name, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise InvalidField(name, f"{name} must be between {low} and {high}")
    return value


async def _frames(
    hub: Hub, subscriber: Subscriber, backlog: list[Frame], after: int | None
) -> AsyncIterator[bytes]:
    try:
        yield retry_frame(RETRY_BASE_MS + random.randrange(RETRY_JITTER_MS))
        sent = (after, 1 << 30) if after is not None else (-1, 0)
        for key, frame in backlog:
            if key > sent:
                sent = key
                yield frame
        while not subscriber.closed:
            await subscriber.wake.wait()
            subscriber.wake.clear()
            while subscriber.frames:
                key, frame = subscriber.frames.popleft()
                if key[1]:  # a revision of a window already sent
                    yield frame
                elif key > sent:
                    sent = key
                    yield frame
    finally:
        hub.detach(subscriber)


def create_delivery_app(settings: Settings, hub: Hub) -> Starlette:
    async def stream(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        raw_last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        try:
            after = parse_last_event_id(raw_last)
        except ValueError:
            raise InvalidField("Last-Event-ID", "Last-Event-ID must be a window seq") from None
        subscriber = hub.attach(event_id)
        try:
            backlog = await hub.backlog(event_id, after)
        except (RedisError, OSError) as exc:
            log.warning("no backlog for %s: %s", event_id, exc)
            backlog = []
        return EventSourceResponse(
            _frames(hub, subscriber, backlog, after),
            ping=settings.heartbeat_s,
            ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
            send_timeout=SEND_TIMEOUT_S,
            headers={"Access-Control-Allow-Origin": "*"},
        )

    async def windows(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        after = _int_query(request, "after", 0, 0, 2**62)
        limit = _int_query(request, "limit", 100, 1, WINDOWS_LIMIT_MAX)
        try:
            records = await hub.history(event_id, after, limit)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"history unavailable: {exc}") from None
        body: list[dict[str, Any]] = [hub.rule.window_object(r) for r in records]
        return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "role": "delivery",
                "subscribed": hub.subscribed.is_set(),
                "connections": hub.connections,
                "windows_received": hub.windows_received,
            }
        )

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error_response(from_http_status(exc.status_code, str(exc.detail)))

    return Starlette(
        routes=[
            Route("/v1/events/{event_id}/stream", stream),
            Route("/v1/events/{event_id}/windows", windows),
            Route("/healthz", healthz),
            *page_routes(settings, hub),
        ],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
