"""One client of the node as the hub sees it: a bounded, latest-wins queue of frames."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

# (seq, revision) orders frames; a revision of a window sorts after the window itself.
FrameKey = tuple[int, int]
Frame = tuple[FrameKey, bytes]

HEARTBEAT = b": heartbeat\n\n"


class Subscriber:
    """One client's bounded queue: when it is full the newest frame pushes out the oldest
    undelivered one (latest wins), so a slow reader skips windows instead of being cut off
    or holding memory; a reader that accepts nothing at all is ended by the send timeout.

    Heartbeats and the send timeout are the hub's: one pass over every subscriber a tick
    (``Hub.tend``) instead of a timer per client and a timeout scope around every send."""

    __slots__ = (
        "event_id",
        "frames",
        "wake",
        "closed",
        "after",
        "sent",
        "fresh",
        "heartbeat_due",
        "sending_since",
        "task",
        "timed_out",
        "push",
        "resume",
        "waits",
    )

    def __init__(self, event_id: str, queue_max: int) -> None:
        self.event_id = event_id
        self.frames: deque[Frame] = deque(maxlen=queue_max)
        self.wake = asyncio.Event()
        self.closed = False
        # The newest seq this client was given by its backlog (or its Last-Event-ID): where
        # the hub fills from when it (re)subscribes without having seen the event itself.
        self.after: int | None = None
        # The newest window written to this client: older or repeated frames are skipped.
        self.sent: FrameKey = (-1, 0)
        # Offered a frame since the last heartbeat tick (then it needs no heartbeat).
        self.fresh = False
        self.heartbeat_due = False
        # Loop time a write to the client began and has not finished; None when idle.
        self.sending_since: float | None = None
        # The task serving the client's stream, cancelled if a write outlives the timeout.
        self.task: asyncio.Task[Any] | None = None
        self.timed_out = False
        # Writes what is queued from the caller's own call, when the stream allows it (set
        # by the stream once its response has started); otherwise the stream's task is woken.
        self.push: Callable[[], None] | None = None
        # A write ``push`` began that the server made wait: the stream's task finishes it.
        self.resume: Awaitable[None] | None = None
        self.waits = 0  # writes the server made wait (the client reads slowly)

    def offer(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.fresh = True
        self.poke()

    def poke(self) -> None:
        """Have what is queued written: at once if no write is in progress, else by the
        stream's task when the one in progress is done."""
        if self.push is not None and self.sending_since is None:
            self.push()
        else:
            self.wake.set()

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

    def take(self) -> bytes:
        """Everything queued for the client as one write: new windows, revisions of sent
        ones, or a heartbeat comment if there is nothing else."""
        chunks: list[bytes] = []
        frames = self.frames
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

    def close(self) -> None:
        """End the stream: its task sees ``closed`` when it wakes."""
        self.closed = True
        self.wake.set()

    def time_out(self) -> None:
        self.timed_out = True
        self.close()
        if self.task is not None:
            self.task.cancel()
