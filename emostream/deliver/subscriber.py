"""One client of the node as the hub sees it: a bounded, latest-wins queue of frames, and the
writer its stream attaches (the client's connection).

The seam is Centrifugo's per-client ``Transport``: the subscriber writes through a ``Writer``
(``write``, ``abort``) and never touches the connection; the stream attaches its writer once
its response has started and detaches it when it ends. Everything else about the subscriber
is its own state, changed only by its methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .frames import HEARTBEAT

log = logging.getLogger(__name__)

# (seq, revision) orders frames; a revision of a window sorts after the window itself.
FrameKey = tuple[int, int]
Frame = tuple[FrameKey, bytes]
# The key of a frame outside the window order (a poll update): like a revision, always
# written, never moving what the client was sent (Subscriber.take).
UNORDERED: FrameKey = (-1, 1)


class Writer(Protocol):
    """A client's connection, as its subscriber writes to it."""

    def write(self, chunk: bytes) -> bool:
        """Write ``chunk`` from the caller's own call: True when that is done; False when the
        connection made the write wait, so the writer's own task finishes it and then calls
        ``Subscriber.written``. Raises ConnectionError when the client is gone."""
        ...

    def abort(self) -> None:
        """End the connection now, in whatever write it is (the send timeout)."""
        ...


class Subscriber:
    """One client's bounded queue: when it is full the newest frame pushes out the oldest
    undelivered one (latest wins), so a slow reader skips windows instead of being cut off
    or holding memory; a reader that accepts nothing at all is ended by the send timeout.

    Heartbeats and the send timeout are the hub's: one pass over every subscriber a tick
    (``Hub.tend``) instead of a timer per client and a timeout scope around every send."""

    __slots__ = (
        "event_id",
        "_frames",
        "_queue_max",
        "_woken",
        "_waiter",
        "closed",
        "after",
        "sent",
        "fresh",
        "heartbeat_due",
        "sending_since",
        "timed_out",
        "waits",
        "dropped",
        "_writer",
        "_write",
    )

    def __init__(self, event_id: str, queue_max: int, after: int | None = None) -> None:
        self.event_id = event_id
        # Made on first use: a client that keeps up is written each frame as it is offered
        # and never queues one (an empty deque is half a KiB, times every connection).
        self._frames: deque[Frame] | None = None
        self._queue_max = queue_max
        # Set when there is work for the stream's task: a write to finish, frames queued
        # before its writer was attached, or the end of the stream. A bare future while the
        # task sleeps, not an asyncio.Event (whose waiter deque is another half KiB).
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        # The newest seq this client was given by its backlog (or its Last-Event-ID): where
        # the hub fills from when it (re)subscribes without having seen the event itself.
        self.after = after
        # The newest window written to this client: older or repeated frames are skipped.
        self.sent: FrameKey = (-1, 0)
        # Offered a frame since the last heartbeat tick (then it needs no heartbeat).
        self.fresh = False
        self.heartbeat_due = False
        # Loop time a write to the client began to wait and has not finished; None when idle.
        self.sending_since: float | None = None
        self.timed_out = False
        self.waits = 0  # writes the connection made wait (the client reads slowly)
        self.dropped = 0  # frames pushed out unsent by newer ones
        self._writer: Writer | None = None
        # The writer's bound ``write``, kept apart so a fan-out looks up one attribute.
        self._write: Callable[[bytes], bool] | None = None

    @property
    def frames(self) -> deque[Frame]:
        """The frames queued for the client, oldest first (bounded: latest wins)."""
        if self._frames is None:
            self._frames = deque(maxlen=self._queue_max)
        return self._frames

    # -- the hub's side ----------------------------------------------------------------------

    def offer(self, frame: Frame) -> None:
        self.fresh = True
        write = self._write
        if write is not None and self.sending_since is None and not self._frames:
            # The common case, once per client per window: nothing queued and the
            # connection has room, so the frame is written from this call, unqueued.
            key = frame[0]
            if not key[1]:
                if key <= self.sent:
                    return  # a window the client was given already
                self.sent = key
            self.heartbeat_due = False  # a frame is as good a sign of life
            self._write_now(write, frame[1])
            return
        frames = self.frames
        if len(frames) == frames.maxlen:
            self.dropped += 1  # the oldest undelivered frame makes room (latest wins)
        frames.append(frame)
        self.poke()

    def poke(self) -> None:
        """Have what is queued written: at once, from this call, if a writer is attached and
        no write is waiting; else by the stream's task when it is."""
        write = self._write
        if write is not None and self.sending_since is None:
            chunk = self.take()
            if chunk:
                self._write_now(write, chunk)
        else:
            self.wake()

    def wake(self) -> None:
        """Have the stream's task look at its subscriber (``woken``)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(None)
        else:
            self._woken = True

    def heartbeat(self) -> None:
        """A heartbeat tick: a client sent nothing since the last one is sent a comment, so
        proxies and browsers see a live stream."""
        if not self.fresh:
            self.heartbeat_due = True
            self.poke()
        self.fresh = False

    def note_backlog(self, backlog: list[Frame]) -> None:
        """Remember the newest seq the client's backlog gives it (0 when the event has no
        history yet: every window is new to it)."""
        if backlog and (self.after is None or backlog[-1][0][0] > self.after):
            self.after = backlog[-1][0][0]
        elif self.after is None and not backlog:
            self.after = 0

    def close(self) -> None:
        """End the stream: its task sees ``closed`` when it wakes."""
        self.closed = True
        self.wake()

    def time_out(self) -> None:
        self.timed_out = True
        self.close()
        if self._writer is not None:
            self._writer.abort()

    # -- the stream's side ---------------------------------------------------------------------

    def woken(self) -> asyncio.Future[None]:
        """Done once there is work for the stream's task (at once if there is already)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._woken:
            self._woken = False
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter

    def start(self, backlog: list[Frame], after: int | None) -> list[bytes]:
        """The backlog frames a client is owed first: those after its Last-Event-ID (a
        window whose seq it names may still come as a revision), each seq once."""
        self.sent = (after, 1 << 30) if after is not None else (-1, 0)
        chunks: list[bytes] = []
        for key, frame in backlog:
            if key > self.sent:
                self.sent = key
                chunks.append(frame)
        return chunks

    def attach_writer(self, writer: Writer, first: bytes) -> None:
        """Write through ``writer`` from now on, beginning with ``first``."""
        self._writer = writer
        self._write = writer.write
        self._write_now(writer.write, first)

    def detach_writer(self) -> None:
        """Write nothing more: the stream is ending."""
        self._writer = None
        self._write = None

    def written(self) -> None:
        """The writer's task finished a write that had to wait."""
        self.sending_since = None

    def take(self) -> bytes:
        """Everything queued for the client as one write: new windows, revisions of sent
        ones, or a heartbeat comment if there is nothing else."""
        chunks: list[bytes] = []
        frames = self._frames
        while frames:
            key, frame = frames.popleft()
            if key[1]:  # a revision of a window already sent
                chunks.append(frame)
            elif key > self.sent:
                self.sent = key
                chunks.append(frame)
        if self.heartbeat_due:
            self.heartbeat_due = False
            if not chunks:
                return HEARTBEAT
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _write_now(self, write: Callable[[bytes], bool], chunk: bytes) -> None:
        try:
            if write(chunk):
                return
        except ConnectionError as exc:
            log.debug("write to a client failed: %r", exc.__cause__ or exc)
            self.close()
            return
        # The connection made the write wait (a full socket buffer): the stream's task
        # finishes it, and the send timeout applies from now.
        self.sending_since = asyncio.get_running_loop().time()
        self.waits += 1
        self.wake()
