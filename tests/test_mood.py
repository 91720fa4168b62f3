"""The mood index: the Emoji Sentiment Ranking's scores, weighted by each window's counts."""

from __future__ import annotations

import pytest

from emostream.mood import lexicon, mood_index, sentiment


def test_the_lexicon_is_the_published_ranking() -> None:
    scores = lexicon()
    assert len(scores) == 969
    # The "sentiment score" column of the published ranking, for a few well-known rows.
    assert round(scores["😂"], 3) == 0.221
    assert round(scores["❤"], 3) == 0.746
    assert round(scores["😭"], 3) == -0.093
    assert all(-1 <= score <= 1 for score in scores.values())


def test_presentation_selectors_and_skin_tones_are_looked_up_plain() -> None:
    assert sentiment("❤️") == sentiment("❤")
    assert sentiment("👍🏽") == sentiment("👍")
    assert sentiment("🫠") is None  # newer than the ranking


@pytest.mark.parametrize(
    ("counts", "mood"),
    [
        ([], None),
        ([("🫠", 4)], None),
        ([("😂", 1)], 0.221),
        ([("😂", 1), ("🫠", 100)], 0.221),  # an unknown emoji carries no weight
        ([("❤️", 3), ("😭", 1)], round((3 * lexicon()["❤"] + lexicon()["😭"]) / 4, 3)),
    ],
)
def test_mood_is_the_count_weighted_mean(counts: list[tuple[str, int]], mood: float | None) -> None:
    assert mood_index(counts) == mood
