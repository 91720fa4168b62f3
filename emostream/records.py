"""Closed-window records: the one format the history stream and pub/sub carry.

``lua/close_window.lua`` writes it with ``cmsgpack.pack`` as the array
``[event_id, seq, window_start_ms, window_end_ms, total, unique_users, revision,
[choice, count, choice, count, ...]]``; every count of the window is kept (bounded by the
distinct emojis of one window) so history can chart any emoji, and delivery applies top-N.
"""

from __future__ import annotations

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
