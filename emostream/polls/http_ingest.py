"""The ingest role's poll API: the admin's writes (Quart) and votes (plain ASGI).

Votes come at the rate of reactions, so like the reaction POSTs they are answered in plain
ASGI in front of Quart (measured in docs/benchmarks.md); the admin's few calls go through
Quart. ``is_poll_write`` tells `emostream up` which requests are ingest's.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from quart import Blueprint, Response, request
from quart_schema import hide

from ..bodies import BodyLimits, TimedBodies
from ..clock import now_ms
from ..contract import validate_event_id
from ..errors import InvalidField, NotFound
from ..identity import require_admin
from ..ingest.accept import Answer
from ..ingest.fastpath import ASGIApp, hot_post
from ..ingest.validation import parse_body
from ..settings import Settings
from ..web import JSON_TYPE, redis_or_503
from .gate import PollGate
from .model import TRANSITIONS, parse_definition, poll_object, validate_poll_id
from .store import PollStore

POLL_WRITE_PATH = re.compile(r"/v1/events/[^/]*/polls/[^/]*(?:/(?:open|lock|reveal|close|votes))?")
VOTES_PATH = re.compile(r"/v1/events/([^/]*)/polls/([^/]*)/votes")
# A lock answers once the result is frozen: normally within a flush interval and a closer
# tick after the lock time; past this it answers with the poll as it stands (not frozen yet).
LOCK_WAIT_EXTRA_S = 5.0


def is_poll_write(scope: dict[str, Any]) -> bool:
    """A poll write (create, transition, vote, or a vote's CORS preflight): ingest's part."""
    return scope.get("method") in ("PUT", "POST", "OPTIONS") and bool(
        POLL_WRITE_PATH.fullmatch(scope.get("path", ""))
    )


def fast_votes(app: ASGIApp, gate: PollGate, limits: BodyLimits, bodies: TimedBodies) -> ASGIApp:
    """``POST /v1/events/{event_id}/polls/{poll_id}/votes`` in plain ASGI, as the reaction
    POSTs are answered (ingest/fastpath.py); the rest to ``app``."""

    async def vote(
        match: re.Match[str], content_type: str | None, body: bytes, user_id: str | None
    ) -> Answer:
        payload = parse_body(content_type, body)
        accepted = await gate.accept(match.group(1), match.group(2), payload, user_id)
        return 202, b'{"accepted":%d}' % accepted

    return hot_post(app, VOTES_PATH.fullmatch, vote, gate.settings, limits, bodies)


async def _json_body() -> Any:
    data = await request.get_data(as_text=False)
    if not data.strip():
        return {}
    return parse_body(request.content_type, data if isinstance(data, bytes) else data.encode())


def poll_admin(settings: Settings, store: PollStore) -> Blueprint:
    """Create or replace a draft; open, lock, reveal, close. Every call needs the admin
    token, and answers with the poll object as the admin sees it."""
    blueprint = Blueprint("polls", __name__)

    async def answer(event_id: str, poll_id: str, status: int = 200) -> Response:
        with redis_or_503("polls"):
            view = await store.existing(event_id, poll_id)
        body = poll_object(view, now_ms(), privileged=True)
        return Response(_dumps(body), status, {"Content-Type": JSON_TYPE})

    # Documented in openapi.py (POLL_WRITE_PATHS), one operation per action.
    @blueprint.put("/v1/events/<event_id>/polls/<poll_id>")
    @hide
    async def put_poll(event_id: str, poll_id: str) -> Response:
        require_admin(settings, request.headers.get("Authorization"))
        validate_event_id(event_id)
        validate_poll_id(poll_id)
        definition = parse_definition(await _json_body())
        with redis_or_503("polls"):
            created = await store.put(event_id, poll_id, definition)
        return await answer(event_id, poll_id, 201 if created else 200)

    @blueprint.post("/v1/events/<event_id>/polls/<poll_id>/<action>")
    @hide
    async def transition(event_id: str, poll_id: str, action: str) -> Response:
        if action not in TRANSITIONS:
            raise NotFound(f"no such poll action: {action}")
        require_admin(settings, request.headers.get("Authorization"))
        validate_event_id(event_id)
        validate_poll_id(poll_id)
        body = await _json_body()
        given = body.get("answer") if isinstance(body, dict) else None
        if given is not None and (action != "reveal" or not isinstance(given, str)):
            raise InvalidField("answer", "an answer (a string) may come with the reveal only")
        with redis_or_503("polls"):
            await store.transition(event_id, poll_id, action, given)
            if action == "lock":
                # Answer with the frozen result: after the grace, once every vote accepted
                # before the lock is counted.
                await asyncio.sleep(settings.poll_lock_grace_ms / 1000)
                timeout_s = settings.close_max_delay_ms / 1000 + LOCK_WAIT_EXTRA_S
                await store.wait_frozen(event_id, poll_id, timeout_s)
        return await answer(event_id, poll_id)

    return blueprint


def _dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
