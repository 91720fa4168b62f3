"""Window arithmetic: pure functions of milliseconds, no I/O."""

from __future__ import annotations


def window_start(ts_ms: int, window_ms: int) -> int:
    """Start of the window holding ``ts_ms``; windows are aligned to the Unix epoch."""
    return ts_ms - ts_ms % window_ms


def closable_starts(next_start_ms: int, safe_ms: int, window_ms: int, limit: int) -> list[int]:
    """Starts of the windows, oldest first, that end at or before ``safe_ms``.

    ``next_start_ms`` is the oldest window not closed yet; at most ``limit`` are returned so a
    long outage catches up in bounded steps.
    """
    starts: list[int] = []
    start = next_start_ms
    while start + window_ms <= safe_ms and len(starts) < limit:
        starts.append(start)
        start += window_ms
    return starts


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
