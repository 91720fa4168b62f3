"""The reaction POSTs answered in plain ASGI, in front of the Quart app.

Every other path (health, errors for other methods and paths) goes to Quart. The two
reaction endpoints are the hot path, and Quart's per-request machinery (request and app
contexts, routing, response objects) cost several times the parsing and validation itself
(see docs/benchmarks.md), so they are handled here with the same Acceptor the Quart routes
use: same validation, same JSON errors, same all-or-nothing. They answer CORS preflights,
so a page on any origin can send reactions.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from ..api_errors import error_json
from ..errors import ApiError
from .accept import Acceptor

ASGIApp = Callable[..., Awaitable[None]]
REACTIONS_PATH = re.compile(r"/v1/events/([^/]*)/reactions")
JSON_HEADER = (b"content-type", b"application/json")
# Any page may send reactions (emostream.js embedded on another site): no cookies or other
# credentials are involved, so "*" is enough, and preflights are cached for a day.
ANY_ORIGIN = (b"access-control-allow-origin", b"*")
PREFLIGHT_HEADERS = [
    ANY_ORIGIN,
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type"),
    (b"access-control-max-age", b"86400"),
    (b"content-length", b"0"),
]


class TooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "too_large", f"body is larger than {limit} bytes")


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "malformed", "the client went away mid-body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def fast_ingest(app: ASGIApp, acceptor: Acceptor, max_body_bytes: int) -> ASGIApp:
    async def fast(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "OPTIONS"):
            return await app(scope, receive, send)
        path: str = scope["path"]
        match = REACTIONS_PATH.fullmatch(path)
        if match is None and path != "/send_emoji":
            return await app(scope, receive, send)
        if scope["method"] == "OPTIONS":  # a CORS preflight from another origin's page
            await send({"type": "http.response.start", "status": 204, "headers": PREFLIGHT_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return
        content_type: str | None = None
        declared_length = 0
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared_length = int(value)
        headers = [JSON_HEADER, ANY_ORIGIN]
        try:
            if declared_length > max_body_bytes:
                raise TooLarge(max_body_bytes)
            body = await _read_body(receive, max_body_bytes)
            if match is not None:
                accepted = acceptor.reactions(match.group(1), content_type, body)
            else:
                accepted = acceptor.send_emoji(content_type, body)
            status, payload = 202, b'{"accepted":%d}' % accepted
        except ApiError as error:
            status, payload = error.status, error_json(error)
            headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
        headers.append((b"content-length", b"%d" % len(payload)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return fast
