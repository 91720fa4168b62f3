"""The delivery HTTP app (Starlette): the swarm stream, window history and client registration."""

from __future__ import annotations

import logging
import math
import random
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..auth import bearer_token, require_admin
from ..bodies import BodyLimits, guarded, read_body
from ..contract import validate_client_id, validate_cluster, validate_event_id
from ..errors import (
    ApiError,
    InvalidField,
    RateLimited,
    from_http_status,
)
from ..metrics import Metrics, delivery_families
from ..openapi import delivery_document
from ..polls.http_deliver import poll_routes
from ..polls.store import PollStore
from ..settings import Settings
from ..stats import StatsReader
from ..web import ANY_ORIGIN, error_parts, json_object, redis_or_503
from .admission import AddressBuckets
from .frames import MAX_SEQ, parse_last_event_id, reset_frame
from .hub import Hub
from .pages import page_routes
from .registry import Registry
from .seed import seed_routes
from .stream import StreamFastPath, SwarmStream

log = logging.getLogger(__name__)

# Browsers reconnect after retry ms; jitter spreads a reconnect storm over a few seconds.
RETRY_BASE_MS = 1000
RETRY_JITTER_MS = 2000
WINDOWS_LIMIT_MAX = 1000
SUBSCRIBER_BODY_MAX = 4096


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
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
    payload: Any = json_object(body) if body.strip() else {}
    client_id = payload.get("client_id")
    if client_id is None:
        client_id = secrets.token_hex(12)
    return validate_client_id(client_id), validate_cluster(payload.get("cluster", default_cluster))


def create_delivery_app(
    settings: Settings,
    hub: Hub,
    registry: Registry | None = None,
    metrics: Metrics | None = None,
    with_reactions: bool = False,
) -> StreamFastPath:
    """The role's app. ``metrics`` is the process's registry, which the runner has given
    this node's figures (and in `emostream up` every role's); without one the app keeps a
    registry of its own with the hub's. ``with_reactions`` when ingest shares its port
    (`emostream up`), so its OpenAPI document lists the reaction POSTs too."""
    nodes = registry or Registry(hub.redis, settings, hub)
    openapi_document = delivery_document(with_reactions)
    if metrics is None:
        metrics = Metrics()
        metrics.add(*delivery_families(hub, None))

    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, headers={"Content-Type": content_type})

    async def stream(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        raw_last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        try:
            after = parse_last_event_id(raw_last)
        except ValueError:
            raise InvalidField(
                "Last-Event-ID", f"Last-Event-ID must be a window seq, 0 to {MAX_SEQ}"
            ) from None
        return await open_stream(event_id, after)

    async def open_stream(event_id: str, after: int | None) -> SwarmStream:
        subscriber, backlog, resume_after = await hub.join(event_id, after)
        retry_ms = RETRY_BASE_MS + random.randrange(RETRY_JITTER_MS)
        # A seq the event no longer has: the client is told its numbering starts over.
        reset = reset_frame(event_id, after) if after is not None and resume_after is None else b""
        return SwarmStream(hub, subscriber, backlog, resume_after, retry_ms, reset)

    async def windows(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        after = _int_query(request, "after", 0, 0, 2**62)
        limit = _int_query(request, "limit", 100, 1, WINDOWS_LIMIT_MAX)
        with redis_or_503("history"):
            records = await hub.history.after(event_id, after, limit)
        body: list[dict[str, Any]] = [hub.rule.window_object(r) for r in records]
        return JSONResponse(body, headers=dict([ANY_ORIGIN]))

    registrations = AddressBuckets(settings.registration_rate_per_s, settings.registration_burst)

    def admit_registration(request: Request) -> None:
        """One registration of the client address's bucket, or 429."""
        wait_s = registrations.take(request.client.host if request.client else "")
        if wait_s:
            message = "too many registrations from this address; retry later"
            raise RateLimited(message, retry_after_s=math.ceil(wait_s))

    async def register_subscriber(request: Request) -> Response:
        """Assign a client to the least-loaded live node of a cluster (this node's cluster
        unless the body names one) and answer the stream URL to open there, with the token
        that unregistering (or registering the same client id again) needs."""
        admit_registration(request)
        event_id = validate_event_id(request.path_params["event_id"])
        body = await read_body(request.receive, SUBSCRIBER_BODY_MAX)
        client_id, cluster = _subscriber_request(body, settings.cluster)
        token = bearer_token(request.headers.get("authorization"))
        with redis_or_503("registry"):
            assignment = await nodes.assign(event_id, client_id, cluster, token)
        return JSONResponse(assignment, status_code=201, headers={"Cache-Control": "no-store"})

    async def unregister_subscriber(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        client_id = validate_client_id(request.path_params["client_id"])
        token = bearer_token(request.headers.get("authorization"))
        with redis_or_503("registry"):
            await nodes.unregister(event_id, client_id, token)
        return Response(status_code=204)

    reader = StatsReader(hub.redis, settings, hub, nodes.node_id)

    async def stats(request: Request) -> Response:
        require_admin(settings.admin_token, request.headers.get("authorization"))
        with redis_or_503("stats"):
            body = await reader.snapshot()
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document)

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
        return Response(*error_parts(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return Response(*error_parts(from_http_status(exc.status_code, str(exc.detail))))

    app = Starlette(
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
            Route("/openapi.json", openapi),
            Route("/metrics", prometheus),
            Route("/v1/stats", stats),
            *page_routes(settings),
            *seed_routes(settings, nodes, admit_registration),
            *poll_routes(settings, PollStore(hub.redis, settings)),
        ],
        exception_handlers={ApiError: on_api_error, HTTPException: on_http_error},
        middleware=[Middleware(guarded, limits=BodyLimits.of(settings))],
    )
    # The plain stream request skips the app's middleware and routing (stream.py).
    return StreamFastPath(app, open_stream)
