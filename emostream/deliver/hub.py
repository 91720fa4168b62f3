"""The node's hub: one Redis subscription (``subscription.py``), fanned out in process to
every connected client.

Each closed window arrives once per node, is turned into its public object and SSE frame
once, kept in a small per-event ring (``rings.py``: ``Last-Event-ID`` resume without a
Redis read per client) and offered to every subscriber of the event. A subscriber's queue
is bounded: when a client falls behind, its oldest undelivered frames are dropped (it can
resume from history with ``Last-Event-ID``), so one slow client never holds memory or the
others back. Heartbeats and send timeouts are ``tending.py``'s.

Seq gaps seen on pub/sub (a lost message, a resubscription) are filled from the event's
history stream before the newer window is delivered, so clients see every seq. Every
subscribe confirmation is followed by a fill from history for every event that has clients,
starting after the seq each client was last given, so a window closed while the node was not
listening (including before its first subscription) is still delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ..connection import REDIS_FAULTS
from ..errors import RecordError
from ..records import PollRecord, WindowRecord, decode_poll_record, decode_record
from ..rules import AggregationRule
from ..settings import Settings
from .backlog import Backlog, SingleFlight, backlog_of
from .frames import window_frame
from .history import WindowHistory
from .rings import EventRings
from .subscriber import UNORDERED, Frame, FrameKey, Subscriber
from .subscription import WindowSubscription
from .tending import tend_until

log = logging.getLogger(__name__)

# What fails one event's fill alone: a Redis fault, or a record that cannot be read.
FILL_FAULTS: tuple[type[Exception], ...] = (*REDIS_FAULTS, RecordError)

# Events whose history is read at once for joins: the rest wait their turn, so a storm of
# joins over many events never takes more than these connections of the node's pool.
HISTORY_READS_AT_ONCE = 8


class Hub:
    def __init__(self, redis: Redis, settings: Settings, rule: AggregationRule) -> None:
        self.redis = redis
        self.settings = settings
        self.rule = rule
        self.history = WindowHistory(redis, settings)
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._rings = EventRings(settings.replay_max, self._subscribers.__contains__)
        self._history_reads: SingleFlight[str, list[WindowRecord]] = SingleFlight(
            HISTORY_READS_AT_ONCE
        )
        self._subscription = WindowSubscription(redis, settings, self.receive, self._fill_gaps)
        self.subscribed = self._subscription.subscribed
        self.closing = False
        self.windows_received = 0
        self.windows_filled = 0
        # Frames dropped for slow clients that have since left (live ones count their own).
        self.frames_dropped_gone = 0
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

    def attach(self, event_id: str, after_seq: int | None = None) -> Subscriber:
        subscriber = Subscriber(event_id, self.settings.client_queue_max, after_seq)
        self._subscribers.setdefault(event_id, set()).add(subscriber)
        if self.closing:
            subscriber.close()
        return subscriber

    @property
    def frames_dropped(self) -> int:
        """Frames slow clients never received (latest wins), since the node started."""
        live = sum(s.dropped for group in self._subscribers.values() for s in group)
        return self.frames_dropped_gone + live

    def detach(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.event_id)
        if subscribers is not None and subscriber in subscribers:
            subscribers.discard(subscriber)
            self.frames_dropped_gone += subscriber.dropped
            if not subscribers:
                del self._subscribers[subscriber.event_id]

    def close(self) -> None:
        """End every stream (shutdown): each client's stream sees ``closed`` and returns."""
        self.closing = True
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.close()

    @property
    def history_reads(self) -> int:
        """Reads of history made for joins since the node started (one per event at a time,
        however many joins wanted it)."""
        return self._history_reads.flights

    async def join(
        self, event_id: str, after_seq: int | None
    ) -> tuple[Subscriber, list[Frame], int | None]:
        """Attach a client with its backlog: the latest window for a new client, or every
        window after its ``after_seq`` (Last-Event-ID), at most ``replay_max``, newest kept.

        Answered from the node's memory of the event when it has what is needed; else from
        one read of the event's history shared by every join waiting for it (and kept in
        memory for the next ones). The backlog is taken and the client attached with no wait
        in between, so no window published meanwhile falls between the two.

        Returns the subscriber, its backlog and the seq it resumes after: ``after_seq``, or
        None when that seq is beyond the event's newest window. Then the history the client
        saw is gone (a Redis without persistence restarted and numbers windows from 1 again)
        and the client is started over as a new one: the latest window now, then live ones;
        left as it was, it would be sent nothing until the new seqs passed its old one."""
        answer = await self._answer(event_id, after_seq)
        backlog, resumes_after = answer if answer is not None else ([], after_seq)
        if after_seq is not None and resumes_after is None:
            log.info(
                "a client of %s resumed after seq %d, beyond the newest window (%s): "
                "history was lost; sending the latest window",
                event_id,
                after_seq,
                backlog[-1][0][0] if backlog else "none",
            )
        subscriber = self.attach(event_id, resumes_after)
        subscriber.note_backlog(backlog)
        return subscriber, backlog, resumes_after

    async def backlog(self, event_id: str, after_seq: int | None) -> list[Frame]:
        """Frames a (re)connecting client gets before live ones (``join`` without attaching)."""
        answer = await self._answer(event_id, after_seq)
        return answer[0] if answer is not None else []

    async def _answer(self, event_id: str, after_seq: int | None) -> Backlog | None:
        """The backlog and resume seq from memory, else after a (shared) read of history;
        None when Redis could not be read."""
        answer = self._rings.backlog(event_id, after_seq, confirmed=False)
        if answer is not None:
            return answer
        records = await self._read_history(event_id)
        answer = self._rings.backlog(event_id, after_seq, confirmed=True)
        if answer is None and records is not None:
            # Read while the subscription was down (memory not current): the read answers.
            frames = [self._frame(record) for record in records]
            answer = backlog_of(frames, after_seq, complete=True, confirmed=True)
        return answer

    async def _read_history(self, event_id: str) -> list[WindowRecord] | None:
        """The event's newest windows (up to ``replay_max``) from Redis, remembered; one read
        at a time per event, shared. None when Redis could not be read."""
        try:
            return await self._history_reads.run(event_id, lambda: self._read_tail(event_id))
        except FILL_FAULTS as exc:
            log.warning("no backlog for %s: %s", event_id, exc)
            return None

    async def _read_tail(self, event_id: str) -> list[WindowRecord]:
        subscriptions, subscribed = self.subscriptions, self.subscribed.is_set()
        records = await self.history.tail(event_id, self.settings.replay_max)
        self._remember(event_id, records)
        if subscribed and self.subscribed.is_set() and self.subscriptions == subscriptions:
            # Every window closed after the read reaches this node on the subscription.
            self._rings.mark_current(event_id, complete=True)
        return records

    def _remember(self, event_id: str, records: list[WindowRecord]) -> None:
        """Keep windows read from history: newer ones than the node has are published (the
        subscription is behind, or the node never saw the event), older ones go in front of
        the ring."""
        last = self._rings.last_key(event_id)
        for record in records:
            if last is None or record.seq > last[0]:
                self._publish(record)
        self._rings.prepend(event_id, records, self._frame)

    # -- what the node keeps of each event --------------------------------------------------

    def subscribers_of(self, event_id: str) -> tuple[Subscriber, ...]:
        return tuple(self._subscribers.get(event_id, ()))

    def every_subscriber(self) -> Iterator[Subscriber]:
        for subscribers in self._subscribers.values():
            yield from subscribers

    # The three below are the rings' own (rings.py says what each means); tests use them to
    # make gaps and to make the node new to an event.

    def last_key(self, event_id: str) -> FrameKey | None:
        return self._rings.last_key(event_id)

    def rewind(self, event_id: str, seq: int) -> None:
        self._rings.rewind(event_id, seq)

    def forget(self, event_id: str) -> None:
        self._rings.forget(event_id)

    # -- pub/sub ---------------------------------------------------------------------------

    @property
    def subscriptions(self) -> int:
        """Subscribe confirmations so far: the first, then one per resubscription."""
        return self._subscription.subscriptions

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the node's one subscription until ``stop``; resubscribe after any fault.
        Meanwhile tend the clients: heartbeats and send timeouts."""
        tending = asyncio.create_task(tend_until(self, stop), name="hub-tend")
        try:
            await self._subscription.run(stop)
        finally:
            tending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tending

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
            await self._fill_isolated(record.event_id, baseline, record.seq - 1)
        self._publish(record)
        self._rings.mark_current(record.event_id)  # the newest window, from the live subscription
        if self.idle is not None:
            # Queued behind the wake-up of every client just offered the window, so it runs
            # once each of them has written it.
            asyncio.get_running_loop().call_soon(self.idle)

    def _baseline(self, event_id: str) -> int | None:
        """The seq after which this node owes the event's clients every window."""
        last = self._rings.last_key(event_id)
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
        for record in await self.history.after(event_id, after_seq, limit):
            if up_to_seq is not None and record.seq > up_to_seq:
                break
            self.windows_filled += 1
            self._publish(record)

    async def _fill_gaps(self) -> None:
        """After (re)subscribing, deliver what was closed while the subscription was down.
        One event's failing fill (its history unreadable) is that event's problem: it is
        logged and the others are filled; only a Redis fault ends the subscription.
        Memory of every other event is no longer current: a join reads its history again."""
        self._rings.resubscribed()
        for event_id in list(self._subscribers):
            baseline = self._baseline(event_id)
            if baseline is not None and await self._fill_isolated(event_id, baseline, None):
                self._rings.mark_current(event_id)

    async def _fill_isolated(self, event_id: str, after_seq: int, up_to_seq: int | None) -> bool:
        """Fill, or log why not (the ring then misses windows: it is no longer complete)."""
        try:
            await self._fill(event_id, after_seq, up_to_seq)
            return True
        except (ResponseError, RecordError) as exc:
            log.warning("could not fill %s from history after seq %d: %s", event_id, after_seq, exc)
            self._rings.mark_incomplete(event_id)
            return False

    def _frame(self, record: WindowRecord) -> Frame:
        return (record.seq, record.revision), window_frame(self.rule.window_object(record))

    def _publish(self, record: WindowRecord) -> None:
        key = (record.seq, record.revision)
        last = self._rings.last_key(record.event_id)
        if last is not None and key <= last:
            return
        frame = self._frame(record)
        self._rings.append(record.event_id, key, frame)
        for subscriber in self._subscribers.get(record.event_id, ()):
            subscriber.offer(frame)

    def _publish_revision(self, record: WindowRecord) -> None:
        """A closed window re-published with late reactions: replace it in the ring (resumes
        get the final totals) and send it to every client of the event."""
        frame = self._frame(record)
        if not self._rings.revise(record.event_id, (record.seq, record.revision), frame):
            return
        for subscriber in self._subscribers.get(record.event_id, ()):
            subscriber.offer(frame)

    def offer_unordered(self, event_id: str, frame: bytes) -> None:
        """A frame outside the window order (a poll update, no ``id:`` line) to every
        client of the event."""
        for subscriber in self._subscribers.get(event_id, ()):
            subscriber.offer((UNORDERED, frame))
