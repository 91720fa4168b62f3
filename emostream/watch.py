"""`emostream watch EVENT`: the live swarm in a terminal, one line per closed window.

The terminal counterpart of the swarm page (and of the seed's ``client_recieve.py``): it reads
the event's SSE stream, prints each window as it closes (``--json``: the window object, one
JSON line each, for piping), and after a drop reconnects with backoff and ``Last-Event-ID``,
so the windows missed meanwhile are replayed before live ones. A revised window (late
reactions) is printed again, marked; a seq the server could no longer replay is reported on
stderr.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import httpx

from .contract import validate_event_id
from .deliver.frames import stream_swarm_windows
from .errors import ApiError

DEFAULT_URL = "http://127.0.0.1:8000"
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
# Heartbeat comments arrive every 15 s by default: a stream silent for this long is dead.
READ_TIMEOUT_S = 45.0


class StreamRefused(Exception):
    """The server answered the stream with an error that reconnecting will not fix."""


def window_line(window: dict[str, Any]) -> str:
    """``#42 12:00:02-12:00:04  total 5234  users 812  🔥 3785  😂 900``, in local time."""
    start, end = (
        datetime.fromtimestamp(window[name] / 1000).strftime("%H:%M:%S")
        for name in ("window_start_ms", "window_end_ms")
    )
    parts = [
        f"#{window['seq']} {start}-{end}",
        f"total {window['total']}",
        f"users {window['unique_users']}",
    ]
    if window.get("mood") is not None:
        parts.append(f"mood {window['mood']:+.2f}")
    top = "  ".join(f"{item['emoji']} {item['count']}" for item in window["top"])
    parts.append(top or "-")
    if window.get("revision"):
        parts.append("(revised)")
    return "  ".join(parts)


def json_line(window: dict[str, Any]) -> str:
    return json.dumps(window, ensure_ascii=False, separators=(",", ":"))


async def watch(
    url: str,
    event_id: str,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> None:
    """Print the event's windows until cancelled; StreamRefused on a 4xx answer."""
    stream_url = f"{url.rstrip('/')}/v1/events/{event_id}/stream"
    render: Callable[[dict[str, Any]], str] = json_line if as_json else window_line
    last_seq: int | None = None
    backoff_s = BACKOFF_FIRST_S
    timeout = httpx.Timeout(5.0, read=READ_TIMEOUT_S)
    async with httpx.AsyncClient(timeout=timeout) as client:
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_seq is not None:
                headers["Last-Event-ID"] = str(last_seq)
            try:
                async with client.stream("GET", stream_url, headers=headers) as response:
                    await _check(response)
                    async for window in stream_swarm_windows(response.aiter_lines()):
                        backoff_s = BACKOFF_FIRST_S
                        seq = window["seq"]
                        if not window.get("revision"):
                            if last_seq is not None and seq > last_seq + 1:
                                print(f"watch: windows #{last_seq + 1}-#{seq - 1} missed", file=err)
                            last_seq = seq if last_seq is None else max(last_seq, seq)
                        print(render(window), file=out, flush=True)
                reason = "the stream ended"
            except (httpx.TransportError, _Retry) as exc:
                reason = str(exc) or type(exc).__name__
            print(f"watch: {reason}; reconnecting in {backoff_s:.1f} s", file=err, flush=True)
            await asyncio.sleep(backoff_s * random.uniform(1.0, 1.5))
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)


class _Retry(Exception):
    """A server error or overload (5xx, 408, 429): worth reconnecting."""


async def _check(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    body = (await response.aread()).decode(errors="replace")
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.strip()[:200]
    text = f"{response.status_code} from {response.url}: {message}"
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise _Retry(text)
    raise StreamRefused(text)


def run_watch(url: str, event_id: str, as_json: bool) -> int:
    """The command: 0 when interrupted (Ctrl-C), 2 when the stream cannot be had."""
    try:
        validate_event_id(event_id)
        asyncio.run(watch(url, event_id, as_json))
    except ApiError as exc:
        print(f"emostream watch: {exc.message}", file=sys.stderr)
        return 2
    except StreamRefused as exc:
        print(f"emostream watch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0
