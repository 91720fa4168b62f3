"""A worker's long-lived steps outlive Redis faults: a failing step is logged, paused for
``RETRY_PAUSE_S`` and run again, and nothing is acknowledged by a failure."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..connection import REDIS_FAULTS
from ..lifecycle import sleep_unless

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.5


async def forever(
    stop: asyncio.Event,
    step: Callable[[], Awaitable[object]],
    every_s: float = 0.0,
    name: str | None = None,
) -> None:
    """Run ``step`` until stopped, pausing ``every_s`` after each success; Redis faults pause
    and retry instead of killing the role. Faults are logged under ``name`` (the step's
    own name by default)."""
    while not stop.is_set():
        if await attempt(stop, step, name or step.__name__) and every_s:
            await sleep_unless(stop, every_s)


async def retry_until(stop: asyncio.Event, action: Callable[[], Awaitable[None]]) -> None:
    while not stop.is_set() and not await attempt(stop, action, "waiting for Redis"):
        pass


async def attempt(stop: asyncio.Event, action: Callable[[], Awaitable[object]], what: str) -> bool:
    """Run ``action`` once; on a Redis fault log it, pause and return False."""
    try:
        await action()
        return True
    except REDIS_FAULTS as exc:
        log.warning("%s: %s; retrying", what, exc)
    except Exception:
        # Seen: redis-py's cluster client, disconnecting a failed node's connections, can
        # leave one in use without a socket (AttributeError). A role must outlive its client
        # library's faults too: logged loudly, retried; nothing is acknowledged by a failure.
        log.exception("%s failed unexpectedly; retrying", what)
    await sleep_unless(stop, RETRY_PAUSE_S)
    return False
