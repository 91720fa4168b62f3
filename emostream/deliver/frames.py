"""Server-Sent Events framing: pure functions from window objects to the bytes on the wire.

A window is encoded once per node; every client of the event is sent the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

SWARM_EVENT = "swarm"
# A comment line: browsers ignore it, proxies see the stream is alive.
HEARTBEAT = b": heartbeat\n\n"


def window_frame(window: dict[str, Any]) -> bytes:
    """``id: <seq>`` / ``event: swarm`` / ``data: <json>``; JSON never holds a raw newline.

    A revision (a window re-published after late reactions) carries no ``id:`` line: the
    browser's Last-Event-ID must keep naming the newest window, not move back to a revised one.
    """
    data = json.dumps(window, ensure_ascii=False, separators=(",", ":"))
    if window.get("revision"):
        return f"event: {SWARM_EVENT}\ndata: {data}\n\n".encode()
    return f"id: {window['seq']}\nevent: {SWARM_EVENT}\ndata: {data}\n\n".encode()


def retry_frame(retry_ms: int) -> bytes:
    """Tells the browser how long to wait before reconnecting."""
    return f"retry: {retry_ms}\n\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The seq a reconnecting client saw last; None if absent. ValueError if not a seq."""
    if value is None or value.strip() == "":
        return None
    seq = int(value.strip())
    if seq < 0:
        raise ValueError("negative seq")
    return seq


def _swarm_window(block: list[str]) -> dict[str, Any] | None:
    if f"event: {SWARM_EVENT}" not in block:
        return None
    window: dict[str, Any] = json.loads("\n".join(x[6:] for x in block if x.startswith("data: ")))
    return window


def swarm_windows(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The client side of ``window_frame``: the window objects in an SSE text's lines."""
    windows: list[dict[str, Any]] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line:
            block.append(line)
            continue
        window = _swarm_window(block)
        if window is not None:
            windows.append(window)
        block = []
    return windows


async def stream_swarm_windows(lines: AsyncIterable[str]) -> AsyncIterator[dict[str, Any]]:
    """The same for a live stream's lines, each window as soon as its frame ends."""
    block: list[str] = []
    async for line in lines:
        if line:
            block.append(line)
            continue
        window = _swarm_window(block)
        if window is not None:
            yield window
        block = []
