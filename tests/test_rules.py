from __future__ import annotations

import pytest

from emostream.records import WindowRecord
from emostream.rules import EmojiSwarmRule, swarm, top_n


@pytest.mark.parametrize(
    ("count", "icons"),
    [(0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (1999, 2), (2000, 2), (3785, 4)],
)
def test_swarm_is_ceil_of_count_over_scale(count: int, icons: int) -> None:
    assert swarm(count, 1000) == icons


def test_swarm_with_another_scale() -> None:
    assert [swarm(c, 10) for c in (0, 1, 10, 11)] == [0, 1, 1, 2]


@pytest.mark.parametrize(
    ("counts", "n", "expected"),
    [
        ([], 5, []),
        ([("🔥", 3785)], 5, [("🔥", 3785)]),
        ([("a", 1), ("b", 3), ("c", 2)], 2, [("b", 3), ("c", 2)]),
        # ties broken by emoji ascending (code point order: 👏 U+1F44F < 🔥 U+1F525 < 😂 U+1F602)
        ([("😂", 5), ("🔥", 5), ("👏", 5)], 2, [("👏", 5), ("🔥", 5)]),
        ([("b", 1), ("a", 1), ("c", 9)], 5, [("c", 9), ("a", 1), ("b", 1)]),
    ],
)
def test_top_n_orders_by_count_then_emoji(
    counts: list[tuple[str, int]], n: int, expected: list[tuple[str, int]]
) -> None:
    assert top_n(counts, n) == expected


def test_window_object_matches_the_contract() -> None:
    record = WindowRecord(
        "live",
        42,
        1795000000000,
        1795000002000,
        5234,
        812,
        (("😂", 1), ("🔥", 3785), ("👏", 1448)),
    )
    window = EmojiSwarmRule(top_n=2, scale=1000).window_object(record)
    assert window == {
        "v": 1,
        "event_id": "live",
        "seq": 42,
        "window_start_ms": 1795000000000,
        "window_end_ms": 1795000002000,
        "total": 5234,
        "unique_users": 812,
        "top": [
            {"emoji": "🔥", "count": 3785, "swarm": 4},
            {"emoji": "👏", "count": 1448, "swarm": 2},
        ],
        # (0.221 * 1 + 0.140 * 3785 + 0.521 * 1448) / 5234: every count, not the top only
        "mood": 0.245,
    }


def test_empty_window_object_has_total_zero_and_empty_top() -> None:
    record = WindowRecord("live", 7, 0, 2000, 0, 0, ())
    window = EmojiSwarmRule().window_object(record)
    assert (window["total"], window["top"], window["seq"], window["mood"]) == (0, [], 7, None)
    assert "revision" not in window


def test_revision_is_shown_only_when_revised() -> None:
    record = WindowRecord("live", 7, 0, 2000, 1, 1, (("🔥", 1),), revision=2)
    assert EmojiSwarmRule().window_object(record)["revision"] == 2
