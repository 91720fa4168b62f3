"""The node's one Redis subscription to closed windows: watched, not trusted.

A killed connection raises, but a half-open socket or a stopped Redis just goes quiet. So the
subscription PINGs on its own connection and is declared dead when nothing at all (window,
PONG) has come back for ``subscription_timeout_ms``; it is then replaced. Every subscribe
confirmation (ours, or the one redis-py sends when it reconnects by itself) is reported before
any window that follows it, so the hub can first fill what closed while nobody was listening.

On Redis Cluster the windows of each shard come on the shard's sharded channel (SSUBSCRIBE),
published by the primary that owns the shard's slot: the node holds one connection per
primary that owns a shard, subscribed to that primary's shard channels, each watched the same
way. A channel whose slot moves away (resharding, a failover) is unsubscribed by Redis; that,
or any fault on any of them, replaces them all from a fresh slot map, and the confirmations
that follow fill the gap as on a single Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub

from .. import keys
from ..connection import REDIS_FAULTS, is_cluster
from ..lifecycle import sleep_unless
from ..settings import Settings

log = logging.getLogger(__name__)

RESUBSCRIBE_PAUSE_S = 0.5
# PINGs per silence limit: a few, so one delayed PONG never declares a live subscription dead.
PINGS_PER_TIMEOUT = 4


class SubscriptionSilent(ConnectionError):
    """Nothing came back on the subscription for longer than the silence limit."""


class ChannelMoved(ConnectionError):
    """Redis Cluster unsubscribed a shard channel: its slot now lives on another primary."""


@dataclass(eq=False)
class WindowSubscription:
    """Hands every window message to ``on_window`` and awaits ``on_subscribed`` after every
    subscribe confirmation; ``subscribed`` is set from then until the subscription is lost."""

    redis: Redis
    settings: Settings
    on_window: Callable[[bytes], Awaitable[None]]
    on_subscribed: Callable[[], Awaitable[None]]
    subscribed: asyncio.Event = field(init=False, default_factory=asyncio.Event)
    # Complete subscriptions so far: the first, then one per resubscription (on a cluster
    # the first counts once every shard channel is confirmed).
    subscriptions: int = field(init=False, default=0)
    # Channels of the current round not confirmed yet (a channel confirmed twice, by a
    # reconnect, must not stand in for another).
    _unconfirmed: set[bytes] = field(init=False, default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the subscription until ``stop``; resubscribe after any fault."""
        while not stop.is_set():
            pubsubs: list[PubSub] = []
            try:
                if is_cluster(self.redis):
                    await self._listen_cluster(pubsubs, stop)
                else:
                    pubsubs.append(self.redis.pubsub())
                    self._unconfirmed = {keys.WINDOWS_CHANNEL.encode()}
                    await self._listen(pubsubs[0], [keys.WINDOWS_CHANNEL], stop)
            except REDIS_FAULTS as exc:
                self.subscribed.clear()
                log.warning("window subscription lost (%s); resubscribing", exc)
                await sleep_unless(stop, RESUBSCRIBE_PAUSE_S)
            except Exception:  # the client library's own faults too (aggregate/worker.py)
                self.subscribed.clear()
                log.exception("window subscription failed unexpectedly; resubscribing")
                await sleep_unless(stop, RESUBSCRIBE_PAUSE_S)
            finally:
                self.subscribed.clear()
                for pubsub in pubsubs:
                    try:
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
                    except REDIS_FAULTS:
                        pass

    async def _listen_cluster(self, pubsubs: list[PubSub], stop: asyncio.Event) -> None:
        """One connection per primary owning shard channels, from a fresh slot map; the
        first fault of any ends them all. Ended by asking, not by cancelling: a redis-py
        PubSub cancelled inside get_message was seen never to finish (after a failover), which
        held the node's resubscription for good; each listener checks ``over`` at least once
        per ping interval instead."""
        cluster: Any = self.redis
        await cluster.nodes_manager.initialize()
        by_node: dict[str, tuple[Any, list[str]]] = {}
        for shard in range(self.settings.shards):
            channel = keys.windows_channel(shard)
            node = cluster.get_node_from_key(channel)
            by_node.setdefault(node.name, (node, []))[1].append(channel)
        self._unconfirmed = {
            keys.windows_channel(shard).encode() for shard in range(self.settings.shards)
        }
        over = asyncio.Event()
        listeners = []
        for node, channels in by_node.values():
            pool = ConnectionPool(
                connection_class=node.connection_class, max_connections=1, **node.connection_kwargs
            )
            pubsub = PubSub(connection_pool=pool)
            pubsubs.append(pubsub)
            listeners.append(asyncio.create_task(self._listen(pubsub, channels, stop, over)))
        try:
            done, _ = await asyncio.wait(listeners, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            over.set()
            await asyncio.wait(listeners)
        for listener in done:
            listener.result()

    async def _confirmed(self, channel: bytes) -> None:
        """A subscribe confirmation: the last channel of a round completes a subscription, and
        any later one (redis-py resubscribing a reconnected connection) is a resubscription;
        a channel confirmed twice within a round stands in for no other."""
        self._unconfirmed.discard(channel)
        if not self._unconfirmed:
            self.subscriptions += 1
            await self.on_subscribed()
            self.subscribed.set()

    async def _listen(
        self,
        pubsub: Any,
        channels: list[str],
        stop: asyncio.Event,
        over: asyncio.Event | None = None,
    ) -> None:
        """Listen until ``stop`` (or ``over``: then sharded channels, on a cluster)."""
        sharded = over is not None
        over = over or stop
        loop = asyncio.get_running_loop()
        silence_limit_s = self.settings.subscription_timeout_ms / 1000
        ping_every_s = silence_limit_s / PINGS_PER_TIMEOUT
        if sharded:
            for channel in channels:  # one per call: a call's channels must share a slot
                await pubsub.ssubscribe(channel)
        else:
            await pubsub.subscribe(*channels)
        heard = pinged = loop.time()
        while not (stop.is_set() or over.is_set()):
            message = await pubsub.get_message(timeout=ping_every_s)
            now = loop.time()
            if message is not None:
                heard = now
                kind = message["type"]
                if kind in ("message", "smessage"):
                    await self.on_window(message["data"])
                elif kind in ("subscribe", "ssubscribe"):
                    await self._confirmed(message["channel"])
                elif kind == "sunsubscribe":
                    raise ChannelMoved(f"{message['channel']!r} moved to another primary")
            elif now - heard > silence_limit_s:
                raise SubscriptionSilent(f"nothing heard for {now - heard:.1f} s")
            if now - pinged >= ping_every_s:
                # Answered in order after any pending message; only a live server answers.
                await pubsub.ping()
                pinged = now
