"""One typed wrapper per Lua script of lua/: each assembles its script's KEYS and ARGV here,
in one place, and calls it by EVALSHA.

A direct call reloads its script after NOSCRIPT (redis-py's Script; on a cluster SCRIPT LOAD
goes to every primary). A call queued on a pipeline is a plain EVALSHA, on a single Redis and
on a cluster alike: redis-py's cluster pipelines cannot take a Script, and its plain pipelines
spend a SCRIPT EXISTS round trip on every execute. So the worker loads the scripts once
(``load``) and, when a pipelined call answers NOSCRIPT (a restart, a promoted replica), loads
them again and retries (``is_noscript``).

The key and argument order mirrors each script's header comment.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, Literal, get_args

import msgpack
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, NoScriptError, TryAgainError

from . import keys
from .batch import BatchTally
from .connection import is_cluster, live_channel
from .records import HISTORY_FIELD
from .settings import Settings

# poll_state.lua's answers that are not a success: {code, detail}.
POLL_WRONG_STATE, POLL_UNKNOWN, POLL_NO_ANSWER, POLL_NOT_FROZEN = 0, -2, -3, -4


# Every script of lua/, by its file's name.
ScriptName = Literal[
    "flush_batch",
    "apply_batch",
    "close_window",
    "apply_votes",
    "poll_state",
    "freeze_poll",
    "delete_consumer",
    "seal_window",
]
LUA_SCRIPTS: tuple[ScriptName, ...] = get_args(ScriptName)
# The scripts queued on pipelines, which never reload a script themselves (module docstring).
PIPELINED: tuple[ScriptName, ...] = ("apply_batch", "apply_votes", "seal_window")


def lua_source(name: str) -> str:
    return resources.files("emostream.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Every script of lua/, registered once per client."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._registered = {name: redis.register_script(lua_source(name)) for name in LUA_SCRIPTS}

    def _script(self, name: ScriptName) -> AsyncScript:
        return self._registered[name]

    async def load(self) -> None:
        """Load the scripts that are queued on pipelines (on every primary of a cluster)."""
        for name in PIPELINED:
            await self.redis.script_load(self._script(name).script)

    def _queue(self, script: AsyncScript, call_keys: list[str], args: list[Any], pipe: Any) -> None:
        # Not pipe.evalsha: redis-py's cluster pipeline blocks that method, though it routes
        # the command itself by its first key like any other.
        pipe.execute_command("EVALSHA", script.sha, len(call_keys), *call_keys, *args)

    async def flush_batch(
        self, shard: int, producer_id: str, watermark_ms: int, payload: bytes, maxlen: int
    ) -> Any:
        """Append a packed batch (``b""``: only move the watermark) and the producer's
        watermark to a raw shard, atomically; the new entry id, or None for a heartbeat."""
        return await self._script("flush_batch")(
            keys=[keys.raw_stream(shard), keys.producers(shard)],
            args=[maxlen, producer_id, watermark_ms, payload],
        )

    async def flush_batch_replicated(
        self,
        shard: int,
        producer_id: str,
        watermark_ms: int,
        payload: bytes,
        maxlen: int,
        replicas: int,
        timeout_ms: int,
    ) -> int:
        """``flush_batch``, then WAIT on the same connection (WAIT covers the writes of the
        connection it is sent on) of the shard's primary; how many replicas have the batch."""
        call_keys = [keys.raw_stream(shard), keys.producers(shard)]
        args = [maxlen, producer_id, watermark_ms, payload]
        for _attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            self._queue(self._script("flush_batch"), call_keys, args, pipe)
            if is_cluster(self.redis):
                node = self.redis.get_node_from_key(call_keys[0])  # type: ignore[attr-defined]
                pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
            else:
                pipe.execute_command("WAIT", replicas, timeout_ms)
            try:
                _entry, acknowledged = await pipe.execute()
                return int(acknowledged)
            except NoScriptError:
                await self.redis.script_load(self._script("flush_batch").script)
        raise NoScriptError("flush_batch.lua could not be loaded")

    def apply_batch(
        self,
        shard: int,
        entry_id: bytes,
        batch: BatchTally,
        settings: Settings,
        pipe: Any,
    ) -> None:
        """Queue one batch's counts with its XACK on ``pipe``; its reply is
        ``[1, late, lost]`` applied, ``[0, 0, 0]`` already counted, ``[-1, reason]``."""
        call_keys = [
            keys.raw_stream(shard),
            keys.active_events(shard),
            keys.batch_marker(shard, batch.batch_id),
            keys.late_windows(shard),
            keys.hll_scratch(shard),
        ]
        args = [*_counted_once(entry_id, settings, len(batch.windows)), settings.event_ttl_s]
        for tally in batch.windows:
            event, start = tally.event_id, tally.window_start_ms
            call_keys += [keys.event_state(shard, event), *keys.window_keys(shard, event, start)]
            flat: list[str | int] = []
            for choice, count in tally.counts.items():
                flat += (choice, count)
            users = tally.users_packed if tally.users_hll is None else tally.users_hll
            args += [event, start, tally.total, msgpack.packb(flat), users]
        self._queue(self._script("apply_batch"), call_keys, args, pipe)

    async def close_windows(
        self,
        shard: int,
        windows: Sequence[tuple[str, int]],
        settings: Settings,
        extras: Sequence[bytes] = (),
    ) -> list[int | str]:
        """Close (or revise) these (event id, window start) windows of one shard, in order,
        and publish them, in one call; per window its seq, 0 when it was not this call's to
        publish, or why it failed. ``extras``, one per window when given: what the other
        shards of a split event counted in it (``pack_extras``), b"" for none."""
        call_keys = [
            keys.active_events(shard),
            keys.late_windows(shard),
            keys.hll_union(shard),
            keys.hll_scratch(shard),
        ]
        args: list[Any] = [
            settings.window_ms,
            settings.history_max,
            live_channel(self.redis, shard),
            event_idle_ms(settings),
            settings.revision_horizon_s,
            HISTORY_FIELD,
            settings.event_ttl_s,
        ]
        for index, (event_id, start_ms) in enumerate(windows):
            call_keys += [
                keys.event_state(shard, event_id),
                *keys.window_keys(shard, event_id, start_ms),
                keys.window_history(shard, event_id),
                keys.window_revisions(shard, event_id),
            ]
            args += [event_id, start_ms, extras[index] if extras else b""]
        replies: list[int | bytes] = await self._script("close_window")(keys=call_keys, args=args)
        return [
            reply if isinstance(reply, int) else reply.decode(errors="replace") for reply in replies
        ]

    def seal_window(
        self,
        shard: int,
        event_id: str,
        start_ms: int,
        settings: Settings,
        pipe: Any,
    ) -> None:
        """Queue the sealing of a split event's window on one of its other shards; its reply
        is ``[total, [emoji, count, ...], users HyperLogLog or None]``."""
        call_keys = [
            keys.active_events(shard),
            keys.event_state(shard, event_id),
            *keys.window_keys(shard, event_id, start_ms),
        ]
        args = [
            event_id,
            start_ms,
            settings.window_ms,
            event_idle_ms(settings),
            settings.revision_horizon_s,
            settings.event_ttl_s,
        ]
        self._queue(self._script("seal_window"), call_keys, args, pipe)

    def apply_votes(
        self, shard: int, entry_id: bytes, batch: BatchTally, settings: Settings, pipe: Any
    ) -> None:
        """Queue one entry of votes with its XACK on ``pipe``; its reply is
        ``[1, counted, refused]`` applied, ``[0, 0, 0]`` already counted, ``[-1, reason]``."""
        call_keys = [keys.raw_stream(shard), keys.batch_marker(shard, batch.batch_id)]
        args = _counted_once(entry_id, settings, len(batch.votes))
        for group in batch.votes:
            call_keys += keys.poll_keys(shard, group.event_id, group.poll_id)
            args += [group.users_packed, group.options_packed, group.received_packed]
        self._queue(self._script("apply_votes"), call_keys, args, pipe)

    async def poll_state(
        self, shard: int, event_id: str, poll_id: str, action: str, now_ms: int, *extra: Any
    ) -> list[Any]:
        """Create or replace a draft (``put``) or make a transition; ``extra`` is the
        action's arguments from ARGV[6] on, as lua/poll_state.lua's header lists them.
        ``[1, state, created]``, or ``[code, detail]`` with a ``POLL_*`` code."""
        reply: list[Any] = await self._script("poll_state")(
            keys=[
                keys.poll(shard, event_id, poll_id),
                keys.poll_ballots(shard, event_id, poll_id),
                keys.poll_times(shard, event_id, poll_id),
                keys.event_polls(shard, event_id),
                keys.live_polls(shard),
                keys.leaderboard(shard, event_id),
            ],
            args=[action, now_ms, live_channel(self.redis, shard), event_id, poll_id, *extra],
        )
        return reply

    async def freeze_poll(self, shard: int, event_id: str, poll_id: str, safe_ms: int) -> int:
        """Freeze a locked poll once the shard's safe watermark passed its lock: 1 if this
        call froze it."""
        frozen: int = await self._script("freeze_poll")(
            keys=[keys.poll(shard, event_id, poll_id), keys.poll_tally(shard, event_id, poll_id)],
            args=[safe_ms, live_channel(self.redis, shard), event_id, poll_id],
        )
        return frozen

    async def delete_consumer(self, stream: str, name: str, most: int) -> list[bytes]:
        """Delete a consumer of the aggregators group; the ids of the entries it held."""
        held: list[bytes] = await self._script("delete_consumer")(
            keys=[stream], args=[keys.AGGREGATORS_GROUP, name, most]
        )
        return held


def _counted_once(entry_id: bytes, settings: Settings, groups: int) -> list[Any]:
    """ARGV[1..4] of both apply scripts, which count a raw entry once: the consumer group,
    the entry id, the TTL of its batch-id marker (the revision horizon) and how many groups
    of the entry follow."""
    return [keys.AGGREGATORS_GROUP, entry_id, settings.revision_horizon_s, groups]


def event_idle_ms(settings: Settings) -> int:
    """EMOSTREAM_EVENT_IDLE_S as the window scripts take it."""
    return int(settings.event_idle_s * 1000)


def is_noscript(reply: Any) -> bool:
    """Whether a pipelined call's reply says its script is not loaded on that node."""
    return isinstance(reply, NoScriptError)


def is_transient(reply: Any) -> bool:
    """Whether a pipelined call's reply asks for the same call again soon: its script is not
    loaded, or its slot is being moved between cluster nodes (TRYAGAIN: some of its keys have
    moved, some not yet) or has no serving node for a moment (CLUSTERDOWN, a failover)."""
    return isinstance(reply, NoScriptError | TryAgainError | ClusterDownError)


def pack_extras(sealed: Sequence[Sequence[Any]]) -> bytes:
    """What the other shards of a split event counted in one window (seal_window's replies),
    as close_window.lua takes it: msgpack [total, [emoji, count, ...], HyperLogLog, ...]."""
    total = 0
    counts: dict[bytes, int] = {}
    users: list[bytes] = []
    for shard_total, flat, hll in sealed:
        total += shard_total
        for emoji, count in zip(flat[::2], flat[1::2], strict=True):
            counts[emoji] = counts.get(emoji, 0) + int(count)
        if hll:
            users.append(hll)
    flat_counts: list[Any] = []
    for emoji, count in counts.items():
        flat_counts += (emoji.decode(), count)
    # Raw strings, not msgpack's bin type: Redis's Lua cmsgpack cannot read bin.
    packed: bytes = msgpack.packb([total, flat_counts, *users], use_bin_type=False)
    return packed
