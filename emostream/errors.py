"""Named exceptions, all under one base, each subclassing the builtin it resembles."""

from __future__ import annotations


class EmostreamError(Exception):
    """Base of every error emostream raises on purpose."""


class ConfigError(EmostreamError, ValueError):
    """A setting has a bad value; raised at start-up."""


class RedisServerError(EmostreamError, RuntimeError):
    """The private redis-server could not be found or started."""


class ApiError(EmostreamError):
    """An HTTP error with the one JSON shape every endpoint answers with.

    ``{"error": {"code": ..., "message": ..., "field": ...}}``
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(self.retry_after_s)}


class InvalidField(ApiError, ValueError):
    """422: a field is present but its value breaks the contract."""

    def __init__(self, field: str, message: str, code: str = "invalid_field") -> None:
        super().__init__(422, code, message, field)


class MalformedBody(ApiError, ValueError):
    """400: the body cannot be parsed at all, or has the wrong overall shape."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(400, "malformed", message, field)


class Unavailable(ApiError):
    """503: buffer full or Redis unavailable; the client should retry after a pause."""

    def __init__(self, message: str, retry_after_s: int = 1, code: str = "unavailable") -> None:
        super().__init__(503, code, message, None, retry_after_s)


class RecordError(EmostreamError, ValueError):
    """A history or pub/sub payload is not a window record."""
