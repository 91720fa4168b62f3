"""Server-Sent Events framing: pure functions from window objects to the bytes on the wire.

Frames are encoded by sse-starlette's ``ServerSentEvent``, once per window per node; every
client of the event is sent the same bytes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

# Importing sse_starlette also wraps uvicorn's Server.handle_exit (for EventSourceResponse's
# drain); the wrapper calls uvicorn's own handler, and our streams are ended by Hub.close.
from sse_starlette.event import ServerSentEvent

from ..contract import CONTRACT_VERSION

SWARM_EVENT = "swarm"
RESET_EVENT = "reset"
POLL_EVENT = "poll"
# sse-starlette ends lines with "\r\n" unless told; browsers accept either, and "\n" keeps
# the bytes on the wire as they always were (clients, benchmarks and tests read them).
LINE_END = "\n"
# A comment line: browsers ignore it, proxies see the stream is alive.
HEARTBEAT = ServerSentEvent(comment="heartbeat", sep=LINE_END).encode()


def window_frame(window: dict[str, Any]) -> bytes:
    """``id: <seq>`` / ``event: swarm`` / ``data: <json>``; JSON never holds a raw newline.

    A revision (a window re-published after late reactions) carries no ``id:`` line: the
    browser's Last-Event-ID must keep naming the newest window, not move back to a revised one.
    """
    data = json.dumps(window, ensure_ascii=False, separators=(",", ":"))
    seq = None if window.get("revision") else str(window["seq"])
    return ServerSentEvent(data, event=SWARM_EVENT, id=seq, sep=LINE_END).encode()


def poll_frame(poll: dict[str, Any]) -> bytes:
    """``event: poll`` / ``data: <json>``, with no ``id:`` line: a poll update is outside the
    window order, and the browser's Last-Event-ID must keep naming the newest window."""
    data = json.dumps(poll, ensure_ascii=False, separators=(",", ":"))
    return ServerSentEvent(data, event=POLL_EVENT, sep=LINE_END).encode()


def retry_frame(retry_ms: int) -> bytes:
    """Tells the browser how long to wait before reconnecting."""
    return ServerSentEvent(retry=retry_ms, sep=LINE_END).encode()


def reset_frame(event_id: str, last_event_id: int) -> bytes:
    """``event: reset``: the seq the client resumed from is beyond the event's newest window
    (its history was lost), so seq numbering starts over with the windows that follow. No
    ``id:`` line; the next window's sets Last-Event-ID back in range."""
    data = json.dumps({"v": CONTRACT_VERSION, "event_id": event_id, "last_event_id": last_event_id})
    return ServerSentEvent(data, event=RESET_EVENT, sep=LINE_END).encode()


@functools.lru_cache(maxsize=16)
def http_chunk(frame: bytes) -> bytes:
    """``frame`` as one chunk of an HTTP/1.1 chunked body (what the server would wrap it in),
    made once per frame: every client of a window is sent the same bytes object, whose hash
    Python keeps, so the lookup of each further client is a dict hit by identity."""
    return b"%x\r\n%b\r\n" % (len(frame), frame)


# The largest seq a client may resume from: a window every 2 s reaches it in half a billion
# years, and every value up to it reads back from a history stream id.
MAX_SEQ = 2**53


def parse_last_event_id(value: str | None) -> int | None:
    """The seq a reconnecting client saw last; None if absent. ValueError if not a seq:
    ASCII digits only (no sign, underscore or other script's digits), at most ``MAX_SEQ``."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_SEQ)):
        raise ValueError("not a seq")
    seq = int(text)
    if seq > MAX_SEQ:
        raise ValueError("seq out of range")
    return seq


class _Frames:
    """An SSE text's lines in, its frames out: a frame is the block of lines a blank line ends."""

    def __init__(self) -> None:
        self._block: list[str] = []

    def feed(self, line: str) -> list[str]:
        """The frame ``line`` ends (empty while it is not a blank line)."""
        if line:
            self._block.append(line)
            return []
        block, self._block = self._block, []
        return block


def _event_data(frame: list[str], event: str) -> dict[str, Any] | None:
    """The JSON data of a frame of ``event``; None for a frame of another event."""
    if f"event: {event}" not in frame:
        return None
    data: dict[str, Any] = json.loads("\n".join(x[6:] for x in frame if x.startswith("data: ")))
    return data


def poll_events(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The client side of ``poll_frame``: the poll objects in an SSE text's lines; an object
    whose frame carried an id (which none should) has ``"_id"`` set."""
    found: list[dict[str, Any]] = []
    frames = _Frames()
    for line in [*lines, ""]:
        frame = frames.feed(line)
        poll = _event_data(frame, POLL_EVENT)
        if poll is not None:
            if any(x.startswith("id:") for x in frame):
                poll["_id"] = True
            found.append(poll)
    return found


def swarm_windows(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The client side of ``window_frame``: the window objects in an SSE text's lines."""
    frames = _Frames()
    found = (_event_data(frames.feed(line), SWARM_EVENT) for line in [*lines, ""])
    return [window for window in found if window is not None]


async def stream_swarm_windows(lines: AsyncIterable[str]) -> AsyncIterator[dict[str, Any]]:
    """The same for a live stream's lines, each window as soon as its frame ends."""
    frames = _Frames()
    async for line in lines:
        window = _event_data(frames.feed(line), SWARM_EVENT)
        if window is not None:
            yield window
