"""The node's hub: one Redis subscription, fanned out in process to every connected client.

Each closed window arrives once per node, is turned into its public object and SSE frame
once, kept in a small per-event ring (for ``Last-Event-ID`` resume without a Redis read per
client) and offered to every subscriber of the event. A subscriber's queue is bounded: when a
client falls behind, its oldest undelivered frames are dropped (it can resume from history
with ``Last-Event-ID``), so one slow client never holds memory or the others back.

Seq gaps seen on pub/sub (a lost message, a resubscription) are filled from the event's
history stream before the newer window is delivered, so clients see every seq.

The subscription is watched, not trusted: a killed connection raises, but a half-open socket
or a stopped Redis just goes quiet. The hub PINGs on the subscribed connection and declares
the subscription dead when nothing at all (window, PONG) has come back for
``subscription_timeout_ms``; it then resubscribes. Every subscribe confirmation (ours, or
the one redis-py sends when it reconnects by itself) is followed by a fill from history for
every event that has clients, starting after the seq each client was last given, so a window
closed while the node was not listening (including before its first subscription) is still
delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .. import keys
from ..records import PollRecord, RecordError, WindowRecord, decode_poll_record, decode_record
from ..rules import AggregationRule
from ..settings import Settings
from .frames import window_frame

log = logging.getLogger(__name__)

# (seq, revision) orders frames; a revision of a window sorts after the window itself.
FrameKey = tuple[int, int]
Frame = tuple[FrameKey, bytes]
RINGS_KEPT = 1024
RESUBSCRIBE_PAUSE_S = 0.5
# PINGs per silence limit: a few, so one delayed PONG never declares a live subscription dead.
PINGS_PER_TIMEOUT = 4
# Heartbeats and send timeouts are checked this often (or more often if they are shorter).
TEND_TICK_MAX_S = 1.0
# Windows missed in a row before a tick counts as quiet.
QUIET_WINDOWS = 2


class SubscriptionSilent(ConnectionError):
    """Nothing came back on the subscription for longer than the silence limit."""


HEARTBEAT = b": heartbeat\n\n"
# The key of a frame outside the window order (a poll update): like a revision, always
# written, never moving what the client was sent (Subscriber.take).
UNORDERED: FrameKey = (-1, 1)


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


class Hub:
    def __init__(self, redis: Redis, settings: Settings, rule: AggregationRule) -> None:
        self.redis = redis
        self.settings = settings
        self.rule = rule
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._rings: OrderedDict[str, deque[Frame]] = OrderedDict()
        self._last: dict[str, FrameKey] = {}
        self.subscribed = asyncio.Event()
        self.closing = False
        self.windows_received = 0
        self.subscriptions = 0
        self.windows_filled = 0
        # Called when the node owes its clients nothing: right after a window was handed to
        # every client, and on ticks without windows (the collection pacer, in a server).
        self.idle: Callable[[], None] | None = None
        # Poll records ride the windows channel too (records.PollRecord); this hook (set by
        # the role: polls/fanout.py) turns one into a frame for offer_unordered.
        self.on_poll: Callable[[PollRecord], Awaitable[None]] | None = None

    # -- clients ---------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def attach(self, event_id: str) -> Subscriber:
        subscriber = Subscriber(event_id, self.settings.client_queue_max)
        self._subscribers.setdefault(event_id, set()).add(subscriber)
        if self.closing:
            subscriber.close()
        return subscriber

    def detach(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.event_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[subscriber.event_id]

    def close(self) -> None:
        """End every stream (shutdown): each client's generator sees ``closed`` and returns."""
        self.closing = True
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.close()

    async def join(self, event_id: str, after_seq: int | None) -> tuple[Subscriber, list[Frame]]:
        """Attach a client, then read its backlog; it is attached first so that no window
        published meanwhile falls between the two (duplicates are dropped by the stream)."""
        subscriber = self.attach(event_id)
        subscriber.after = after_seq
        try:
            backlog = await self.backlog(event_id, after_seq)
        except (RedisError, OSError) as exc:
            log.warning("no backlog for %s: %s", event_id, exc)
            backlog = []
        if backlog and (subscriber.after is None or backlog[-1][0][0] > subscriber.after):
            subscriber.after = backlog[-1][0][0]
        elif subscriber.after is None and not backlog:
            subscriber.after = 0  # the event has no history yet: every window is new to it
        return subscriber, backlog

    async def backlog(self, event_id: str, after_seq: int | None) -> list[Frame]:
        """Frames a (re)connecting client gets before live ones.

        With ``after_seq`` (its Last-Event-ID): every window after it, at most ``replay_max``,
        newest kept. Without: the latest window, so a new page shows the mood at once.
        """
        ring = self._rings.get(event_id)
        if after_seq is None:
            if ring:
                return [ring[-1]]
            return [self._frame(r) for r in await self.history_tail(event_id, 1)]
        if ring and ring[0][0][0] <= after_seq + 1:
            return [frame for frame in ring if frame[0][0] > after_seq]
        records = await self.history_tail(event_id, self.settings.replay_max)
        return [self._frame(r) for r in records if r.seq > after_seq]

    # -- history ---------------------------------------------------------------------------

    async def history(self, event_id: str, after_seq: int, limit: int) -> list[WindowRecord]:
        """Windows with seq > ``after_seq``, oldest first, each in its latest revision."""
        shard = keys.shard_of(event_id, self.settings.shards)
        entries: Any = await self.redis.xrange(
            keys.window_history(shard, event_id), min=f"{after_seq + 1}-0", count=limit
        )
        return await self._final(shard, event_id, entries)

    async def history_tail(self, event_id: str, limit: int) -> list[WindowRecord]:
        """The newest ``limit`` windows, oldest first, each in its latest revision."""
        shard = keys.shard_of(event_id, self.settings.shards)
        entries: Any = await self.redis.xrevrange(keys.window_history(shard, event_id), count=limit)
        return await self._final(shard, event_id, list(reversed(entries)))

    async def _final(
        self, shard: int, event_id: str, entries: list[tuple[Any, dict[bytes, bytes]]]
    ) -> list[WindowRecord]:
        records = [decode_record(fields[b"w"]) for _entry_id, fields in entries]
        if not records:
            return records
        revised: Any = await self.redis.hmget(
            keys.window_revisions(shard, event_id), [r.seq for r in records]
        )
        return [
            record if revision is None else decode_record(revision)
            for record, revision in zip(records, revised, strict=True)
        ]

    # -- pub/sub ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the node's one subscription until ``stop``; resubscribe after any fault.
        Meanwhile tend the clients: heartbeats and send timeouts."""
        tending = asyncio.create_task(self._tend_until(stop), name="hub-tend")
        try:
            await self._subscribe_until(stop)
        finally:
            tending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tending

    async def _tend_until(self, stop: asyncio.Event) -> None:
        tick_s = min(TEND_TICK_MAX_S, self.settings.heartbeat_s, self.settings.send_timeout_s / 4)
        loop = asyncio.get_running_loop()
        heartbeat_at = loop.time() + self.settings.heartbeat_s
        received, heard_at = self.windows_received, loop.time()
        while not stop.is_set():
            await asyncio.sleep(tick_s)
            now = loop.time()
            beat = now >= heartbeat_at
            if beat:
                heartbeat_at = now + self.settings.heartbeat_s
            try:
                self.tend(now, beat)
            except Exception:  # never let one bad client end the heartbeats of all
                log.exception("tending the clients failed")
            if self.windows_received != received:
                received, heard_at = self.windows_received, now
            elif self.idle is not None and now - heard_at > QUIET_WINDOWS * self.settings.window_s:
                # No windows are flowing, so none can be delayed. (While they flow, idle runs
                # right after each fan-out: a tick could fall just before the next window.)
                self.idle()

    def tend(self, now: float, beat: bool) -> None:
        """End the streams of clients whose last write has been stuck for longer than the
        send timeout; with ``beat``, give a heartbeat to every client that was sent nothing
        since the last one (so proxies and browsers see a live stream)."""
        deadline = now - self.settings.send_timeout_s
        stuck: list[Subscriber] = []
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                since = subscriber.sending_since
                if since is not None and since < deadline:
                    stuck.append(subscriber)
                elif beat:
                    if not subscriber.fresh:
                        subscriber.heartbeat_due = True
                        subscriber.poke()
                    subscriber.fresh = False
        for subscriber in stuck:
            log.info(
                "ending a stream whose client accepted nothing for %s s",
                self.settings.send_timeout_s,
            )
            subscriber.time_out()

    async def _subscribe_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            pubsub = self.redis.pubsub()
            try:
                await self._listen(pubsub, stop)
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("window subscription lost (%s); resubscribing", exc)
                try:
                    await asyncio.wait_for(stop.wait(), RESUBSCRIBE_PAUSE_S)
                except TimeoutError:
                    pass
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
                    await self.receive(message["data"])
                elif kind == "subscribe":
                    self.subscriptions += 1
                    await self._fill_gaps()
                    self.subscribed.set()
            elif now - heard > silence_limit_s:
                raise SubscriptionSilent(f"nothing heard for {now - heard:.1f} s")
            if now - pinged >= ping_every_s:
                # Answered in order after any pending message; only a live server answers.
                await pubsub.ping()
                pinged = now

    async def receive(self, payload: bytes) -> None:
        poll = decode_poll_record(payload)
        if poll is not None:
            if self.on_poll is not None and poll.event_id in self._subscribers:
                await self.on_poll(poll)
            return
        try:
            record = decode_record(payload)
        except RecordError as exc:
            log.error("ignoring a bad window message: %s", exc)
            return
        self.windows_received += 1
        if record.revision:
            self._publish_revision(record)
            return
        baseline = self._baseline(record.event_id)
        if baseline is not None and record.seq > baseline + 1:
            await self._fill(record.event_id, baseline, record.seq - 1)
        self._publish(record)
        if self.idle is not None:
            # Queued behind the wake-up of every client just offered the window, so it runs
            # once each of them has written it.
            asyncio.get_running_loop().call_soon(self.idle)

    def _baseline(self, event_id: str) -> int | None:
        """The seq after which this node owes the event's clients every window."""
        last = self._last.get(event_id)
        if last is not None:
            return last[0]
        given = [s.after for s in self._subscribers.get(event_id, ()) if s.after is not None]
        return min(given) if given else None

    async def _fill(self, event_id: str, after_seq: int, up_to_seq: int | None) -> None:
        """Publish windows after ``after_seq`` from history, newest ``replay_max`` at most
        (a client's queue would drop older ones anyway)."""
        if up_to_seq is not None:
            after_seq = max(after_seq, up_to_seq - self.settings.replay_max)
            limit = up_to_seq - after_seq
        else:
            limit = self.settings.replay_max
        if limit <= 0:
            return
        for record in await self.history(event_id, after_seq, limit):
            if up_to_seq is not None and record.seq > up_to_seq:
                break
            self.windows_filled += 1
            self._publish(record)

    async def _fill_gaps(self) -> None:
        """After (re)subscribing, deliver what was closed while the subscription was down."""
        for event_id in list(self._subscribers):
            baseline = self._baseline(event_id)
            if baseline is not None:
                await self._fill(event_id, baseline, None)

    def _frame(self, record: WindowRecord) -> Frame:
        return (record.seq, record.revision), window_frame(self.rule.window_object(record))

    def _publish(self, record: WindowRecord) -> None:
        key = (record.seq, record.revision)
        last = self._last.get(record.event_id)
        if last is not None and key <= last:
            return
        self._last[record.event_id] = key
        frame = self._frame(record)
        ring = self._rings.get(record.event_id)
        if ring is None:
            ring = self._rings[record.event_id] = deque(maxlen=self.settings.replay_max)
            self._evict_rings()
        ring.append(frame)
        for subscriber in self._subscribers.get(record.event_id, ()):
            subscriber.offer(frame)

    def _publish_revision(self, record: WindowRecord) -> None:
        """A closed window re-published with late reactions: replace it in the ring (resumes
        get the final totals) and send it to every client of the event."""
        frame = self._frame(record)
        ring = self._rings.get(record.event_id)
        if ring is not None:
            for index, ((seq, revision), _bytes) in enumerate(ring):
                if seq == record.seq:
                    if revision >= record.revision:
                        return
                    ring[index] = frame
                    break
        for subscriber in self._subscribers.get(record.event_id, ()):
            subscriber.offer(frame)

    def offer_unordered(self, event_id: str, frame: bytes) -> None:
        """A frame outside the window order (a poll update, no ``id:`` line) to every
        client of the event."""
        for subscriber in self._subscribers.get(event_id, ()):
            subscriber.offer((UNORDERED, frame))

    def _evict_rings(self) -> None:
        while len(self._rings) > RINGS_KEPT:
            for event_id in self._rings:
                if event_id not in self._subscribers:
                    del self._rings[event_id]
                    self._last.pop(event_id, None)
                    break
            else:
                return
