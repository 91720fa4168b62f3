"""The hot POSTs (the two reaction paths, and votes: polls/http_ingest.py), answered in plain
ASGI in front of the Quart app.

They are the hot path, and Quart's per-request machinery (request and app contexts, routing,
response objects) cost several times the parsing and validation itself (docs/benchmarks.md),
so this layer owns these paths whole, in one ``hot_post``: the POST, the CORS preflight that
lets a page on any origin send, and 405 for any other method. Every other path goes to Quart.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from ..bodies import BodyLimits, TimedBodies, answer_then_drain, is_http1
from ..errors import (
    ApiError,
    BodyTooLarge,
    MalformedBody,
    MethodNotAllowed,
    RequestTimeout,
    UnsupportedMediaType,
)
from ..identity import user_from_token
from ..settings import Settings
from ..web import ANY_ORIGIN_RAW, error_parts, raw_headers
from .accept import Acceptor, Answer

ASGIApp = Callable[..., Awaitable[None]]
Target = TypeVar("Target")
REACTIONS_PATH = re.compile(r"/v1/events/([^/]*)/reactions")
SEND_EMOJI_PATH = "/send_emoji"
JSON_HEADER = (b"content-type", b"application/json")
ALLOWED_METHODS = "POST, OPTIONS"
PREFLIGHT_HEADERS = [
    ANY_ORIGIN_RAW,
    (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
    (b"access-control-allow-headers", b"content-type, authorization"),
    (b"access-control-max-age", b"86400"),
]
# A Content-Length longer than this is not a number we read: it is over any body limit.
LENGTH_DIGITS_MAX = 18


def is_reaction_path(path: str) -> bool:
    return path == SEND_EMOJI_PATH or reactions_event(path) is not None


_EVENTS, _REACTIONS = "/v1/events/", "/reactions"
_SHORTEST = len(_EVENTS) + len(_REACTIONS)


def reactions_event(path: str) -> str | None:
    """The event id of a reactions path (``REACTIONS_PATH``), else None: with string tests
    rather than the regex, a third of its cost on every request."""
    if len(path) < _SHORTEST or not path.startswith(_EVENTS) or not path.endswith(_REACTIONS):
        return None
    event_id = path[len(_EVENTS) : -len(_REACTIONS)]
    return None if "/" in event_id else event_id


async def respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer_error(
    scope: Any, receive: Any, send: Any, error: ApiError, limits: BodyLimits, body_unread: bool
) -> None:
    """Answer ``error``; while the client may still be sending a body we did not read (on
    HTTP/1.1), answer first and drain it after (bodies.answer_then_drain)."""
    if body_unread and is_http1(scope):
        on_time = not isinstance(error, RequestTimeout)
        return await answer_then_drain(send, receive, error, limits, on_time)
    payload, status, headers = error_parts(error)
    await respond(send, status, raw_headers(headers), payload)


class RequestHead(NamedTuple):
    """What the fast paths read from a request's headers."""

    content_type: str | None
    authorization: str | None
    # The Content-Length as a number, or one over ``max_body_bytes`` when it is too long.
    declared_length: int
    # Whether HTTP/1 framing announces a body (a length above 0, or chunked).
    has_body: bool
    forwarded_for: str | None = None
    content_types: int = 0
    encoding: bytes = b""

    def check(self, max_body_bytes: int) -> None:
        """Refuse content headers that cannot be read as written: which of two Content-Types
        was meant, or a compressed body that would be read as plain; then a declared length
        over ``max_body_bytes`` (413 before a byte of the body is read)."""
        if self.content_types > 1:
            raise MalformedBody("send one Content-Type header, not several", "Content-Type")
        if self.encoding not in (b"", b"identity"):
            message = f"Content-Encoding {self.encoding.decode('latin-1')!r} is not supported"
            raise UnsupportedMediaType(message, "Content-Encoding")
        if self.declared_length > max_body_bytes:
            raise BodyTooLarge(max_body_bytes)


def request_head(scope: dict[str, Any], max_body_bytes: int) -> RequestHead:
    content_type: str | None = None
    authorization: str | None = None
    forwarded_for: str | None = None
    content_types = 0
    encoding = b""
    declared_length = 0
    has_body = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
            content_types += 1
        elif name == b"content-encoding":
            encoding = value.strip().lower()
        elif name == b"x-forwarded-for":
            forwarded_for = value.decode("latin-1")
        elif name == b"content-length":
            digits = value.strip()
            if digits.isdigit():
                too_long = len(digits) > LENGTH_DIGITS_MAX
                declared_length = max_body_bytes + 1 if too_long else int(digits)
            has_body = declared_length > 0
        elif name == b"transfer-encoding":
            has_body = True
        elif name == b"authorization":
            authorization = value.decode("latin-1")
    return RequestHead(
        content_type,
        authorization,
        declared_length,
        has_body,
        forwarded_for,
        content_types,
        encoding,
    )


# A hot POST's answer, (status, JSON body): at once (the reactions, buffered in process) or
# after an await (a vote, which reads its poll). A tuple is taken as it is, so the reactions
# pay no coroutine for the votes' await.
Handler = Callable[[Target, str | None, bytes, str | None], Answer | Awaitable[Answer]]


def hot_post(
    app: ASGIApp,
    route: Callable[[str], Target | None],
    handle: Handler[Target],
    settings: Settings,
    limits: BodyLimits,
    bodies: TimedBodies,
    *,
    admit: Callable[[tuple[str, int] | None, str | None], None] | None = None,
    refused: Counter[str] | None = None,
) -> ASGIApp:
    """The POSTs to the paths ``route`` knows (it names their target: an event, a poll) in
    front of ``app``, with their CORS preflight and 405 for any other method. A body is read
    with the byte cap and the body timeout (413, 408) and answered by
    ``handle(target, content_type, body, user_id)``; a refusal given before the body was
    read is drained first (bodies.py says why), so any client reads it. ``admit`` counts a
    request against its address's limit before anything else is checked; ``refused`` counts
    the refusals by error code."""
    max_body_bytes = limits.max_body_bytes

    async def hot(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        target = route(scope["path"])
        if target is None:
            return await app(scope, receive, send)
        method = scope["method"]
        if method == "OPTIONS":  # a CORS preflight from another origin's page
            return await respond(send, 204, [*PREFLIGHT_HEADERS], b"")
        head = request_head(scope, max_body_bytes)
        body_read = False
        try:
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed here", allow=ALLOWED_METHODS)
            if admit is not None:
                admit(scope.get("client"), head.forwarded_for)
            head.check(max_body_bytes)
            # With user tokens on, the token's subject is the user of the body.
            user_id = user_from_token(settings, head.authorization)
            body = await bodies.read(receive, max_body_bytes)
            body_read = True
            answer = handle(target, head.content_type, body, user_id)
            if not isinstance(answer, tuple):
                answer = await answer
        except ApiError as error:
            if refused is not None:
                refused[error.code] += 1
            unread = head.has_body and not body_read
            return await answer_error(scope, receive, send, error, limits, unread)
        status, payload = answer
        await respond(send, status, [JSON_HEADER, ANY_ORIGIN_RAW], payload)

    return hot


def reaction_route(path: str) -> str | None:
    """The target of a reaction POST: its event id, or ``SEND_EMOJI_PATH`` for the seed's
    alias (an event id holds no "/"); None for any other path."""
    return SEND_EMOJI_PATH if path == SEND_EMOJI_PATH else reactions_event(path)


def fast_ingest(
    app: ASGIApp, acceptor: Acceptor, limits: BodyLimits, bodies: TimedBodies
) -> ASGIApp:
    """The reaction POSTs in front of ``app``."""

    def answer(target: str, content_type: str | None, body: bytes, user_id: str | None) -> Answer:
        if target == SEND_EMOJI_PATH:
            return acceptor.send_emoji(content_type, body, user_id)
        return acceptor.reactions(target, content_type, body, user_id)

    return hot_post(
        app,
        reaction_route,
        answer,
        acceptor.settings,
        limits,
        bodies,
        admit=acceptor.admit_client,
        refused=acceptor.refused,
    )
