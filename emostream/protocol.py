"""uvicorn's HTTP/1.1 protocol on httptools (its fastest), with the limits it lacks.

uvicorn on httptools keeps a request head of any size (llhttp sets no limit, and httptools
grows each header value piece by piece) and runs no timer while a head arrives: its keep-alive
timer stops at the first byte, so one header byte now and then holds a connection forever.
Its h11 protocol bounds the head size (answered 400) but not the time, and is the slower
parser. So this subclass of the httptools protocol:

- counts the bytes of each head as they arrive and refuses a head over ``max_header_bytes``
  with 431, in the one JSON error shape, then closes (memory stays within the limit plus one
  read);
- gives each head ``header_timeout_s`` from its first byte, or from the connection's start
  for the first request, then answers 408 (or closes silently when nothing came at all);
- answers the parser's own 400 in the JSON error shape too.

Deadlines are checked by one sweep a tick (deadlines.py), not a timer per request; a whole
request arriving in one read, the common case, touches no deadline at all. Between requests
uvicorn's own keep-alive timer (``idle_timeout_s``) applies.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .deadlines import Deadlines
from .errors import ApiError, HeadersTooLarge, MalformedBody, RequestTimeout
from .settings import Settings
from .web import error_parts


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: ClassVar[int] = 16 * 1024
    header_timeout_s: ClassVar[float] = 10.0
    deadlines: ClassVar[Deadlines]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes received since the current head began; counted only while in a head.
        self._head_bytes = 0
        self._in_head = True
        self._head_watched = False
        self._refusal: ApiError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._unwatch_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes and not self.transport.is_closing():
            if self._head_bytes > self.max_header_bytes:
                self._refuse(HeadersTooLarge(self.max_header_bytes))
            elif not self._head_watched:
                self._watch_head()

    # -- parser callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        # The bytes counted cover the head (and maybe some body): only a count over the limit
        # needs the exact size.
        if self._head_bytes > self.max_header_bytes and self._head_size() > self.max_header_bytes:
            self._refusal = HeadersTooLarge(self.max_header_bytes)
            raise _HeadTooLarge
        self._in_head = False
        if self._head_watched:
            self._unwatch_head()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request (or a head over the limit stopped it)."""
        refusal, self._refusal = self._refusal, None
        self._refuse(refusal or MalformedBody(f"invalid HTTP request: {msg}"))

    # -- the head's deadline -----------------------------------------------------------------

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _watch_head(self) -> None:
        self._head_watched = True
        due = self.loop.time() + self.header_timeout_s
        self.deadlines.add(self, due, LimitedHttpToolsProtocol._head_late)

    def _unwatch_head(self) -> None:
        self._head_watched = False
        self.deadlines.discard(self)

    def _head_late(self) -> None:
        self._head_watched = False
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._watch_head()  # a pipelined head behind an answer still being written
        elif self._head_bytes:
            self._refuse(
                RequestTimeout(f"no complete request head within {self.header_timeout_s:g} s")
            )
        else:
            self.transport.close()  # a connection that never sent a byte

    def _refuse(self, error: ApiError) -> None:
        """Write ``error`` as the one JSON response of this connection, and close it."""
        payload, status, headers = error_parts(error)
        head = [STATUS_LINE[status]]
        for name, value in headers.items():
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(payload))
        self.transport.write(b"".join([*head, payload]))
        self.transport.close()


def limited_protocol(settings: Settings, deadlines: Deadlines) -> type[HttpToolsProtocol]:
    """The protocol class uvicorn runs for one server, with its limits and its running
    ``deadlines``."""
    attributes = {
        "max_header_bytes": settings.max_header_bytes,
        "header_timeout_s": settings.header_timeout_s,
        "deadlines": deadlines,
    }
    return type("ServerHttpToolsProtocol", (LimitedHttpToolsProtocol,), attributes)
