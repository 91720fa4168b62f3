"""Tending a node's clients between windows: heartbeats, send timeouts, and the idle hook on
quiet ticks. The hub runs ``tend_until`` beside its subscription."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .subscriber import Subscriber

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger(__name__)

# Heartbeats and send timeouts are checked this often (or more often if they are shorter).
TEND_TICK_MAX_S = 1.0
# Windows missed in a row before a tick counts as quiet.
QUIET_WINDOWS = 2


async def tend_until(hub: Hub, stop: asyncio.Event) -> None:
    settings = hub.settings
    tick_s = min(TEND_TICK_MAX_S, settings.heartbeat_s, settings.send_timeout_s / 4)
    loop = asyncio.get_running_loop()
    heartbeat_at = loop.time() + settings.heartbeat_s
    received, heard_at = hub.windows_received, loop.time()
    while not stop.is_set():
        await asyncio.sleep(tick_s)
        now = loop.time()
        beat = now >= heartbeat_at
        if beat:
            heartbeat_at = now + settings.heartbeat_s
        try:
            tend(hub.every_subscriber(), now, beat, settings.send_timeout_s)
        except Exception:  # never let one bad client end the heartbeats of all
            log.exception("tending the clients failed")
        if hub.windows_received != received:
            received, heard_at = hub.windows_received, now
        elif hub.idle is not None and now - heard_at > QUIET_WINDOWS * settings.window_s:
            # No windows are flowing, so none can be delayed. (While they flow, idle runs
            # right after each fan-out: a tick could fall just before the next window.)
            hub.idle()


def tend(subscribers: Iterable[Subscriber], now: float, beat: bool, send_timeout_s: float) -> None:
    """End the streams of clients whose last write has been stuck for longer than the
    send timeout; with ``beat``, give a heartbeat to every client that was sent nothing
    since the last one (so proxies and browsers see a live stream)."""
    deadline = now - send_timeout_s
    stuck: list[Subscriber] = []
    for subscriber in subscribers:
        since = subscriber.sending_since
        if since is not None and since < deadline:
            stuck.append(subscriber)
        elif beat:
            subscriber.heartbeat()
    for subscriber in stuck:
        log.info("ending a stream whose client accepted nothing for %s s", send_timeout_s)
        subscriber.time_out()
