"""One client's Server-Sent Events stream, as a plain ASGI response.

The frames are pre-encoded by the hub; what is left per client is as little as we could make
it, because with 10,000 clients a node does it 10,000 times a window: wait for the
subscriber's wake-up, join what is queued into one chunk, one ASGI send. No timer per client
or per send (the hub tends heartbeats and send timeouts in one pass a tick), no task group;
one small task waits for the client to go away.

Why not sse-starlette's ``EventSourceResponse`` (used before): it runs a task group per
client (the generator, a ping loop, a disconnect listener) and wraps every send in an anyio
timeout scope; measured with 10,000 clients (docs/benchmarks-delivery.md), that machinery on
hypercorn cost 185 µs of CPU per delivered message and 53 KiB per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.responses import Response

from .frames import retry_frame
from .hub import Frame, Hub, Subscriber

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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
            wake = subscriber.wake
            while not subscriber.closed:
                await wake.wait()
                wake.clear()
                if subscriber.closed:
                    break
                chunk = subscriber.take()
                if chunk:
                    await _write(send, subscriber, chunk)
            if not subscriber.timed_out:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Cancelled by the hub's send timeout: the stream ends here, the server closes
            # the connection. Any other cancellation is passed on.
            task = asyncio.current_task()
            if not subscriber.timed_out or task is None or task.uncancel() > 0:
                raise
        finally:
            watcher.cancel()
            self.hub.detach(subscriber)


async def _write(send: Send, subscriber: Subscriber, chunk: bytes) -> None:
    subscriber.sending_since = asyncio.get_running_loop().time()
    await send({"type": "http.response.body", "body": chunk, "more_body": True})
    subscriber.sending_since = None


async def _watch_disconnect(receive: Receive, subscriber: Subscriber) -> None:
    """Ends the stream when the client goes away (the request body, if any, is ignored)."""
    with contextlib.suppress(OSError):
        while (await receive())["type"] != "http.disconnect":
            pass
    subscriber.closed = True
    subscriber.wake.set()
