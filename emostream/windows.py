"""Window arithmetic: pure functions of milliseconds, no I/O."""

from __future__ import annotations

import heapq
from collections.abc import Mapping


def window_start(ts_ms: int, window_ms: int) -> int:
    """Start of the window holding ``ts_ms``; windows are aligned to the Unix epoch."""
    return ts_ms - ts_ms % window_ms


def due_windows(
    next_starts: Mapping[str, int], safe_ms: int, window_ms: int, limit: int
) -> list[tuple[str, int]]:
    """(event, window start) of the windows that end at or before ``safe_ms``, oldest first
    across every event, at most ``limit``: each event's oldest open window is
    ``next_starts[event]``.

    Oldest first is what keeps closing fair: when there is more to close than one pass takes
    (a catch-up after an outage), the most overdue windows go first whichever event they
    belong to, and an event's own windows stay in order.
    """
    heap = [(start, event) for event, start in next_starts.items() if start + window_ms <= safe_ms]
    heapq.heapify(heap)
    due: list[tuple[str, int]] = []
    while heap and len(due) < limit:
        start, event = heap[0]
        due.append((event, start))
        if start + 2 * window_ms <= safe_ms:
            heapq.heapreplace(heap, (start + window_ms, event))
        else:
            heapq.heappop(heap)
    return due


def producer_is_live(watermark_ms: int, now_ms: int, timeout_ms: int) -> bool:
    """An ingest producer holds windows open only while its watermark keeps moving: one
    silent for longer than ``timeout_ms`` died or lost Redis."""
    return now_ms - watermark_ms <= timeout_ms


def next_tick_ms(now_ms: int, interval_ms: int) -> int:
    """Next multiple of ``interval_ms`` strictly after ``now_ms``.

    Flushes fire on these wall-clock multiples, so with a window that is a multiple of the
    flush interval a flush lands exactly as each window ends and it can close at once.
    """
    return now_ms - now_ms % interval_ms + interval_ms
