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
    """An HTTP error with the one JSON shape every endpoint answers with."""

    status = 500
    code = "internal"

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


class MalformedBody(ApiError, ValueError):
    """400: the body cannot be parsed at all, or has the wrong overall shape."""

    status, code = 400, "malformed"


class NotFound(ApiError, LookupError):
    """404: no such path, or nothing registered under the id."""

    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, allow: str | None = None) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow} if self.allow else {}


class RequestTimeout(ApiError, TimeoutError):
    status, code = 408, "request_timeout"


class BodyTooLarge(ApiError):
    """413: the body is over the byte limit; refused while it is read, never after."""

    status, code = 413, "too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")


class TooManyReactions(ApiError):
    status, code = 413, "too_many_reactions"

    def __init__(self, limit: int, got: int) -> None:
        super().__init__(f"at most {limit} reactions per request, got {got}")


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidField(ApiError, ValueError):
    """422: a field is present but its value breaks the contract (or it is missing:
    ``code="missing_field"``)."""

    status, code = 422, "invalid_field"

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(message, field, code=code)


class Unauthorized(ApiError, PermissionError):
    """401: the call needs a valid bearer token (admin token, or a signed user token)."""

    status, code = 401, "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError, PermissionError):
    """403: nobody may make this call here (no admin token is configured on this role)."""

    status, code = 403, "forbidden"


class Conflict(ApiError):
    """409: the call does not fit the state of what it names."""

    status, code = 409, "invalid_state"


class PollNotOpen(Conflict):
    """409: a vote for a poll that is not open (not opened yet, or locked)."""

    code = "poll_not_open"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    """503: buffer full or Redis unavailable; the client should retry after a pause."""

    status, code = 503, "unavailable"

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
