"""Closed-window records: the one format the history stream and pub/sub carry.

``lua/close_window.lua`` writes it with ``cmsgpack.pack`` as the array
``[event_id, seq, window_start_ms, window_end_ms, total, unique_users, revision,
[choice, count, choice, count, ...]]``; every count of the window is kept (bounded by the
distinct emojis of one window) so history can chart any emoji, and delivery applies top-N.

The same pub/sub channel carries poll records, ``["poll", event_id, poll_id, version]``
(written by lua/poll_state.lua, lua/freeze_poll.lua and ``encode_poll_record``): a poll
changed, and delivery reads it once per node and sends its object to the event's clients.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

# The history stream entry's one field, holding the record.
HISTORY_FIELD = "w"


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


class RecordError(ValueError):
    """A history or pub/sub payload is not a window record."""


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
