from __future__ import annotations

import pytest

from emostream.windows import due_windows, next_tick_ms, window_start


@pytest.mark.parametrize(
    ("ts", "start"), [(0, 0), (1999, 0), (2000, 2000), (1795000001999, 1795000000000)]
)
def test_window_start_aligns_to_the_epoch(ts: int, start: int) -> None:
    assert window_start(ts, 2000) == start


def test_due_windows_stop_at_the_safe_point() -> None:
    assert due_windows({"e": 0}, 1999, 2000, 10) == []
    assert due_windows({"e": 0}, 2000, 2000, 10) == [("e", 0)]
    assert due_windows({"e": 2000}, 8500, 2000, 10) == [("e", 2000), ("e", 4000), ("e", 6000)]


def test_due_windows_are_bounded() -> None:
    assert due_windows({"e": 0}, 10**9, 2000, 3) == [("e", 0), ("e", 2000), ("e", 4000)]


def test_due_windows_go_oldest_first_across_events() -> None:
    """A catch-up larger than one pass: the most overdue windows first, whichever event
    they belong to, each event's own in order; nobody waits behind a long backlog."""
    next_starts = {"backlog": 0, "live": 6000, "other": 2000}
    assert due_windows(next_starts, 8000, 2000, 5) == [
        ("backlog", 0),
        ("backlog", 2000),
        ("other", 2000),
        ("backlog", 4000),
        ("other", 4000),
    ]
    assert len(due_windows(next_starts, 8000, 2000, 100)) == 4 + 3 + 1


@pytest.mark.parametrize(("now", "tick"), [(0, 500), (499, 500), (500, 1000), (1999, 2000)])
def test_flush_ticks_land_on_window_ends(now: int, tick: int) -> None:
    assert next_tick_ms(now, 500) == tick
