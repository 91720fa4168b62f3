"""Closed-window records: the one format the history stream and pub/sub carry.

``lua/close_window.lua`` writes it with ``cmsgpack.pack`` as the array
``[event_id, seq, window_start_ms, window_end_ms, total, unique_users, revision,
[choice, count, choice, count, ...]]``; every count of the window is kept (bounded by the
distinct emojis of one window) so history can chart any emoji, and delivery applies top-N.
A history stream entry holds the record in its field ``HISTORY_FIELD``.

This module is the format's one Python owner: delivery decodes with it, and tests and
benchmarks that stand in for the Lua script encode with it.

The same pub/sub channel carries poll records, ``["poll", event_id, poll_id, version]``
(written by lua/poll_state.lua, lua/freeze_poll.lua and ``encode_poll_record``): a poll
changed, and delivery reads it once per node and sends its object to the event's clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgpack

from .errors import RecordError


@dataclass(frozen=True, slots=True)
class WindowRecord:
    event_id: str
    seq: int
    window_start_ms: int
    window_end_ms: int
    total: int
    unique_users: int
    counts: tuple[tuple[str, int], ...]
    revision: int = 0


# The field of a history stream entry that holds the record.
HISTORY_FIELD = "w"
_HISTORY_FIELD_BYTES = HISTORY_FIELD.encode()


def history_entry_id(seq: int) -> str:
    """A window's history entry id: its seq, so history can be read from any seq on."""
    return f"{seq}-0"


def encode_record(record: WindowRecord) -> bytes:
    """The record as ``close_window.lua`` packs it."""
    flat = [item for choice_count in record.counts for item in choice_count]
    packed: bytes = msgpack.packb(
        [
            record.event_id,
            record.seq,
            record.window_start_ms,
            record.window_end_ms,
            record.total,
            record.unique_users,
            record.revision,
            flat,
        ]
    )
    return packed


def decode_record(payload: bytes) -> WindowRecord:
    try:
        fields = msgpack.unpackb(payload, raw=False)
        event_id, seq, start, end, total, users, revision, flat = fields
        counts = tuple(zip(flat[0::2], (int(c) for c in flat[1::2]), strict=True))
        return WindowRecord(
            str(event_id),
            int(seq),
            int(start),
            int(end),
            int(total),
            int(users),
            counts,
            int(revision),
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RecordError(f"not a window record: {exc}") from exc


def record_of_entry(fields: Mapping[bytes, bytes]) -> WindowRecord:
    """The record of a history stream entry, from its fields as redis-py returns them."""
    try:
        payload = fields[_HISTORY_FIELD_BYTES]
    except KeyError:
        raise RecordError(f"a history entry without its {HISTORY_FIELD!r} field") from None
    return decode_record(payload)


POLL_RECORD_KIND = "poll"


@dataclass(frozen=True, slots=True)
class PollRecord:
    event_id: str
    poll_id: str
    version: int


def encode_poll_record(record: PollRecord) -> bytes:
    return msgpack.packb([POLL_RECORD_KIND, record.event_id, record.poll_id, record.version])


def decode_poll_record(payload: bytes) -> PollRecord | None:
    """The poll record in a pub/sub payload, or None when it is something else (a window)."""
    try:
        fields = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException):
        return None
    if not isinstance(fields, list) or len(fields) != 4 or fields[0] != POLL_RECORD_KIND:
        return None
    try:
        return PollRecord(str(fields[1]), str(fields[2]), int(fields[3]))
    except (ValueError, TypeError):
        return None
