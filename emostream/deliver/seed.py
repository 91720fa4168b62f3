"""The seed's client registration, as aliases of the subscribers API.

Earlier EmoStream clients register with ``POST /register`` and leave with
``POST /unregister``, both ``{"user_id", "group_id"}``, and count any answer but 200 as a
failure. Here ``user_id`` is the client id, ``group_id`` the cluster (default: the answering
node's) and the optional ``event_id`` the event (default ``live``). Both are thin calls into
the same ``Registry`` as ``POST /v1/events/{event_id}/subscribers`` and ``DELETE
.../subscribers/{client_id}``; only the names and the 200 differ. The seed's protocol has no
token, so a registration made here is an open one (registry.py); one made through the
subscribers API keeps its token, which ``/unregister`` then needs as a Bearer header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..auth import bearer_token
from ..bodies import read_body
from ..contract import (
    CLIENT_ID,
    CLIENT_ID_RULE,
    CLUSTER_NAME,
    CLUSTER_NAME_RULE,
    DEFAULT_EVENT,
    validate_event_id,
    whole_number_as_text,
)
from ..errors import InvalidField, MalformedBody
from ..settings import Settings
from ..web import redis_or_503
from .registry import Registry

REGISTER_PATH = "/register"
UNREGISTER_PATH = "/unregister"
SEED_BODY_MAX = 4096


def seed_routes(
    settings: Settings, nodes: Registry, admit: Callable[[Request], None]
) -> list[Route]:
    """The two aliases; ``admit`` limits registrations per client address, as on the
    subscribers API."""

    async def register(request: Request) -> Response:
        """``{"user_id", "group_id"?, "event_id"?}`` -> 200 with the assignment: where to
        listen (``stream_url``), as the subscribers API answers it."""
        admit(request)
        payload = await _json_object(request)
        client_id = _seed_id(payload, "user_id", CLIENT_ID, CLIENT_ID_RULE)
        cluster = _seed_id(payload, "group_id", CLUSTER_NAME, CLUSTER_NAME_RULE, settings.cluster)
        event_id = validate_event_id(_given(payload, "event_id", DEFAULT_EVENT))
        token = bearer_token(request.headers.get("authorization"))
        try:
            with redis_or_503("registry"):
                assignment = await nodes.assign(
                    event_id, client_id, cluster, token, open_registration=True
                )
        except InvalidField as error:
            if error.field != "cluster":
                raise
            raise InvalidField("group_id", error.message, error.code) from None
        return JSONResponse({**assignment, "user_id": client_id, "group_id": cluster})

    async def unregister(request: Request) -> Response:
        """``{"user_id", "event_id"?}`` -> 200; 404 for a client not registered."""
        payload = await _json_object(request)
        client_id = _seed_id(payload, "user_id", CLIENT_ID, CLIENT_ID_RULE)
        event_id = validate_event_id(_given(payload, "event_id", DEFAULT_EVENT))
        token = bearer_token(request.headers.get("authorization"))
        with redis_or_503("registry"):
            await nodes.unregister(event_id, client_id, token)
        return JSONResponse({"user_id": client_id, "event_id": event_id, "unregistered": True})

    return [
        Route(REGISTER_PATH, register, methods=["POST"]),
        Route(UNREGISTER_PATH, unregister, methods=["POST"]),
    ]


async def _json_object(request: Request) -> dict[str, Any]:
    body = await read_body(request.receive, SEED_BODY_MAX)  # capped while read
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("body is not valid JSON") from None
    except RecursionError:  # json's C decoder recurses once per level of nesting
        raise MalformedBody("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise MalformedBody("body must be a JSON object")
    return payload


def _seed_id(
    payload: dict[str, Any], name: str, grammar: re.Pattern[str], rule: str, default: Any = None
) -> str:
    """An id the seed may send as a number, checked against its grammar under the seed's
    field name."""
    value = whole_number_as_text(_given(payload, name, default))
    if not isinstance(value, str) or not grammar.fullmatch(value):
        code = "missing_field" if value is None else None
        raise InvalidField(name, f"{name} must be {rule}, or a whole number", code)
    return value


def _given(payload: dict[str, Any], name: str, default: Any) -> Any:
    """The field's value; absent or null means the default."""
    value = payload.get(name)
    return default if value is None else value
