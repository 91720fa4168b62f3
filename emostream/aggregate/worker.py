"""The aggregating worker: a consumer in the group of every raw shard.

Reads packed batches (XREADGROUP), counts each batch per event and window in Python at C
speed (see batch.tally_batch), then applies the counts and XACKs the entry in one Lua call.
Entries left pending by a dead consumer are claimed (XAUTOCLAIM) after ``claim_idle_ms``. The
same process also runs the window closer and a heartbeat with a TTL. ``drain()`` is the burst
mode: process what is there and return, for deterministic tests. Poison entries go to the
dead-letter stream (``dead_letters.py``); every step outlives Redis faults (``retry.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .. import keys
from ..batch import PAYLOAD_FIELD, tally_batch
from ..clock import now_ms
from ..connection import REDIS_FAULTS, is_cluster
from ..errors import BatchError
from ..lifecycle import all_or_first_failure, instance_id
from ..polls.steward import PollSteward
from ..replies import text
from ..rules import AggregationRule, EmojiSwarmRule
from ..scripts import Scripts, is_noscript, is_transient
from ..settings import Settings
from ..streams import ensure_group
from .closer import WindowCloser
from .consumers import DEAD_AFTER_CLAIM_INTERVALS, forget_dead_consumers
from .dead_letters import bury_poison, dead_letter
from .heartbeat import Heartbeat, forget_worker, record_heartbeat
from .retry import forever, retry_until

log = logging.getLogger(__name__)

# A call answered "again soon" (scripts not loaded, a slot moving between cluster nodes) is
# made again after this pause, up to this many times, before its entry is left pending for a
# claim: a slot migration lasts well under that on a healthy cluster.
TRANSIENT_PAUSE_S = 0.1
TRANSIENT_ATTEMPTS = 20
# Concurrent read-and-apply loops per worker: while Redis runs one pipeline of apply_batch
# calls, Python decodes and counts the next read, so the two cores work at once.
READERS = 2
# Entries per apply pipeline: small enough that Redis applies one chunk while Python counts
# the next, large enough that the round trips stay few.
APPLY_CHUNK = 4

Entry = tuple[int, bytes, dict[bytes, bytes] | None]
# (result index in the pipeline, the entry, reactions or votes, whether it holds votes)
_Call = tuple[int, Entry, int, bool]


class Worker:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        rule: AggregationRule | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.rule = rule or EmojiSwarmRule(settings.top_n, settings.scale)
        self.worker_id = worker_id or instance_id()
        self.scripts = Scripts(redis)
        self.closer = WindowCloser(redis, settings, self.scripts)
        self.polls = PollSteward(redis, settings, self.scripts, self.closer)
        self._streams = [keys.raw_stream(shard) for shard in range(settings.shards)]
        self._shard_of_stream = {name.encode(): shard for shard, name in enumerate(self._streams)}
        # What one XREADGROUP reads: every shard at once on a single Redis; on a cluster one
        # shard per call, since a command's keys must share a slot there.
        self.read_sets = (
            [[stream] for stream in self._streams] if is_cluster(redis) else [self._streams]
        )
        self.batches = 0
        self.reactions = 0
        self.late = 0
        self.lost = 0
        self.failed = 0
        self.dead = 0
        self.votes = 0

    async def ensure_groups(self) -> None:
        for stream in self._streams:
            await ensure_group(self.redis, stream, keys.AGGREGATORS_GROUP)
        await self.scripts.load()

    async def read_new(self, block_ms: int | None, streams: Sequence[str] | None = None) -> int:
        """One XREADGROUP over ``streams`` (one of ``read_sets``; the first by default);
        returns entries processed."""
        try:
            response: Any = await self.redis.xreadgroup(
                keys.AGGREGATORS_GROUP,
                self.worker_id,
                {stream: ">" for stream in streams or self.read_sets[0]},
                count=self.settings.read_count,
                block=block_ms,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_groups()
            return 0
        entries: list[Entry] = []
        for stream, items in response or []:
            shard = self._shard_of_stream[stream if isinstance(stream, bytes) else stream.encode()]
            entries.extend((shard, entry_id, fields) for entry_id, fields in items)
        await self.process(entries)
        return len(entries)

    async def claim_idle(self, min_idle_ms: int | None = None) -> int:
        """Take over entries another consumer left pending too long, and process them; then
        remove the consumers of dead workers, left with nothing pending (aggregate/consumers.py).

        An entry already delivered ``max_deliveries`` times (it failed, or killed the workers
        that took it) goes to the dead-letter stream instead, so the rest keeps flowing."""
        idle = self.settings.claim_idle_ms if min_idle_ms is None else min_idle_ms
        claimed = 0
        for shard, stream in enumerate(self._streams):
            poison = bury_poison(
                self.redis, self.worker_id, self.settings.max_deliveries, shard, idle
            )
            async for _entry_id in poison:
                self.dead += 1
            start: bytes | str = "0-0"
            while True:
                response: Any = await self.redis.xautoclaim(
                    stream,
                    keys.AGGREGATORS_GROUP,
                    self.worker_id,
                    idle,
                    start,
                    count=self.settings.read_count,
                )
                start, items = response[0], response[1]
                entries: list[Entry] = [(shard, entry_id, fields) for entry_id, fields in items]
                await self.process(entries)
                claimed += len(entries)
                if start in (b"0-0", "0-0") or not items:
                    break
            dead_after_ms = DEAD_AFTER_CLAIM_INTERVALS * self.settings.claim_idle_ms
            await forget_dead_consumers(self.scripts, stream, self.worker_id, dead_after_ms)
        return claimed

    async def process(self, entries: Sequence[Entry]) -> None:
        """Count and acknowledge entries (see ``_process``), making again the calls that were
        answered "again soon"."""
        for _attempt in range(TRANSIENT_ATTEMPTS):
            replies = await self._process(entries)
            entries = [entry for entry, _reply in replies]
            if not entries:
                return
            if any(is_noscript(reply) for _entry, reply in replies):
                # A node without the scripts (restarted, or a replica just promoted).
                await self.scripts.load()
            else:
                await asyncio.sleep(TRANSIENT_PAUSE_S)
        log.warning("%d entries left pending after %d attempts", len(entries), TRANSIENT_ATTEMPTS)

    async def _process(self, entries: Sequence[Entry]) -> list[tuple[Entry, Exception]]:
        """Count and acknowledge entries, ``APPLY_CHUNK`` entries per pipelined round trip.

        Each chunk's pipeline is sent as soon as it is built and Python goes on counting the
        next chunk while Redis applies it: one large pipeline per read made the two strictly
        take turns (the worker's CPU and Redis's were each about half busy).

        An entry that cannot be decoded goes straight to the dead-letter stream (the same
        bytes would fail again). Any other failure leaves it pending with its reason recorded;
        it is retried by a claim and buried after ``max_deliveries`` attempts."""
        executions: list[asyncio.Future[list[Any]]] = []
        chunks: list[list[_Call]] = []
        try:
            for first in range(0, len(entries), APPLY_CHUNK):
                pipe = self.redis.pipeline(transaction=False)
                chunks.append(await self._build(pipe, entries[first : first + APPLY_CHUNK]))
                executions.append(asyncio.ensure_future(pipe.execute(raise_on_error=False)))
                await asyncio.sleep(0)  # let the pipeline be written before counting on
            outcomes = await asyncio.gather(*executions, return_exceptions=True)
        finally:
            for execution in executions:
                if execution.done() and not execution.cancelled():
                    execution.exception()  # seen, so asyncio does not report it as lost
                execution.cancel()  # no-op for the finished; their entries stay pending
        failure: BaseException | None = None
        transient: list[tuple[Entry, Exception]] = []
        for outcome, calls in zip(outcomes, chunks, strict=True):
            if isinstance(outcome, BaseException):
                failure = failure or outcome  # those entries stay pending, to be retried
            else:
                transient += await self._record(outcome, calls)
        if failure is not None:
            raise failure
        return transient

    async def _build(self, pipe: Any, entries: Sequence[Entry]) -> list[_Call]:
        """Queue each entry's apply_batch call on ``pipe``; (result index, shard, entry id,
        reactions) of each call."""
        calls: list[_Call] = []
        for shard, entry_id, fields in entries:
            try:
                if fields is None:
                    raise BatchError("entry was trimmed from the stream before it was read")
                batch = tally_batch(fields.get(PAYLOAD_FIELD, b""), self.rule)
            except BatchError as exc:
                dead_letter(pipe, shard, entry_id, fields, str(exc))
                self.dead += 1
                continue
            except Exception as exc:  # a bug or a resource fault: retried, then buried
                log.exception("processing raw entry %s of shard %d failed", entry_id, shard)
                pipe.hset(keys.failures(shard), entry_id, repr(exc))
                self.failed += 1
                continue
            calls.append((len(pipe), (shard, entry_id, fields), batch.size, bool(batch.votes)))
            if batch.votes:  # an entry of votes: checked and counted per (poll, user)
                self.scripts.apply_votes(shard, entry_id, batch, self.settings, pipe)
            else:
                self.scripts.apply_batch(shard, entry_id, batch, self.settings, pipe)
        return calls

    async def _record(
        self, results: list[Any], calls: list[_Call]
    ) -> list[tuple[Entry, Exception]]:
        """Count what each call did; returns the entries answered "again soon", with the
        answer. Applying an entry again counts it once (apply_batch.lua)."""
        transient: list[tuple[Entry, Exception]] = []
        for index, entry, size, votes in calls:
            shard, entry_id, _fields = entry
            result = results[index]
            if is_transient(result):
                transient.append((entry, result))
                continue
            if isinstance(result, Exception) or result[0] == -1:
                reason = (
                    str(result) if isinstance(result, Exception) else text(result[1], "replace")
                )
                log.error("applying raw entry %s of shard %d failed: %s", entry_id, shard, reason)
                await self.redis.hset(keys.failures(shard), entry_id, reason)
                self.failed += 1
                continue
            if votes:
                if result[0] == 1:
                    self.batches += 1
                    self.votes += size
                continue
            applied, late, lost = result
            if applied == 1:
                self.batches += 1
                self.reactions += size
                self.late += late
                self.lost += lost
                if late or lost:
                    log.warning(
                        "%d reactions arrived after their window closed (%d beyond the "
                        "revision horizon)",
                        late + lost,
                        lost,
                    )
        return transient

    async def drain(self) -> int:
        """Burst mode: claim what is idle, read everything there, return entries processed."""
        await self.ensure_groups()
        processed = await self.claim_idle()

        async def reader(streams: list[str]) -> int:
            read = 0
            while count := await self.read_new(None, streams):
                read += count
            return read

        readers = [reader(streams) for streams in self.read_sets for _ in range(READERS)]
        return processed + sum(await asyncio.gather(*readers))

    async def heartbeat(self) -> None:
        beat = Heartbeat(
            self.worker_id,
            now_ms(),
            reactions=self.reactions,
            batches=self.batches,
            late=self.late,
            dead=self.dead,
            lost=self.lost,
            failed=self.failed,
        )
        pipe = self.redis.pipeline(transaction=False)
        record_heartbeat(pipe, beat, self.settings.worker_heartbeat_ttl_ms)
        await pipe.execute()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, claim, close windows and beat until ``stop`` is set."""
        await retry_until(stop, self.ensure_groups)
        block_ms = self.settings.read_block_ms

        def consume(streams: list[str]) -> Callable[[], Awaitable[None]]:
            async def consume() -> None:
                await self.read_new(block_ms, streams)

            return consume

        consumers = [consume(streams) for streams in self.read_sets for _ in range(READERS)]
        settings = self.settings
        await all_or_first_failure(
            *(forever(stop, step) for step in consumers),
            forever(stop, self.claim_idle, settings.claim_idle_ms / 2000, "claim"),
            forever(stop, self.closer.tick, settings.close_tick_ms / 1000, "close"),
            forever(stop, self.polls.tick, settings.close_tick_ms / 1000, "polls"),
            forever(stop, self.heartbeat, settings.worker_heartbeat_ttl_ms / 3000, "beat"),
        )
        try:
            pipe = self.redis.pipeline(transaction=False)
            forget_worker(pipe, self.worker_id)
            await pipe.execute()
        except REDIS_FAULTS:
            pass
