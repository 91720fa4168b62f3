"""The OpenAPI 3.1 documents of the JSON routes, served at ``/openapi.json`` by every role.

Ingest's Quart app documents its own routes through quart-schema (ingest/app.py); the two
reaction POSTs never reach Quart (the fast path answers them), so their operations are
written here and merged into that document. Delivery (Starlette) is written here whole. The
schemas are the contract of ../shared/DESIGN.md, as strict as the code is: tests run
schemathesis against each role, which checks every answer against them.
"""

from __future__ import annotations

from typing import Any

from . import openapi_schemas as spec
from .contract import CLIENT_ID_RULE, CONTRACT_VERSION
from .openapi_polls import POLL_READ_PATHS, POLL_WRITE_PATHS
from .openapi_schemas import (
    CLIENT_ID,
    EVENT_ID,
    EVENT_ID_PATTERN,
    OPENAPI_VERSION,
    PREFLIGHT,
    SCHEMAS,
    SECURITY_SCHEMES,
)

REACTION_ERRORS = spec.errors(400, 405, 408, 413, 415, 422, 503)

# The operations of the ingest fast path (ingest/fastpath.py).
REACTION_PATHS: dict[str, Any] = {
    "/v1/events/{event_id}/reactions": {
        "post": {
            "operationId": "post_reactions",
            "parameters": [EVENT_ID],
            "summary": "Send reactions",
            "description": "Validated whole, stamped with the server's receive time, "
            "buffered for the next flush. application/msgpack carries the same structure.",
            "requestBody": spec.reactions_body("Reaction"),
            "responses": {
                "202": spec.json_answer("every reaction was accepted", spec.ref("Accepted")),
                **REACTION_ERRORS,
                **spec.errors(404),
            },
        },
        "options": {
            **PREFLIGHT,
            "operationId": "preflight_reactions",
            "parameters": [spec.path_id("event_id")],
        },
    },
    "/send_emoji": {
        "post": {
            "operationId": "post_send_emoji",
            "summary": "Send reactions, seed-compatible",
            "description": "Counted under `event_id`, else the default event `live`.",
            "requestBody": spec.reactions_body("SeedReaction"),
            "responses": {
                # 200, not 202: the seed answered 200, and its clients count anything else as
                # a failure (ingest/accept.py).
                "200": spec.json_answer(
                    "every reaction was accepted; `ts_dropped` timestamps were unreadable",
                    spec.object_of(
                        {
                            "accepted": {"type": "integer", "minimum": 1, "maximum": 500},
                            "ts_dropped": {"type": "integer", "minimum": 0, "maximum": 500},
                        },
                        required=["accepted", "ts_dropped"],
                    ),
                ),
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
            "responses": {"200": spec.json_answer("alive", spec.ref("Health"))},
        }
    },
    "/v1/stats": {
        "get": {
            "operationId": "get_stats",
            "summary": "Operator stats (the dashboard's source)",
            "security": [{}, {"adminToken": []}],
            "responses": {
                "200": spec.json_answer("a snapshot", spec.ref("Stats")),
                **spec.errors(401, 503),
            },
        }
    },
    "/v1/events/{event_id}/windows": {
        "get": {
            "operationId": "get_windows",
            "summary": "Closed windows after a seq (history for charts and late joiners)",
            "parameters": [
                EVENT_ID,
                spec.query_integer("after", 0, 2**62),
                spec.query_integer("limit", 1, 1000),
            ],
            "responses": {
                "200": spec.json_answer("oldest first", spec.array_of(spec.ref("Window"))),
                **spec.errors(404, 422, 503),
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
                **spec.errors(404, 422),
            },
        }
    },
    "/v1/events/{event_id}/subscribers": {
        "post": {
            "operationId": "register_subscriber",
            "summary": "Assign a client to the least-loaded live node of a cluster",
            "parameters": [EVENT_ID],
            "security": [{}, {"registrationToken": []}],
            "requestBody": spec.json_body("Registration", required=False),
            "responses": {
                "201": spec.json_answer("assigned", spec.ref("Assignment")),
                **spec.errors(400, 404, 408, 409, 413, 422, 429, 503),
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
                **spec.errors(401, 403, 404, 422, 503),
            },
        }
    },
}


# A whole number stands for its decimal text, which the id grammar allows negative too.
SEED_ID = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
SCHEMAS["SeedRegistration"] = spec.object_of(
    {
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
    required=["user_id"],
    description="What the seed's clients send; ids may be whole numbers.",
)
SCHEMAS["SeedAssignment"] = {
    "allOf": [
        {**SCHEMAS["Assignment"], "required": ["client_id", "event_id", "cluster", "stream_url"]},
        spec.object_of(
            {"user_id": {"type": "string"}, "group_id": {"type": "string"}},
            required=["user_id", "group_id"],
        ),
    ]
}
SEED_ERRORS = spec.errors(400, 408, 409, 413, 422, 429, 503)
# The seed's registration aliases (deliver/seed.py): 200 for success, as the seed answered.
DELIVERY_PATHS["/register"] = {
    "post": {
        "operationId": "seed_register",
        "summary": "Register, seed-compatible: an open registration (no token)",
        "security": [{}, {"registrationToken": []}],
        "requestBody": spec.json_body("SeedRegistration"),
        "responses": {
            "200": spec.json_answer("assigned", spec.ref("SeedAssignment")),
            **SEED_ERRORS,
        },
    }
}
DELIVERY_PATHS["/unregister"] = {
    "post": {
        "operationId": "seed_unregister",
        "summary": "Unregister, seed-compatible; a registration with a token needs it",
        "security": [{}, {"registrationToken": []}],
        "requestBody": spec.json_body("SeedRegistration"),
        "responses": {
            "200": spec.json_answer(
                "forgotten",
                spec.object_of(
                    {
                        "user_id": {"type": "string"},
                        "event_id": {"type": "string"},
                        "unregistered": {"const": True},
                    },
                    required=["user_id", "event_id", "unregistered"],
                ),
            ),
            **spec.errors(400, 401, 403, 404, 408, 413, 422, 503),
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


DELIVERY_PATHS.update(POLL_READ_PATHS)


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
