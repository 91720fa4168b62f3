"""One client's Server-Sent Events stream, as a plain ASGI response.

The frames are pre-encoded by the hub; what is left per client is as little as we could make
it, because with 10,000 clients a node does it 10,000 times a window. The stream attaches a
writer to its subscriber (the subscriber's ``Writer``), and a window is written to a client
from the hub's own call: no task is woken and no future is made per client and window. On
uvicorn the writer is the connection's transport itself (``_TransportWriter``): once the
response head is out, a frame is one ``transport.write`` of bytes framed as an HTTP chunk
once per window, instead of a message dict, the server's send coroutine and its chunk framing
per client. Elsewhere (hypercorn) the ASGI send is driven by hand (``_Connection``): a send to
a socket with room finishes without waiting. Only when the connection's buffer is full (the
client reads slowly) is the rest of a write handed to the client's own task, which then
writes whatever is queued until it catches up. No timer per client or per send either: the
hub tends heartbeats and send timeouts in one pass a tick. The one task per client is the
ASGI call itself, asleep until its subscriber has work for it; the client's going away is
noticed by a receive driven by callbacks (``_DisconnectWatch``), not by a second task.

``StreamFastPath`` serves the plain stream request (GET, no query, no body) in front of the
Starlette app, so a connection holds neither the app's middleware frames and closures nor a
Request, and the writer gets the server's own send; anything else goes to the app.

sse-starlette encodes the frames (``frames.py``), but its ``EventSourceResponse`` is not used:
it runs a task group per client (the generator, a ping loop, a disconnect listener) and wraps
every send in an anyio timeout scope; measured with 10,000 clients (docs/benchmarks-delivery.md),
that machinery on hypercorn cost 185 µs of CPU per delivered message and 53 KiB per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any, Generic, TypeVar

from starlette.responses import Response

from ..bodies import may_have_body
from ..contract import validate_event_id
from ..errors import ApiError
from .frames import http_chunk, parse_last_event_id, retry_frame
from .hub import Hub
from .subscriber import Frame, Subscriber

try:  # the server whose transport a stream may write to directly
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
except ImportError:  # pragma: no cover - uvicorn is a dependency
    RequestResponseCycle = None  # type: ignore[assignment, misc]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Receive, Send], Awaitable[None]]
# Opens the stream of a client of ``event_id`` resuming after ``after`` (the app's handler).
OpenStream = Callable[[str, int | None], Awaitable["SwarmStream"]]

# The write a connection made wait, as its writer keeps it.
Waiting = TypeVar("Waiting")

log = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx and other proxies must pass each frame on at once, not buffer the stream.
    (b"x-accel-buffering", b"no"),
    (b"access-control-allow-origin", b"*"),
]
STREAM_PATH = re.compile(r"/v1/events/([^/]+)/stream")


class StreamFastPath:
    """``app`` with the common stream request answered in front of it: a GET of
    ``/v1/events/{event_id}/stream`` without query or body, whose event id and Last-Event-ID
    are valid. Everything else, including such a request with a bad value (whose error the
    app answers), is the app's."""

    def __init__(self, app: ASGIApp, open_stream: OpenStream) -> None:
        self.app = app
        self.open_stream = open_stream

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        opening = self._stream_request(scope)
        if opening is None:
            return await self.app(scope, receive, send)
        response = await self.open_stream(*opening)
        await response(scope, receive, send)

    @staticmethod
    def _stream_request(scope: Any) -> tuple[str, int | None] | None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("query_string"):
            return None
        match = STREAM_PATH.fullmatch(scope["path"])
        if match is None or may_have_body(scope):
            return None
        last_event_id = next(
            (value for name, value in scope["headers"] if name == b"last-event-id"), b""
        )
        try:
            event_id = validate_event_id(match.group(1))
            return event_id, parse_last_event_id(last_event_id.decode("latin-1") or None)
        except (ApiError, ValueError):
            return None


class SwarmStream(Response):
    """The stream of one subscriber: its retry hint and backlog, then live frames until the
    client leaves, the node shuts down (the hub closes every subscriber) or the client has
    accepted nothing for the send timeout (the hub cancels the stream)."""

    def __init__(
        self,
        hub: Hub,
        subscriber: Subscriber,
        backlog: list[Frame],
        after: int | None,
        retry_ms: int,
        reset: bytes = b"",
    ) -> None:
        # Response.__init__ would add a content-length: this response is never complete.
        self.status_code = 200
        self.background = None
        self.hub = hub
        self.subscriber = subscriber
        self.first = b"".join([retry_frame(retry_ms), reset, *subscriber.start(backlog, after)])

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        subscriber = self.subscriber
        task = asyncio.current_task()
        assert task is not None  # an ASGI app is always called in a task
        watch = _DisconnectWatch(receive, subscriber.close)
        connection: _TransportWriter | _Connection | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            connection = _TransportWriter.of(send, task) or _Connection(send, task)
            first, self.first = self.first, b""  # not kept for the life of the stream
            subscriber.attach_writer(connection, first)
            # Every wake-up is a write to finish, frames queued before the writer was
            # attached, or the end (``close`` wakes it too, so waiting is always safe).
            while True:
                await subscriber.woken()
                if connection.waiting is not None:
                    await connection.finish()
                    subscriber.written()
                if subscriber.closed:
                    break
                subscriber.poke()
            subscriber.detach_writer()
            if not subscriber.timed_out:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Cancelled by the hub's send timeout, or by the server's graceful shutdown while
            # the client accepted nothing: the stream ends here and the server closes the
            # connection. Any other cancellation is passed on.
            expected = subscriber.timed_out or self.hub.closing
            if not expected or task.uncancel() > 0:
                raise
        finally:
            subscriber.detach_writer()
            if connection is not None:
                connection.abandon()
            watch.stop()
            self.hub.detach(subscriber)


class _StreamWriter(Generic[Waiting]):
    """What both writers share: the stream's task, which the send timeout cancels
    (``abort``), and the write the connection made wait (``waiting``), which that task
    finishes."""

    __slots__ = ("task", "waiting")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.waiting: Waiting | None = None

    def abort(self) -> None:
        self.task.cancel()


class _TransportWriter(_StreamWriter[bytes]):
    """The ``Writer`` of a stream on uvicorn: frames go straight to the connection's transport
    as HTTP chunks, after the response head uvicorn wrote (chunked, since a stream has no
    length). uvicorn's own send would wait while its flow control says the transport's
    buffer is over its high-water mark; so does this: such a write is kept (``waiting``) and
    written by the stream's task once the buffer has drained (``finish``)."""

    __slots__ = ("cycle", "transport", "flow")

    def __init__(self, cycle: Any, task: asyncio.Task[Any]) -> None:
        super().__init__(task)
        self.cycle = cycle
        self.transport = cycle.transport
        self.flow = cycle.flow

    @classmethod
    def of(cls, send: Send, task: asyncio.Task[Any]) -> _TransportWriter | None:
        """A writer to the transport behind ``send``, when it is uvicorn's (httptools)
        and the response it started is a chunked body."""
        cycle = getattr(send, "__self__", None)
        if RequestResponseCycle is None or type(cycle) is not RequestResponseCycle:
            return None
        if cycle.chunked_encoding is not True or cycle.scope["method"] == "HEAD":
            return None
        return cls(cycle, task)

    def write(self, chunk: bytes) -> bool:
        transport = self.transport
        if self.cycle.disconnected or transport.is_closing():
            raise ConnectionError("the client's connection is gone")
        if self.flow.write_paused:
            self.waiting = chunk
            return False
        try:
            transport.write(http_chunk(chunk))
        except (OSError, RuntimeError) as exc:
            raise ConnectionError("the client's connection is gone") from exc
        return True

    async def finish(self) -> None:
        """Write the frame kept back once the transport's buffer has drained."""
        chunk, self.waiting = self.waiting, None
        await self.flow.drain()
        if chunk and not self.cycle.disconnected and not self.transport.is_closing():
            self.transport.write(http_chunk(chunk))

    def abandon(self) -> None:
        self.waiting = None


class _Connection(_StreamWriter["_Resumed"]):
    """The ``Writer`` of a started stream on any other server: each write is begun by hand
    in the caller; one the server makes wait is finished by the stream's task (``finish``)."""

    __slots__ = ("send",)

    def __init__(self, send: Send, task: asyncio.Task[Any]) -> None:
        super().__init__(task)
        self.send = send

    def write(self, chunk: bytes) -> bool:
        sending = self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        try:
            waiting_on = sending.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return True
        except (Exception, asyncio.CancelledError) as exc:
            raise ConnectionError("the client's connection is gone") from exc
        self.waiting = _Resumed(sending, waiting_on)
        return False

    async def finish(self) -> None:
        """Finish the write the server made wait (in the stream's task)."""
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            await waiting

    def abandon(self) -> None:
        """Drop a write left waiting (the stream is ending)."""
        if self.waiting is not None:
            self.waiting.coroutine.close()
            self.waiting = None


class _Resumed:
    """Awaiting this finishes a coroutine that was started by hand and is suspended on
    ``waiting_on``: what ``await`` would have done had a task started it. The future is
    handed to the awaiting task exactly as the coroutine yielded it (asyncio's protocol: a
    future with ``_asyncio_future_blocking`` set), so the task sleeps until it is done, then
    the coroutine goes on; a cancellation reaches the coroutine as at any other await."""

    __slots__ = ("coroutine", "waiting_on")

    def __init__(self, coroutine: Any, waiting_on: Any) -> None:
        self.coroutine = coroutine
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        waiting_on = self.waiting_on
        coroutine = self.coroutine
        value: BaseException | None
        while True:
            try:
                yield waiting_on
            except BaseException as exc:  # thrown in by the task: pass it on
                resume, value = coroutine.throw, exc
            else:
                resume, value = coroutine.send, None
            try:
                waiting_on = resume(value)
            except StopIteration:
                return


class _DisconnectWatch:
    """Calls ``gone`` when the client goes away (the request body, if any, is ignored).

    The server's ``receive`` is driven by hand, as a task would drive it: each future it
    waits on gets a done-callback that resumes it. A second task per client would cost a
    task, its coroutine and their frames on every connection for the one moment it ends."""

    __slots__ = ("receive", "gone", "receiving", "waiting_on")

    def __init__(self, receive: Receive, gone: Callable[[], None]) -> None:
        self.receive = receive
        self.gone = gone
        self.receiving: Any = None
        self.waiting_on: asyncio.Future[Any] | None = None
        self._next()

    def _next(self) -> None:
        self.receiving = self.receive()
        self._step(None)

    def _step(self, _done: object) -> None:
        self.waiting_on = None
        if self.receiving is None:
            return  # stopped meanwhile
        try:
            waiting_on = self.receiving.send(None)
        except StopIteration as stop:
            self.receiving = None
            if stop.value["type"] == "http.disconnect":
                self.gone()
            else:
                self._next()
            return
        except (Exception, asyncio.CancelledError):
            self.receiving = None
            self.gone()
            return
        if waiting_on is None:  # a bare yield: go on at the next turn of the loop
            asyncio.get_running_loop().call_soon(self._step, None)
            return
        waiting_on._asyncio_future_blocking = False
        self.waiting_on = waiting_on
        waiting_on.add_done_callback(self._step)

    def stop(self) -> None:
        if self.waiting_on is not None:
            self.waiting_on.remove_done_callback(self._step)
            self.waiting_on = None
        if self.receiving is not None:
            with contextlib.suppress(Exception):
                self.receiving.close()
            self.receiving = None
