from __future__ import annotations

import pytest

from emostream.windows import closable_starts, next_tick_ms, window_start


@pytest.mark.parametrize(
    ("ts", "start"), [(0, 0), (1999, 0), (2000, 2000), (1795000001999, 1795000000000)]
)
def test_window_start_aligns_to_the_epoch(ts: int, start: int) -> None:
    assert window_start(ts, 2000) == start


def test_closable_starts_stop_at_the_safe_point() -> None:
    assert closable_starts(0, 1999, 2000, 10) == []
    assert closable_starts(0, 2000, 2000, 10) == [0]
    assert closable_starts(2000, 8500, 2000, 10) == [2000, 4000, 6000]


def test_closable_starts_are_bounded() -> None:
    assert closable_starts(0, 10**9, 2000, 3) == [0, 2000, 4000]


@pytest.mark.parametrize(("now", "tick"), [(0, 500), (499, 500), (500, 1000), (1999, 2000)])
def test_flush_ticks_land_on_window_ends(now: int, tick: int) -> None:
    assert next_tick_ms(now, 500) == tick
