"""Request body limits every role shares, whatever app serves the route: a body is read with a
byte cap (refused while it is read, never after) and a deadline, and a body answered before
it was read is drained before the connection closes.

Why drain: a client that sends its whole body before reading the answer (Python's urllib,
many scripts) gets a TCP reset instead of our 413 when the server closes a socket that still
holds unread bytes: the kernel resets it, and the reset discards the answer. So a refusal on
HTTP/1.1 is sent at once with ``Connection: close``, the rest of the body is read and dropped
(up to ``drain_max_bytes``, within the body timeout), and only then is the connection closed.

The ingest fast path uses these pieces directly (ingest/fastpath.py); ``guarded`` wraps the
framework apps (Quart, Starlette) so that every other route gets the same limits. Limits on
the request head and idle connections belong to the server software (serving.py,
protocol.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .deadlines import Deadlines
from .errors import ApiError, BodyTooLarge, MalformedBody, RequestTimeout
from .settings import Settings
from .web import error_parts, raw_headers

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

CONNECTION_CLOSE = (b"connection", b"close")
# The last body message, once the answer has been written and the rest drained.
END_OF_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


class BodyLimits(NamedTuple):
    max_body_bytes: int
    body_timeout_s: float
    drain_max_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(settings.max_body_bytes, settings.body_timeout_s, settings.drain_max_bytes)


def may_have_body(scope: MutableMapping[str, Any]) -> bool:
    """False only when HTTP/1 framing says there is no body (no length, not chunked);
    an HTTP/2 request may carry one without either."""
    if scope.get("http_version", "1.1").startswith("2"):
        return True
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


def is_http1(scope: MutableMapping[str, Any]) -> bool:
    return not scope.get("http_version", "1.1").startswith("2")


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused (BodyTooLarge) as soon as more than ``limit`` bytes came."""
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


async def drain(receive: Receive, limit: int) -> bool:
    """Read and drop the rest of a body, up to ``limit`` bytes; True if it ended."""
    size = 0
    while size <= limit:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return True
        size += len(message.get("body", b""))
    return False


async def answer_then_drain(
    send: Send, receive: Receive, error: ApiError, limits: BodyLimits, drain_body: bool = True
) -> None:
    """Answer ``error`` on HTTP/1.1 when the body was not read: the answer at once, with
    ``Connection: close``; then the rest of the body drained (unless ``drain_body`` is
    false: a client too slow to send it in time is not waited for again); then the close."""
    payload, status, headers = error_parts(error)
    start = [*raw_headers(headers), (b"content-length", b"%d" % len(payload)), CONNECTION_CLOSE]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": payload, "more_body": True})
    if drain_body:
        # Past the bound the socket is closed anyway: memory and time stay bounded.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limits.body_timeout_s):
                await drain(receive, limits.drain_max_bytes)
    await send(END_OF_BODY)


class TimedBodies:
    """Body reads of the ingest fast path, each cut after ``timeout_s`` (408), by one sweep
    of ``deadlines`` a tick rather than a timer per request (deadlines.py says why)."""

    def __init__(self, deadlines: Deadlines, timeout_s: float) -> None:
        self.deadlines = deadlines
        self.timeout_s = timeout_s
        self._late: set[asyncio.Task[Any]] = set()

    def _cut(self, task: asyncio.Task[Any]) -> None:
        self._late.add(task)
        task.cancel()

    async def read(self, receive: Receive, limit: int) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        due = asyncio.get_running_loop().time() + self.timeout_s
        self.deadlines.add(task, due, self._cut)
        try:
            return await read_body(receive, limit)
        except asyncio.CancelledError:
            if task not in self._late:
                raise
            self._late.discard(task)
            task.uncancel()
            raise RequestTimeout(f"the body did not arrive within {self.timeout_s:g} s") from None
        finally:
            self.deadlines.discard(task)


def guarded(app: ASGIApp, limits: BodyLimits) -> ASGIApp:
    """``app`` with every request body under ``limits``: capped at ``max_body_bytes``
    (413), complete within ``body_timeout_s`` (408), and drained before the connection
    closes when the route answered without reading it.

    Requests that cannot carry a body go straight through, untouched: an SSE stream's
    sends are not wrapped."""

    async def guard(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not may_have_body(scope):
            return await app(scope, receive, send)
        request = _GuardedBody(receive, send, limits, is_http1(scope))
        try:
            await app(scope, request.receive, request.send)
        except ApiError as error:
            # Raised by our receive through an app that does not answer it itself (Quart
            # reads bodies in a task of its own, whose exception ends the request).
            if request.started:
                raise
            request.draining = True  # what comes now is dropped, not refused again
            if request.http1 and not request.complete:
                await answer_then_drain(send, request.receive, error, limits, request.on_time)
            else:
                payload, status, headers = error_parts(error)
                start = {"type": "http.response.start", "status": status}
                await send({**start, "headers": raw_headers(headers)})
                await send({"type": "http.response.body", "body": payload})

    return guard


@dataclass(eq=False)
class _GuardedBody:
    """One request's body as its app reads it, and its answer as the app writes it."""

    _receive: Receive
    _send: Send
    limits: BodyLimits
    http1: bool
    received: int = field(init=False, default=0)
    complete: bool = field(init=False, default=False)
    started: bool = field(init=False, default=False)
    on_time: bool = field(init=False, default=True)
    draining: bool = field(init=False, default=False)
    # One raw receive at a time: Quart reads the body in a task of its own while the
    # drain reads from here.
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._deadline = asyncio.get_running_loop().time() + self.limits.body_timeout_s

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()  # only a disconnect can come now
        async with self._lock:
            if self.complete:
                return {"type": "http.request", "body": b"", "more_body": False}
            try:
                async with asyncio.timeout_at(self._deadline):
                    message = await self._receive()
            except TimeoutError:
                self.on_time = False
                raise RequestTimeout(
                    f"the body did not arrive within {self.limits.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                self.complete = True
            self.received += len(message.get("body", b""))
            if not self.draining and self.received > self.limits.max_body_bytes:
                raise BodyTooLarge(self.limits.max_body_bytes)
            return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if self.http1 and not self.complete:
                message = {**message, "headers": [*message.get("headers", []), CONNECTION_CLOSE]}
        elif (
            self.http1
            and message["type"] == "http.response.body"
            and not message.get("more_body", False)
            and not self.complete
            and self.on_time
        ):
            await self._send({**message, "more_body": True})
            await self._drain()
            message = END_OF_BODY
        await self._send(message)

    async def _drain(self) -> None:
        self.draining = True
        budget = self.received + self.limits.drain_max_bytes
        with contextlib.suppress(TimeoutError, RequestTimeout):
            while not self.complete and self.received <= budget:
                await self.receive()
