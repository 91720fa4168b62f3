"""The delivery role's poll reads (Starlette): polls, a voter's own ballot, the leaderboard.

Hidden results (``results: on_reveal``) stay hidden until the reveal except to a caller with
the admin token. With user tokens on, a ballot is shown to its own user only.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..clock import now_ms
from ..contract import USER_ID, USER_ID_RULE, validate_event_id
from ..errors import Forbidden, InvalidField, NotFound
from ..identity import is_admin, user_from_token
from ..settings import Settings
from ..web import ANY_ORIGIN, redis_or_503
from .model import poll_object, validate_poll_id
from .store import PollStore

LEADERBOARD_MAX = 1000


def _user(request: Request) -> str:
    user_id = request.path_params["user_id"]
    if not USER_ID.fullmatch(user_id):
        raise InvalidField("user_id", f"user_id must be {USER_ID_RULE}")
    return str(user_id)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return 10
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= LEADERBOARD_MAX:
        raise InvalidField("limit", f"limit must be an integer from 1 to {LEADERBOARD_MAX}")
    return int(raw)


def _json(body: Any) -> JSONResponse:
    return JSONResponse(body, headers={ANY_ORIGIN[0]: ANY_ORIGIN[1], "Cache-Control": "no-store"})


def poll_routes(settings: Settings, store: PollStore) -> list[BaseRoute]:
    async def polls(request: Request) -> Response:
        """Every poll of the event, oldest first (extension: what a page shows on load)."""
        event_id = validate_event_id(request.path_params["event_id"])
        admin = is_admin(settings, request.headers.get("authorization"))
        with redis_or_503("polls"):
            views = [await store.read(event_id, poll_id) for poll_id in await store.polls(event_id)]
        now = now_ms()
        return _json([poll_object(v, now, admin) for v in views if v is not None])

    async def poll(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        poll_id = validate_poll_id(request.path_params["poll_id"])
        with redis_or_503("polls"):
            view = await store.existing(event_id, poll_id)
        admin = is_admin(settings, request.headers.get("authorization"))
        return _json(poll_object(view, now_ms(), admin))

    async def ballot(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        poll_id = validate_poll_id(request.path_params["poll_id"])
        user_id = _user(request)
        authorization = request.headers.get("authorization")
        token_user = user_from_token(settings, authorization)
        if token_user not in (None, user_id) and not is_admin(settings, authorization):
            raise Forbidden("a ballot is shown to its own user only", "user_id")
        with redis_or_503("polls"):
            options = await store.ballot(event_id, poll_id, user_id)
        if options is None:
            raise NotFound(f"no vote recorded for {user_id!r}")
        return _json({"user_id": user_id, "options": options})

    async def leaderboard(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        with redis_or_503("leaderboard"):
            return _json(await store.leaderboard(event_id, _limit(request)))

    async def leaderboard_entry(request: Request) -> Response:
        event_id = validate_event_id(request.path_params["event_id"])
        user_id = _user(request)
        with redis_or_503("leaderboard"):
            entry = await store.leaderboard_entry(event_id, user_id)
        if entry is None:
            raise NotFound(f"{user_id!r} has no points in {event_id!r}")
        return _json(entry)

    return [
        Route("/v1/events/{event_id}/polls", polls),
        Route("/v1/events/{event_id}/polls/{poll_id}", poll),
        Route("/v1/events/{event_id}/polls/{poll_id}/votes/{user_id}", ballot),
        Route("/v1/events/{event_id}/leaderboard", leaderboard),
        Route("/v1/events/{event_id}/leaderboard/{user_id}", leaderboard_entry),
    ]
