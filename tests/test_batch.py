from __future__ import annotations

from collections import Counter

import msgpack
import pytest

from emostream.batch import Batch, EventColumns, pack_batch, tally_batch, unpack_batch
from emostream.errors import BatchError
from emostream.rules import EmojiSwarmRule


def columns(rows: list[tuple[str, str, int]]) -> EventColumns:
    return EventColumns(
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [None] * len(rows)
    )


def test_pack_unpack_round_trip() -> None:
    rows = [("u1", "🔥", 4000), ("u2", "😂", 4100), ("u3", "😂", 4100), ("u1", "👏", 6100)]
    batch = Batch("b1", "p1", 7000, {"live": columns(rows), "other": columns([("u9", "👏", 10)])})
    back = unpack_batch(pack_batch(batch, 2000))
    assert back == batch and back.size == 5


def test_tally_splits_a_batch_at_window_boundaries() -> None:
    rows = [("u1", "🔥", 1500), ("u2", "🔥", 1999), ("u1", "😂", 2000), ("u3", "🔥", 4100)]
    batch = Batch("b", "p", 5000, {"live": columns(rows), "other": columns([("u9", "👏", 10)])})
    tally = tally_batch(pack_batch(batch, 2000), EmojiSwarmRule())
    assert (tally.batch_id, tally.size) == ("b", 5)
    tallies = {(t.event_id, t.window_start_ms): t for t in tally.windows}
    assert set(tallies) == {("live", 0), ("live", 2000), ("live", 4000), ("other", 0)}
    first = tallies[("live", 0)]
    assert (first.total, first.counts) == (2, Counter({"🔥": 2}))
    # users travel packed, untouched, for the HyperLogLog in Lua
    assert msgpack.unpackb(first.users_packed) == ["u1", "u2"]
    assert tallies[("live", 2000)].counts == Counter({"😂": 1})
    assert msgpack.unpackb(tallies[("live", 4000)].users_packed) == ["u3"]
    assert sum(t.total for t in tallies.values()) == batch.size


@pytest.mark.parametrize(
    "payload",
    [
        b"\xc1",  # never valid msgpack
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 99, "id": "x", "p": "p", "wm": 0, "groups": []}),
        msgpack.packb({"v": 1, "id": "x", "p": "p", "wm": 0, "events": {}}),  # the old format
        msgpack.packb({"v": 2, "id": "x", "p": "p"}),
        msgpack.packb(
            {
                "v": 2,
                "id": "x",
                "p": "p",
                "wm": 0,
                "groups": [["e", 0, "not packed", ["x"], [], []]],
            }
        ),
    ],
)
def test_undecodable_batches_raise_batch_error(payload: bytes) -> None:
    with pytest.raises(BatchError):
        tally_batch(payload, EmojiSwarmRule())
    with pytest.raises(BatchError):
        unpack_batch(payload)


def test_unpack_checks_the_columns_agree() -> None:
    group = ["e", 0, msgpack.packb(["u1", "u2"]), ["🔥"], [[0, 2]], [None, None]]
    with pytest.raises(BatchError):
        unpack_batch(msgpack.packb({"v": 2, "id": "x", "p": "p", "wm": 0, "groups": [group]}))
