"""The OpenAPI operations of polls, votes and trivia (emostream/polls/): ingest takes the
writes, delivery the reads; emostream/openapi.py puts them into each role's document."""

from __future__ import annotations

from typing import Any

from . import openapi_schemas as spec
from .contract import CONTRACT_VERSION, EVENT_ID_RULE, USER_ID_RULE
from .openapi_schemas import (
    EVENT_ID,
    EVENT_ID_PATTERN,
    PREFLIGHT,
    SCHEMAS,
    SECURITY_SCHEMES,
    USER_ID_PATTERN,
)

POLL_ID = spec.path_id("poll_id", EVENT_ID_PATTERN, EVENT_ID_RULE)
USER_ID = spec.path_id("user_id", USER_ID_PATTERN, USER_ID_RULE)
SCHEMAS["PollDefinition"] = spec.object_of(
    {
        "question": {"type": "string", "minLength": 1, "maxLength": 500},
        "options": spec.array_of(
            {"type": "string", "minLength": 1, "maxLength": 64},
            minItems=2,
            maxItems=20,
            uniqueItems=True,
        ),
        "kind": {"enum": ["poll", "trivia"]},
        "results": {"enum": ["live", "on_reveal"]},
        "votes_per_user": {"type": "integer", "minimum": 1},
        "changeable": {"type": "boolean"},
        "quota": {"type": "integer", "minimum": 1, "maximum": 1000},
        "duration_s": {"type": "integer", "minimum": 1, "maximum": 24 * 3600},
        "answer": {"type": "string", "description": "trivia only: one of the options"},
    },
    required=["question", "options"],
)
SCHEMAS["Poll"] = spec.object_of(
    {
        "v": {"const": CONTRACT_VERSION},
        "event_id": {"type": "string"},
        "poll_id": {"type": "string"},
        "question": {"type": "string"},
        "kind": {"enum": ["poll", "trivia"]},
        "state": {"enum": ["draft", "open", "locked", "revealed", "closed"]},
        "options": spec.array_of(
            spec.object_of(
                {"option": {"type": "string"}, "votes": {"type": "integer", "minimum": 0}},
                required=["option"],
            )
        ),
        "total": {"type": "integer", "minimum": 0},
        "version": {"type": "integer"},
        "frozen": {"type": "boolean"},
    },
    required=["v", "event_id", "poll_id", "question", "kind", "state", "options", "version"],
    description="A poll as the caller may see it: votes hidden until the reveal for "
    "`on_reveal` results, and a trivia answer until the reveal, except to the admin token.",
)
SCHEMAS["Vote"] = spec.object_of(
    {
        "user_id": {
            "type": "string",
            "pattern": USER_ID_PATTERN,
            "description": USER_ID_RULE + "; needed unless a user token names the user",
        },
        "option": {"type": "string", "description": "one of the poll's options"},
    },
    required=["option"],
)
SCHEMAS["LeaderboardEntry"] = spec.object_of(
    {
        "user_id": {"type": "string"},
        "points": {"type": "integer"},
        "rank": {"type": "integer", "minimum": 1},
    },
    required=["user_id", "points", "rank"],
)
SECURITY_SCHEMES["userToken"] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "an HS256 user token (sub = user id); needed when EMOSTREAM_TOKEN_SECRET is set",
}
WHY_POLLS = {
    403: "poll admin calls are off: no EMOSTREAM_ADMIN_TOKEN is set",
    409: "the poll is not in a state this call fits (invalid_state, poll_not_open)",
}


def poll_errors(*statuses: int) -> dict[str, Any]:
    answers = spec.errors(*statuses)
    for status, why in WHY_POLLS.items():
        if str(status) in answers:
            answers[str(status)]["description"] = why
    return answers


ADMIN_ONLY: list[dict[str, list[str]]] = [{"adminToken": []}]
ADMIN_ERRORS = poll_errors(400, 401, 403, 404, 408, 409, 413, 415, 422, 503)


def _transition(action: str, summary: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": f"{action}_poll",
        "summary": summary,
        "parameters": [EVENT_ID, POLL_ID],
        "security": ADMIN_ONLY,
        "responses": {
            "200": spec.json_answer("the poll, as the admin sees it", spec.ref("Poll")),
            **ADMIN_ERRORS,
        },
    }
    if action == "reveal":
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {"schema": spec.object_of({"answer": {"type": "string"}})}
            },
        }
    return {"post": operation}


# Ingest's poll routes: the admin's writes (Quart, polls/http_ingest.py) and votes (plain ASGI).
POLL_WRITE_PATHS: dict[str, Any] = {
    "/v1/events/{event_id}/polls/{poll_id}": {
        "put": {
            "operationId": "put_poll",
            "summary": "Create a poll, or replace it while it is a draft",
            "parameters": [EVENT_ID, POLL_ID],
            "security": ADMIN_ONLY,
            "requestBody": spec.json_body("PollDefinition"),
            "responses": {
                "201": spec.json_answer("created", spec.ref("Poll")),
                "200": spec.json_answer("the draft replaced", spec.ref("Poll")),
                **ADMIN_ERRORS,
            },
        }
    },
    "/v1/events/{event_id}/polls/{poll_id}/open": _transition("open", "Open a draft poll"),
    "/v1/events/{event_id}/polls/{poll_id}/lock": _transition(
        "lock", "Lock an open poll; answers once its result is frozen"
    ),
    "/v1/events/{event_id}/polls/{poll_id}/reveal": _transition(
        "reveal", "Reveal a locked poll (a trivia answer may come in the body)"
    ),
    "/v1/events/{event_id}/polls/{poll_id}/close": _transition("close", "Close a poll"),
    "/v1/events/{event_id}/polls/{poll_id}/votes": {
        "post": {
            "operationId": "post_votes",
            "summary": "Vote",
            "description": "One vote or an array of up to 500, all or nothing; counted once "
            "per (poll, user) under the poll's rules.",
            "parameters": [EVENT_ID, POLL_ID],
            "security": [{}, {"userToken": []}],
            "requestBody": spec.reactions_body("Vote"),
            "responses": {
                "202": spec.json_answer("every vote was accepted", spec.ref("Accepted")),
                **poll_errors(400, 401, 404, 405, 408, 409, 413, 415, 422, 429, 503),
            },
        },
        "options": {
            **PREFLIGHT,
            "summary": "CORS preflight: any origin may vote",
            "operationId": "preflight_votes",
            "parameters": [spec.path_id("event_id"), spec.path_id("poll_id")],
        },
    },
}

READ_ERRORS = spec.errors(404, 422, 503)
LEADERBOARD_LIMIT = spec.query_integer("limit", 1, 1000)
# Delivery's poll reads (polls/http_deliver.py).
POLL_READ_PATHS: dict[str, Any] = {
    "/v1/events/{event_id}/polls": {
        "get": {
            "operationId": "get_polls",
            "summary": "Every poll of the event, oldest first",
            "parameters": [EVENT_ID],
            "security": [{}, {"adminToken": []}],
            "responses": {
                "200": spec.json_answer("oldest first", spec.array_of(spec.ref("Poll"))),
                **READ_ERRORS,
            },
        }
    },
    "/v1/events/{event_id}/polls/{poll_id}": {
        "get": {
            "operationId": "get_poll",
            "summary": "One poll",
            "parameters": [EVENT_ID, POLL_ID],
            "security": [{}, {"adminToken": []}],
            "responses": {"200": spec.json_answer("the poll", spec.ref("Poll")), **READ_ERRORS},
        }
    },
    "/v1/events/{event_id}/polls/{poll_id}/votes/{user_id}": {
        "get": {
            "operationId": "get_ballot",
            "summary": "A user's recorded vote",
            "parameters": [EVENT_ID, POLL_ID, USER_ID],
            "security": [{}, {"userToken": []}, {"adminToken": []}],
            "responses": {
                "200": spec.json_answer(
                    "the options recorded for the user",
                    spec.object_of(
                        {
                            "user_id": {"type": "string"},
                            "options": spec.array_of({"type": "string"}),
                        },
                        required=["user_id", "options"],
                    ),
                ),
                **spec.errors(401, 403, 404, 422, 503),
            },
        }
    },
    "/v1/events/{event_id}/leaderboard": {
        "get": {
            "operationId": "get_leaderboard",
            "summary": "The event's trivia leaderboard, points descending",
            "parameters": [EVENT_ID, LEADERBOARD_LIMIT],
            "responses": {
                "200": spec.json_answer(
                    "the top entries", spec.array_of(spec.ref("LeaderboardEntry"))
                ),
                **READ_ERRORS,
            },
        }
    },
    "/v1/events/{event_id}/leaderboard/{user_id}": {
        "get": {
            "operationId": "get_leaderboard_entry",
            "summary": "A user's points and rank",
            "parameters": [EVENT_ID, USER_ID],
            "responses": {
                "200": spec.json_answer("the entry", spec.ref("LeaderboardEntry")),
                **READ_ERRORS,
            },
        }
    },
}
