"""The delivery HTTP app (Starlette): the swarm stream, window history and client registration."""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..api_errors import error_json, from_http_status
from ..errors import ApiError, InvalidField, MalformedBody, Unavailable
from ..ingest.validation import validate_event_id
from ..settings import Settings
from .frames import parse_last_event_id
from .hub import Hub
from .pages import page_routes
from .registry import Registry
from .stream import SwarmStream

log = logging.getLogger(__name__)

# Browsers reconnect after retry ms; jitter spreads a reconnect storm over a few seconds.
RETRY_BASE_MS = 1000
RETRY_JITTER_MS = 2000
WINDOWS_LIMIT_MAX = 1000
SUBSCRIBER_BODY_MAX = 4096
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
CLUSTER = re.compile(r"[A-Za-z0-9_-]{1,64}")


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


def _subscriber_request(body: bytes, default_cluster: str) -> tuple[str, str]:
    """(client_id, cluster) from an optional JSON object ``{"client_id"?, "cluster"?}``."""
    if len(body) > SUBSCRIBER_BODY_MAX:
        raise ApiError(413, "too_large", f"body over {SUBSCRIBER_BODY_MAX} bytes")
    payload: Any = {}
    if body.strip():
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedBody("body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise MalformedBody("body must be a JSON object")
    client_id = payload.get("client_id")
    if client_id is None:
        client_id = secrets.token_hex(12)
    elif not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise InvalidField("client_id", "client_id must be 1-64 characters of A-Za-z0-9_.:@-")
    cluster = payload.get("cluster", default_cluster)
    if not isinstance(cluster, str) or not CLUSTER.fullmatch(cluster):
        raise InvalidField("cluster", "cluster must be 1-64 characters of A-Za-z0-9_-")
    return client_id, cluster


def create_delivery_app(
    settings: Settings, hub: Hub, registry: Registry | None = None
) -> Starlette:
    nodes = registry or Registry(hub.redis, settings, hub)

    async def stream(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        raw_last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        try:
            after = parse_last_event_id(raw_last)
        except ValueError:
            raise InvalidField("Last-Event-ID", "Last-Event-ID must be a window seq") from None
        subscriber, backlog = await hub.join(event_id, after)
        retry_ms = RETRY_BASE_MS + random.randrange(RETRY_JITTER_MS)
        return SwarmStream(hub, subscriber, backlog, after, retry_ms)

    async def windows(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        after = _int_query(request, "after", 0, 0, 2**62)
        limit = _int_query(request, "limit", 100, 1, WINDOWS_LIMIT_MAX)
        try:
            records = await hub.history.after(event_id, after, limit)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"history unavailable: {exc}") from None
        body: list[dict[str, Any]] = [hub.rule.window_object(r) for r in records]
        return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*"})

    async def register_subscriber(request: Request) -> Response:
        """Assign a client to the least-loaded live node of a cluster (this node's cluster
        unless the body names one) and answer the stream URL to open there."""
        event_id = validate_event_id(request.path_params["event_id"])
        client_id, cluster = _subscriber_request(await request.body(), settings.cluster)
        try:
            assignment = await nodes.assign(event_id, client_id, cluster)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"registry unavailable: {exc}") from None
        return JSONResponse(assignment, status_code=201)

    async def unregister_subscriber(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        client_id = request.path_params["client_id"]
        if not CLIENT_ID.fullmatch(client_id):
            raise InvalidField("client_id", "client_id must be 1-64 characters of A-Za-z0-9_.:@-")
        try:
            removed = await nodes.unregister(event_id, client_id)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"registry unavailable: {exc}") from None
        if not removed:
            raise ApiError(404, "not_found", f"no client {client_id!r} registered for {event_id}")
        return Response(status_code=204)

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "role": "delivery",
                "subscribed": hub.subscribed.is_set(),
                "connections": hub.connections,
                "windows_received": hub.windows_received,
                "subscriptions": hub.subscriptions,
                "windows_filled": hub.windows_filled,
                "node": nodes.node_id,
                "cluster": settings.cluster,
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
            Route("/v1/events/{event_id}/subscribers", register_subscriber, methods=["POST"]),
            Route(
                "/v1/events/{event_id}/subscribers/{client_id}",
                unregister_subscriber,
                methods=["DELETE"],
            ),
            Route("/healthz", healthz),
            *page_routes(settings, hub),
        ],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
    )
