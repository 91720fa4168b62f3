"""One client's Server-Sent Events stream, as a plain ASGI response.

The frames are pre-encoded by the hub; what is left per client is as little as we could make
it, because with 10,000 clients a node does it 10,000 times a window. A window is written to a
client from the hub's own call (``Subscriber.push``): the ASGI send is driven by hand, and on
uvicorn and hypercorn a send to a socket with room in its buffer finishes without waiting, so
no task is woken and no future is made per client and window. Only when the server makes a
write wait (the client reads slowly) is the rest of that write handed to the client's own
task, which then writes whatever is queued until it catches up. No timer per client or per
send either: the hub tends heartbeats and send timeouts in one pass a tick. One small task
per client waits for it to go away.

Why not sse-starlette's ``EventSourceResponse`` (used before): it runs a task group per
client (the generator, a ping loop, a disconnect listener) and wraps every send in an anyio
timeout scope; measured with 10,000 clients (docs/benchmarks-delivery.md), that machinery on
hypercorn cost 185 µs of CPU per delivered message and 53 KiB per connection.
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
    ) -> None:
        # Response.__init__ would add a content-length: this response is never complete.
        self.status_code = 200
        self.background = None
        self.hub = hub
        self.subscriber = subscriber
        self.first = b"".join([retry_frame(retry_ms), *subscriber.start(backlog, after)])

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        subscriber = self.subscriber
        subscriber.task = asyncio.current_task()
        watcher = asyncio.create_task(_watch_disconnect(receive, subscriber))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await _write(send, subscriber, self.first)
            subscriber.push = _Pusher(send, subscriber)
            wake = subscriber.wake
            while not subscriber.closed:
                await wake.wait()
                wake.clear()
                if subscriber.resume is not None:
                    resume, subscriber.resume = subscriber.resume, None
                    await resume
                    subscriber.sending_since = None
                if subscriber.closed:
                    break
                chunk = subscriber.take()
                if chunk:
                    await _write(send, subscriber, chunk)
            subscriber.push = None
            if not subscriber.timed_out:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Cancelled by the hub's send timeout, or by the server's graceful shutdown while
            # the client accepted nothing: the stream ends here and the server closes the
            # connection. Any other cancellation is passed on.
            task = asyncio.current_task()
            expected = subscriber.timed_out or self.hub.closing
            if not expected or task is None or task.uncancel() > 0:
                raise
        finally:
            subscriber.push = None
            if isinstance(subscriber.resume, _Resumed):
                subscriber.resume.coroutine.close()  # a write left waiting: abandon it
                subscriber.resume = None
            watcher.cancel()
            self.hub.detach(subscriber)


async def _write(send: Send, subscriber: Subscriber, chunk: bytes) -> None:
    subscriber.sending_since = asyncio.get_running_loop().time()
    await send({"type": "http.response.body", "body": chunk, "more_body": True})
    subscriber.sending_since = None


class _Pusher:
    """``Subscriber.push`` of a started stream: write what is queued, now, in the caller."""

    __slots__ = ("send", "subscriber")

    def __init__(self, send: Send, subscriber: Subscriber) -> None:
        self.send = send
        self.subscriber = subscriber

    def __call__(self) -> None:
        subscriber = self.subscriber
        chunk = subscriber.take()
        if not chunk:
            return
        sending = self.send({"type": "http.response.body", "body": chunk, "more_body": True})
        try:
            waiting_on = sending.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return  # written
        except (Exception, asyncio.CancelledError) as exc:  # the connection is gone: end it
            log.debug("write to a client failed: %r", exc)
            subscriber.close()
            return
        # The server made the write wait (a full socket buffer): the stream's task finishes
        # it, and the send timeout applies from now.
        subscriber.sending_since = asyncio.get_running_loop().time()
        subscriber.waits += 1
        subscriber.resume = _Resumed(sending, waiting_on)
        subscriber.wake.set()


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
