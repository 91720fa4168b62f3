"""One client's Server-Sent Events stream, as a plain ASGI response.

The frames are pre-encoded by the hub; what is left per client is as little as we could make
it, because with 10,000 clients a node does it 10,000 times a window. The stream attaches a
writer to its subscriber (``_Connection``, the subscriber's ``Writer``), and a window is
written to a client from the hub's own call: the ASGI send is driven by hand, and on uvicorn
and hypercorn a send to a socket with room in its buffer finishes without waiting, so no task
is woken and no future is made per client and window. Only when the server makes a write
wait (the client reads slowly) is the rest of that write handed to the client's own task,
which then writes whatever is queued until it catches up. No timer per client or per send
either: the hub tends heartbeats and send timeouts in one pass a tick. One small task per
client waits for it to go away.

sse-starlette encodes the frames (``frames.py``), but its ``EventSourceResponse`` is not used:
it runs a task group per client (the generator, a ping loop, a disconnect listener) and wraps
every send in an anyio timeout scope; measured with 10,000 clients (docs/benchmarks-delivery.md),
that machinery on hypercorn cost 185 µs of CPU per delivered message and 53 KiB per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

from starlette.responses import Response

from .frames import retry_frame
from .hub import Hub
from .subscriber import Frame, Subscriber

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx and other proxies must pass each frame on at once, not buffer the stream.
    (b"x-accel-buffering", b"no"),
    (b"access-control-allow-origin", b"*"),
]


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
        connection = _Connection(send, task)
        watcher = asyncio.create_task(_watch_disconnect(receive, subscriber))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            subscriber.attach_writer(connection, self.first)
            wake = subscriber.wake
            # Every wake-up is a write to finish, frames queued before the writer was
            # attached, or the end (``close`` sets the wake too, so waiting is always safe).
            while True:
                await wake.wait()
                wake.clear()
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
            connection.abandon()
            watcher.cancel()
            self.hub.detach(subscriber)


class _Connection:
    """The ``Writer`` of a started stream: each write is begun by hand in the caller; one the
    server makes wait is finished by the stream's task (``finish``)."""

    __slots__ = ("send", "task", "waiting")

    def __init__(self, send: Send, task: asyncio.Task[Any]) -> None:
        self.send = send
        self.task = task
        self.waiting: _Resumed | None = None

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

    def abort(self) -> None:
        self.task.cancel()

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
        while True:
            try:
                yield waiting_on
            except BaseException as exc:  # thrown in by the task: pass it on
                try:
                    waiting_on = self.coroutine.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                waiting_on = self.coroutine.send(None)
            except StopIteration:
                return


async def _watch_disconnect(receive: Receive, subscriber: Subscriber) -> None:
    """Ends the stream when the client goes away (the request body, if any, is ignored)."""
    with contextlib.suppress(OSError):
        while (await receive())["type"] != "http.disconnect":
            pass
    subscriber.close()
