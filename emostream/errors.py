"""Named exceptions, all under one base, each subclassing the builtin it resembles.

Every API error is a class here with its status and stable machine code, answered in the one
JSON shape ``{"error": {"code": ..., "message": ..., "field": ...}}`` by every role.
"""

from __future__ import annotations

import json


class EmostreamError(Exception):
    """Base of every error emostream raises on purpose."""


class ConfigError(EmostreamError, ValueError):
    """A setting has a bad value; raised at start-up."""


class RedisServerError(EmostreamError, RuntimeError):
    """The private redis-server could not be found or started."""


class BatchError(EmostreamError, ValueError):
    """An entry of the raw stream cannot be decoded (a poison entry)."""


class ApiError(EmostreamError):
    """An HTTP error with the one JSON shape every endpoint answers with. A subclass names its
    status and stable code in its class line: ``class Forbidden(ApiError, status=403, ...)``."""

    status = 500
    code = "internal"

    def __init_subclass__(cls, status: int | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status = status
        if code is not None:
            cls.code = code

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        code: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def json(self) -> bytes:
        return json.dumps(self.body(), ensure_ascii=False).encode()

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(self.retry_after_s)}


class MalformedBody(ApiError, ValueError, status=400, code="malformed"):
    """400: the body cannot be parsed at all, or has the wrong overall shape."""


class Unauthorized(ApiError, status=401, code="unauthorized"):
    """401: the call needs ``Authorization: Bearer <token>``, and had none or a wrong one."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="emostream"'}


class Forbidden(ApiError, status=403, code="forbidden"):
    """403: a token was given, but it is not the one this resource was given out with."""


class Conflict(ApiError, status=409, code="conflict"):
    """409: the resource exists, and the request may not replace it."""


class NotFound(ApiError, LookupError, status=404, code="not_found"):
    """404: no such path, or nothing registered under the id."""


class MethodNotAllowed(ApiError, status=405, code="method_not_allowed"):
    """405: the path exists, but not for this method; ``Allow`` names the ones it takes."""

    def __init__(self, message: str, allow: str | None = None) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


class RequestTimeout(ApiError, TimeoutError, status=408, code="request_timeout"):
    """408: the request head or its body did not arrive within its deadline."""


class BodyTooLarge(ApiError, status=413, code="too_large"):
    """413: the body is over the byte limit; refused while it is read, never after."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")


class TooManyReactions(ApiError, status=413, code="too_many_reactions"):
    """413: more reactions in one request than ``EMOSTREAM_MAX_BATCH``."""

    def __init__(self, limit: int, got: int) -> None:
        super().__init__(f"at most {limit} reactions per request, got {got}")


class UnsupportedMediaType(ApiError, status=415, code="unsupported_media_type"):
    """415: a body in a media type or content encoding the endpoint does not take."""


class HeadersTooLarge(ApiError, status=431, code="headers_too_large"):
    """431: the request line and headers are over the byte limit; the server refuses them
    before any app sees the request."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request headers are larger than {limit} bytes")


class InvalidField(ApiError, ValueError, status=422, code="invalid_field"):
    """422: a field is present but its value breaks the contract (or it is missing:
    ``code="missing_field"``)."""

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(message, field, code=code)


class UnknownEvent(ApiError, LookupError, status=404, code="unknown_event"):
    """404: the event is not on the allow-list (``EMOSTREAM_EVENTS``)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id!r} does not take reactions here", "event_id")


class InvalidState(Conflict, code="invalid_state"):
    """409: the call does not fit the state of what it names (a poll's life cycle)."""


class PollNotOpen(Conflict, code="poll_not_open"):
    """409: a vote for a poll that is not open (not opened yet, or locked)."""


class RateLimited(ApiError, status=429, code="rate_limited"):
    """429: over a rate limit; Retry-After says when to try again."""


class TooManyEvents(RateLimited, code="too_many_events"):
    """429: a reaction to an event that is not active while ``EMOSTREAM_MAX_ACTIVE_EVENTS``
    events are; Retry-After says when room may have freed up."""

    def __init__(self, event_id: str, reason: str, retry_after_s: int) -> None:
        super().__init__(
            f"event {event_id!r} cannot start now: {reason}",
            "event_id",
            retry_after_s=retry_after_s,
        )


class Unavailable(ApiError, status=503, code="unavailable"):
    """503: buffer full or Redis unavailable; the client should retry after a pause."""

    def __init__(self, message: str, retry_after_s: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code, retry_after_s=retry_after_s)


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (MalformedBody, NotFound, MethodNotAllowed, RequestTimeout, RateLimited)
}


def from_http_status(status: int, message: str) -> ApiError:
    """The API error for an HTTP error a framework raised itself (404, 405, ...)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(message)
    error = ApiError(message, code="http_error" if status != 500 else "internal")
    error.status = status
    return error


class RecordError(EmostreamError, ValueError):
    """A history or pub/sub payload is not a window record."""
