"""What every role's HTTP layer shares, whatever serves it (the ingest fast path, Quart,
Starlette): the error response, the CORS header and the mapping of a Redis fault to 503."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from .connection import REDIS_FAULTS
from .errors import ApiError, MalformedBody, Unavailable

JSON_TYPE = "application/json"
# Any page may read the streams and history and send reactions (emostream.js embedded on
# another site): no cookies or other credentials are involved, so "*" is enough.
ANY_ORIGIN = ("Access-Control-Allow-Origin", "*")
ANY_ORIGIN_RAW = (b"access-control-allow-origin", b"*")


def error_parts(error: ApiError) -> tuple[bytes, int, dict[str, str]]:
    """(body, status, headers) of the one JSON error response; the argument order both
    Quart's and Starlette's ``Response`` take."""
    headers = {"Content-Type": JSON_TYPE, ANY_ORIGIN[0]: ANY_ORIGIN[1], **error.headers()}
    return error.json(), error.status, headers


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object, or a 400 saying why it is not."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("body is not valid JSON") from None
    except RecursionError:  # json's C decoder recurses once per level of nesting
        raise MalformedBody("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise MalformedBody("body must be a JSON object")
    return payload


@contextlib.contextmanager
def redis_or_503(what: str) -> Iterator[None]:
    """A Redis fault inside becomes a 503 naming what was unavailable, with Retry-After."""
    try:
        yield
    except REDIS_FAULTS as exc:
        raise Unavailable(f"{what} unavailable: {exc}") from None
