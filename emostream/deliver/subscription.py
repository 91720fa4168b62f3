"""The node's one Redis subscription to closed windows: watched, not trusted.

A killed connection raises, but a half-open socket or a stopped Redis just goes quiet. So the
subscription PINGs on its own connection and is declared dead when nothing at all (window,
PONG) has come back for ``subscription_timeout_ms``; it is then replaced. Every subscribe
confirmation (ours, or the one redis-py sends when it reconnects by itself) is reported before
any window that follows it, so the hub can first fill what closed while nobody was listening.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keys
from ..lifecycle import sleep_unless
from ..settings import Settings

log = logging.getLogger(__name__)

RESUBSCRIBE_PAUSE_S = 0.5
# PINGs per silence limit: a few, so one delayed PONG never declares a live subscription dead.
PINGS_PER_TIMEOUT = 4


class SubscriptionSilent(ConnectionError):
    """Nothing came back on the subscription for longer than the silence limit."""


class WindowSubscription:
    """Hands every window message to ``on_window`` and awaits ``on_subscribed`` after every
    subscribe confirmation; ``subscribed`` is set from then until the subscription is lost."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        on_window: Callable[[bytes], Awaitable[None]],
        on_subscribed: Callable[[], Awaitable[None]],
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.on_window = on_window
        self.on_subscribed = on_subscribed
        self.subscribed = asyncio.Event()
        self.subscriptions = 0  # subscribe confirmations: the first, then one per resubscribe

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the subscription until ``stop``; resubscribe after any fault."""
        while not stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                await self._listen(pubsub, stop)
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("window subscription lost (%s); resubscribing", exc)
                await sleep_unless(stop, RESUBSCRIBE_PAUSE_S)
            finally:
                self.subscribed.clear()
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (RedisError, OSError):
                    pass

    async def _listen(self, pubsub: Any, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        silence_limit_s = self.settings.subscription_timeout_ms / 1000
        ping_every_s = silence_limit_s / PINGS_PER_TIMEOUT
        await pubsub.subscribe(keys.WINDOWS_CHANNEL)
        heard = pinged = loop.time()
        while not stop.is_set():
            message = await pubsub.get_message(timeout=ping_every_s)
            now = loop.time()
            if message is not None:
                heard = now
                kind = message["type"]
                if kind == "message":
                    await self.on_window(message["data"])
                elif kind == "subscribe":
                    self.subscriptions += 1
                    await self.on_subscribed()
                    self.subscribed.set()
            elif now - heard > silence_limit_s:
                raise SubscriptionSilent(f"nothing heard for {now - heard:.1f} s")
            if now - pinged >= ping_every_s:
                # Answered in order after any pending message; only a live server answers.
                await pubsub.ping()
                pinged = now
