"""The OpenAPI 3.1 documents of the JSON routes, served at ``/openapi.json`` by every role.

Ingest's Quart app documents its own routes through quart-schema (ingest/app.py); the two
reaction POSTs never reach Quart (the fast path answers them), so their operations are
written here and merged into that document. Delivery (Starlette) is written here whole. The
schemas are the contract of ../shared/DESIGN.md, as strict as the code is: tests run
schemathesis against each role, which checks every answer against them.
"""

from __future__ import annotations

from typing import Any

from .contract import CLIENT_ID_RULE, CONTRACT_VERSION, EVENT_ID_RULE, USER_ID_RULE
from .openapi_schemas import (
    EVENT_ID_PATTERN,
    OPENAPI_VERSION,
    REACTION_MEDIA_TYPES,
    RETRY_AFTER,
    SCHEMAS,
    SECURITY_SCHEMES,
    USER_ID_PATTERN,
    WHY,
    _ref,
)


def errors(*statuses: int) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": WHY[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        if status in (429, 503):
            answer["headers"] = RETRY_AFTER
        answers[str(status)] = answer
    return answers


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_id(name: str, pattern: str, rule: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": rule,
        "schema": {"type": "string", "pattern": pattern},
    }


EVENT_ID = _path_id("event_id", EVENT_ID_PATTERN, EVENT_ID_RULE)
CLIENT_ID = _path_id("client_id", USER_ID_PATTERN, CLIENT_ID_RULE)


def _reactions_body(one: str) -> dict[str, Any]:
    schema = {
        "oneOf": [
            _ref(one),
            {"type": "array", "items": _ref(one), "minItems": 1, "maxItems": 500},
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
REACTION_ERRORS = errors(400, 405, 408, 413, 415, 422, 503)

# The operations of the ingest fast path (ingest/fastpath.py).
REACTION_PATHS: dict[str, Any] = {
    "/v1/events/{event_id}/reactions": {
        "post": {
            "operationId": "post_reactions",
            "parameters": [EVENT_ID],
            "summary": "Send reactions",
            "description": "Validated whole, stamped with the server's receive time, "
            "buffered for the next flush. application/msgpack carries the same structure.",
            "requestBody": _reactions_body("Reaction"),
            "responses": {
                "202": _json("every reaction was accepted", _ref("Accepted")),
                **REACTION_ERRORS,
                **errors(404),
            },
        },
        "options": {
            **PREFLIGHT,
            "operationId": "preflight_reactions",
            # A preflight is allowed for any id: the POST itself checks it, and answers why.
            "parameters": [
                {"name": "event_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
        },
    },
    "/send_emoji": {
        "post": {
            "operationId": "post_send_emoji",
            "summary": "Send reactions, seed-compatible",
            "description": "Counted under `event_id`, else the default event `live`.",
            "requestBody": _reactions_body("SeedReaction"),
            "responses": {
                "202": _json("every reaction was accepted", _ref("Accepted")),
                **REACTION_ERRORS,
            },
        },
        "options": {**PREFLIGHT, "operationId": "preflight_send_emoji"},
    },
}

DELIVERY_PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "operationId": "get_delivery_health",
            "summary": "Health of this delivery node",
            "responses": {"200": _json("alive", _ref("Health"))},
        }
    },
    "/v1/stats": {
        "get": {
            "operationId": "get_stats",
            "summary": "Operator stats (the dashboard's source)",
            "security": [{}, {"adminToken": []}],
            "responses": {"200": _json("a snapshot", _ref("Stats")), **errors(401, 503)},
        }
    },
    "/v1/events/{event_id}/windows": {
        "get": {
            "operationId": "get_windows",
            "summary": "Closed windows after a seq (history for charts and late joiners)",
            "parameters": [
                EVENT_ID,
                {
                    "name": "after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 2**62},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
            ],
            "responses": {
                "200": _json("oldest first", {"type": "array", "items": _ref("Window")}),
                **errors(404, 422, 503),
            },
        }
    },
    "/v1/events/{event_id}/stream": {
        "get": {
            "operationId": "get_stream",
            "summary": "The swarm as Server-Sent Events: one `swarm` event per closed window",
            "parameters": [
                EVENT_ID,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "the last seq seen: the missed windows come first",
                    "schema": {"type": "string", "pattern": "^\\d{1,18}$"},
                },
            ],
            "responses": {
                "200": {
                    "description": "never ends by itself",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **errors(404, 422),
            },
        }
    },
    "/v1/events/{event_id}/subscribers": {
        "post": {
            "operationId": "register_subscriber",
            "summary": "Assign a client to the least-loaded live node of a cluster",
            "parameters": [EVENT_ID],
            "security": [{}, {"registrationToken": []}],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("Registration")}},
            },
            "responses": {
                "201": _json("assigned", _ref("Assignment")),
                **errors(400, 404, 408, 409, 413, 422, 429, 503),
            },
        }
    },
    "/v1/events/{event_id}/subscribers/{client_id}": {
        "delete": {
            "operationId": "unregister_subscriber",
            "summary": "Forget a registration",
            "description": "Needs the registration's token; one made through the seed's "
            "/register is open and needs none.",
            "parameters": [EVENT_ID, CLIENT_ID],
            "security": [{}, {"registrationToken": []}],
            "responses": {
                "204": {"description": "forgotten"},
                **errors(401, 403, 404, 422, 503),
            },
        }
    },
}


# A whole number stands for its decimal text, which the id grammar allows negative too.
SEED_ID = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
SCHEMAS["SeedRegistration"] = {
    "type": "object",
    "description": "What the seed's clients send; ids may be whole numbers.",
    "required": ["user_id"],
    "properties": {
        "user_id": {**SEED_ID, "description": CLIENT_ID_RULE + ", or a whole number"},
        # Absent or null: the default, as the seed's clients may send either.
        "group_id": {
            "oneOf": [*SEED_ID["oneOf"], {"type": "null"}],
            "description": "the cluster; absent or null: the answering node's",
        },
        "event_id": {
            "oneOf": [{"type": "string", "pattern": EVENT_ID_PATTERN}, {"type": "null"}],
            "description": "absent or null: the default event",
        },
    },
}
SCHEMAS["SeedAssignment"] = {
    "allOf": [
        {**SCHEMAS["Assignment"], "required": ["client_id", "event_id", "cluster", "stream_url"]},
        {
            "type": "object",
            "required": ["user_id", "group_id"],
            "properties": {"user_id": {"type": "string"}, "group_id": {"type": "string"}},
        },
    ]
}
SEED_ERRORS = errors(400, 408, 409, 413, 422, 429, 503)
# The seed's registration aliases (deliver/seed.py): 200 for success, as the seed answered.
DELIVERY_PATHS["/register"] = {
    "post": {
        "operationId": "seed_register",
        "summary": "Register, seed-compatible: an open registration (no token)",
        "security": [{}, {"registrationToken": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("SeedRegistration")}},
        },
        "responses": {"200": _json("assigned", _ref("SeedAssignment")), **SEED_ERRORS},
    }
}
DELIVERY_PATHS["/unregister"] = {
    "post": {
        "operationId": "seed_unregister",
        "summary": "Unregister, seed-compatible; a registration with a token needs it",
        "security": [{}, {"registrationToken": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("SeedRegistration")}},
        },
        "responses": {
            "200": _json(
                "forgotten",
                {
                    "type": "object",
                    "required": ["user_id", "event_id", "unregistered"],
                    "properties": {
                        "user_id": {"type": "string"},
                        "event_id": {"type": "string"},
                        "unregistered": {"const": True},
                    },
                },
            ),
            **errors(400, 401, 403, 404, 408, 413, 422, 503),
        },
    }
}


def document(title: str, paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": str(CONTRACT_VERSION)},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


def delivery_document(with_reactions: bool = False) -> dict[str, Any]:
    """Delivery's document; with the reaction POSTs too when ingest shares its port
    (`emostream up`)."""
    if with_reactions:
        return document("emostream", merged_paths(DELIVERY_PATHS, REACTION_PATHS, POLL_WRITE_PATHS))
    return document("emostream delivery", DELIVERY_PATHS)


def merged_paths(*groups: dict[str, Any]) -> dict[str, Any]:
    """Paths of several groups, a path's operations joined (a poll's GET is delivery's, its
    PUT ingest's)."""
    paths: dict[str, Any] = {}
    for group in groups:
        for path, operations in group.items():
            paths[path] = {**paths.get(path, {}), **operations}
    return paths


def with_reaction_paths(generated: dict[str, Any]) -> dict[str, Any]:
    """Ingest's generated document (quart-schema) with the fast path's operations and the
    poll writes (written here: the votes never reach Quart, and the admin's routes are
    hidden from quart-schema so that each action is an operation of its own)."""
    components = generated.setdefault("components", {})
    return {
        **generated,
        "paths": merged_paths(generated.get("paths", {}), REACTION_PATHS, POLL_WRITE_PATHS),
        "components": {
            **components,
            "schemas": {**components.get("schemas", {}), **SCHEMAS},
            "securitySchemes": {**components.get("securitySchemes", {}), **SECURITY_SCHEMES},
        },
    }


# -- Polls, votes and trivia (emostream/polls/): ingest takes the writes, delivery the reads.
POLL_ID = _path_id("poll_id", EVENT_ID_PATTERN, EVENT_ID_RULE)
USER_ID = _path_id("user_id", USER_ID_PATTERN, USER_ID_RULE)
SCHEMAS["PollDefinition"] = {
    "type": "object",
    "required": ["question", "options"],
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 500},
        "options": {
            "type": "array",
            "minItems": 2,
            "maxItems": 20,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        "kind": {"enum": ["poll", "trivia"]},
        "results": {"enum": ["live", "on_reveal"]},
        "votes_per_user": {"type": "integer", "minimum": 1},
        "changeable": {"type": "boolean"},
        "quota": {"type": "integer", "minimum": 1, "maximum": 1000},
        "duration_s": {"type": "integer", "minimum": 1, "maximum": 24 * 3600},
        "answer": {"type": "string", "description": "trivia only: one of the options"},
    },
}
SCHEMAS["Poll"] = {
    "type": "object",
    "description": "A poll as the caller may see it: votes hidden until the reveal for "
    "`on_reveal` results, and a trivia answer until the reveal, except to the admin token.",
    "required": ["v", "event_id", "poll_id", "question", "kind", "state", "options", "version"],
    "properties": {
        "v": {"const": CONTRACT_VERSION},
        "event_id": {"type": "string"},
        "poll_id": {"type": "string"},
        "question": {"type": "string"},
        "kind": {"enum": ["poll", "trivia"]},
        "state": {"enum": ["draft", "open", "locked", "revealed", "closed"]},
        "options": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["option"],
                "properties": {
                    "option": {"type": "string"},
                    "votes": {"type": "integer", "minimum": 0},
                },
            },
        },
        "total": {"type": "integer", "minimum": 0},
        "version": {"type": "integer"},
        "frozen": {"type": "boolean"},
    },
}
SCHEMAS["Vote"] = {
    "type": "object",
    "required": ["option"],
    "properties": {
        "user_id": {
            "type": "string",
            "pattern": USER_ID_PATTERN,
            "description": USER_ID_RULE + "; needed unless a user token names the user",
        },
        "option": {"type": "string", "description": "one of the poll's options"},
    },
}
SCHEMAS["LeaderboardEntry"] = {
    "type": "object",
    "required": ["user_id", "points", "rank"],
    "properties": {
        "user_id": {"type": "string"},
        "points": {"type": "integer"},
        "rank": {"type": "integer", "minimum": 1},
    },
}
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
    answers = errors(*statuses)
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
        "responses": {"200": _json("the poll, as the admin sees it", _ref("Poll")), **ADMIN_ERRORS},
    }
    if action == "reveal":
        operation["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}
                }
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
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("PollDefinition")}},
            },
            "responses": {
                "201": _json("created", _ref("Poll")),
                "200": _json("the draft replaced", _ref("Poll")),
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
            "requestBody": _reactions_body("Vote"),
            "responses": {
                "202": _json("every vote was accepted", _ref("Accepted")),
                **poll_errors(400, 401, 404, 405, 408, 409, 413, 415, 422, 429, 503),
            },
        },
        "options": {
            **PREFLIGHT,
            "summary": "CORS preflight: any origin may vote",
            "operationId": "preflight_votes",
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in ("event_id", "poll_id")
            ],
        },
    },
}

READ_ERRORS = errors(404, 422, 503)
LEADERBOARD_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}
# Delivery's poll reads (polls/http_deliver.py).
POLL_READ_PATHS: dict[str, Any] = {
    "/v1/events/{event_id}/polls": {
        "get": {
            "operationId": "get_polls",
            "summary": "Every poll of the event, oldest first",
            "parameters": [EVENT_ID],
            "security": [{}, {"adminToken": []}],
            "responses": {
                "200": _json("oldest first", {"type": "array", "items": _ref("Poll")}),
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
            "responses": {"200": _json("the poll", _ref("Poll")), **READ_ERRORS},
        }
    },
    "/v1/events/{event_id}/polls/{poll_id}/votes/{user_id}": {
        "get": {
            "operationId": "get_ballot",
            "summary": "A user's recorded vote",
            "parameters": [EVENT_ID, POLL_ID, USER_ID],
            "security": [{}, {"userToken": []}, {"adminToken": []}],
            "responses": {
                "200": _json(
                    "the options recorded for the user",
                    {
                        "type": "object",
                        "required": ["user_id", "options"],
                        "properties": {
                            "user_id": {"type": "string"},
                            "options": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ),
                **errors(401, 403, 404, 422, 503),
            },
        }
    },
    "/v1/events/{event_id}/leaderboard": {
        "get": {
            "operationId": "get_leaderboard",
            "summary": "The event's trivia leaderboard, points descending",
            "parameters": [EVENT_ID, LEADERBOARD_LIMIT],
            "responses": {
                "200": _json(
                    "the top entries", {"type": "array", "items": _ref("LeaderboardEntry")}
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
            "responses": {"200": _json("the entry", _ref("LeaderboardEntry")), **READ_ERRORS},
        }
    },
}
DELIVERY_PATHS.update(POLL_READ_PATHS)
