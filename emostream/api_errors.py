"""The one JSON error shape, for both web frameworks (Quart for ingest, Starlette for delivery)."""

from __future__ import annotations

import json

from .errors import ApiError

# Stable machine codes for the HTTP errors the frameworks raise themselves.
HTTP_CODES = {
    400: "malformed",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


def from_http_status(status: int, message: str) -> ApiError:
    return ApiError(status, HTTP_CODES.get(status, "http_error"), message)


def error_json(error: ApiError) -> bytes:
    return json.dumps(error.body(), ensure_ascii=False).encode()
