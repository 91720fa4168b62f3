"""The two reaction POSTs, answered in plain ASGI in front of the Quart app.

They are the hot path, and Quart's per-request machinery (request and app contexts, routing,
response objects) cost several times the parsing and validation itself (docs/benchmarks.md),
so this layer owns both paths whole: the POST, the CORS preflight that lets a page on any
origin send, and 405 for any other method. Every other path goes to Quart.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import ApiError, BodyTooLarge, MalformedBody, MethodNotAllowed
from ..identity import user_from_token
from ..web import ANY_ORIGIN_RAW, error_parts, raw_headers
from .accept import Acceptor

ASGIApp = Callable[..., Awaitable[None]]
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


def is_reaction_path(path: str) -> bool:
    return path == SEND_EMOJI_PATH or REACTIONS_PATH.fullmatch(path) is not None


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedBody("the client went away mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def fast_ingest(app: ASGIApp, acceptor: Acceptor, max_body_bytes: int) -> ASGIApp:
    async def fast(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        path: str = scope["path"]
        match = REACTIONS_PATH.fullmatch(path)
        if match is None and path != SEND_EMOJI_PATH:
            return await app(scope, receive, send)
        method = scope["method"]
        if method == "OPTIONS":  # a CORS preflight from another origin's page
            return await _respond(send, 204, [*PREFLIGHT_HEADERS], b"")
        content_type: str | None = None
        authorization: str | None = None
        declared_length = 0
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared_length = int(value)
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        try:
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed here", allow=ALLOWED_METHODS)
            if declared_length > max_body_bytes:
                raise BodyTooLarge(max_body_bytes)
            # With user tokens on, the token's subject is the user of every reaction.
            user_id = user_from_token(acceptor.settings, authorization)
            body = await _read_body(receive, max_body_bytes)
            if match is not None:
                accepted = acceptor.reactions(match.group(1), content_type, body, user_id)
            else:
                accepted = acceptor.send_emoji(content_type, body, user_id)
        except ApiError as error:
            payload, status, headers = error_parts(error)
            return await _respond(send, status, raw_headers(headers), payload)
        await _respond(send, 202, [JSON_HEADER, ANY_ORIGIN_RAW], b'{"accepted":%d}' % accepted)

    return fast
