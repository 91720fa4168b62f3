"""The raw stream's entry format: one packed batch of reactions per entry.

One msgpack entry carries up to ``flush_max`` reactions (40x the throughput of one entry per
reaction on this machine class). Reactions are grouped by event and window and stored column
by column, so the worker counts a group without a Python step per reaction. A group of
``hyperloglog.MERGE_MIN_USERS`` reactions or more has its user ids hashed into HyperLogLog
registers here (numpy, a column at a time), which Lua merges with PFMERGE instead of a PFADD
per id, Redis's largest cost per reaction; a smaller one's ids go to lua/apply_batch.lua as
a msgpack array for PFADD.

Emojis are dictionary-coded: the group's distinct emojis, then one code per reaction (a byte,
or two little-endian bytes past 256 distinct emojis), so the worker counts them with one
``bincount``; decoding a string per reaction and hashing it into a Counter was the largest part
of the worker's profile::

    {"v": 3, "id": <batch id>, "p": <producer id>, "wm": <watermark ms>,
     "groups": [[event_id, window_start_ms, "<user id>\\n<user id>...", [distinct emojis],
                 <codes>, [[received_ms, how many], ...], [client_ts_ms or nil, ...]], ...]}

The users are one string, separated by newlines (no valid user id holds one; if one did,
the group's users would be a msgpack array, as bytes): cheaper for ingest to pack than a
msgpack array, and the worker finds the ids with numpy, without a Python object per id.
Version 2, still read, had the users as a msgpack array and the emojis as a list of strings:
``[event_id, window_start_ms, <msgpack [user ids]>, [emojis], runs, client_ts]``.

Receive times are run-length encoded (one run per request) and never decrease within an
event (the ingest clock is monotonic). ``unpack_batch`` decodes everything, for analytics.

Votes ride the same raw stream, in entries of their own kind (``"kind": "votes/1"``; an entry
without ``kind`` holds reactions), so a poll's votes pass the same watermarks as its event's
reactions and one Lua call counts them and acknowledges their entry. Each group is one poll's
votes, every column packed once by ingest and handed to lua/apply_votes.lua unchanged::

    {"v": 2, "kind": "votes/1", "id": <batch id>, "p": <producer id>, "wm": <watermark ms>,
     "groups": [[event_id, poll_id, <msgpack [user ids]>, <msgpack [options]>,
                 <msgpack [received_ms]>], ...]}

A worker that predates the kind dead-letters such an entry (its groups do not decode as
reactions): deploy workers before ingest.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from .columns import (
    dictionary_coded,
    emoji_codes,
    emoji_counts,
    joined_users,
    users_hll,
    users_of,
    window_slices,
)
from .errors import BatchError
from .hyperloglog import MERGE_MIN_USERS
from .rules import AggregationRule

BATCH_VERSION = 3
# What a batch of reactions may be written as (the worker reads both); votes are version 2.
READABLE_VERSIONS = (2, 3)
VOTES_VERSION = 2
PAYLOAD_FIELD = b"b"
VOTES_KIND = "votes/1"


@dataclass(slots=True)
class UserColumns:
    """Rows of a group kept column by column, one list per field, no object per row; every
    row has a user, so ``users`` says how many there are."""

    users: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.users)


@dataclass(slots=True)
class EventColumns(UserColumns):
    """Reactions buffered for one event."""

    emojis: list[str] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)
    client_ts_ms: list[int | None] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    producer: str
    watermark_ms: int
    events: dict[str, EventColumns]

    @property
    def size(self) -> int:
        return sum(len(columns) for columns in self.events.values())


def pack_batch(batch: Batch, window_ms: int) -> bytes:
    groups: list[list[Any]] = []
    for event_id, c in batch.events.items():
        for start, a, b in window_slices(c.received_ms, window_ms):
            runs = [[ms, len(list(run))] for ms, run in itertools.groupby(c.received_ms[a:b])]
            distinct, codes = dictionary_coded(c.emojis[a:b])
            groups.append(
                [
                    event_id,
                    start,
                    joined_users(c.users[a:b]),
                    distinct,
                    codes,
                    runs,
                    c.client_ts_ms[a:b],
                ]
            )
    return msgpack.packb(
        {
            "v": BATCH_VERSION,
            "id": batch.batch_id,
            "p": batch.producer,
            "wm": batch.watermark_ms,
            "groups": groups,
        }
    )


def _groups(data: Any) -> Iterator[tuple[Any, Any, Any, list[str], Any, Any, Any]]:
    """(event id, start, users, distinct emojis, codes, runs, client ts) of every group; a
    version-2 group's emojis as they were (a list), with codes None."""
    if data["v"] == 2:
        for event_id, start, users, emojis, runs, client_ts in data["groups"]:
            yield event_id, start, users, emojis, None, runs, client_ts
    else:
        for event_id, start, users, distinct, codes, runs, client_ts in data["groups"]:
            yield event_id, start, users, distinct, emoji_codes(distinct, codes), runs, client_ts


@contextlib.contextmanager
def _decoding() -> Iterator[None]:
    """Whatever a malformed payload makes decoding raise becomes a BatchError."""
    try:
        yield
    except BatchError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        msgpack.UnpackException,
    ) as exc:
        raise BatchError(f"undecodable batch: {exc!r}") from exc


def _unpack_outer(payload: bytes) -> Any:
    data: Any = msgpack.unpackb(payload, raw=False)
    if not isinstance(data, dict) or data.get("v") not in READABLE_VERSIONS:
        version = data.get("v") if isinstance(data, dict) else None
        raise BatchError(f"unknown batch version {version!r}")
    return data


def unpack_batch(payload: bytes) -> Batch:
    """Everything, reaction by reaction (for analytics and tests)."""
    with _decoding():
        data = _unpack_outer(payload)
        if data.get("kind") is not None:
            raise BatchError(f"an entry of {data['kind']!r}, not of reactions")
        events: dict[str, EventColumns] = {}
        for event_id, _start, users_packed, emojis, codes, runs, client_ts in _groups(data):
            if codes is not None:
                emojis = list(map(emojis.__getitem__, codes.tolist()))
            users = users_of(users_packed)
            received = [ms for ms, count in runs for _ in range(count)]
            if not len(users) == len(emojis) == len(received) == len(client_ts):
                raise BatchError(f"columns of event {event_id!r} differ in length")
            columns = events.setdefault(str(event_id), EventColumns())
            columns.users += users
            columns.emojis += emojis
            columns.received_ms += received
            columns.client_ts_ms += client_ts
        return Batch(str(data["id"]), str(data["p"]), int(data["wm"]), events)


@dataclass(slots=True)
class WindowTally:
    """What one batch adds to one event's window."""

    event_id: str
    window_start_ms: int
    total: int
    counts: Counter[str]
    # The window's user ids as a msgpack array, for PFADD in Lua; empty when ``users_hll``
    # carries them: their dense HyperLogLog (hyperloglog.py), for a tally of
    # ``MERGE_MIN_USERS`` or more, which Lua merges.
    users_packed: bytes
    users_hll: bytes | None = None


@dataclass(frozen=True, slots=True)
class VoteGroup:
    """One poll's votes in one entry, its columns still packed as ingest wrote them."""

    event_id: str
    poll_id: str
    users_packed: bytes
    options_packed: bytes
    received_packed: bytes


@dataclass(frozen=True, slots=True)
class BatchTally:
    batch_id: str
    size: int
    windows: list[WindowTally]
    # Set for an entry of votes (then ``windows`` is empty); ``size`` counts its votes.
    votes: list[VoteGroup] = field(default_factory=list)


@dataclass(slots=True)
class VoteColumns(UserColumns):
    """Votes buffered for one poll."""

    options: list[str] = field(default_factory=list)
    received_ms: list[int] = field(default_factory=list)


def pack_votes(
    batch_id: str, producer: str, watermark_ms: int, polls: dict[tuple[str, str], VoteColumns]
) -> bytes:
    groups = [
        [
            event_id,
            poll_id,
            msgpack.packb(c.users),
            msgpack.packb(c.options),
            msgpack.packb(c.received_ms),
        ]
        for (event_id, poll_id), c in polls.items()
    ]
    return msgpack.packb(
        {
            "v": VOTES_VERSION,
            "kind": VOTES_KIND,
            "id": batch_id,
            "p": producer,
            "wm": watermark_ms,
            "groups": groups,
        }
    )


def unpack_vote_columns(group: VoteGroup) -> VoteColumns:
    """A vote group's columns, decoded (for recount and tests)."""
    with _decoding():
        columns = VoteColumns(
            [str(u) for u in msgpack.unpackb(group.users_packed, raw=False)],
            [str(o) for o in msgpack.unpackb(group.options_packed, raw=False)],
            [int(t) for t in msgpack.unpackb(group.received_packed, raw=False)],
        )
        if not len(columns.users) == len(columns.options) == len(columns.received_ms):
            raise BatchError(f"vote columns of poll {group.poll_id!r} differ in length")
        return columns


def _vote_groups(data: Any) -> list[VoteGroup]:
    groups: list[VoteGroup] = []
    for event_id, poll_id, users, options, received in data["groups"]:
        if not all(isinstance(blob, bytes) for blob in (users, options, received)):
            raise BatchError(f"vote group of poll {poll_id!r} is malformed")
        groups.append(VoteGroup(str(event_id), str(poll_id), users, options, received))
    return groups


def tally_batch(payload: bytes, rule: AggregationRule) -> BatchTally:
    """Count a packed batch per event and window without decoding its user ids; for an
    entry of votes, only split it into its polls' groups (Lua counts them)."""
    with _decoding():
        data = _unpack_outer(payload)
        kind = data.get("kind")
        if kind == VOTES_KIND:
            votes = _vote_groups(data)
            size = sum(len(msgpack.unpackb(g.options_packed)) for g in votes)
            return BatchTally(str(data["id"]), size, [], votes)
        if kind is not None:
            raise BatchError(f"unknown entry kind {kind!r}")
        windows: list[WindowTally] = []
        size = 0
        for event_id, start, users_packed, emojis, codes, _runs, _client_ts in _groups(data):
            if not isinstance(users_packed, bytes | str) or not isinstance(emojis, list):
                raise BatchError(f"group of event {event_id!r} is malformed")
            if isinstance(users_packed, str) and data["v"] == 2:
                raise BatchError(f"group of event {event_id!r} is malformed")
            if codes is None:
                total, counts = len(emojis), Counter(emojis)
            else:
                total, counts = len(codes), emoji_counts(emojis, codes)
            tally = WindowTally(str(event_id), int(start), total, rule.tally(counts), b"")
            if total >= MERGE_MIN_USERS:
                tally.users_hll = users_hll(users_packed, total)
            if tally.users_hll is None:  # few users: their ids, for PFADD
                tally.users_packed = (
                    msgpack.packb(users_packed.split("\n"))
                    if isinstance(users_packed, str)
                    else users_packed
                )
            windows.append(tally)
            size += total
        return BatchTally(str(data["id"]), size, windows)
