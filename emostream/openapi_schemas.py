"""The schemas of the OpenAPI documents (emostream/openapi.py): the window, reaction, error and
registration objects of ../shared/DESIGN.md, as strict as the code that answers with them; and
the builders every part of the documents is written with (``object_of``, ``array_of``,
``json_answer``, ``errors``, ...), imported by the other modules as ``spec``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .contract import CLIENT_ID_RULE, CONTRACT_VERSION, EVENT_ID_RULE, USER_ID_RULE

OPENAPI_VERSION = "3.1.0"

REACTION_MEDIA_TYPES = ("application/json", "application/msgpack")
EVENT_ID_PATTERN = "^[A-Za-z0-9_-]{1,64}$"
USER_ID_PATTERN = "^[A-Za-z0-9_.:@-]{1,64}$"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def object_of(
    properties: dict[str, Any], required: Sequence[str] = (), **keywords: Any
) -> dict[str, Any]:
    """An object schema of ``properties``, of which ``required`` must be present; ``keywords``
    add the rest (a description)."""
    schema: dict[str, Any] = {"type": "object", **keywords}
    if required:
        schema["required"] = list(required)
    schema["properties"] = properties
    return schema


def array_of(items: dict[str, Any], **keywords: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **keywords}


SCHEMAS: dict[str, Any] = {
    "Error": object_of(
        {
            "error": object_of(
                {
                    "code": {"type": "string", "description": "stable machine code"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"], "description": "the offending field"},
                },
                required=["code", "message", "field"],
            )
        },
        required=["error"],
        description="The one error shape of every route.",
    ),
    "ClientTime": {
        "description": "Client time, kept for analytics only: RFC 3339 with a time zone, or "
        "Unix seconds.",
        "oneOf": [
            {"type": "string", "format": "date-time", "maxLength": 40},
            {"type": "number", "minimum": 0, "exclusiveMaximum": 1e11},
            {"type": "null"},
        ],
    },
    "Reaction": object_of(
        {
            "user_id": {"type": "string", "pattern": USER_ID_PATTERN, "description": USER_ID_RULE},
            "emoji": {
                "type": "string",
                "minLength": 1,
                "maxLength": 32,
                "description": "exactly one emoji (one grapheme cluster)",
            },
            "ts": ref("ClientTime"),
        },
        required=["user_id", "emoji"],
    ),
    "SeedReaction": object_of(
        {
            "user_id": {"type": "string", "pattern": USER_ID_PATTERN},
            "emoji_type": {"type": "string", "minLength": 1, "maxLength": 32},
            "timestamp": ref("ClientTime"),
            "event_id": {"type": "string", "pattern": EVENT_ID_PATTERN},
        },
        required=["user_id", "emoji_type"],
        description="The payload earlier EmoStream clients send.",
    ),
    "Accepted": object_of(
        {"accepted": {"type": "integer", "minimum": 1, "maximum": 500}}, required=["accepted"]
    ),
    "TopEmoji": object_of(
        {
            "emoji": {"type": "string"},
            "count": {"type": "integer", "minimum": 1},
            "swarm": {"type": "integer", "minimum": 0},
        },
        required=["emoji", "count", "swarm"],
    ),
    "Window": object_of(
        {
            "v": {"const": CONTRACT_VERSION},
            "event_id": {"type": "string", "pattern": EVENT_ID_PATTERN},
            "seq": {"type": "integer", "minimum": 1},
            "window_start_ms": {"type": "integer"},
            "window_end_ms": {"type": "integer"},
            "total": {"type": "integer", "minimum": 0},
            "unique_users": {"type": "integer", "minimum": 0},
            "top": array_of(ref("TopEmoji")),
            "revision": {"type": "integer", "minimum": 1},
        },
        # Every field but ``revision``, which only a revised window carries.
        required=[
            "v",
            "event_id",
            "seq",
            "window_start_ms",
            "window_end_ms",
            "total",
            "unique_users",
            "top",
        ],
    ),
    "Registration": object_of(
        {
            "client_id": {
                "type": "string",
                "pattern": USER_ID_PATTERN,
                "description": CLIENT_ID_RULE + "; generated when absent",
            },
            "cluster": {
                "type": "string",
                "pattern": EVENT_ID_PATTERN,
                "description": "defaults to the answering node's cluster",
            },
        }
    ),
    "Assignment": object_of(
        {
            "client_id": {"type": "string"},
            "event_id": {"type": "string"},
            "cluster": {"type": "string"},
            "node": {"type": "string"},
            "stream_url": {"type": "string"},
            "token": {
                "type": "string",
                "description": "needed to unregister, or to register this client id again",
            },
        },
        required=["client_id", "event_id", "cluster", "node", "stream_url", "token"],
    ),
    "Health": object_of({"role": {"type": "string"}}, required=["role"]),
    "Stats": object_of(
        {
            "at_ms": {"type": "integer"},
            "workers": array_of({"type": "object"}),
            "shards": array_of({"type": "object"}),
            "producers": array_of({"type": "object"}),
            "delivery": {"type": "object"},
            "events": array_of({"type": "object"}),
        },
        required=["at_ms", "workers", "shards", "producers", "delivery", "events"],
        description="The operator's read model of every tier (README, the dashboard).",
    ),
}

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "EMOSTREAM_ADMIN_TOKEN; /v1/stats is open while none is configured",
    },
    "registrationToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "the token a registration answered",
    },
}

WHY = {
    400: "malformed: the body does not parse, or has the wrong overall shape",
    401: "a Bearer token is needed",
    403: "the token is not this registration's",
    404: "no such route (an id holding a slash), or nothing registered under the id",
    405: "method not allowed",
    408: "the body did not arrive in time",
    409: "the client id is registered; registering it again needs its token",
    413: "the body is over the byte limit, or holds more than 500 reactions",
    415: "Content-Type is neither application/json nor application/msgpack",
    422: "a field breaks the contract; `field` names it",
    429: "rate limited; retry after Retry-After seconds",
    503: "buffer full or Redis unavailable; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^\\d+$"}}}


def errors(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": WHY[status],
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status in (429, 503):
            answer["headers"] = RETRY_AFTER
        answers[str(status)] = answer
    return answers


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def path_id(name: str, pattern: str = "", rule: str = "") -> dict[str, Any]:
    """A path parameter of the id grammar ``pattern``; without one, any text (a CORS
    preflight is allowed for any id: the call itself checks it, and answers why)."""
    if not pattern:
        return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": rule,
        "schema": {"type": "string", "pattern": pattern},
    }


def query_integer(name: str, minimum: int, maximum: int) -> dict[str, Any]:
    """An optional whole-number query parameter from ``minimum`` to ``maximum``."""
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return {"name": name, "in": "query", "schema": schema}


EVENT_ID = path_id("event_id", EVENT_ID_PATTERN, EVENT_ID_RULE)
CLIENT_ID = path_id("client_id", USER_ID_PATTERN, CLIENT_ID_RULE)


def reactions_body(one: str) -> dict[str, Any]:
    schema = {
        "oneOf": [
            ref(one),
            array_of(ref(one), minItems=1, maxItems=500),
        ]
    }
    return {
        "required": True,
        "description": "one reaction or an array of up to 500; all-or-nothing",
        "content": {media: {"schema": schema} for media in REACTION_MEDIA_TYPES},
    }


PREFLIGHT = {
    "summary": "CORS preflight: any origin may send reactions",
    "responses": {"204": {"description": "allowed"}},
}
