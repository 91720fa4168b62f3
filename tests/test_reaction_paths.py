"""The fast path's string test for reaction paths agrees with the path's grammar."""

from __future__ import annotations

import itertools

from emostream.ingest.fastpath import REACTIONS_PATH, reactions_event

PARTS = ["", "/", "v1", "events", "reactions", "a", "a/b", "/v1/events/", "/reactions", "x\n"]


def test_the_string_test_finds_the_event_id_the_regex_finds() -> None:
    for parts in itertools.product(PARTS, repeat=4):
        path = "".join(parts)
        match = REACTIONS_PATH.fullmatch(path)
        assert reactions_event(path) == (match.group(1) if match else None), path
